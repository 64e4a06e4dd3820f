"""``skyvault images ingest``: ObsCore rows and header cards of real and synthetic images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from skyvault.catalog.layout import image_store
from skyvault.catalog.metadata import TableMeta
from skyvault.cli import main
from skyvault.errors import IngestError, UsageError
from skyvault.images.ingest import ImageIngestOptions, ingest_images
from skyvault.images.obscore import COLUMNS, LSST_BANDS
from tests.images._files import REAL_WITH_WCS, REAL_WITHOUT_WCS, real, tan_header, write_image


def _rows(data: Path, collection: str, table: str) -> pa.Table:
    root = (data / collection / table).resolve()
    files = sorted(root.glob("dataset/**/*.parquet"))
    return pa.concat_tables([pq.ParquetFile(f).read() for f in files])


def _astropy_headers(path: Path) -> list[fits.Header]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdul:
            return [h.header.copy() for h in hdul]


def test_real_files_every_card_and_one_row_per_celestial_image(tmp_path: Path) -> None:
    paths = [real(p) for p in REAL_WITH_WCS if p.name != "dss.14.29.56-62.41.05.fits.gz"]
    result = ingest_images(paths, "real", tmp_path)
    assert not result.skipped
    obscore = _rows(tmp_path, "real", "obscore").to_pylist()
    headers = _rows(tmp_path, "real", "headers")
    # test0.fits: 3 image extensions with a celestial WCS (and one without).
    by_file: dict[str, list[dict[str, Any]]] = {}
    for row in obscore:
        by_file.setdefault(row["image_file"].split("/", 1)[1], []).append(row)
    assert sorted(r["image_hdu"] for r in by_file["test0.fits"]) == [2, 3, 4]
    assert [r["image_hdu"] for r in by_file["scale.fits"]] == [0]
    assert [r["image_hdu"] for r in by_file["comp.fits"]] == [1]
    for path in paths:
        expected = _astropy_headers(path)
        for row in by_file[path.name]:
            mine = headers.filter(pc.equal(headers.column("obs_id"), row["obs_id"])).to_pylist()
            hdus = [0, row["image_hdu"]] if row["image_hdu"] else [0]
            assert sorted({r["hdu"] for r in mine}) == hdus
            for hdu in hdus:
                cards = [r for r in mine if r["hdu"] == hdu]
                assert [r["card_index"] for r in cards] == list(range(len(cards)))
                assert [r["keyword"] for r in cards] == list(expected[hdu].keys())
                assert [r["comment"] or "" for r in cards] == list(expected[hdu].comments)
    assert result.cards == headers.num_rows


def test_obscore_fields_against_astropy(tmp_path: Path) -> None:
    header = tan_header(ra=62.1, dec=-37.2, rotation_deg=15.0, band="i")
    path = write_image(tmp_path / "calexp-1.fits", header)
    ingest_images([path], "c", tmp_path / "d", options=ImageIngestOptions(calib_level=2))
    (row,) = _rows(tmp_path / "d", "c", "obscore").to_pylist()
    with fits.open(path) as hdul:
        wcs = WCS(hdul[0].header)
        corners = wcs.calc_footprint(center=False)
        centre = wcs.all_pix2world([[32.5, 24.5]], 1)[0]
    numbers = [float(x) for x in row["s_region"].split()[2:]]
    vertices = np.array(numbers).reshape(-1, 2)
    assert row["s_region"].startswith("POLYGON ICRS ")
    # The same corners (counter-clockwise: calc_footprint's order may be reversed).
    for corner in corners:
        assert np.min(np.hypot(*(vertices - corner).T)) < 1e-7
    assert (row["s_ra"], row["s_dec"]) == pytest.approx(tuple(centre), abs=1e-9)
    diagonal = np.hypot(64 * 0.2, 48 * 0.2) / 3600
    assert row["s_fov"] == pytest.approx(diagonal, rel=1e-4)
    assert row["s_resolution"] == pytest.approx(0.2, rel=1e-6)  # no PSF keyword: pixels
    t0 = Time("2023-10-05T03:04:05.5", scale="tai").mjd
    assert row["t_min"] == pytest.approx(t0, abs=1e-9)
    assert row["t_max"] == pytest.approx(t0 + 30 / 86400, abs=1e-9)
    assert row["t_exptime"] == 30.0
    assert (row["em_min"], row["em_max"]) == LSST_BANDS["i"]
    assert row["band"] == "i"
    assert (row["s_xel1"], row["s_xel2"]) == (64, 48)
    assert row["instrument_name"] == "LSSTCam"
    assert row["facility_name"] == "Rubin:Simonyi"
    assert row["target_name"] == "test field"
    assert row["obs_id"] == "calexp-1"
    assert row["obs_publisher_did"] == "ivo://skyvault/c?calexp-1"
    assert row["obs_collection"] == "c"
    assert row["dataproduct_type"] == "image"
    assert row["calib_level"] == 2
    assert row["access_estsize"] == -(-path.stat().st_size // 1024)
    meta = TableMeta.read(tmp_path / "d" / "c" / "obscore")
    for column in COLUMNS:
        published = meta.column(column.name)
        assert (published.ucd, published.utype, published.unit) == (
            column.ucd, column.utype, column.unit,
        )  # fmt: skip
    assert meta.kind == "hats" and meta.ra_column == "s_ra"


def test_psf_keyword_and_mjd_obs_win(tmp_path: Path) -> None:
    header = tan_header()
    header["SEEING"] = (0.71, "[arcsec] PSF FWHM")
    header["MJD-OBS"] = 60000.25
    path = write_image(tmp_path / "x.fits", header)
    ingest_images([path], "c", tmp_path / "d")
    (row,) = _rows(tmp_path / "d", "c", "obscore").to_pylist()
    assert row["s_resolution"] == 0.71
    assert row["t_min"] == 60000.25


def test_compressed_fits_fz(tmp_path: Path) -> None:
    path = write_image(tmp_path / "x.fits.fz", tan_header(), compressed=True)
    ingest_images([path], "c", tmp_path / "d")
    (row,) = _rows(tmp_path / "d", "c", "obscore").to_pylist()
    assert (row["obs_id"], row["image_hdu"]) == ("x", 1)
    headers = _rows(tmp_path / "d", "c", "headers").to_pylist()
    expected = _astropy_headers(path)  # the image header astropy rebuilds from Z keywords
    ext = [r for r in headers if r["hdu"] == 1]
    assert [r["keyword"] for r in ext] == list(expected[1].keys())
    assert {r["keyword"]: r["card_value"] for r in ext}["BITPIX"] == "-32"
    stored = image_store(tmp_path / "d", "c") / row["image_file"]
    assert stored.read_bytes() == path.read_bytes()


def test_files_without_wcs_are_listed_and_skipped(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.fits", tan_header())
    linear = write_image(tmp_path / "linear.fits", fits.Header({"CTYPE1": "LINEAR"}))
    (tmp_path / "text.fits").write_text("not fits")
    bad = [linear, tmp_path / "text.fits", *(real(p) for p in REAL_WITHOUT_WCS)]
    result = ingest_images([good, *bad], "c", tmp_path / "d")
    assert result.images == 1
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(reasons) == {p.name for p in bad}
    assert "no usable celestial WCS" in reasons["linear.fits"]
    assert "not a FITS file" in reasons["text.fits"]
    assert "no image HDU" in reasons["table.fits"]


def test_nothing_usable_changes_nothing_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    linear = write_image(tmp_path / "linear.fits", fits.Header({"CTYPE1": "LINEAR"}))
    with pytest.raises(IngestError, match="nothing to ingest into c"):
        ingest_images([linear], "c", tmp_path / "d")
    assert not (tmp_path / "d" / "c" / "obscore").exists()
    status = main(["images", "ingest", str(linear), "--collection", "c", "--data",
                   str(tmp_path / "d")])  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "linear.fits" in err and "Traceback" not in err
    good = write_image(tmp_path / "good.fits", tan_header())
    status = main(["images", "ingest", str(good), str(linear), "--collection", "c",
                   "--data", str(tmp_path / "d"), "--quiet"])  # fmt: skip
    assert status == 0
    out, err = capsys.readouterr()
    assert "ingested 1 images" in out and "1 files skipped" in out
    assert "skipped" in err and "linear.fits" in err


def test_bad_names_are_usage_errors(tmp_path: Path) -> None:
    a = write_image(tmp_path / "x.fits", tan_header())
    (tmp_path / "sub").mkdir()
    b = write_image(tmp_path / "sub" / "x.fits", tan_header())
    with pytest.raises(UsageError, match=r"two inputs are named x\.fits"):
        ingest_images([a, b], "c", tmp_path / "d")
    with pytest.raises(UsageError):
        ingest_images([a], "not-a-name", tmp_path / "d")


def test_reingest_replaces_rows_and_drops_old_files(tmp_path: Path) -> None:
    data = tmp_path / "d"
    a = write_image(tmp_path / "a.fits", tan_header(ra=10.0))
    b = write_image(tmp_path / "b.fits", tan_header(ra=20.0))
    ingest_images([a, b], "c", data)
    first = _rows(data, "c", "headers").num_rows
    header = tan_header(ra=10.0)
    header["EXPTIME"] = 15.0
    a.unlink()
    write_image(a, header)
    for _ in range(3):
        result = ingest_images([a], "c", data)
    assert result.total_images == 2
    rows = {r["obs_id"]: r for r in _rows(data, "c", "obscore").to_pylist()}
    assert rows["a"]["t_exptime"] == 15.0 and rows["b"]["t_exptime"] == 30.0
    headers = _rows(data, "c", "headers")
    assert headers.num_rows == first
    exptimes = [r["card_value"] for r in headers.to_pylist() if r["keyword"] == "EXPTIME"]
    assert sorted(exptimes) == ["15.0", "30.0"]
    # Stored files: those the published version and the one before it name, no others.
    store = image_store(data, "c")
    assert len(list(store.iterdir())) <= 3
    named = {r["image_file"] for r in rows.values()}
    assert all((store / n).is_file() for n in named)


class _FailAt:
    """Interrupts at the start of a stage, or (``read``) after the first file is stored."""

    def __init__(self, stage: str) -> None:
        self.wanted = stage
        self.current = ""

    def stage(self, label: str, total: int | None) -> None:
        self.current = label
        if label.startswith(self.wanted) and self.wanted != "read":
            raise KeyboardInterrupt

    def advance(self, rows: int) -> None:
        if self.current.startswith(self.wanted):
            raise KeyboardInterrupt


@pytest.mark.parametrize("stage", ["read", "write"])
def test_interrupt_leaves_the_collection_as_it_was(tmp_path: Path, stage: str) -> None:
    data = tmp_path / "d"
    a = write_image(tmp_path / "a.fits", tan_header(ra=10.0))
    ingest_images([a], "c", data)
    before = {t: (data / "c" / t).resolve() for t in ("obscore", "headers")}
    b = write_image(tmp_path / "b.fits", tan_header(ra=20.0))
    with pytest.raises(KeyboardInterrupt):
        ingest_images([a, b], "c", data, progress=_FailAt(stage))
    assert {t: (data / "c" / t).resolve() for t in before} == before
    assert [r["obs_id"] for r in _rows(data, "c", "obscore").to_pylist()] == ["a"]
    # The next ingest cleans up whatever the interrupted one left.
    ingest_images([b], "c", data)
    store = image_store(data, "c")
    assert len(list(store.iterdir())) == 2
    assert list((data / "c" / ".skyvault" / "tmp").iterdir()) == []


_KILL_SCRIPT = """
import sys, time
from pathlib import Path
from skyvault.images.ingest import ingest_images

