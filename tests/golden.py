"""Golden files: the stored expectation of a test, written only when asked for.

A golden file that is missing fails its test: a test that writes its own expectation
passes whatever the code does.  ``SKYVAULT_REGEN_GOLDEN=1`` writes (or rewrites) every
golden file the run reaches, from what the code produces; review the diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["REGEN_VARIABLE", "golden_bytes", "golden_text", "regenerating"]

#: The environment variable that asks for golden files to be (re)written.
REGEN_VARIABLE = "SKYVAULT_REGEN_GOLDEN"


def regenerating() -> bool:
    """Whether this run writes golden files instead of checking against them."""
    return os.environ.get(REGEN_VARIABLE) == "1"


def _missing(path: Path) -> None:
    pytest.fail(
        f"golden file {path} is missing: run the test with {REGEN_VARIABLE}=1 to write it "
        "from the current output, then review it and commit it",
        pytrace=False,
    )


def golden_text(path: Path, actual: str) -> str:
    """The text stored in ``path``, without trailing newlines.

    When regenerating, ``actual`` is written first (with one final newline), so the caller's
    comparison passes and the diff shows what changed.
    """
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual.rstrip("\n") + "\n")
    elif not path.exists():
        _missing(path)
    return path.read_text().rstrip("\n")


def golden_bytes(path: Path, actual: bytes) -> bytes:
    """The bytes stored in ``path`` (``actual`` written first when regenerating)."""
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
    elif not path.exists():
        _missing(path)
    return path.read_bytes()
