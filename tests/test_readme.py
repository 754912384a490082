from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def train_commands() -> list[list[str]]:
    """The overrides of every `python -m sngan.train` / `torchrun ... -m sngan.train` command in README's
    bash blocks (continuation lines joined; Hydra's own keys and sweep lists left to Hydra)."""
    import shlex

    text = (ROOT / "README.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```bash\n")[1:]]
    found = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if "-m sngan.train" not in line:
                continue
            args = shlex.split(line.split("-m sngan.train", 1)[1].split("#", 1)[0])
            found.append([a for a in args if "=" in a and not a.startswith("hydra") and "," not in a])
    return found


def test_every_training_command_in_the_readme_composes_and_validates():
    from helpers import compose_cfg, validated

    commands = train_commands()
    assert len(commands) >= 8
    for overrides in commands:
        validated(compose_cfg(overrides))
