"""Every spelling of a distance join is a cell join, for any position columns of any item.

A stored catalogue is matched with uploads whose positions are named as STILTS
``tapskymatch`` names them (``lon``/``lat``) or anything else, without UCDs or declared
RA/Dec, through subqueries and CTEs; for each spelling the translation must list the
cross-match, the plan must join on the cell key, and the pairs must be astropy's
``search_around_sky``.  Conditions that are not a distance join bounded by a constant must
not be taken for one, and still give the right answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyvault.adql.translate import compile_adql
from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.engine.archive import Archive, open_archive
from tests.engine.test_crossmatch import REGIONS, _cell_equalities, _patch

RADIUS_ARCSEC = 2.5
R = RADIUS_ARCSEC / 3600


def _upload_meta(name: str, table: pa.Table) -> TableMeta:
    """An upload as the service describes one with no UCDs: no declared RA/Dec."""
    columns = tuple(ColumnMeta.from_arrow(f) for f in table.schema)
    return TableMeta("TAP_UPLOAD", name, "plain", columns, table.num_rows)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Archive, pa.Table, pa.Table]]:
    """``s.cat`` (stored, 9000 rows over RA 0/360, a pole and ordinary sky) and ``up``:
    near copies (up to ~3″ off) of 2000 catalogue rows and 1000 field stars, as
    ``(uid, lon, lat)``; the archive is closed at the end of the module."""
    root = tmp_path_factory.mktemp("spellings")
    cat = pa.concat_tables(_patch(3000, i, *r) for i, r in enumerate(REGIONS))
    cat = cat.set_column(0, "id", pa.array(np.arange(cat.num_rows)))
    rng = np.random.default_rng(7)
    pick = rng.choice(cat.num_rows, 2000, replace=False)
    near = SkyCoord(cat["ra"].to_numpy()[pick], cat["dec"].to_numpy()[pick], unit="deg")
    near = near.directional_offset_by(
        rng.uniform(0, 360, 2000) * u.deg, rng.uniform(0, 3, 2000) * u.arcsec
    )
    field = pa.concat_tables(_patch(334, 20 + i, *r) for i, r in enumerate(REGIONS))
    up = pa.table(
        {
            "uid": np.arange(2000 + field.num_rows),
            "lon": np.concatenate([near.ra.deg, field["ra"].to_numpy()]),
            "lat": np.concatenate([near.dec.deg, field["dec"].to_numpy()]),
        }
    )
    pq.write_table(cat, root / "cat.parquet")
    ingest(
        [root / "cat.parquet"],
        "s.cat",
        root / "data",
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=500),
    )
    archive = open_archive(root / "data")
    yield archive, cat, up
    archive.close()


def _uploads(up: pa.Table) -> list[tuple[TableMeta, pa.Table]]:
    """``up`` as uploaded by tapskymatch (lon/lat), and the same rows as ``other`` with
    names nothing declares and RA in -180..180 (as some catalogues give it)."""
    lon = up["lon"].to_numpy()
    other = pa.table(
        {
            "k": up["uid"],
            "alpha_j2000": np.where(lon >= 180.0, lon - 360.0, lon),
            "delta_j2000": up["lat"],
        }
    )
    return [(_upload_meta("up", up), up), (_upload_meta("other", other), other)]


def _astropy(
    cat: pa.Table, up: pa.Table, radius_arcsec: float = RADIUS_ARCSEC
) -> set[tuple[int, int]]:
    a = SkyCoord(cat["ra"].to_numpy(), cat["dec"].to_numpy(), unit="deg")
    b = SkyCoord(up["lon"].to_numpy(), up["lat"].to_numpy(), unit="deg")
    ib, ia, _, _ = a.search_around_sky(b, radius_arcsec * u.arcsec)
    ids, uids = cat["id"].to_numpy(), up["uid"].to_numpy()
    return set(zip(ids[ia].tolist(), uids[ib].tolist(), strict=True))


#: Conditions joining catalogue ``c`` and upload ``u`` (position ``u.{lon}``/``u.{lat}``).
SPELLINGS = {
    "point_lt": "DISTANCE(POINT('ICRS', c.ra, c.dec), POINT('ICRS', u.{lon}, u.{lat})) < {r}",
    "point_le_upload_first": "DISTANCE(POINT(u.{lon}, u.{lat}), POINT(c.ra, c.dec)) <= {r}",
    "four_args": "DISTANCE(c.ra, c.dec, u.{lon}, u.{lat}) < {r}",
    "four_args_upload_first": "DISTANCE(u.{lon}, u.{lat}, c.ra, c.dec) <= {r}",
    "radius_first_gt": "{r} > DISTANCE(POINT(c.ra, c.dec), POINT(u.{lon}, u.{lat}))",
    "radius_first_ge": "{r} >= DISTANCE(u.{lon}, u.{lat}, c.ra, c.dec)",
    "contains_upload_circle": (
        "CONTAINS(POINT('ICRS', c.ra, c.dec), CIRCLE('ICRS', u.{lon}, u.{lat}, {r})) = 1"
    ),
    # The condition STILTS tapskymatch sends (3.4), constant first.
    "tapskymatch": (
        "1=CONTAINS(POINT('ICRS', c.ra, c.dec), CIRCLE('ICRS', u.{lon}, u.{lat}, {r}))"
    ),
    "contains_stored_circle": "CONTAINS(POINT(u.{lon}, u.{lat}), CIRCLE(c.ra, c.dec, {r})) = 1",
    "contains_circle_of_point": (
        "1 = CONTAINS(POINT(u.{lon}, u.{lat}), CIRCLE(POINT(c.ra, c.dec), {r}))"
    ),
    "intersects": "INTERSECTS(CIRCLE(u.{lon}, u.{lat}, {r}), POINT(c.ra, c.dec)) = 1",
    "position_expression": "DISTANCE(c.ra, c.dec, u.{lon} + 360.0, u.{lat}) < {r}",
}

#: How the two are brought together: ON of an inner join either way round, or WHERE.
FROMS = {
    "join": "FROM s.cat AS c JOIN TAP_UPLOAD.{up} AS u ON {cond}",
    "join_upload_first": "FROM TAP_UPLOAD.{up} AS u INNER JOIN s.cat AS c ON {cond}",
    "where": "FROM TAP_UPLOAD.{up} AS u, s.cat AS c WHERE {cond}",
}

CASES = [
    (spelling, names, how)
    for spelling in SPELLINGS
    for names in ("lon_lat", "arbitrary")
    for how in FROMS
    if how == "join" or names == "lon_lat"
]


def _run(world: tuple[Archive, pa.Table, pa.Table], adql: str) -> tuple[str, pa.Table]:
    archive, _, up = world
    extra = _uploads(up)
    plan = archive.plan(adql, extra=extra)
    return plan.sql, archive.stream(adql, extra=extra).to_table()


@pytest.mark.parametrize(("spelling", "names", "how"), CASES, ids=["-".join(c) for c in CASES])
def test_every_spelling_is_a_cell_join_equal_to_astropy(
    world: tuple[Archive, pa.Table, pa.Table], spelling: str, names: str, how: str
) -> None:
    archive, cat, up = world
    lon, lat, uid, table = ("lon", "lat", "uid", "up")
    if names == "arbitrary":
        lon, lat, uid, table = ("alpha_j2000", "delta_j2000", "k", "other")
    cond = SPELLINGS[spelling].format(lon=lon, lat=lat, r=R)
    adql = f"SELECT c.id AS cid, u.{uid} AS uid " + FROMS[how].format(up=table, cond=cond)
    if spelling == "position_expression" and names == "lon_lat":
        adql = adql.replace("+ 360.0", "+ 0.0")
    visible = [*archive.registry.tables(), *(m for m, _ in _uploads(up))]
    translation = compile_adql(adql, visible)
    assert len(translation.crossmatches) == 1, "the distance join was not recognised"
    match = translation.crossmatches[0]
    assert {match.left, match.right} == {t.placeholder for t in translation.tables}
    sql, got = _run(world, adql)
    assert _cell_equalities(sql) == 1, sql
    pairs = list(zip(got["cid"].to_pylist(), got["uid"].to_pylist(), strict=True))
    want = _astropy(cat, up)
    assert len(want) > 1500
    assert len(pairs) == len(want) and set(pairs) == want


#: Derived tables on either side: (name, ADQL, outer join?).
DERIVED = [
    (
        "subquery_of_catalogue",
        "SELECT q.id AS cid, u.uid FROM (SELECT id, ra AS x, dec AS y FROM s.cat) AS q "
        "JOIN TAP_UPLOAD.up AS u ON DISTANCE(q.x, q.y, u.lon, u.lat) < {r}",
        False,
    ),
    (
        "subquery_of_upload",
        "SELECT c.id AS cid, v.uid FROM s.cat AS c JOIN (SELECT uid, lon AS a, lat AS b "
        "FROM TAP_UPLOAD.up) AS v ON 1 = CONTAINS(POINT(c.ra, c.dec), CIRCLE(v.a, v.b, {r}))",
        False,
    ),
    (
        "two_subqueries",
        "SELECT q.id AS cid, v.uid FROM (SELECT id, ra, dec FROM s.cat) AS q, "
        "(SELECT uid, lon, lat FROM TAP_UPLOAD.up) AS v "
        "WHERE {r} >= DISTANCE(POINT(v.lon, v.lat), POINT(q.ra, q.dec))",
        False,
    ),
    (
        "cte_left_join",
        "WITH q AS (SELECT id, ra, dec FROM s.cat) SELECT q.id AS cid, u.uid "
        "FROM TAP_UPLOAD.up AS u LEFT JOIN q ON DISTANCE(POINT(q.ra, q.dec), "
        "POINT(u.lon, u.lat)) < {r}",
        True,
    ),
]


@pytest.mark.parametrize(("adql", "outer"), [d[1:] for d in DERIVED], ids=[d[0] for d in DERIVED])
def test_subqueries_and_ctes_are_cell_joins(
    world: tuple[Archive, pa.Table, pa.Table], adql: str, outer: bool
) -> None:
    _, cat, up = world
    adql = adql.format(r=R)
    sql, got = _run(world, adql)
    assert _cell_equalities(sql) == 1, sql
    rows = list(zip(got["cid"].to_pylist(), got["uid"].to_pylist(), strict=True))
    want = _astropy(cat, up)
    matched = [r for r in rows if r[0] is not None]
    assert len(matched) == len(want) and set(matched) == want
    if outer:
        unmatched = [r for r in rows if r[0] is None]
        assert {b for _, b in unmatched} == set(up["uid"].to_pylist()) - {b for _, b in want}
        assert len(unmatched) == up.num_rows - len({b for _, b in want})
    else:
        assert len(rows) == len(want)


def test_nan_and_null_positions_match_nothing(world: tuple[Archive, pa.Table, pa.Table]) -> None:
    """A NaN, infinite or NULL coordinate has no cell (it was a conversion error)."""
    archive, cat, up = world
    lon = up["lon"].to_numpy().copy()
    lat = up["lat"].to_numpy().copy()
    lon[:3] = [np.nan, np.inf, 1.0]
    lat[2] = np.nan
    bad = up.set_column(1, "lon", pa.array(lon)).set_column(2, "lat", pa.array(lat))
    bad = bad.set_column(2, "lat", pa.array(lat, mask=np.arange(len(lat)) == 3))
    adql = (
        "SELECT c.id AS cid, u.uid FROM s.cat AS c JOIN TAP_UPLOAD.up AS u "
        f"ON DISTANCE(c.ra, c.dec, u.lon, u.lat) < {R}"
    )
    extra = [(_upload_meta("up", bad), bad)]
    assert _cell_equalities(archive.plan(adql, extra=extra).sql) == 1
    got = archive.stream(adql, extra=extra).to_table()
    pairs = set(zip(got["cid"].to_pylist(), got["uid"].to_pylist(), strict=True))
    assert pairs == {p for p in _astropy(cat, up) if p[1] > 3}


# --- what is not a distance join -----------------------------------------------------------

#: Not a cross-match (nothing to key on, or not "within a constant radius").
NOT_CROSSMATCHES = {
    "equality": "c.id = u.uid",
    "radius_column": "DISTANCE(c.ra, c.dec, u.lon, u.lat) < u.r",
    "greater_than": "DISTANCE(POINT(c.ra, c.dec), POINT(u.lon, u.lat)) > {r}",
    "radius_first_lt": "{r} < DISTANCE(c.ra, c.dec, u.lon, u.lat)",
    "mixed_points": "DISTANCE(c.ra, u.lat, u.lon, c.dec) < {r}",
    "one_table": "DISTANCE(c.ra, c.dec, c.ra + 0.0, c.dec) < {r} AND c.id = u.uid",
    "in_an_or": "(DISTANCE(c.ra, c.dec, u.lon, u.lat) < {r} OR c.id = u.uid)",
    "contains_zero": "CONTAINS(POINT(c.ra, c.dec), CIRCLE(u.lon, u.lat, {r})) = 0",
}


@pytest.mark.parametrize("name", list(NOT_CROSSMATCHES))
def test_other_conditions_are_not_crossmatches_and_stay_right(
    world: tuple[Archive, pa.Table, pa.Table], name: str
) -> None:
    archive, cat, _ = world
    # 400 near copies (up to ~3″ off) of catalogue rows 0..399, matched with rows 0..599:
    # every pair is compared (no cell join), and the oracle compares every pair too.
    cat = cat.slice(0, 600)
    rng = np.random.default_rng(11)
    near = SkyCoord(cat["ra"].to_numpy()[:400], cat["dec"].to_numpy()[:400], unit="deg")
    near = near.directional_offset_by(
        rng.uniform(0, 360, 400) * u.deg, rng.uniform(0, 3, 400) * u.arcsec
    )
    small = pa.table(
        {"uid": np.arange(400), "lon": near.ra.deg, "lat": near.dec.deg, "r": np.full(400, R)}
    )
    extra = [(_upload_meta("up", small), small)]
    cond = NOT_CROSSMATCHES[name].format(r=R)
    adql = (
        f"SELECT c.id AS cid, u.uid FROM s.cat AS c JOIN TAP_UPLOAD.up AS u ON {cond} "
        "WHERE c.id < 600"
    )
    translation = compile_adql(adql, [*archive.registry.tables(), extra[0][0]])
    assert translation.crossmatches == ()
    plan = archive.plan(adql, extra=extra)
    assert _cell_equalities(plan.sql) == 0 and not any(s.cell for s in plan.scans)
    got = archive.stream(adql, extra=extra).to_table()
    pairs = list(zip(got["cid"].to_pylist(), got["uid"].to_pylist(), strict=True))
    ci, ui = (g.ravel() for g in np.meshgrid(np.arange(600), np.arange(400), indexing="ij"))
    c_ra, c_dec = cat["ra"].to_numpy()[ci], cat["dec"].to_numpy()[ci]
    u_ra, u_dec = small["lon"].to_numpy()[ui], small["lat"].to_numpy()[ui]
    sep = SkyCoord(c_ra, c_dec, unit="deg").separation(SkyCoord(u_ra, u_dec, unit="deg")).deg
    # The mixed points: (c.ra, u.lat) and (u.lon, c.dec).
    mixed = SkyCoord(c_ra, u_dec, unit="deg").separation(SkyCoord(u_ra, c_dec, unit="deg")).deg
    ids, uids = cat["id"].to_numpy()[ci], small["uid"].to_numpy()[ui]
    same = ids == uids
    keep = {
        "equality": same,
        "radius_column": sep < R,
        "greater_than": sep > R,
        "radius_first_lt": sep > R,
        "mixed_points": mixed < R,
        "one_table": same,
        "in_an_or": (sep < R) | same,
        "contains_zero": sep > R,
    }[name]
    want = set(zip(ids[keep].tolist(), uids[keep].tolist(), strict=True))
    assert len(pairs) == len(want) and set(pairs) == want
    assert 300 <= len(want) < len(ids) - 300


def test_dask_runs_the_new_spellings_alike(world: tuple[Archive, pa.Table, pa.Table]) -> None:
    """The split executor over a cell join keyed in the SQL (subquery) or on an upload
    named lon/lat gives the local answer."""
    from skyvault.engine.distributed import DaskExecutor

    archive, cat, up = world
    extra = _uploads(up)[:1]
    split = open_archive(archive.data_dir, executor=DaskExecutor(max_tasks=4))
    try:
        for i, adql in enumerate(
            (
                "SELECT c.id AS cid, u.uid FROM s.cat AS c JOIN TAP_UPLOAD.up AS u ON "
                f"1=CONTAINS(POINT('ICRS', c.ra, c.dec), CIRCLE('ICRS', u.lon, u.lat, {R}))",
                DERIVED[0][1].format(r=R),
                DERIVED[1][1].format(r=R),
            )
        ):
            result = split.stream(adql, extra=extra)
            got = result.to_table()
            if i == 0:  # the catalogue at the top level: split into tasks
                assert result.stats["tasks"] > 1
            pairs = list(zip(got["cid"].to_pylist(), got["uid"].to_pylist(), strict=True))
            assert len(pairs) == len(set(pairs)) and set(pairs) == _astropy(cat, up), adql
    finally:
        split.close()


def test_negative_ra_on_the_keyed_side(world: tuple[Archive, pa.Table, pa.Table]) -> None:
    """An upload with RA in -180..180 keyed (a LEFT JOIN explodes the optional catalogue):
    its bins must be those the exploded side computes for RA + 360."""
    archive, cat, up = world
    extra = _uploads(up)[1:]
    adql = (
        "SELECT c.id AS cid, u.k AS uid FROM TAP_UPLOAD.other AS u LEFT JOIN s.cat AS c "
        f"ON DISTANCE(u.alpha_j2000, u.delta_j2000, c.ra, c.dec) < {R}"
    )
    plan = archive.plan(adql, extra=extra)
    roles = {s.qualified_name: s.cell.role for s in plan.scans if s.cell}
    assert roles == {"s.cat": "exploded", "__sv_t0": "keyed"}
    assert (extra[0][1]["alpha_j2000"].to_numpy() < 0).sum() > 300
    got = archive.stream(adql, extra=extra).to_table()
    rows = list(zip(got["cid"].to_pylist(), got["uid"].to_pylist(), strict=True))
    want = _astropy(cat, up)
    assert {r for r in rows if r[0] is not None} == want
    assert len(rows) == len(want) + up.num_rows - len({b for _, b in want})
