"""A split cross-match reads aligned partner partitions and their margins, and is exact.

Two catalogues with different partitionings (the left one fine where the right one is
coarse, and the other way round elsewhere, with holes in the right one's footprint) are
cross-matched by the Dask executor; the oracle is astropy's ``search_around_sky`` over the
input files.  Every query must really have been split with aligned reads, and each task's
partner reads are checked against the partitions that overlap its own, computed here from
the HEALPix nesting of the partition names.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import cdshealpix.nested as hp
import distributed
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import Latitude, Longitude, SkyCoord

from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.engine.aligned import aligned_partner
from skyvault.engine.archive import Archive, open_archive
from skyvault.engine.distributed import DaskExecutor
from skyvault.engine.plan import TaggedFiles, TagLookup

THRESHOLD = 5.0  # arcseconds: the margin catalogues' width (the ingest default)


def _patch(n: int, rng: np.random.Generator, ra0: float, dec0: float, size: float) -> pa.Table:
    dec = np.clip(dec0 + rng.uniform(-size, size, n), -89.999, 89.999)
    ra = np.mod(ra0 + rng.uniform(-size, size, n) / np.maximum(np.cos(np.radians(dec)), 0.05), 360)
    return pa.table({"ra": ra, "dec": dec})


# (ra, dec, half size, left rows, right field rows): RA 0/360, near the north pole, ordinary
# sky; the left table is dense in the first two, the right one in the last two.
REGIONS = [
    (0.0, 10.0, 1.0, 3000, 300),
    (45.0, 89.4, 0.5, 2500, 300),
    (123.0, -30.0, 1.0, 600, 6000),
    (250.0, 40.0, 1.5, 400, 2500),
]


def _near(left: pa.Table, pick: np.ndarray, rng: np.random.Generator, most: float) -> pa.Table:
    """Copies of ``left[pick]`` moved by up to ``most`` arcseconds in random directions."""
    moved = SkyCoord(
        left["ra"].to_numpy()[pick], left["dec"].to_numpy()[pick], unit="deg"
    ).directional_offset_by(
        rng.uniform(0, 360, len(pick)) * u.deg, rng.uniform(0, most, len(pick)) * u.arcsec
    )
    return pa.table({"ra": moved.ra.deg, "dec": moved.dec.deg})


def _on_cell_edges(ra0: float, dec0: float, size: float, order: int = 7) -> pa.Table:
    """Points on the edges of the order-``order`` HEALPix cells around a region: partition
    borders of that order or coarser run along them."""
    cells, _, _ = hp.cone_search(Longitude(ra0, u.deg), Latitude(dec0, u.deg), size * u.deg, order)
    ra, dec = [], []
    for t in np.linspace(0.05, 0.95, 6):
        for dx, dy in ((t, 0.0), (0.0, t)):
            lon, lat = hp.healpix_to_lonlat(cells, order, dx=dx, dy=dy)
            ra.append(lon.deg)
            dec.append(lat.deg)
    return pa.table({"ra": np.concatenate(ra), "dec": np.concatenate(dec)})


# An order-6 cell of region 3 where the right table has no rows: its parent is dense enough
# to be split, so the right table has no partition there, a hole in its footprint.
HOLE_ORDER = 6


def _hole() -> int:
    cell = hp.lonlat_to_healpix(Longitude(123.0, u.deg), Latitude(-30.0, u.deg), HOLE_ORDER)
    return int(cell[0])


def _hole_edge(n: int) -> tuple[SkyCoord, SkyCoord]:
    """Points about 1″ inside each edge of the hole, and the direction across the edge (as
    the edge point next to each)."""
    cell = np.array([_hole()], dtype=np.uint64)
    inside, edge = [], []
    eps = 1.0 / 3300  # a cell side of order 6 is about 3300″
    for t in np.linspace(0.05, 0.95, n // 4):
        for (dx, dy), (ex, ey) in (
            ((t, eps), (t, 0.0)),
            ((eps, t), (0.0, t)),
            ((t, 1 - eps), (t, 1.0 - 1e-12)),
            ((1 - eps, t), (1.0 - 1e-12, t)),
        ):
            for out, (x, y) in ((inside, (dx, dy)), (edge, (ex, ey))):
                lon, lat = hp.healpix_to_lonlat(cell, HOLE_ORDER, dx=x, dy=y)
                out.append((lon.deg[0], lat.deg[0]))
    a, b = np.array(inside), np.array(edge)
    return SkyCoord(a[:, 0], a[:, 1], unit="deg"), SkyCoord(b[:, 0], b[:, 1], unit="deg")


def _in_hole(table: pa.Table) -> np.ndarray:
    cells = hp.lonlat_to_healpix(
        Longitude(table["ra"].to_numpy(), u.deg), Latitude(table["dec"].to_numpy(), u.deg), 6
    )
    return np.asarray(cells == _hole())


@pytest.fixture(scope="module")
def catalogues(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, pa.Table]:
    root = tmp_path_factory.mktemp("xmatch_margin")
    rng = np.random.default_rng(2024)
    patches = pa.concat_tables(_patch(r[3], rng, *r[:3]) for r in REGIONS)
    edges = pa.concat_tables(_on_cell_edges(*r[:3]) for r in REGIONS)
    hole_inside, hole_edge = _hole_edge(200)
    left = pa.concat_tables(
        [patches, edges, pa.table({"ra": hole_inside.ra.deg, "dec": hole_inside.dec.deg})]
    )
    left = pa.table({"id": np.arange(left.num_rows), "ra": left["ra"], "dec": left["dec"]})
    # Partners of many left rows within 0-6″ (so some are beyond a 5″ radius), of every
    # row on a cell edge within 0-4.5″ (about half of them across it), plus fields; and
    # partners of the rows inside the hole's edges 2-3.5″ outside it.
    pick = rng.choice(patches.num_rows, 5000, replace=False)
    on_edges = np.arange(patches.num_rows, patches.num_rows + edges.num_rows)
    parts = [_near(left, pick, rng, 6.0), _near(left, on_edges, rng, 4.5)]
    parts += [_patch(r[4], rng, *r[:3]) for r in REGIONS]
    right = pa.concat_tables(parts)
    right = right.filter(pa.array(~_in_hole(right)))
    across = hole_inside.directional_offset_by(
        hole_inside.position_angle(hole_edge), rng.uniform(3.0, 4.5, len(hole_edge)) * u.arcsec
    )
    right = pa.concat_tables([right, pa.table({"ra": across.ra.deg, "dec": across.dec.deg})])
    right = pa.table({"id": np.arange(right.num_rows), "ra": right["ra"], "dec": right["dec"]})
    pq.write_table(left, root / "left.parquet")
    pq.write_table(right, root / "right.parquet")
    data = root / "data"
    ingest(
        [root / "left.parquet"],
        "s.left_t",
        data,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=250, margin_arcsec=THRESHOLD),
    )
    ingest(
        [root / "right.parquet"],
        "s.right_t",
        data,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=600, margin_arcsec=THRESHOLD),
    )
    return data, left, right


@pytest.fixture(scope="module")
def dask(catalogues: tuple[Path, pa.Table, pa.Table]) -> Iterator[Archive]:
    archive = open_archive(catalogues[0], executor=DaskExecutor(max_tasks=6))
    yield archive
    archive.close()


def _brute_force(left: pa.Table, right: pa.Table, radius_arcsec: float) -> set[tuple[int, int]]:
    a = SkyCoord(left["ra"].to_numpy(), left["dec"].to_numpy(), unit="deg")
    b = SkyCoord(right["ra"].to_numpy(), right["dec"].to_numpy(), unit="deg")
    ib, ia, _, _ = a.search_around_sky(b, radius_arcsec * u.arcsec)
    return set(
        zip(left["id"].to_numpy()[ia].tolist(), right["id"].to_numpy()[ib].tolist(), strict=True)
    )


def _pairs(table: pa.Table) -> list[tuple[int, int]]:
    return list(zip(table["aid"].to_pylist(), table["bid"].to_pylist(), strict=True))


def _cell(path: str) -> tuple[int, int]:
    match = re.search(r"Norder=(\d+)/Dir=\d+/Npix=(\d+)\.parquet$", path)
    assert match is not None, path
    return int(match.group(1)), int(match.group(2))


def _nested(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether HEALPix cells ``a`` and ``b`` (order, pixel) overlap: one holds the other."""
    (oa, pa_), (ob, pb) = sorted([a, b])
    return pb >> (2 * (ob - oa)) == pa_


