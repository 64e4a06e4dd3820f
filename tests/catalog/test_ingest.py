"""Ingest end to end: HATS layout readable by hats/lsdb, metadata, every input format."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import cdshealpix.nested as chp
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import Latitude, Longitude, SkyCoord
from astropy.table import Table

from skyvault.catalog.felis import dp02_schema_path
from skyvault.catalog.ingest import HEALPIX_COLUMN, IngestOptions, ingest
from skyvault.catalog.layout import TableName, list_tables
from skyvault.catalog.metadata import TableMeta, normalize_unit
from tests.conftest import TYCHO2_ROWS, random_sky


def _partition_files(root: Path) -> list[str]:
    return sorted(glob.glob(str(root / "dataset" / "Norder=*" / "Dir=*" / "Npix=*.parquet")))


def _check_partition_file(path: str) -> int:
    """Each file's rows lie in its pixel, carry the right _healpix_29 and are sorted by it."""
    table = pq.read_table(path)
    hp = table.column(HEALPIX_COLUMN).to_numpy()
    assert np.all(np.diff(hp) >= 0), "rows not sorted by _healpix_29"
    expected = chp.lonlat_to_healpix(
        Longitude(table.column("ra").to_numpy(), "deg"),
        Latitude(table.column("dec").to_numpy(), "deg"),
        29,
    ).astype(np.int64)
    np.testing.assert_array_equal(hp, expected)
    parts = Path(path).parts
    order = int(parts[-3].split("=")[1])
    pixel = int(parts[-1].split("=")[1].split(".")[0])
    assert np.all(hp >> (2 * (29 - order)) == pixel), "a row lies outside its partition"
    return table.num_rows


