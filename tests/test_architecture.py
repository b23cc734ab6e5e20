"""The package's shape: imports point one way (no cycle among `qa/` and `app.py`), and no module is long.

The import graph is read from the source with `ast`, so it holds every import, those inside functions
included (they run later, but they still tie the two modules together). Relative imports are resolved,
and `from package import name` counts as importing the submodule when `name` is one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600

#: Modules allowed over `MAX_LINES` for now, each with the reason; an entry under the limit must be removed.
TOO_LONG_FOR_NOW: dict[str, str] = {}

def module_files() -> dict[str, Path]:
    """Every module of the graph by dotted name: `qa` and its subpackages, and `app`."""
    modules = {"app": ROOT / "app.py"}
    for path in sorted((ROOT / "qa").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the graph that one import statement in module `name` (at `path`) imports."""
    if isinstance(node, ast.Import):
        wanted = [alias.name for alias in node.names]
    else:
        if node.level:
            package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = ".".join(package[:len(package) - (node.level - 1)])
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        wanted = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = set()
    for target in wanted:
        while target and target not in modules:  # `import qa.x.y` of a name inside a module: its module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module of the graph with the modules of the graph it imports."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name] |= _imported(node, name, path, modules)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm): each holds a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_cycle(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    """A shortest cycle through the first module of `component`, as the imports that close it: [a, b, ..., a]."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first, inside the component, until an import leads back to `start`
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(component)}")


def test_the_graph_sees_what_each_kind_of_import_imports() -> None:
    """The reader itself: relative imports, `from . import module`, imports inside functions, and names."""
    graph = import_graph()
    assert "qa.commands.train" in graph["qa.cli"]  # inside `_parser`, a function
    assert "qa.training.squad" in graph["qa.evaluation"]  # `from .training.squad import ...`
    assert "qa.training.squad" in graph["qa.training.sets"]  # `from .squad import ...` inside the package
    assert "qa.training" in graph["qa.commands.train"]  # `from ..training import train`: the package
    assert "qa.errors" in graph["qa"]  # the package's `__init__`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}, frozenset("abc")) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}, frozenset("abc")) == ["a", "c", "a"]


def test_evaluation_and_training_know_nothing_of_the_command_line() -> None:
    """The command line (`qa.cli`, `qa.commands`) is the top layer: evaluation and training take plain arguments,
    import neither it nor argparse, and training does not import evaluation."""
    graph = import_graph()
    for name, path in module_files().items():
        if not name.startswith(("qa.training", "qa.evaluation", "qa.eval_sets")):
            continue
        imported = graph[name]
        assert not [i for i in imported if i in ("qa.cli", "qa.commands") or i.startswith("qa.commands.")], name
        stdlib = {alias.name for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if isinstance(node, ast.Import) for alias in node.names}
        assert "argparse" not in stdlib, name
        if name.startswith("qa.training"):
            assert not {"qa.evaluation", "qa.eval_sets"} & imported, f"{name} imports evaluation"


def test_no_import_cycle() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        f"{' -> '.join(a_cycle(graph, c))} (all tied together: {', '.join(sorted(c))})" for c in found)


def test_no_module_of_qa_is_over_600_lines() -> None:
    lengths = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
               for path in (ROOT / "qa").rglob("*.py")}
    too_long = {path: n for path, n in lengths.items() if n > MAX_LINES and path not in TOO_LONG_FOR_NOW}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
    back_under = [path for path in TOO_LONG_FOR_NOW if lengths.get(path, 0) <= MAX_LINES]
    assert not back_under, f"{back_under} are {MAX_LINES} lines or fewer now: remove them from TOO_LONG_FOR_NOW"
