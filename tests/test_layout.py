"""The package's architecture, read from its import statements (issue 23): no import cycles between
modules, no module imports a command (train, evaluate, sample, export, fid_stats, report), no module
imports another's private names, and the foundations import nothing of the package's."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sngan"
COMMANDS = {
    "sngan.train",
    "sngan.evaluate",
    "sngan.sample",
    "sngan.export",
    "sngan.fid_stats",
    "sngan.report",
    "sngan.paper_figures",
}
FOUNDATIONS = {"sngan.config", "sngan.registry"}  # import nothing from sngan


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "configs" not in p.parts}


def imports(path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(module, names) for every import of a package module in ``path``, at any depth (lazy imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("sngan")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if not base.startswith("sngan"):
                continue
            for alias in node.names:  # "from sngan.data import cache" imports the module sngan.data.cache
                sub = f"{base}.{alias.name}"
                found.append((sub, []) if sub in known else (base, [alias.name]))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for target, _ in imports(path, known):
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target != name and target in known:
                edges[name].add(target)
    return edges


def test_no_import_cycles_between_modules():
    edges = graph()
    # A package's __init__ re-exporting its own modules is not a cycle of the architecture.
    edges = {m: {t for t in ts if not (m.startswith(t + ".") and t in edges)} for m, ts in edges.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_no_module_imports_a_command_and_the_foundations_import_nothing_of_the_package():
    edges = graph()
    for module, targets in edges.items():
        commands = targets & COMMANDS
        assert not commands, f"{module} imports the command(s) {sorted(commands)}"
        if module in FOUNDATIONS:
            assert not targets, f"{module} imports {sorted(targets)}"


def test_no_module_imports_another_modules_private_names():
    known = set(modules())
    for name, path in modules().items():
        for target, names in imports(path, known):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{name} imports {private} from {target}"


def test_the_graph_sees_the_imports_it_should():
    edges = graph()
    assert "sngan.training.loop" in edges["sngan.train"]
    assert "sngan.data.cache" in edges["sngan.data.sources"]  # "from sngan.data import cache as ..."
    assert "sngan.models" in edges["sngan.models.cnn"]  # relative "from . import MODELS"