@pytest.mark.shared
@pytest.mark.slow
def test_tycho2_is_a_hats_catalogue(tycho2_parquet: Path, tmp_path: Path) -> None:
    import hats
    import lsdb

    meta = ingest(
        [tycho2_parquet],
        "tycho2.main",
        tmp_path,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=150_000),
    )
    assert meta.nrows == TYCHO2_ROWS
    root = tmp_path / "tycho2" / "main"
    cat = hats.read_hats(root)
    assert cat.catalog_info.total_rows == TYCHO2_ROWS
    pixels = cat.get_healpix_pixels()
    assert len(pixels) == meta.n_partitions > 12
    files = _partition_files(root)
    assert len(files) == len(pixels)
    assert max(pq.ParquetFile(f).metadata.num_rows for f in files) <= 150_000
    # _healpix_29 agrees with cdshealpix for every row of a few partitions (all rows counted).
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == TYCHO2_ROWS
    for f in files[:: max(1, len(files) // 4)]:
        _check_partition_file(f)
    margin = hats.read_hats(root / "margin")
    assert margin.catalog_info.margin_threshold == 5.0
    # lsdb opens catalogue + margin and answers a cone search that astropy confirms.
    lcat = lsdb.open_catalog(root, margin_cache=root / "margin")
    got = lcat.cone_search(ra=83.82, dec=-5.39, radius_arcsec=1800).compute()
    source = pq.read_table(tycho2_parquet, columns=["id", "ra", "dec"])
    sep = SkyCoord(source["ra"].to_numpy(), source["dec"].to_numpy(), unit="deg").separation(
        SkyCoord(83.82, -5.39, unit="deg")
    )
    expected = set(source["id"].to_numpy()[sep.deg < 0.5].tolist())
    assert set(got["id"].tolist()) == expected
    assert len(expected) > 20


def test_margin_holds_every_close_neighbour(tmp_path: Path) -> None:
    """Brute force: each row within the margin radius of a partition, but outside it, is in
    that partition's margin file."""
    # A dense patch across RA 0 so that many partitions and many close pairs exist.
    rng = np.random.default_rng(7)
    n = 30_000
    table = pa.table(
        {
            "id": pa.array(np.arange(n)),
            "ra": pa.array(np.mod(rng.uniform(-3, 3, n), 360.0)),
            "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-0.05, 0.05, n)))),
        }
    )
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    radius = 60.0  # arcsec: wide enough that many rows fall in margins
    ingest(
        [src],
        "t.stars",
        tmp_path / "data",
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=1500, margin_arcsec=radius),
    )
    root = tmp_path / "data" / "t" / "stars"
    coords = SkyCoord(table["ra"].to_numpy(), table["dec"].to_numpy(), unit="deg")
    hp29 = chp.lonlat_to_healpix(coords.ra, coords.dec, 29).astype(np.int64)
    checked = 0
    for f in _partition_files(root):
        parts = Path(f).parts
        order = int(parts[-3].split("=")[1])
        pixel = int(parts[-1].split("=")[1].split(".")[0])
        inside = (hp29 >> (2 * (29 - order))) == pixel
        members = coords[inside]
        outside_idx = np.flatnonzero(~inside)
        # Rows outside the partition and within `radius` of one of its members.
        idx_o, _idx_m, _, _ = members.search_around_sky(coords[outside_idx], radius * u.arcsec)
        needed = set(table["id"].to_numpy()[outside_idx[np.unique(idx_o)]].tolist())
        margin_file = root / "margin" / Path(f).relative_to(root)
        have = set(pq.read_table(margin_file)["id"].to_pylist()) if margin_file.exists() else set()
        assert needed <= have, f"{len(needed - have)} close neighbours missing from margin of {f}"
        checked += len(needed)
    assert checked > 100


def test_every_input_format_gives_the_same_catalogue(tmp_path: Path) -> None:
    table = random_sky(5000, seed=3).drop_columns(["name"])
    astropy_table = Table(
        {name: table[name].to_numpy() for name in table.column_names},
    )
    astropy_table["ra"].unit = "deg"
    astropy_table["dec"].unit = "deg"
    astropy_table["mag"].unit = "mag"
    astropy_table["mag"].description = "V magnitude"
    pq.write_table(table, tmp_path / "a.parquet")
    pacsv.write_csv(table, tmp_path / "a.csv")
    astropy_table.write(tmp_path / "a.ecsv", format="ascii.ecsv")
    astropy_table.write(tmp_path / "a.fits", format="fits")
    astropy_table.write(tmp_path / "a.vot", format="votable")
    results = {}
    for ext in ("parquet", "csv", "ecsv", "fits", "vot"):
        meta = ingest(
            [tmp_path / f"a.{ext}"],
            f"fmt.t_{ext}",
            tmp_path / "data",
            ra="ra",
            dec="dec",
            options=IngestOptions(max_rows_per_partition=800),
        )
        root = tmp_path / "data" / "fmt" / f"t_{ext}"
        rows = pa.concat_tables(pq.read_table(f) for f in _partition_files(root))
        results[ext] = rows.sort_by("id")
        assert meta.nrows == 5000
        if ext in ("ecsv", "fits", "vot"):
            assert meta.column("mag").unit == "mag", ext
        if ext in ("ecsv", "vot"):
            assert meta.column("mag").description == "V magnitude", ext
    for ext, rows in results.items():
        np.testing.assert_array_equal(rows["id"].to_numpy(), results["parquet"]["id"].to_numpy())
        np.testing.assert_allclose(rows["ra"].to_numpy(), results["parquet"]["ra"].to_numpy())
        assert rows["_healpix_29"].equals(results["parquet"]["_healpix_29"]), ext


def _described_astropy_table() -> Table:
    """A table as an astronomer writes it with astropy: units in several spellings,
    descriptions (one longer than a FITS card), a UCD in the column meta."""
    rng = np.random.default_rng(11)
    n = 400
    table = Table()
    table["id"] = np.arange(n, dtype=np.int64)
    table["ra"] = rng.uniform(0.0, 20.0, n) * u.deg
    table["ra"].description = "Right ascension (ICRS)"
    table["ra"].meta["ucd"] = "pos.eq.ra;meta.main"
    table["dec"] = rng.uniform(-10.0, 10.0, n) * u.deg
    table["pmra"] = rng.normal(0.0, 5.0, n) * u.mas / u.yr
    table["pmra"].description = (
        "Proper motion in right ascension times cos(Dec), in the ICRS at the catalogue "
        "epoch, from a five-parameter astrometric fit"
    )
    table["flux"] = rng.uniform(1.0, 1e4, n) * u.nJy
    table["flux"].description = "PSF flux"
    table["mag"] = rng.uniform(15.0, 25.0, n) * u.mag
    table["area"] = rng.uniform(0.0, 1.0, n) * u.arcsec**2
    table.meta["description"] = "a described table"
    return table


def test_astropy_metadata_is_the_same_from_every_format(tmp_path: Path) -> None:
    """Parquet written by astropy keeps units and descriptions as ECSV, VOTable and FITS do,
    and every format's unit spelling (``mas / yr``, ``mas yr-1``, ``mas.yr**-1``) ends as one
    VOUnit form."""
    table = _described_astropy_table()
    formats = {"parquet": "parquet", "ecsv": "ascii.ecsv", "vot": "votable", "fits": "fits"}
    described: dict[str, list[tuple[str, str | None, str | None, str | None]]] = {}
    for ext, fmt in formats.items():
        table.write(tmp_path / f"a.{ext}", format=fmt)
        meta = ingest(
            [tmp_path / f"a.{ext}"], f"fmt.t_{ext}", tmp_path / "data", ra="ra", dec="dec"
        )
        described[ext] = [
            (c.name, c.unit, c.description, c.ucd) for c in meta.columns if c.name != "_healpix_29"
        ]
        assert meta.description == "a described table", ext
    expected = [
        ("id", None, None, None),
        ("ra", "deg", "Right ascension (ICRS)", "pos.eq.ra;meta.main"),
        ("dec", "deg", None, "pos.eq.dec;meta.main"),
        ("pmra", "mas/yr", str(table["pmra"].description), None),
        ("flux", "nJy", "PSF flux", None),
        ("mag", "mag", None, None),
        ("area", "arcsec**2", None, None),
    ]
    for ext, columns in described.items():
        assert columns == expected, ext


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("mas/yr", "mas/yr"),
        ("mas / yr", "mas/yr"),
        ("mas yr-1", "mas/yr"),
        ("mas.yr**-1", "mas/yr"),
        ("deg", "deg"),
        ("mag", "mag"),
        ("nJy", "nJy"),
        ("pixel**2", "pixel**2"),
        ("arcsec2", "arcsec**2"),
        ("km s-1", "km/s"),
        ("ct", "count"),
        ("", ""),
    ],
)
def test_unit_spellings_normalise_to_one_vounit(written: str, normal: str) -> None:
    assert normalize_unit(written) == normal


