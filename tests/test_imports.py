"""No import circles inside tinyconv: every module can be read (and imported) after the ones it needs."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tinyconv"

pytestmark = pytest.mark.model


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The tinyconv modules a file imports, anywhere in it (a lazy import inside a function
    is still a dependency)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.level and node.module else (node.module if not node.level else base)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def test_the_import_graph_has_no_cycle():
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {name: imported_modules(path, modules) for name, path in files.items()}
    # A package's __init__ re-exports its modules; a module importing a sibling is no circle through it.
    graph = {name: {m for m in deps if not (m in ("tinyconv", "tinyconv.layers", "tinyconv.data")
                                              and name.startswith(m + "."))}
             for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(name, path):
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                pytest.fail("import circle: " + " -> ".join(path + [name, dep]))
            if dep not in state:
                visit(dep, path + [name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert graph["tinyconv.model"] and graph["tinyconv.training.checkpoint"]  # the walk saw real imports