class Slow:
    # Holds the ingest inside the stage under test until it is killed (on a fast machine
    # the last stage would otherwise finish before the kill arrives).
    def stage(self, label, total):
        print("STAGE", label, flush=True)
        if label.startswith(sys.argv[2]):
            time.sleep(60)
    def advance(self, rows):
        time.sleep(0.2)

ingest_images(sys.argv[3:], "c", Path(sys.argv[1]), progress=Slow())
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["read", "write"])
def test_kill_9_mid_ingest_leaves_the_collection_as_it_was(tmp_path: Path, stage: str) -> None:
    data = tmp_path / "d"
    a = write_image(tmp_path / "a.fits", tan_header(ra=10.0))
    ingest_images([a], "c", data)
    before = {t: (data / "c" / t).resolve() for t in ("obscore", "headers")}
    others = [write_image(tmp_path / f"b{i}.fits", tan_header(ra=20.0 + i)) for i in range(4)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(data), stage, *map(str, [a, *others])],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"STAGE {stage}"):
            break
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert {t: (data / "c" / t).resolve() for t in before} == before
    assert [r["obs_id"] for r in _rows(data, "c", "obscore").to_pylist()] == ["a"]
    result = ingest_images(others, "c", data)
    assert result.total_images == 5
    assert len(list((image_store(data, "c")).iterdir())) == 2