@pytest.mark.parametrize("odd", ["electron", "dex", "bananas per fortnight"])
def test_a_unit_without_vounit_form_is_kept_with_a_warning(
    odd: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="skyvault.catalog.metadata"):
        assert normalize_unit(odd, "x") == odd
    assert f"unit '{odd}' of column 'x' is not a VOUnit" in caplog.text
    caplog.clear()
    # ... and does not fail an ingest.
    table = random_sky(200, seed=4).drop_columns(["name"])
    astropy_table = Table({name: table[name].to_numpy() for name in table.column_names})
    astropy_table["mag"].unit = u.Unit(odd, parse_strict="silent")
    astropy_table.write(tmp_path / "odd.ecsv", format="ascii.ecsv")
    with caplog.at_level("WARNING", logger="skyvault.catalog.metadata"):
        meta = ingest([tmp_path / "odd.ecsv"], "o.t", tmp_path / "d", ra="ra", dec="dec")
    assert "of column 'mag'" in caplog.text
    assert meta.column("mag").unit == odd


def test_several_files_and_globs(tmp_path: Path) -> None:
    table = random_sky(6000, seed=5)
    for i in range(3):
        pq.write_table(table.slice(i * 2000, 2000), tmp_path / f"part{i}.parquet")
    meta = ingest([str(tmp_path / "part*.parquet")], "s.t", tmp_path / "d", ra="ra", dec="dec")
    assert meta.nrows == 6000
    assert meta.sources == ("part0.parquet", "part1.parquet", "part2.parquet")


def test_felis_metadata_from_rubin_schema(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    table = pa.table(
        {
            "objectId": pa.array(np.arange(n, dtype=np.int64)),
            "coord_ra": pa.array(rng.uniform(52, 72, n)),
            "coord_dec": pa.array(rng.uniform(-44, -28, n)),
            "r_cModelFlux": pa.array(rng.uniform(1, 1e5, n)),
        }
    )
    pq.write_table(table, tmp_path / "obj.parquet")
    meta = ingest(
        [tmp_path / "obj.parquet"],
        "dp02_dc2_catalogs.Object",
        tmp_path / "d",
        ra="coord_ra",
        dec="coord_dec",
        felis=dp02_schema_path(),
    )
    flux = meta.column("r_cModelFlux")
    assert flux.unit == "nJy"
    assert flux.description == "Flux from the final cmodel fit. Forced on r-band."
    assert meta.column("coord_ra").ucd == "pos.eq.ra;meta.main"
    assert meta.primary_key == "objectId"
    assert meta.column("objectId").indexed
    assert meta.description
    assert "coadd" in meta.description.lower()
    # Stored beside the catalogue, read back identically.
    stored = TableMeta.read(tmp_path / "d" / "dp02_dc2_catalogs" / "Object")
    assert stored == meta
    stored_json = tmp_path / "d" / "dp02_dc2_catalogs" / "Object" / "skyvault_table.json"
    assert json.loads(stored_json.read_text())["kind"] == "hats"


def test_table_without_positions_is_plain_parquet(tmp_path: Path) -> None:
    csv = tmp_path / "visit.csv"
    csv.write_text("visit,band,expMidptMJD\n1,r,60000.5\n2,g,60001.25\n3,i,60002.0\n")
    meta = ingest([csv], "dp.Visit", tmp_path / "d")
    assert meta.kind == "plain"
    assert meta.nrows == 3
    rows = pq.read_table(tmp_path / "d" / "dp" / "Visit" / "dataset" / "part-00000.parquet")
    assert rows["band"].to_pylist() == ["r", "g", "i"]
    assert [n for n, _ in list_tables(tmp_path / "d")] == [TableName("dp", "Visit")]


def test_reingest_replaces_and_keeps_previous_version(tmp_path: Path) -> None:
    data = tmp_path / "d"
    first = random_sky(1000, seed=1)
    second = random_sky(1500, seed=2)
    pq.write_table(first, tmp_path / "a.parquet")
    pq.write_table(second, tmp_path / "b.parquet")
    ingest([tmp_path / "a.parquet"], "s.t", data, ra="ra", dec="dec")
    old_target = (data / "s" / "t").resolve()
    ingest([tmp_path / "b.parquet"], "s.t", data, ra="ra", dec="dec")
    assert TableMeta.read(data / "s" / "t").nrows == 1500
    assert old_target.exists(), "the replaced version stays for readers still using it"
    ingest([tmp_path / "a.parquet"], "s.t", data, ra="ra", dec="dec")
    assert not old_target.exists(), "versions older than the previous one are removed"
    versions = list((data / "s" / ".skyvault" / "versions" / "t").iterdir())
    assert len(versions) == 2
