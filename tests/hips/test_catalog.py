"""Catalogue HiPS: every source once, in its cell, brightest first, tiles bounded.

Oracles: the table read back with pyarrow, cdshealpix for cells, a plain per-order
re-selection with pandas over the whole table, mocpy and astropy for Moc.fits and
metadata.xml.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import cdshealpix
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.io.votable import parse_single_table
from mocpy import MOC

from skyvault.catalog.layout import TableName, hips_root
from skyvault.errors import UsageError
from skyvault.hips import TileLimits, build_catalog_hips, hips_dir
from skyvault.hips import catalog as hips_catalog

LIMITS = TileLimits(allsky=(3, 6), tile=25)
MANDATORY = (
    "creator_did",
    "obs_title",
    "dataproduct_type",
    "hips_version",
    "hips_release_date",
    "hips_status",
    "hips_tile_format",
    "hips_order",
    "hips_frame",
)
_TILE = re.compile(r"Norder(\d+)/Dir(\d+)/Npix(\d+)\.tsv$")


def _table(data: Path) -> pd.DataFrame:
    root = (data / "sky" / "clustered").resolve()
    return pq.read_table(root / "dataset").to_pandas().set_index("sid", drop=False)


def _read_tsv(path: Path) -> pd.DataFrame:
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    return frame


def _tiles(root: Path) -> dict[tuple[int, int], pd.DataFrame]:
    out = {}
    for path in root.glob("Norder*/Dir*/Npix*.tsv"):
        match = _TILE.search(path.relative_to(root).as_posix())
        assert match is not None
        order, directory, pixel = (int(g) for g in match.groups())
        assert directory == pixel // 10000 * 10000
        out[(order, pixel)] = _read_tsv(path)
    return out


def _properties(root: Path) -> dict[str, str]:
    props = {}
    for line in (root / "properties").read_text().splitlines():
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    return props


@pytest.fixture(scope="module")
def built(hips_data: Path) -> Path:
    build_catalog_hips(
        hips_data, "sky.clustered", "mag", columns=["sid", "mag", "name"], limits=LIMITS
    )
    return hips_dir(hips_data, TableName("sky", "clustered"))


def _oracle_orders(table: pd.DataFrame, ascending: bool) -> pd.Series:
    """Order of each source by a direct re-selection over the whole table."""
    frame = table[["sid", "mag", "_healpix_29"]].copy()
    frame["missing"] = frame["mag"].isna()
    frame["key"] = frame["mag"].fillna(0.0) * (1 if ascending else -1)
    frame = frame.sort_values(["missing", "key", "_healpix_29"], kind="stable")
    order_of = pd.Series(-1, index=frame["sid"])
    left = frame
    order = 1
    while len(left):
        cell = left["_healpix_29"].to_numpy() >> (2 * (29 - order))
        rank = left.assign(cell=cell).groupby("cell").cumcount().to_numpy()
        take = rank < LIMITS.at(order)
        order_of[left["sid"].to_numpy()[take]] = order
        left = left[~take]
        order += 1
    return order_of


def test_every_source_once_in_its_cell(built: Path, hips_data: Path) -> None:
    table = _table(hips_data)
    tiles = _tiles(built)
    seen: list[int] = []
    for (order, pixel), tile in tiles.items():
        ids = tile["sid"].astype(np.int64).to_numpy()
        seen.extend(ids.tolist())
        ra = tile["ra"].astype(float).to_numpy()
        dec = tile["dec"].astype(float).to_numpy()
        cells = cdshealpix.nested.lonlat_to_healpix(ra * u.deg, dec * u.deg, order)
        assert (cells == pixel).all(), f"a source of tile {order}/{pixel} is not in its cell"
        # The values are the table's own (exact round trip of the floats).
        assert np.array_equal(ra, table.loc[ids, "ra"].to_numpy())
    assert len(seen) == len(set(seen)) == len(table)
    assert set(seen) == set(table["sid"])


def test_tiles_brightest_first_and_bounded(built: Path) -> None:
    for (order, _pixel), tile in _tiles(built).items():
        assert list(tile.columns) == ["ra", "dec", "sid", "mag", "name"]
        assert 0 < len(tile) <= LIMITS.at(order)
        mags = pd.to_numeric(tile["mag"], errors="coerce").to_numpy()
        present = mags[~np.isnan(mags)]
        assert (np.diff(present) >= 0).all()
        # NULL / NaN come after every value.
        missing = np.isnan(mags)
        if missing.any():
            assert not (~missing[np.argmax(missing) :]).any()


def test_selection_matches_direct_reselection(built: Path, hips_data: Path) -> None:
    """Partitions of several orders: the coarse orders (decided on the candidates of
    several partitions) agree with a selection over the whole table at once."""
    table = _table(hips_data)
    parts = pd.read_csv(
        table_dir := (hips_data / "sky" / "clustered").resolve() / "partition_info.csv"
    )
    assert parts["Norder"].nunique() >= 3, "the fixture should have partitions of several orders"
    del table_dir
    expected = _oracle_orders(table, ascending=True)
    got = pd.Series(-1, index=table["sid"])
    for (order, _pixel), tile in _tiles(built).items():
        got[tile["sid"].astype(np.int64).to_numpy()] = order
    assert (got.sort_index() == expected.sort_index()).all()


def test_allsky_holds_the_tiles_of_its_order(built: Path) -> None:
    tiles = _tiles(built)
    for order in (1, 2):
        allsky = _read_tsv(built / f"Norder{order}" / "Allsky.tsv")
        expected = sorted(int(s) for (k, _p), t in tiles.items() if k == order for s in t["sid"])
        assert sorted(allsky["sid"].astype(int)) == expected
        assert len(allsky) <= LIMITS.at(order) * 12 * 4**order


def test_string_with_tab_keeps_the_columns(built: Path) -> None:
    names = pd.concat([t["name"] for t in _tiles(built).values()])
    assert (names == "src 0").sum() == 1  # written "src\t0" in the table


def test_properties(built: Path, hips_data: Path) -> None:
    props = _properties(built)
    for key in MANDATORY:
        assert props.get(key), key
    assert props["dataproduct_type"] == "catalog"
    assert props["hips_tile_format"] == "tsv"
    assert props["hips_frame"] == "equatorial"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", props["hips_release_date"])
    assert int(props["hips_cat_nrows"]) == len(_table(hips_data))
    deepest = max(int(p.name.removeprefix("Norder")) for p in built.glob("Norder*"))
    assert int(props["hips_order"]) == deepest
    assert props["hips_order_min"] == "1"
    assert 0 < float(props["moc_sky_fraction"]) <= 1
    for key in ("hips_initial_ra", "hips_initial_dec", "hips_initial_fov"):
        float(props[key])


def test_moc_covers_every_source(built: Path, hips_data: Path) -> None:
    table = _table(hips_data)
    moc = MOC.from_fits(built / "Moc.fits")
    inside = moc.contains_lonlat(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg)
    assert inside.all()
    # Exactly the order-8 cells holding sources (cells from cdshealpix), no more.
    cells = np.unique(
        cdshealpix.nested.lonlat_to_healpix(
            table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg, 8
        )
    )
    expected = MOC.from_healpix_cells(cells, np.full(cells.size, 8, dtype=np.uint8), max_depth=8)
    assert moc == expected
    assert moc.sky_fraction == pytest.approx(
        float(_properties(built)["moc_sky_fraction"]), abs=1e-6
    )
    assert moc.sky_fraction < 1


def test_metadata_xml_names_the_tile_columns(built: Path) -> None:
    votable = parse_single_table(built / "metadata.xml")
    assert [f.name for f in votable.fields] == ["ra", "dec", "sid", "mag", "name"]
    assert votable.fields[0].ucd == "pos.eq.ra;meta.main"
    assert len(votable.array) == 0


def test_descending_and_default_limits(hips_data: Path, tmp_path: Path) -> None:
    result = build_catalog_hips(hips_data, "sky.clustered", "mag", ascending=False)
    root = hips_dir(hips_data, TableName("sky", "clustered"))
    try:
        tiles = _tiles(root)
        assert sum(len(t) for t in tiles.values()) == result.nrows
        for (order, _p), tile in tiles.items():
            assert len(tile) <= TileLimits().at(order)
            mags = pd.to_numeric(tile["mag"], errors="coerce").dropna().to_numpy()
            assert (np.diff(mags) <= 0).all()
        # Default columns: RA, Dec, then the principal ones and the order-by column.
        assert list(next(iter(tiles.values())).columns)[:2] == ["ra", "dec"]
        assert "mag" in next(iter(tiles.values())).columns
    finally:  # the module's HiPS back for the other tests
        build_catalog_hips(
            hips_data, "sky.clustered", "mag", columns=["sid", "mag", "name"], limits=LIMITS
        )


def test_failed_build_leaves_the_old_hips(
    built: Path, hips_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (built / "properties").read_text()
    tiles_before = sorted(p.relative_to(built) for p in built.rglob("*.tsv"))

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(hips_catalog, "_metadata_xml", broken)
    with pytest.raises(OSError, match="disk full"):
        build_catalog_hips(hips_data, "sky.clustered", "mag", limits=TileLimits(tile=7))
    assert (built / "properties").read_text() == before
    assert sorted(p.relative_to(built) for p in built.rglob("*.tsv")) == tiles_before
    assert not any((hips_root(hips_data) / "sky" / ".skyvault" / "tmp").iterdir())


@pytest.mark.parametrize(
    ("table", "order_by", "columns", "message"),
    [
        ("sky.clustered", "nope", None, "no column 'nope'"),
        ("sky.clustered", "name", None, "not a numeric column"),
        ("sky.clustered", "mag", ["sid", "_healpix_29"], "no column '_healpix_29'"),
        ("sky.plain", "x", None, "has no sky positions"),
        ("sky.clustered", "mag", ["flags"], "cannot go in a TSV tile"),
        ("sky.missing", "mag", None, "no table sky.missing"),
        ("clustered", "mag", None, "not of the form SCHEMA.TABLE"),
    ],
)
def test_usage_errors(
    hips_data: Path, table: str, order_by: str, columns: list[str] | None, message: str
) -> None:
    with pytest.raises(Exception, match=re.escape(message)) as info:
        build_catalog_hips(hips_data, table, order_by, columns=columns)
    assert isinstance(info.value, UsageError) or "no table" in message


def test_initial_view_frames_a_small_footprint(tmp_path: Path) -> None:
    """A table around (359.5°, -30°) (across RA 0): the initial view is centred on it,
    with a field of view that holds it, and the MOC covers a small part of the sky."""
    import pyarrow as pa

    from skyvault.catalog.ingest import IngestOptions, ingest

    rng = np.random.default_rng(5)
    n = 2000
    ra = (359.5 + rng.uniform(-1.5, 1.5, n)) % 360
    dec = -30 + rng.uniform(-1.5, 1.5, n)
    pq.write_table(
        pa.table({"ra": ra, "dec": dec, "mag": rng.uniform(5, 15, n)}), tmp_path / "s.parquet"
    )
    data = tmp_path / "data"
    ingest([tmp_path / "s.parquet"], "f.small", data, ra="ra", dec="dec",
           options=IngestOptions(workers=1))  # fmt: skip
    build_catalog_hips(data, "f.small", "mag", title="Small <script>alert(1)</script> field")
    root = hips_dir(data, TableName("f", "small"))
    props = _properties(root)
    # index.html shows it in Aladin Lite; the title is text there, never markup.
    page = (root / "index.html").read_text()
    assert "A.catalogHiPS(" in page and f"fov: {props['hips_initial_fov']}" in page
    assert "<script>alert" not in page and "Small &lt;script&gt;alert(1)" in page
    centre_ra = float(props["hips_initial_ra"])
    assert min(abs(centre_ra - 359.5), 360 - abs(centre_ra - 359.5)) < 0.5
    assert float(props["hips_initial_dec"]) == pytest.approx(-30, abs=0.5)
    assert 3 <= float(props["hips_initial_fov"]) <= 10
    assert float(props["moc_sky_fraction"]) < 0.01