def test_headers_behind_obscore_are_rebuilt_from_the_stored_files(tmp_path: Path) -> None:
    """A crash between the two publishes leaves the headers of another batch: the next
    ingest rebuilds them from the stored files instead of trusting them."""
    data = tmp_path / "d"
    a = write_image(tmp_path / "a.fits", tan_header(ra=10.0))
    ingest_images([a], "c", data)
    good = _rows(data, "c", "headers").num_rows
    # Publish a headers version of another batch, as if the ObsCore publish never came.
    from skyvault.catalog.ingest import ingest

    wrong = _rows(data, "c", "headers").slice(0, 3)
    pq.write_table(wrong, tmp_path / "headers-other.parquet")
    ingest([tmp_path / "headers-other.parquet"], "c.headers", data)
    b = write_image(tmp_path / "b.fits", tan_header(ra=20.0))
    ingest_images([b], "c", data)
    assert _rows(data, "c", "headers").num_rows == 2 * good


def test_both_tables_answer_adql_by_their_column_names(tmp_path: Path) -> None:
    """Every column is a regular ADQL identifier (``value`` would be a reserved word), and a
    cone on the ObsCore table joined to its headers finds the image's cards."""
    import skyvault
    from skyvault.images.ingest import headers_schema
    from skyvault.images.obscore import obscore_schema

    data = tmp_path / "d"
    path = write_image(tmp_path / "a.fits", tan_header(ra=62.0, dec=-37.0))
    ingest_images([path], "c", data)
    archive = skyvault.open(data)
    columns = ", ".join(f"o.{n}" for n in obscore_schema().names)
    columns += ", " + ", ".join(f"h.{n}" for n in headers_schema().names)
    rows = archive.query(
        f"SELECT {columns} FROM c.obscore AS o JOIN c.headers AS h "
        "ON h.obs_publisher_did = o.obs_publisher_did "
        "WHERE CONTAINS(POINT('ICRS', o.s_ra, o.s_dec), CIRCLE('ICRS', 62, -37, 0.01)) = 1 "
        "AND h.keyword = 'EXPTIME'"
    )
    assert rows.num_rows == 1
    assert rows.column("card_value").to_pylist() == ["30.0"]


