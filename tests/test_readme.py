import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The user's guide, the contributor's page and everything under docs/: their commands, links and paths are checked.
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
SUBPACKAGES = ("cli", "training", "data", "metrics", "models")


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_install_quickstart_and_test_commands():
    quick, tests = readme_commands()
    assert "pip install" in quick and "python -m sngan.train experiment=quickstart" in quick
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def bash_blocks(page: Path) -> list[str]:
    return [part.split("```", 1)[0] for part in page.read_text().split("```bash\n")[1:]]


def train_commands(pages: list[Path] = PAGES) -> list[list[str]]:
    """The overrides of every `python -m sngan.train` / `torchrun ... -m sngan.train` command in the bash
    blocks of README.md and docs/ (continuation lines joined; Hydra's own keys and sweep lists left to
    Hydra)."""
    found = []
    for page in pages:
        for block in bash_blocks(page):
            for line in block.replace("\\\n", " ").splitlines():
                if "-m sngan.train" not in line:
                    continue
                args = shlex.split(line.split("-m sngan.train", 1)[1].split("#", 1)[0])
                found.append([a for a in args if "=" in a and not a.startswith("hydra") and "," not in a])
    return found


def test_every_training_command_in_the_readme_and_docs_composes_and_validates():
    from helpers import compose_cfg, validated

    assert len(train_commands([ROOT / "README.md"])) >= 6  # the guide itself keeps its examples
    commands = train_commands()
    assert len(commands) >= 8
    for overrides in commands:
        validated(compose_cfg(overrides))


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_sngan_command_named_is_a_module(page: Path):
    """`python -m sngan.<command>` (in a block or in prose, also wrapped over two lines) names a module."""
    for name in re.findall(r"-m\s+sngan\.(\w+)", page.read_text()):
        assert (ROOT / "sngan" / f"{name}.py").is_file(), f"{page_id(page)}: no module sngan/{name}.py"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_module_path_named_exists(page: Path):
    """Paths such as `sngan/training/loop.py`, `tests/test_train.py`, `scripts/slurm/train.sbatch` and dotted
    names such as `sngan.training.state.snapshot` follow the package tree as it is."""
    text = page.read_text()
    for path in re.findall(r"(?<![\w/.-])((?:sngan|tests|scripts|configs)/[\w/.-]*\.(?:py|sh|sbatch|yaml))", text):
        assert (ROOT / path).is_file(), f"{page_id(page)}: {path} does not exist"
    for package, module in re.findall(rf"\bsngan\.({'|'.join(SUBPACKAGES)})\.(\w+)", text):
        assert (ROOT / "sngan" / package / f"{module}.py").is_file(), f"{page_id(page)}: no sngan/{package}/{module}.py"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", without_code_blocks(page.read_text()), flags=re.M):
        name, n = slug(heading), 1
        while name in found:
            name, n = f"{slug(heading)}-{n}", n + 1
        found.add(name)
    return found


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_and_picture_points_to_what_exists(page: Path):
    """Markdown links and images to files of the repository (and their #anchors), and docs/ paths named in
    prose, exist."""
    text = without_code_blocks(page.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.is_file(), f"{page_id(page)}: the link {target} points to no file"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page_id(page)}: the link {target} points to no heading"
    for path in re.findall(r"(?<![\w/.-])(docs/[\w/.-]*\.(?:md|png|json))", text):
        assert (ROOT / path).is_file(), f"{page_id(page)}: {path} does not exist"


def test_the_readme_shows_the_quick_start_picture_and_states_what_was_measured():
    text = (ROOT / "README.md").read_text()
    assert "](docs/img/quickstart_ema.png)" in text
    measured = [line for line in text.splitlines() if line.startswith("Measured:")]
    assert len(measured) == 1 and "docs/quickstart.md" in measured[0]


def test_the_readme_stays_a_short_guide():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 260


def test_the_layout_tree_lists_every_command_and_package_as_they_are():
    """README's Layout block: each `name.py` and `name/` under `sngan/` exists, and every module and package
    of sngan/ is listed."""
    text = (ROOT / "README.md").read_text()
    tree = text.split("## Layout\n", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    inside = " ".join(line.split("  ", 2)[1] for line in tree.splitlines() if line.startswith("  "))
    named = set(re.findall(r"\b(\w+\.py|\w+/)", inside))
    for name in named:
        assert (ROOT / "sngan" / name).exists(), f"README's Layout names sngan/{name}, which does not exist"
    for path in (ROOT / "sngan").iterdir():
        if path.name in ("__init__.py", "__pycache__", "configs") or path.suffix not in (".py", ""):
            continue
        listed = path.name if path.suffix == ".py" else f"{path.name}/"
        assert listed in named, f"README's Layout does not list sngan/{listed}"
