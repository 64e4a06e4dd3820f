"""``skyvault demo --stream``: DiaSource batches, a CCD visit each, land in the live demo table."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import skyvault
from skyvault.catalog.append import status
from skyvault.cli import main
from skyvault.demo import build_demo
from skyvault.demo.stream import DIA_SOURCE, stream_visits


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_demo(root, scale="small")
    return root


def _count(data: Path, where: str = "") -> int:
    got = skyvault.open(data).query(f"SELECT COUNT(*) AS n FROM {DIA_SOURCE} {where}")
    return int(got.column("n")[0].as_py())


@pytest.mark.slow
def test_stream_appends_visits_that_queries_find(demo: Path) -> None:
    before = _count(demo)
    seen = []
    visits = stream_visits(demo, interval=0, visits=3, on_visit=seen.append)
    assert seen == visits and len(visits) == 3
    assert all(v.written and v.rows > 0 for v in visits)
    ccds = [v.ccd_visit_id for v in visits]
    assert ccds == list(range(ccds[0], ccds[0] + 3))
    assert _count(demo) == before + sum(v.rows for v in visits)
    for v in visits:  # each visit whole, with ids of its own
        assert _count(demo, f"WHERE ccdVisitId = {v.ccd_visit_id}") == v.rows
    arc = skyvault.open(demo)
    got = arc.query(
        f"SELECT COUNT(DISTINCT diaSourceId) AS u, COUNT(*) AS n FROM {DIA_SOURCE}"
    ).to_pylist()[0]
    assert got["u"] == got["n"]
    # found by a cone around one of the new rows
    row = arc.query(
        f"SELECT TOP 1 ra, decl FROM {DIA_SOURCE} WHERE ccdVisitId = {ccds[0]}"
    ).to_pylist()[0]
    cone = arc.query(
        f"SELECT COUNT(*) AS n FROM {DIA_SOURCE} WHERE ccdVisitId = {ccds[0]} AND "
        f"1 = CONTAINS(POINT('ICRS', ra, decl), CIRCLE('ICRS', {row['ra']}, {row['decl']}, 0.001))"
    )
    assert cone.column("n")[0].as_py() >= 1
    assert status(demo, DIA_SOURCE).batch_ids >= {v.batch_id for v in visits}
    # a later run continues after the last visit
    again = stream_visits(demo, interval=0, visits=1)
    assert again[0].ccd_visit_id == ccds[-1] + 1


@pytest.mark.slow
def test_demo_stream_command(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = status(demo, DIA_SOURCE).snapshot
    argv = ["demo", "--scale", "small", "--stream", "--visits", "2", "--interval", "0"]
    assert main([*argv, "--data", str(demo)]) == 0
    out = capsys.readouterr().out
    assert "streaming DiaSources into dp02_dc2_catalogs.DiaSource" in out
    assert out.count(": ") >= 2 and "snapshot" in out
    assert status(demo, DIA_SOURCE).snapshot == before + 2
