"""The engine's modules import one another without cycles (lazy imports inside functions
count too): the archive uses the executors, the Dask side never reaches back into it."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import skyvault.engine

ENGINE = Path(skyvault.engine.__path__[0])


def _engine_imports(path: Path) -> set[str]:
    """The ``skyvault.engine`` modules ``path`` imports, anywhere in it."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        out |= {n for n in names if n.startswith("skyvault.engine.")}
    return out


def test_engine_modules_import_without_cycles() -> None:
    graph = {
        f"skyvault.engine.{path.stem}": _engine_imports(path)
        for path in ENGINE.glob("*.py")
        if path.stem != "__init__"
    }
    assert "skyvault.engine.archive" not in graph["skyvault.engine.distributed"]
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
    assert order.index("skyvault.engine.executor") < order.index("skyvault.engine.archive")
