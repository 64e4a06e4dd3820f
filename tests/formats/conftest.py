"""Shared helpers for the VOTable writer tests: rendering, reading back, linting."""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pytest
from astropy.io.votable import parse
from astropy.io.votable.tree import VOTableFile

from skyvault.catalog.metadata import ColumnMeta
from skyvault.formats import write_votable

STILTS = shutil.which("stilts")


def render(
    data: pa.Table | Iterable[pa.RecordBatch],
    fields: Sequence[ColumnMeta],
    serialization: str,
    **options: object,
) -> bytes:
    """The whole document ``write_votable`` streams for ``data``."""
    batches = data.to_batches() if isinstance(data, pa.Table) else data
    return b"".join(write_votable(batches, fields, serialization=serialization, **options))  # type: ignore[arg-type]


def read_votable(document: bytes, *, allow: Sequence[type[Warning]] = ()) -> VOTableFile:
    """``document`` parsed by astropy; any warning not in ``allow`` fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for category in allow:
            warnings.simplefilter("ignore", category)
        return parse(io.BytesIO(document), verify="exception")


def votlint_problems(document: bytes, tmp_path: Path) -> list[str]:
    """The ERROR and WARNING lines ``stilts votlint`` reports for ``document``.

    votlint exits 0 whatever it finds and prints nothing for a valid document, so its
    output is what counts.
    """
    if STILTS is None:
        pytest.skip("stilts is not installed (make sysdeps installs it)")
    path = tmp_path / "lint.vot"
    path.write_bytes(document)
    run = subprocess.run(
        [STILTS, "votlint", "validate=true", "version=1.4", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if "ERROR" in line or "WARNING" in line]


@pytest.fixture
def lint(tmp_path: Path) -> Callable[[bytes], list[str]]:
    """Run votlint on a document, answering its problem lines."""
    return lambda document: votlint_problems(document, tmp_path)
