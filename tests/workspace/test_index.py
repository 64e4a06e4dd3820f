"""Indexes on user tables: a column index (metadata, a plain table rewritten sorted) and a
sky index (the table re-partitioned as HATS with margins, so it cross-matches like an
archive table); each published as a new version, atomically.

The cross-match oracle is astropy's ``search_around_sky``; "like an archive table" is read
off the plan: the cell join on both sides, partitions pruned, and the aligned partner path
of the Dask split (``aligned_partner``, and ``aligned_tasks`` in the run's statistics).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.registry import Registry
from skyvault.engine.aligned import aligned_partner
from skyvault.engine.archive import Archive, open_archive
from skyvault.errors import IngestError, UsageError
from skyvault.workspace.index import IndexRequest, create_index, index_request, plan_index

RADIUS = 2.0  # arcseconds


def _sky(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(10.0, 14.0, n)
    dec = rng.uniform(-2.0, 2.0, n)
    return ra, dec


def _positions_field(name: str, ucd: str) -> pa.Field:
    return pa.field(name, pa.float64(), metadata={"ucd": ucd, "unit": "deg"})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    ra, dec = _sky(20_000, 1)
    archive_rows = pa.table({"id": np.arange(len(ra)), "ra": ra, "dec": dec})
    pq.write_table(archive_rows, tmp_path / "archive.parquet")
    ingest(
        [tmp_path / "archive.parquet"],
        "survey.objects",
        root,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=2_000),
    )
    # A user table: some archive positions moved by up to 1.5", some random ones; stored
    # plain (no position given to the ingest), its position declared by UCDs only.
    rng = np.random.default_rng(2)
    pick = rng.choice(len(ra), 3_000, replace=False)
    moved = SkyCoord(ra[pick], dec[pick], unit="deg").directional_offset_by(
        rng.uniform(0, 360, len(pick)) * u.deg, rng.uniform(0, 1.5, len(pick)) * u.arcsec
    )
    more_ra, more_dec = _sky(2_000, 3)
    schema = pa.schema(
        [
            pa.field("tid", pa.int64()),
            _positions_field("ra", "pos.eq.ra;meta.main"),
            _positions_field("dec", "pos.eq.dec;meta.main"),
            pa.field("mag", pa.float32(), metadata={"unit": "mag", "ucd": "phot.mag"}),
        ]
    )
    user = pa.table(
        [
            pa.array(np.arange(5_000) * 7 % 5_000),
            pa.array(np.concatenate([moved.ra.deg, more_ra])),
            pa.array(np.concatenate([moved.dec.deg, more_dec])),
            pa.array(rng.uniform(10, 20, 5_000).astype(np.float32)),
        ],
        schema=schema,
    )
    pq.write_table(user, tmp_path / "user.parquet", row_group_size=1_000)
    ingest([tmp_path / "user.parquet"], "user_alice.targets", root)
    return root


def _meta(root: Path, schema: str = "user_alice", table: str = "targets"):  # type: ignore[no-untyped-def]
    return Registry(root).get(schema, table).meta


def _rows(registry: Registry, schema: str, table: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in registry.get(schema, table).all_files)


def _astropy_pairs(root: Path) -> set[tuple[int, int]]:
    registry = Registry(root)
    user = _rows(registry, "user_alice", "targets")
    objects = _rows(registry, "survey", "objects")
    a = SkyCoord(user["ra"].to_numpy(), user["dec"].to_numpy(), unit="deg")
    b = SkyCoord(objects["ra"].to_numpy(), objects["dec"].to_numpy(), unit="deg")
    ib, ia, _, _ = a.search_around_sky(b, RADIUS * u.arcsec)
    return set(
        zip(user["tid"].to_numpy()[ia].tolist(), objects["id"].to_numpy()[ib].tolist(), strict=True)
    )


MATCH = (
    "SELECT t.tid, o.id FROM user_alice.targets AS t JOIN survey.objects AS o "
    f"ON DISTANCE(POINT('ICRS', t.ra, t.dec), POINT('ICRS', o.ra, o.dec)) < {RADIUS / 3600}"
)


def _pairs(archive: Archive) -> set[tuple[int, int]]:
    got = archive.query(MATCH)
    pairs = list(zip(got["tid"].to_pylist(), got["id"].to_pylist(), strict=True))
    assert len(pairs) == len(set(pairs)), "a pair came out twice"
    return set(pairs)


def test_sky_index_repartitions_and_crossmatches_like_an_archive_table(data: Path) -> None:
    want = _astropy_pairs(data)
    assert len(want) > 2_500
    before = open_archive(data)
    plan = before.plan(MATCH)
    user_scan = next(s for s in plan.scans if s.qualified_name == "user_alice.targets")
    assert user_scan.layout is None
    assert aligned_partner(plan.scans, user_scan.placeholder) == (
        "the split table has no partition layout"
    )
    assert _pairs(before) == want
    before.close()

    # What pyvo sends: the RA column of the declared position, no INDEX_TYPE.
    meta = _meta(data)
    index_plan = plan_index(meta, index_request({"TABLE": ["user_alice.targets"], "INDEX": ["ra"]}))
    assert index_plan.sky and index_plan.columns == ("ra", "dec")
    new = create_index(data, index_plan, options=IngestOptions(max_rows_per_partition=1_000))
    assert new.kind == "hats" and new.ra_column == "ra" and new.n_partitions > 1
    assert new.column("ra").indexed and new.column("mag").unit == "mag"
    assert new.column("mag").ucd == "phot.mag"

    after = open_archive(data)
    stored = after.registry.get("user_alice", "targets")
    assert stored.margin is not None and stored.margin_arcsec == 5.0
    assert stored.meta.nrows == 5_000
    plan = after.plan(MATCH)
    assert {s.cell.role for s in plan.scans if s.cell} == {"keyed", "exploded"}
    user_scan = next(s for s in plan.scans if s.qualified_name == "user_alice.targets")
    other = next(s for s in plan.scans if s.qualified_name == "survey.objects")
    assert user_scan.layout is not None
    assert isinstance(aligned_partner(plan.scans, user_scan.placeholder), tuple)
    assert isinstance(aligned_partner(plan.scans, other.placeholder), tuple)
    assert _pairs(after) == want
    # A cone prunes the user table's partitions now.
    cone = after.plan(
        "SELECT tid FROM user_alice.targets WHERE "
        "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 12, 0, 0.1)) = 1"
    )
    assert 0 < len(cone.scans[0].files) < stored.meta.n_partitions
    after.close()


@pytest.mark.slow
def test_sky_indexed_user_table_splits_with_aligned_partitions(data: Path) -> None:
    from skyvault.engine.distributed import DaskExecutor

    want = _astropy_pairs(data)
    meta = _meta(data)
    request = IndexRequest("user_alice.targets", "ra,dec", index_type="long-lat")
    create_index(data, plan_index(meta, request), options=IngestOptions(max_rows_per_partition=800))
    archive = open_archive(data, executor=DaskExecutor(max_tasks=4))
    try:
        result = archive.stream(MATCH)
        got = result.to_table()
        assert set(zip(got["tid"].to_pylist(), got["id"].to_pylist(), strict=True)) == want
        assert got.num_rows == len(want)
        assert result.stats["tasks"] > 1
        assert result.stats["aligned_tasks"] == result.stats["tasks"]
    finally:
        archive.close()


def test_column_index_sorts_a_plain_table_and_is_published(data: Path) -> None:
    meta = _meta(data)
    assert not meta.column("mag").indexed
    new = create_index(data, plan_index(meta, IndexRequest("user_alice.targets", "mag")))
    assert new.kind == "plain" and new.column("mag").indexed
    stored = Registry(data).get("user_alice", "targets")
    assert stored.meta.column("mag").indexed
    table = pa.concat_tables(pq.read_table(f) for f in stored.all_files)
    mags = table["mag"].to_numpy()
    assert table.num_rows == 5_000 and np.all(np.diff(mags) >= 0)
    assert table.schema.field("mag").type == pa.float32()
    # The row groups' statistics are narrow now: a magnitude cut reads few of them.
    footer = pq.ParquetFile(stored.all_files[0]).metadata
    ranges = [footer.row_group(i).column(3).statistics for i in range(footer.num_row_groups)]
    assert all(a.max <= b.min for a, b in itertools.pairwise(ranges))
    with pytest.raises(UsageError, match="column is already indexed: mag"):
        plan_index(stored.meta, IndexRequest("user_alice.targets", "mag"))


def test_unique_index_refuses_repeated_values_and_leaves_the_table(data: Path) -> None:
    meta = _meta(data)
    link = data / "user_alice" / "targets"
    # tid = 7k mod 5000 is a permutation: unique.
    create_index(data, plan_index(meta, IndexRequest("user_alice.targets", "tid", unique=True)))
    assert _meta(data).column("tid").indexed
    version = link.resolve()
    fresh = _meta(data)
    repeated = pa.table({"k": pa.array([1, 2, 2, 3])})
    pq.write_table(repeated, data.parent / "rep.parquet")
    ingest([data.parent / "rep.parquet"], "user_alice.rep", data)
    with pytest.raises(IngestError, match=r"the value 2 occurs 2 times"):
        create_index(
            data, plan_index(_meta(data, table="rep"), IndexRequest("user_alice.rep", "k", True))
        )
    assert not _meta(data, table="rep").column("k").indexed
    assert link.resolve() == version and fresh.column("tid").indexed


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"INDEX": ["ra"]}, "missing parameter 'table'"),
        ({"TABLE": ["user_alice.targets"]}, "missing parameter 'index'"),
        ({"TABLE": ["user_alice.targets"], "INDEX": ["ra"], "UNIQUE": ["maybe"]}, "not true"),
        ({"TABLE": ["t"], "INDEX": ["ra"], "INDEX_TYPE": ["tree"]}, "not an index type"),
    ],
)
def test_bad_requests(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        index_request(params)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (IndexRequest("t", "nope"), "column not found: nope in table user_alice.targets"),
        (IndexRequest("t", "tid,mag"), "must be a sky index"),
        (IndexRequest("t", "dec,ra"), "must be a sky index"),
        (IndexRequest("t", "tid", index_type="long-lat"), "not the RA of a declared position"),
        (IndexRequest("t", "ra,dec", index_type="x-y"), "x-y"),
        (IndexRequest("t", "ra,dec", True, "long-lat"), "cannot be unique"),
        (IndexRequest("t", "ra,ra", index_type="long-lat"), "two different columns"),
    ],
)
def test_requests_that_do_not_fit_the_table(
    data: Path, request_: IndexRequest, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        plan_index(_meta(data), request_)


def test_the_declared_position_named_as_a_pair_is_a_sky_index(data: Path) -> None:
    plan = plan_index(_meta(data), IndexRequest("t", "ra,dec"))
    assert plan.sky and plan.columns == ("ra", "dec")


def test_upper_case_names_and_unique_index_type() -> None:
    got = index_request({"TABLE": ["s.t"], "INDEX": ["x"], "INDEX_TYPE": ["unique"]})
    assert got == IndexRequest("s.t", "x", True, None)


def test_a_failed_index_leaves_the_table_as_it_was(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skyvault.workspace.index as index_module

    link = data / "user_alice" / "targets"
    version = link.resolve()
    real = index_module.write_hats

    def fails_after_writing(*args: object, **kwargs: object) -> tuple[int, int]:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise IngestError("the disk went away")

    monkeypatch.setattr(index_module, "write_hats", fails_after_writing)
    plan = plan_index(_meta(data), IndexRequest("user_alice.targets", "ra,dec", False, "long-lat"))
    with pytest.raises(IngestError, match="the disk went away"):
        create_index(data, plan)
    assert link.resolve() == version
    assert _meta(data).kind == "plain" and not _meta(data).column("ra").indexed
    assert not list((data / "user_alice" / ".skyvault" / "tmp").iterdir())
    monkeypatch.undo()
    assert create_index(data, plan).kind == "hats"  # and it can be done again


def test_an_aborted_sky_index_stops_and_leaves_the_table(data: Path) -> None:
    from skyvault.engine.executor import CancelToken
    from skyvault.errors import QueryCancelled

    link = data / "user_alice" / "targets"
    version = link.resolve()
    token = CancelToken()
    token.cancel()  # an ABORT that came while the job ran
    plan = plan_index(_meta(data), IndexRequest("user_alice.targets", "ra,dec", False, "long-lat"))
    with pytest.raises(QueryCancelled, match="the index was aborted"):
        create_index(data, plan, cancel=token)
    assert link.resolve() == version and _meta(data).kind == "plain"
