"""The bulk-job core: parameters parsed, the ADQL composed and checked, errors placed in the
part of the request they come from; the download scripts."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyvault.bulk.jobs import (
    BulkQuery,
    _balanced,
    compile_request,
    parse_region,
    parse_request,
    run_request,
)
from skyvault.bulk.scripts import ScriptFile, aria2_input, curl_script, wget_script
from skyvault.engine.archive import Archive
from skyvault.engine.budget import MemoryBudget
from skyvault.engine.executor import CancelToken
from skyvault.errors import GeometryError, QueryCancelled, ServerBusy, UsageError
from skyvault.sky.regions import Circle, Polygon


def _params(**values: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in values.items()}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("CIRCLE", "10 20 0.5"),
        ("REGION", "CIRCLE('ICRS', 10, 20, 0.5)"),
        ("REGION", "circle('', 10.0, 20.0, 5e-1)"),
        ("REGION", "CIRCLE 10 20 0.5"),
    ],
)
def test_circles_in_every_form(name: str, text: str) -> None:
    assert parse_region(name, text) == Circle(10, 20, 0.5)


def test_polygons_in_dali_and_adql_form() -> None:
    dali = parse_region("POLYGON", "10 20 11 20 11 21")
    adql = parse_region("REGION", "POLYGON('ICRS', 10, 20, 11, 20, 11, 21)")
    assert isinstance(dali, Polygon) and dali == adql


@pytest.mark.parametrize(
    "text", ["CIRCLE('ICRS', 10, 20, radius)", "CIRCLE('ICRS', 1, 2) OR 1=1 --", "BOX 1 2 3 4"]
)
def test_a_region_is_numbers_only(text: str) -> None:
    with pytest.raises(UsageError):
        parse_region("REGION", text)


def test_a_region_outside_the_sky_says_which_number() -> None:
    with pytest.raises(GeometryError, match="declination"):
        parse_region("CIRCLE", "10 95 1")


def test_parameters() -> None:
    request = parse_request(
        _params(TABLE=" s.t ", COLUMNS='ra, "Dec"', FORMAT="FITS", MAXFILESIZE="5000"),
        max_file_bytes=10_000,
    )
    assert (request.table, request.columns, request.format) == ("s.t", ("ra", '"Dec"'), "fits")
    assert request.max_file_bytes == 5000
    for bad in (
        _params(),
        _params(TABLE="s.t", COLUMNS="ra; DROP"),
        _params(TABLE="s.t", COLUMNS='"two\nlines"'),
        _params(TABLE="s.t", FORMAT="xlsx"),
        _params(TABLE="s.t", MAXFILESIZE="20000"),
        _params(TABLE="s.t", CIRCLE="1 2 3", MOC="3/1"),
    ):
        with pytest.raises(UsageError):
            parse_request(bad, max_file_bytes=10_000)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("a > 1 AND (b < 2 OR c = ')')", True),
        ("name = 'it''s (' AND x = 1", True),
        ('"odd)" > 1', True),
        ("a > 1 -- a comment )\n AND b < 2", True),
        ("1=1) UNION (SELECT 1", False),
        ("a > 1)", False),
        ("(a > 1", False),
        ("name = 'open", False),
    ],
)
def test_a_filter_must_stay_inside_its_parentheses(text: str, ok: bool) -> None:
    assert _balanced(text) is ok


def test_scripts_quote_paths_and_carry_checksums() -> None:
    files = [
        ScriptFile("dataset/Norder=0/Npix=1.parquet", "http://h/x?a=1&b=2", "ab" * 16, "cd" * 32),
        ScriptFile("it's.csv", "http://h/y", "ef" * 16, "01" * 32),
    ]
    for script in (wget_script(files, "t"), curl_script(files, "t")):
        assert "mkdir -p dataset/Norder=0" in script
        assert shlex.quote("http://h/x?a=1&b=2") in script
        assert shlex.quote("it's.csv") in script
        assert f"{'ab' * 16}  dataset/Norder=0/Npix=1.parquet" in script
        assert f"{'01' * 32}  it's.csv" in script
    listing = aria2_input(files)
    assert listing.splitlines()[:3] == [
        "http://h/x?a=1&b=2",
        "  out=dataset/Norder=0/Npix=1.parquet",
        f"  checksum=md5={'ab' * 16}",
    ]


# --- running: memory, cancellation, nothing half-written ------------------------------------


@pytest.fixture(scope="module")
def world_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Archive, Path]]:
    from tests.service.security_world import build_world

    root = tmp_path_factory.mktemp("bulk-core")
    world = build_world(root)
    archive = Archive(world.data)
    try:
        yield archive, root
    finally:
        archive.close()


def _query(archive: Archive) -> BulkQuery:
    request = parse_request(
        _params(TABLE="Secret.Plans", MAXFILESIZE="10000"), max_file_bytes=10**6
    )
    return compile_request(request, archive, archive.tables())


def test_a_job_waits_for_its_memory_and_leaves_nothing_when_it_cannot_have_it(
    world_archive: tuple[Archive, Path],
) -> None:
    archive, root = world_archive
    budget = MemoryBudget(64 * 1024**2)
    held = budget.reserve(64 * 1024**2)
    out = root / "busy"
    try:
        with pytest.raises(ServerBusy):
            run_request(_query(archive), archive, out, max_file_bytes=10**6, timeout=0.3,
                        budget=budget)  # fmt: skip
    finally:
        held.close()
    assert not out.exists() and not [p for p in root.iterdir() if p.name.startswith(".busy")]
    done = run_request(_query(archive), archive, out, max_file_bytes=10**6, budget=budget)
    assert done.rows == 4099 and len(done.manifest.entries) > 2


def test_a_cancelled_job_leaves_nothing(world_archive: tuple[Archive, Path]) -> None:
    archive, root = world_archive
    token = CancelToken()
    token.cancel()
    with pytest.raises(QueryCancelled):
        run_request(_query(archive), archive, root / "cancelled", max_file_bytes=10**6,
                    cancel=token)  # fmt: skip
    assert not [p for p in root.iterdir() if "cancelled" in p.name]


def test_the_size_check_stops_a_job_while_it_writes(world_archive: tuple[Archive, Path]) -> None:
    archive, root = world_archive
    whole = run_request(_query(archive), archive, root / "whole", max_file_bytes=10**6)
    seen: list[int] = []

    def check(n: int) -> None:
        seen.append(n)
        if n > 20_000:
            raise UsageError("full")

    with pytest.raises(UsageError, match="full"):
        run_request(_query(archive), archive, root / "full", max_file_bytes=10**6,
                    check_size=check)  # fmt: skip
    assert 20_000 < seen[-1] < whole.bytes / 2  # stopped at the first file past the limit
    assert not [p for p in root.iterdir() if "full" in p.name]


@pytest.mark.slow
def test_appended_rows_are_written_once_in_their_cells(tmp_path: Path) -> None:
    """A table with appended (delta) rows — inside its partitions and outside every one —
    gives each row exactly once, with the cell it lies in (the planner's cells are the
    base partitions and the appended cells, which are disjoint)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skyvault.catalog.append import append
    from skyvault.catalog.ingest import IngestOptions, ingest
    from skyvault.sky.coverage import healpix29

    rng = np.random.default_rng(11)

    def rows(start: int, n: int, ra: tuple[float, float], dec: tuple[float, float]) -> pa.Table:
        return pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                         "ra": rng.uniform(*ra, n), "dec": rng.uniform(*dec, n)})  # fmt: skip

    base = rows(0, 3000, (10.0, 12.0), (-1.0, 1.0))
    pq.write_table(base, tmp_path / "base.parquet")
    ingest([tmp_path / "base.parquet"], "s.t", tmp_path / "data", ra="ra", dec="dec",
           options=IngestOptions(max_rows_per_partition=1000))  # fmt: skip
    inside = rows(10_000, 400, (10.0, 12.0), (-1.0, 1.0))
    outside = rows(20_000, 300, (200.0, 201.0), (40.0, 41.0))  # no partition there
    append(tmp_path / "data", "s.t", inside, "one")
    append(tmp_path / "data", "s.t", outside, "two")
    archive = Archive(tmp_path / "data")
    try:
        request = parse_request(_params(TABLE="s.t", COLUMNS="id, ra, dec"), max_file_bytes=10**6)
        query = compile_request(request, archive, archive.tables())
        out = run_request(query, archive, tmp_path / "out", max_file_bytes=10**6)
        seen: list[int] = []
        for entry in out.manifest.entries:
            table = pq.read_table(tmp_path / "out" / entry.path)
            seen += table["id"].to_pylist()
            assert entry.healpix_order is not None and entry.healpix_pixel is not None
            shift = 2 * (29 - entry.healpix_order)
            cells = healpix29(table["ra"].to_numpy(), table["dec"].to_numpy()) >> shift
            assert set(cells.tolist()) == {entry.healpix_pixel}, entry.path
        everything = pa.concat_tables([base, inside, outside])["id"].to_pylist()
        assert sorted(seen) == sorted(everything)
    finally:
        archive.close()
