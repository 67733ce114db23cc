"""The house's rules as a test: imports run one way between the rooms (docs/ARCHITECTURE.md), counting the
imports written inside functions, and no module imports itself back through others."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "voxgan"
# What each room may import: cli > results > model > data > ground, and ingest > ground.
ALLOWED = {
    "cli": {"cli", "results", "model", "data", "ingest", "ground"},
    "results": {"results", "model", "data", "ground"},
    "model": {"model", "data", "ground"},
    "data": {"data", "ground"},
    "ingest": {"ingest", "ground"},
    "ground": {"ground"},
}


def room(module: str) -> str:
    """The room of a module name: ``voxgan.model.train`` -> model; the ground's modules -> ground."""
    parts = module.split(".")
    if len(parts) == 1:
        return "ground"  # the package's face: voxgan/__init__.py
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1] if parts[1] in ALLOWED else "ground"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every voxgan name ``path`` imports, at the top or inside a function (``from a import b``: ``a`` and
    ``a.b``, which is a module or a name in ``a``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found |= {source} | {f"{source}.{alias.name}" for alias in node.names}  # a name or a module
    return {target for target in found if target == "voxgan" or target.startswith("voxgan.")}


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_rooms_are_all_known():
    assert {room(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_room_and_the_rooms_below(module):
    wrong = sorted(t for t in MODULES[module] if room(t) not in ALLOWED[room(module)])
    assert not wrong, f"{module} ({room(module)}) imports {wrong}: see docs/ARCHITECTURE.md"


def test_no_module_imports_cli_and_no_import_cycle():
    assert not [m for m, targets in MODULES.items() if "voxgan.cli" in targets and room(m) != "cli"]

    def resolved(target: str) -> str | None:  # "voxgan.model.config.TrainConfig" style names: nearest module
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        return target or None

    graph = {m: {resolved(t) for t in targets} - {None, m} for m, targets in MODULES.items()}
    done, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for target in sorted(graph[module]):
            if not (target == "voxgan" or module.startswith(target + ".")):  # a package's own face
                visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
