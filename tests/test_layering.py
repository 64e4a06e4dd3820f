"""The packages follow the pipeline: a stage never imports a later one, and nothing in the
core imports the web layer (anywhere in a module, lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import skyvault

SRC = Path(skyvault.__path__[0])

#: What each package may not import: later stages of the pipeline and the web edge.
FORBIDDEN = {
    "sky": ("skyvault.adql", "skyvault.engine", "skyvault.service", "skyvault.catalog"),
    "catalog": ("skyvault.adql", "skyvault.engine", "skyvault.service"),
    "adql": ("skyvault.engine", "skyvault.service"),
    "formats": ("skyvault.engine", "skyvault.service"),
    "engine": ("skyvault.service",),
    "images": ("skyvault.service",),
    "hips": ("skyvault.service",),
    "bulk": ("skyvault.service",),
    "auth": ("skyvault.service",),
    "portal": ("skyvault.service",),
    "workspace": ("skyvault.service",),
}


#: The exceptions, each with its reason.
ALLOWED = {
    # TAP_SCHEMA publishes names as ADQL reads them: a name that is a reserved word of ADQL
    # is published delimited, so it needs the word list (a leaf module: no checker, no engine).
    ("catalog/tap_schema.py", "skyvault.adql.reserved"),
}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_stage_imports_no_later_stage(package: str) -> None:
    wrong = sorted(
        f"{path.relative_to(SRC)} imports {name}"
        for path in (SRC / package).rglob("*.py")
        for name in _imports(path)
        if name.startswith(FORBIDDEN[package]) and (str(path.relative_to(SRC)), name) not in ALLOWED
    )
    assert not wrong, wrong
