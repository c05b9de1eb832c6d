"""The top-level packages and modules of tppeft import each other without cycles: neither at import time
(module-level imports) nor in the design (every import, including those inside functions and under
``TYPE_CHECKING``)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tppeft"


def unit(module: str) -> str:
    """``tppeft.experiment.model`` -> ``tppeft.experiment``: the top-level package or module a module belongs to."""
    return ".".join(module.split(".")[:2])


def module_imports(path: Path, module: str, every: bool = False) -> set[str]:
    """The tppeft modules that ``path`` (module ``module``) imports at module level (``every``: anywhere)."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if every else tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tppeft")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tppeft"):
            found.add(node.module)
            if node.module == "tppeft":  # from tppeft import distributed
                found |= {f"tppeft.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
            found.add(".".join([*base, node.module] if node.module else base))
    return found


def import_graph(every: bool = False) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        source = unit(module)
        targets = {unit(m) for m in module_imports(path, module, every)} - {source, "tppeft"}
        graph.setdefault(source, set()).update(targets)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each node that lies on one (depth-first search)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_tppeft_has_no_import_cycle():
    graph = import_graph()
    assert {"tppeft.arms", "tppeft.experiment", "tppeft.config", "tppeft.tasks"} <= set(graph)
    assert "tppeft.arms" in graph["tppeft.experiment"] and "tppeft.config" in graph["tppeft.experiment"]
    assert cycles(graph) == []


def test_tppeft_has_no_import_cycle_counting_deferred_imports():
    graph = import_graph(every=True)
    assert "tppeft.experiment" in graph["tppeft.api"]  # a function-level import is counted
    assert "tppeft.config" not in graph["tppeft.arms"] and "tppeft.experiment" not in graph["tppeft.arms"]
    assert cycles(graph) == []
