"""Golden files: valid queries and their canonical ADQL; invalid ones and where they fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyvault.adql import parse
from skyvault.errors import AdqlSyntaxError
from tests.golden import golden_text

GOLDEN = Path(__file__).parent / "golden"
VALID = sorted((GOLDEN / "valid").glob("*.adql"))
INVALID = sorted((GOLDEN / "invalid").glob("*.adql"))


def test_golden_sets_are_present() -> None:
    assert len(VALID) >= 20
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_query_parses_to_its_canonical_form(path: Path) -> None:
    query = parse(path.read_text())
    expected = golden_text(path.with_suffix(".expected"), query.sql()).strip()
    assert query.sql() == expected
    # The canonical form is itself valid ADQL and a fixed point.
    assert parse(expected).sql() == expected


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_query_is_refused_where_the_sidecar_says(path: Path) -> None:
    with pytest.raises(AdqlSyntaxError) as caught:
        parse(path.read_text())
    error = caught.value
    sidecar = golden_text(
        path.with_suffix(".error"), f"{error.line}:{error.column}\n{error.detail}"
    )
    position, fragment = sidecar.splitlines()[:2]
    line, column = (int(n) for n in position.split(":"))
    assert (error.line, error.column) == (line, column), str(error)
    assert fragment in error.detail
    assert str(error).startswith(f"line {line}, column {column}: ")