def test_band_table_and_authority_options(tmp_path: Path) -> None:
    from skyvault.images.obscore import read_band_table

    (tmp_path / "bands.csv").write_text("band,em_min,em_max\nr,500e-9,700e-9\n")
    bands = read_band_table(tmp_path / "bands.csv")
    path = write_image(tmp_path / "x.fits", tan_header(band="r"))
    options = ImageIngestOptions(bands=bands, authority="org.example")
    ingest_images([path], "c", tmp_path / "d", options=options)
    (row,) = _rows(tmp_path / "d", "c", "obscore").to_pylist()
    assert (row["em_min"], row["em_max"]) == (500e-9, 700e-9)
    assert row["obs_publisher_did"] == "ivo://org.example/c?x"
    for text in ("band,em_min\nr,1\n", "band,em_min,em_max\nr,700,500\n"):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(UsageError, match="band table"):
            read_band_table(tmp_path / "bad.csv")
    with pytest.raises(UsageError, match="not an IVOA authority"):
        ingest_images([path], "c", tmp_path / "d", options=ImageIngestOptions(authority="a/b"))


def test_replace_keeps_only_the_new_images(tmp_path: Path) -> None:
    data = tmp_path / "d"
    a, b, c = (write_image(tmp_path / f"{n}.fits", tan_header(ra=r)) for n, r in
               (("a", 10.0), ("b", 20.0), ("c", 30.0)))  # fmt: skip
    ingest_images([a, b], "c", data)
    result = ingest_images([c], "c", data, options=ImageIngestOptions(replace=True))
    assert result.total_images == 1
    assert [r["obs_id"] for r in _rows(data, "c", "obscore").to_pylist()] == ["c"]
    assert set(_rows(data, "c", "headers").column("obs_id").to_pylist()) == {"c"}