def _partition_of(cells: list[tuple[int, int]], ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Index in ``cells`` of the partition holding each position (-1: none)."""
    out = np.full(len(ra), -1)
    for i, (order, pixel) in enumerate(cells):
        inside = hp.lonlat_to_healpix(Longitude(ra, u.deg), Latitude(dec, u.deg), order) == pixel
        out[inside] = i
    return out


DIST = "DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < {r}"
PAIRS = "SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a JOIN s.right_t AS b ON " + DIST


def test_the_catalogues_exercise_every_case(catalogues: tuple[Path, pa.Table, pa.Table]) -> None:
    """Coarser and finer partner partitions, holes in the partner, cross-border pairs."""
    data, left, right = catalogues
    archive = open_archive(data)
    left_cells = [_cell(f) for f in archive.registry.get("s", "left_t").all_files]
    right_cells = [_cell(f) for f in archive.registry.get("s", "right_t").all_files]
    archive.close()
    assert len(left_cells) >= 30 and len(right_cells) >= 10
    finer = coarser = 0
    for lc in left_cells:
        for rc in right_cells:
            if _nested(lc, rc) and rc[0] > lc[0]:
                finer += 1
            elif _nested(lc, rc) and rc[0] < lc[0]:
                coarser += 1
    assert finer > 0 and coarser > 0
    # Many pairs straddle a border of either partitioning.
    ra, dec = left["ra"].to_numpy(), left["dec"].to_numpy()
    pairs = np.array(sorted(_brute_force(left, right, THRESHOLD)))
    a, b = pairs[:, 0], pairs[:, 1]
    r_ra, r_dec = right["ra"].to_numpy(), right["dec"].to_numpy()
    # Some left rows with partners lie where the right table has no partition at all.
    assert (_partition_of(right_cells, ra[a], dec[a]) < 0).sum() >= 50
    for cells in (left_cells, right_cells):
        across = _partition_of(cells, ra[a], dec[a]) != _partition_of(cells, r_ra[b], r_dec[b])
        assert across.sum() >= 200
    assert (dec[a] > 89).sum() > 100 and ((ra[a] < 0.01) | (ra[a] > 359.99)).sum() > 0


@pytest.mark.parametrize("radius_arcsec", [THRESHOLD, 2.0])
def test_split_crossmatch_equals_brute_force(
    catalogues: tuple[Path, pa.Table, pa.Table], dask: Archive, radius_arcsec: float
) -> None:
    _, left, right = catalogues
    adql = PAIRS.format(r=radius_arcsec / 3600)
    result = dask.stream(adql)
    got = _pairs(result.to_table())
    want = _brute_force(left, right, radius_arcsec)
    assert len(want) > 1500
    assert len(got) == len(want), "a pair is missing or came out twice"
    assert set(got) == want
    assert result.stats["tasks"] > 1
    assert result.stats["aligned_tasks"] == result.stats["tasks"]


def test_aggregate_and_left_join_forms(
    catalogues: tuple[Path, pa.Table, pa.Table], dask: Archive
) -> None:
    """A count (partials merged) and a LEFT JOIN (the split table is preserved and keyed)."""
    _, left, right = catalogues
    r = THRESHOLD / 3600
    want = _brute_force(left, right, THRESHOLD)
    result = dask.stream(
        f"SELECT COUNT(*) AS n FROM s.left_t AS a JOIN s.right_t AS b ON {DIST.format(r=r)}"
    )
    assert result.to_table()["n"].to_pylist() == [len(want)]
    assert result.stats["aligned_tasks"] == result.stats["tasks"] > 1
    adql = (
        "SELECT a.id AS aid, b.id AS bid FROM s.left_t AS a LEFT JOIN s.right_t AS b "
        f"ON {DIST.format(r=r)}"
    )
    plan = dask.plan(adql)
    assert {s.placeholder: s.cell.role for s in plan.scans if s.cell} == {
        "__sv_t0": "keyed",
        "__sv_t1": "exploded",
    }
    result = dask.stream(adql)
    rows = _pairs(result.to_table())
    assert result.stats["aligned_tasks"] == result.stats["tasks"] > 1
    assert {p for p in rows if p[1] is not None} == want
    unmatched = left.num_rows - len({a for a, _ in want})
    assert len(rows) == len(want) + unmatched
    assert sorted(a for a, b in rows if b is None) == sorted(
        set(left["id"].to_pylist()) - {a for a, _ in want}
    )


def test_pruned_partner(catalogues: tuple[Path, pa.Table, pa.Table], dask: Archive) -> None:
    """A cone on the partner prunes its files; margins of pruned-away partitions still count."""
    _, left, right = catalogues
    cone = "CONTAINS(POINT('ICRS', b.ra, b.dec), CIRCLE('ICRS', 0.2, 10.1, 0.6)) = 1"
    adql = PAIRS.format(r=THRESHOLD / 3600) + f" WHERE {cone}"
    result = dask.stream(adql)
    got = _pairs(result.to_table())
    inside = (
        SkyCoord(right["ra"].to_numpy(), right["dec"].to_numpy(), unit="deg").separation(
            SkyCoord(0.2, 10.1, unit="deg")
        )
        < 0.6 * u.deg
    )
    want = _brute_force(left, right.filter(pa.array(inside)), THRESHOLD)
    assert len(want) > 100
    assert len(got) == len(want) and set(got) == want
    assert result.stats["aligned_tasks"] == result.stats["tasks"] > 1


def test_each_task_reads_its_aligned_partner_partitions_and_margins(dask: Archive) -> None:
    plan = dask.plan(PAIRS.format(r=THRESHOLD / 3600))
    executor = dask.executor
    assert isinstance(executor, DaskExecutor)
    split, groups = executor.split(plan)
    assert split.split == "__sv_t0" and len(groups) == 6
    partner_all = dask.registry.get("s", "right_t")
    main_cells = [_cell(f) for f in partner_all.all_files]
    margin_root = Path(partner_all.root) / "margin" / "dataset"
    with_margin = {_cell(str(f)) for f in margin_root.rglob("Npix=*.parquet")}
    assert with_margin  # the margin catalogue has files
    residual_tasks = 0
    for files, own in zip(groups, executor.task_scans(plan, split, groups), strict=True):
        scan, partner = own
        assert scan.files == files and isinstance(scan.tag, TagLookup)
        assert isinstance(partner.tag, TaggedFiles)
        mine = [_cell(f) for f in files]
        aligned = {c for c in main_cells if any(_nested(c, m) for m in mine)}
        tagged = partner.tag.files
        main = {_cell(f) for f, t in tagged if t != 0 and "/margin/" not in f}
        margin = {_cell(f) for f, t in tagged if "/margin/" in f}
        assert main == aligned
        assert margin == aligned & with_margin
        assert all(t != 0 for f, t in tagged if "/margin/" in f)
        # Each (file, tag) once; the tags of the main and margin files of a partition agree.
        assert len(set(tagged)) == len(tagged)
        assert len(main) < len(main_cells), "the task reads the whole partner"
        # Rows in no partner partition: the partner files near those holes, under tag 0.
        gap_files = {_cell(f) for f, t in tagged if t == 0}
        if gap_files:
            residual_tasks += 1
            assert partner.tag.residual_ranges is not None
            assert all("/margin/" not in f for f, t in tagged if t == 0)
        assert set(partner.files) == {f for f, _ in tagged}
    assert residual_tasks >= 1
    total = sum(len(own[1].files) for own in executor.task_scans(plan, split, groups))
    assert total < len(groups) * len(main_cells)


def test_radius_beyond_the_margin_reads_the_partner_whole(
    catalogues: tuple[Path, pa.Table, pa.Table], dask: Archive
) -> None:
    _, left, right = catalogues
    adql = PAIRS.format(r=9.0 / 3600)
    plan = dask.plan(adql)
    reason = aligned_partner(plan.scans, "__sv_t0")
    assert isinstance(reason, str) and "narrower than the radius" in reason
    result = dask.stream(adql)
    got = _pairs(result.to_table())
    want = _brute_force(left, right, 9.0)
    assert len(got) == len(want) and set(got) == want
    assert result.stats["tasks"] > 1 and result.stats["aligned_tasks"] == 0
    # Without a margin catalogue: the same fall-back.
    scans = [
        dataclasses.replace(s, layout=dataclasses.replace(s.layout, margin=None))
        if s.placeholder == "__sv_t1" and s.layout is not None
        else s
        for s in dask.plan(PAIRS.format(r=2.0 / 3600)).scans
    ]
    assert aligned_partner(scans, "__sv_t0") == "the partner has no margin catalogue"
    # A margin stored under other cells than the partitions' (not a HATS margin we know).
    scans = []
    for scan in dask.plan(PAIRS.format(r=2.0 / 3600)).scans:
        layout = scan.layout
        if scan.placeholder == "__sv_t1" and layout is not None and layout.margin is not None:
            odd = dataclasses.replace(layout.margin, orders=layout.margin.orders + 1)
            scans.append(dataclasses.replace(scan, layout=dataclasses.replace(layout, margin=odd)))
        else:
            scans.append(scan)
    reason = aligned_partner(scans, "__sv_t0")
    assert isinstance(reason, str) and "margin partitions" in reason


def test_worker_processes(catalogues: tuple[Path, pa.Table, pa.Table]) -> None:
    """Real worker processes: the tagged scans cross a pickle."""
    data, left, right = catalogues
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    archive = open_archive(data, executor=DaskExecutor(client, max_tasks=4))
    try:
        result = archive.stream(PAIRS.format(r=THRESHOLD / 3600))
        got = _pairs(result.to_table())
        assert result.stats["aligned_tasks"] == result.stats["tasks"] == 4
    finally:
        archive.close()
        client.close()
        cluster.close()
    want = _brute_force(left, right, THRESHOLD)
    assert len(got) == len(want) and set(got) == want


def test_interval_helpers_against_brute_force() -> None:
    from skyvault.engine.aligned import _merge, _overlapping, _subtract, contiguous_runs

    rng = np.random.default_rng(5)
    for _ in range(200):

        def intervals(k: int) -> np.ndarray:
            edges = np.unique(rng.integers(0, 60, 2 * k))
            pairs = edges[: len(edges) // 2 * 2].reshape(-1, 2)
            return pairs[rng.random(len(pairs)) < 0.7].astype(np.int64).reshape(-1, 2)

        def points(iv: np.ndarray) -> set[int]:
            return {x for lo, hi in iv.tolist() for x in range(lo, hi)}

        a, b = _merge(intervals(5)), intervals(6)
        assert points(_subtract(a, b)) == points(a) - points(b)
        hits = set(_overlapping(b[:, 0], b[:, 1], a).tolist())
        assert hits == {
            i for i, (lo, hi) in enumerate(b.tolist()) if points(a) & set(range(lo, hi))
        }
    files = [f"f{i}" for i in range(10)]
    sizes = [5, 1, 1, 1, 9, 1, 1, 1, 1, 4]
    for n in (1, 3, 4, 10, 20):
        runs = contiguous_runs(files, sizes, n)
        assert [f for run in runs for f in run] == files
        assert len(runs) == min(n, len(files)) and all(runs)
