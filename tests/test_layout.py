"""The package's architecture, read from its import statements (issues 23 and 39): every import points
down the layers (commands -> cli -> training -> metrics/inference -> data/models -> utils -> config/registry),
no import cycles between modules, no module imports another's private names, and the house rule's lengths:
no module over 300 lines, no function over 50."""

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
# Layers, top to bottom: a module may import its own package (a module of sngan/ itself: only itself) and
# the layers below its own; never a layer above, nor another package of its own layer.
LAYERS = [
    {*COMMANDS, "sngan", "sngan.__main__"},
    {"sngan.cli"},
    {"sngan.training"},
    {"sngan.metrics", "sngan.inference"},
    {"sngan.data", "sngan.models"},
    {"sngan.utils"},
    FOUNDATIONS,
]
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 50


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
        if unit(module) in FOUNDATIONS:  # their own modules only
            outside = sorted(t for t in targets if unit(t) != unit(module))
            assert not outside, f"{module} imports {outside}"


def test_no_module_imports_another_modules_private_names():
    known = set(modules())
    for name, path in modules().items():
        for target, names in imports(path, known):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{name} imports {private} from {target}"


def test_the_graph_sees_the_imports_it_should():
    edges = graph()
    assert "sngan.training.loop" in edges["sngan.cli.start"]
    assert "sngan.data.cache" in edges["sngan.data.folders"]  # "from sngan.data import cache as ..."
    assert "sngan.models" in edges["sngan.models.cnn"]  # relative "from . import MODELS"


def unit(module: str) -> str:
    """The package (or the top-level module) a module belongs to: sngan.data.sampler -> sngan.data."""
    return module if module in COMMANDS or module.count(".") < 1 else ".".join(module.split(".")[:2])


def depth(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit(module) in layer)


def against_the_layers(edges: dict[str, set[str]]) -> list[str]:
    """Each import that points up a layer, or sideways into another package of the same layer."""
    wrong = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            if unit(target) != unit(module) and depth(target) <= depth(module):
                way = "up" if depth(target) < depth(module) else "sideways"
                wrong.append(f"{module} imports {target} ({way})")
    return wrong


def test_every_module_has_a_layer():
    for module in graph():
        assert depth(module) >= 0, module


def test_every_import_points_down_the_layers():
    assert against_the_layers(graph()) == []


def test_the_layer_check_catches_an_import_that_points_up_or_sideways():
    edges = graph()
    edges["sngan.data.sampler"] = edges["sngan.data.sampler"] | {"sngan.training.loop"}  # what issue 39 found
    edges["sngan.models.cnn"] = edges["sngan.models.cnn"] | {"sngan.data.dataset"}
    assert against_the_layers(edges) == [
        "sngan.data.sampler imports sngan.training.loop (up)",
        "sngan.models.cnn imports sngan.data.dataset (sideways)",
    ]


def too_long(source: str, name: str) -> list[str]:
    """The house rule's lengths broken by one module's ``source``."""
    found = [f"{name}: {len(source.splitlines())} lines"] if len(source.splitlines()) > MAX_MODULE_LINES else []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                found.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_module_or_function_over_the_house_rule_length():
    found = [problem for name, path in modules().items() for problem in too_long(path.read_text(), name)]
    assert found == []


def test_the_length_check_catches_a_long_module_and_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = f"def long():\n{body}\n" + "\n" * (MAX_MODULE_LINES - MAX_FUNCTION_LINES)
    assert too_long(source, "m") == ["m: 301 lines", f"m:1 long: {MAX_FUNCTION_LINES + 1} lines"]
    assert too_long("def short():\n    return 1\n", "m") == []