def test_obscore_is_written_in_small_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A region query selects a few images of a wide (~50 column) table: C.obscore is written
    # with OBSCORE_ROW_GROUP_ROWS-row row groups (shrunk here so that 5 images show it), the
    # headers table with the catalogue ingest's default.
    from skyvault.images import ingest as image_ingest

    monkeypatch.setattr(image_ingest, "OBSCORE_ROW_GROUP_ROWS", 2)
    paths = [write_image(tmp_path / f"i{n}.fits", tan_header(ra=10.0 + 0.01 * n)) for n in range(5)]
    ingest_images(paths, "c", tmp_path / "d")
    root = (tmp_path / "d" / "c" / "obscore").resolve()
    files = sorted(root.glob("dataset/**/*.parquet"))
    groups = [pq.ParquetFile(f).metadata for f in files]
    assert sum(m.num_rows for m in groups) == 5
    assert max(m.row_group(i).num_rows for m in groups for i in range(m.num_row_groups)) == 2
    headers = (tmp_path / "d" / "c" / "headers").resolve()
    metas = [pq.ParquetFile(f).metadata for f in headers.glob("dataset/**/*.parquet")]
    assert max(m.row_group(i).num_rows for m in metas for i in range(m.num_row_groups)) > 2


def test_tables_are_stored_as_the_catalogue_ingest_stores_such_rows(tmp_path: Path) -> None:
    """Both tables are written without the catalogue ingest's Parquet round trip: the
    catalogue ingest of the same rows is the oracle for their files and metadata."""
    from skyvault.catalog.ingest import HEALPIX_COLUMN, IngestOptions, ingest
    from skyvault.catalog.metadata import TableMeta

    data = tmp_path / "d"
    paths = [
        write_image(tmp_path / f"i{n}.fits", tan_header(ra=10.0 + 40.0 * n, dec=-60.0 + 30 * n))
        for n in range(5)
    ]
    ingest_images(paths, "c", data)
    for table, ra, dec, key, group_rows in (
        ("obscore", "s_ra", "s_dec", "obs_publisher_did", 2_048),
        ("headers", None, None, None, 32_768),
    ):
        mine_root = (data / "c" / table).resolve()
        mine = TableMeta.read(mine_root)
        rows = _rows(data, "c", table)
        rows = rows.drop_columns([HEALPIX_COLUMN]) if HEALPIX_COLUMN in rows.column_names else rows
        source = tmp_path / f"{table}.parquet"
        pq.write_table(rows, source)
        oracle = ingest(
            [source],
            f"o.{table}",
            tmp_path / "oracle",
            ra=ra,
            dec=dec,
            options=IngestOptions(
                primary_key=key, workers=1, margin_arcsec=5.0, row_group_rows=group_rows
            ),
        )
        oracle_root = (tmp_path / "oracle" / "o" / table).resolve()
        for field in ("kind", "nrows", "ra_column", "dec_column", "primary_key",
                      "margin_arcsec", "max_rows_per_partition", "n_partitions"):  # fmt: skip
            assert getattr(mine, field) == getattr(oracle, field), field
        assert [c.name for c in mine.columns] == [c.name for c in oracle.columns]
        for m, o in zip(mine.columns, oracle.columns, strict=True):
            assert (m.datatype, m.arraysize, m.arrow_type, m.nullable, m.indexed) == (
                o.datatype, o.arraysize, o.arrow_type, o.nullable, o.indexed
            ), m.name  # fmt: skip
            assert m.column_index == o.column_index
        relative = sorted(
            str(f.relative_to(oracle_root)) for f in oracle_root.rglob("*") if f.is_file()
        )
        assert relative == sorted(
            str(f.relative_to(mine_root)) for f in mine_root.rglob("*") if f.is_file()
        )
        for name in relative:
            if not name.endswith(".parquet") or name.endswith("_metadata"):
                continue
            a, b = pq.ParquetFile(mine_root / name), pq.ParquetFile(oracle_root / name)
            assert a.schema_arrow == b.schema_arrow
            assert a.read().equals(b.read()), name
            assert [a.metadata.row_group(i).num_rows for i in range(a.num_row_groups)] == [
                b.metadata.row_group(i).num_rows for i in range(b.num_row_groups)
            ]
            for i in range(a.num_row_groups):
                for j in range(a.metadata.num_columns):
                    ca, cb = a.metadata.row_group(i).column(j), b.metadata.row_group(i).column(j)
                    assert (ca.compression, ca.encodings) == (cb.compression, cb.encodings)


