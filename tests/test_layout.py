"""The package's architecture, kept: each stage imports only the stages below it."""

from __future__ import annotations

import ast

from tests.conftest import REPO

# Top to bottom: a subpackage may import those after it, never one before it.
STAGES = ["cli", "use", "compare", "train", "config", "metrics", "data", "components", "workers", "process"]


def test_each_stage_imports_only_the_stages_below_it():
    upward = []
    for path in (REPO / "optcli").rglob("*.py"):
        stage = path.relative_to(REPO / "optcli").parts[0]
        if stage not in STAGES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optcli."):
                target = node.module.split(".")[1]
                if target in STAGES and STAGES.index(target) < STAGES.index(stage):
                    upward.append(f"{path.relative_to(REPO)} imports {node.module}")
    assert upward == []


# compare's rooms, top to bottom: its top modules (run.py, suite.py, display.py) may use them all;
# a room may import the rooms after it, never one before it.
COMPARE_ROOMS = ["reporting", "running", "planning", "judging"]


def test_compares_rooms_import_only_the_rooms_below_them():
    compare = REPO / "optcli" / "compare"
    upward = []
    for room in COMPARE_ROOMS:
        for path in (compare / room).rglob("*.py"):
            for imported in _imports(path):
                parts = imported.split(".")
                if parts[:2] == ["optcli", "compare"] and len(parts) > 2:
                    target = parts[2]
                    if target not in COMPARE_ROOMS or COMPARE_ROOMS.index(target) < COMPARE_ROOMS.index(room):
                        upward.append(f"{path.relative_to(REPO)} imports {imported}")
    assert upward == []
    assert sorted(path.name for path in compare.glob("*.py")) == [
        "__init__.py",
        "display.py",
        "run.py",
        "suite.py",
    ]


def _imports(path) -> set[str]:
    """Every optcli module a file imports: at the top, inside functions, and for type checking alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optcli"):
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("optcli")}
    return found


def test_no_module_imports_itself_through_others():
    """No import circle, lazy and type-only imports included: a module can be read knowing only
    the modules below it."""
    modules = {}
    for path in (REPO / "optcli").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()
    }
    circles = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                circles.append(" -> ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