def test_stored_copies_are_the_input_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files read whole are stored from the bytes read (a copier thread writes them), bigger
    ones copied by path; either way the archive holds the inputs' exact bytes."""
    from skyvault.images import ingest as image_ingest

    small = [write_image(tmp_path / f"s{n}.fits", tan_header(ra=10.0 + n)) for n in range(3)]
    big = write_image(tmp_path / "big.fits", tan_header(ra=20.0), shape=(480, 640))
    packed = write_image(tmp_path / "packed.fits", tan_header(ra=30.0), compressed=True)
    monkeypatch.setattr(image_ingest, "_READ_WHOLE", 100_000)  # big.fits is bigger
    result = ingest_images([*small, big, packed], "c", tmp_path / "d")
    assert result.files == 5
    store = image_store(tmp_path / "d", "c")
    for row in _rows(tmp_path / "d", "c", "obscore").to_pylist():
        name = row["image_file"].split("/", 1)[1]
        assert (store / row["image_file"]).read_bytes() == (tmp_path / name).read_bytes()


def test_a_failed_copy_fails_the_ingest_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from skyvault.errors import StorageError
    from skyvault.images import ingest as image_ingest

    data = tmp_path / "d"
    a = write_image(tmp_path / "a.fits", tan_header(ra=10.0))
    ingest_images([a], "c", data)
    before = {t: (data / "c" / t).resolve() for t in ("obscore", "headers")}
    others = [write_image(tmp_path / f"b{i}.fits", tan_header(ra=20.0 + i)) for i in range(6)]
    real_write = image_ingest._Copier._write
    written: list[str] = []

    def full(self: Any, name: str, content: bytes) -> None:
        if len(written) == 3:  # the fourth file finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(self._directory / name))
        written.append(name)
        real_write(self, name, content)

    monkeypatch.setattr(image_ingest._Copier, "_write", full)
    with pytest.raises(StorageError, match="full device"):
        ingest_images(others, "c", data)
    assert {t: (data / "c" / t).resolve() for t in before} == before
    assert [r["obs_id"] for r in _rows(data, "c", "obscore").to_pylist()] == ["a"]
    written.clear()
    status = main(["images", "ingest", *map(str, others), "--collection", "c", "--data",
                   str(data), "--quiet"])  # fmt: skip
    assert status != 0
    err = capsys.readouterr().err
    assert "full device" in err and "Traceback" not in err and str(data) in err
    monkeypatch.setattr(image_ingest._Copier, "_write", real_write)
    assert ingest_images(others, "c", data).total_images == 7
    assert len(list(image_store(data, "c").iterdir())) == 2


def test_a_copy_error_names_the_stored_file(tmp_path: Path) -> None:
    """The copier's OS errors carry the full path (how a full disk under the data root is
    recognised as such), not the name relative to its directory."""
    from skyvault.images.ingest import _Copier

    (tmp_path / "taken.fits").write_bytes(b"x")
    copier = _Copier(tmp_path)
    copier.put("ok.fits", b"abc", tmp_path / "ok.fits")
    copier.put("taken.fits", b"abc", tmp_path / "taken.fits")
    with pytest.raises(FileExistsError) as caught:
        copier.finish()
    assert caught.value.filename == str(tmp_path / "taken.fits")
    assert (tmp_path / "ok.fits").read_bytes() == b"abc"


def test_link_stores_hard_links_and_copies_across_file_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from skyvault.images import ingest as image_ingest

    paths = [write_image(tmp_path / f"l{n}.fits", tan_header(ra=10.0 + n)) for n in range(3)]
    status = main([*("images", "ingest", *map(str, paths), "--collection", "c"),
                   *("--data", str(tmp_path / "d"), "--link", "--quiet")])  # fmt: skip
    assert status == 0
    store = image_store(tmp_path / "d", "c")
    rows = _rows(tmp_path / "d", "c", "obscore").to_pylist()
    assert len(rows) == 3
    for row in rows:
        stored = store / row["image_file"]
        source = tmp_path / stored.name
        assert stored.stat().st_ino == source.stat().st_ino  # the same file
    # Where links are refused (another file system), the files are copied.
    refused: list[str] = []

    def no_link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        refused.append(str(dst))
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(dst))

    monkeypatch.setattr(image_ingest.os, "link", no_link)
    ingest_images(paths, "e", tmp_path / "d", options=ImageIngestOptions(link=True))
    assert len(refused) == 1  # tried once, then copies
    store = image_store(tmp_path / "d", "e")
    for row in _rows(tmp_path / "d", "e", "obscore").to_pylist():
        stored = store / row["image_file"]
        source = tmp_path / stored.name
        assert stored.stat().st_ino != source.stat().st_ino
        assert stored.read_bytes() == source.read_bytes()


def test_header_rows_are_stored_in_image_order(tmp_path: Path) -> None:
    """(obs_id, hdu, card_index) order, whatever the order of the inputs, on a first ingest
    (rows built in order, not sorted) and after adding images before and after them."""
    data = tmp_path / "d"
    multi = real(next(p for p in REAL_WITH_WCS if p.name == "test0.fits"))
    z = write_image(tmp_path / "z.fits", tan_header(ra=30.0))
    b = write_image(tmp_path / "b.fits", tan_header(ra=20.0))
    a = write_image(tmp_path / "a.fits", tan_header(ra=10.0))

    def check() -> None:
        rows = _rows(data, "c", "headers").select(["obs_id", "hdu", "card_index"]).to_pylist()
        keys = [(r["obs_id"], r["hdu"], r["card_index"]) for r in rows]
        assert keys == sorted(keys)
        assert len(set(keys)) == len(keys)

    ingest_images([z, multi, b], "c", data)
    check()
    ingest_images([a, z], "c", data)
    check()
    assert {r["obs_id"] for r in _rows(data, "c", "obscore").to_pylist()} == {
        "a", "b", "z", "test0-2", "test0-3", "test0-4"
    }  # fmt: skip
