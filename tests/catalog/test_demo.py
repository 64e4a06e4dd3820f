"""The DP0.2-style demo data set: tables, links, footprint, schema, realism, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.metadata import TableMeta
from skyvault.demo import SCALES, build_demo, demo_is_built, generate_demo
from skyvault.demo.build import _INGEST
from skyvault.demo.schema import COLUMNS, SCHEMA_NAME, TABLES, arrow_schema, felis_columns
from skyvault.demo.sky import (
    DEC_MAX,
    DEC_MIN,
    RA_MAX,
    RA_MIN,
    Box,
    galactic_latitude,
    tract_patch,
)
from skyvault.demo.survey import N_DETECTORS, detector_at
from skyvault.errors import UsageError

SMALL = SCALES["small"]


def _read(data_dir: Path, table: str) -> pa.Table:
    """All rows of a published demo table (HATS partitions or plain files; no margins)."""
    root = (data_dir / SCHEMA_NAME / table).resolve() / "dataset"
    files = sorted(p for p in root.rglob("*.parquet"))
    assert files, f"no data files for {table}"
    return pa.concat_tables(pq.read_table(f) for f in files)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TableMeta]]:
    data_dir = tmp_path_factory.mktemp("demo")
    metas = build_demo(data_dir, "small")
    # The catalogue's tables (the image collections are tested in tests/images).
    return data_dir, [m for m in metas if m.schema == SCHEMA_NAME]


@pytest.fixture(scope="module")
def tables(demo: tuple[Path, list[TableMeta]]) -> dict[str, pa.Table]:
    data_dir, _ = demo
    return {name: _read(data_dir, name) for name in TABLES}


def test_every_table_is_published(demo: tuple[Path, list[TableMeta]]) -> None:
    data_dir, metas = demo
    assert [m.qualified_name for m in metas] == [f"{SCHEMA_NAME}.{t}" for t in TABLES]
    kinds = {m.name: m.kind for m in metas}
    assert kinds["Visit"] == kinds["CcdVisit"] == kinds["MatchesTruth"] == "plain"
    for table in ("Object", "ForcedSource", "Source", "DiaObject", "DiaSource", "TruthSummary"):
        assert kinds[table] == "hats", table
    keys = {m.name: m.primary_key for m in metas}
    assert keys["Object"] == "objectId"
    assert keys["DiaSource"] == "diaSourceId"
    assert keys == {t: k for t, (_, _, k) in _INGEST.items()}
    assert all(m.nrows > 0 for m in metas)
    assert demo_is_built(data_dir)
    assert demo_is_built(data_dir, "small")
    assert not demo_is_built(data_dir, "medium")
    assert not demo_is_built(data_dir, "small", seed=1)
    assert not (data_dir / ".demo-build").exists(), "scratch files were left behind"


def test_second_build_is_skipped(demo: tuple[Path, list[TableMeta]]) -> None:
    data_dir, metas = demo
    before = {t: (data_dir / SCHEMA_NAME / t).resolve() for t in TABLES}
    again = [m for m in build_demo(data_dir, "small") if m.schema == SCHEMA_NAME]
    assert [m.to_json() for m in again] == [m.to_json() for m in metas]
    assert {t: (data_dir / SCHEMA_NAME / t).resolve() for t in TABLES} == before


def test_empty_directory_has_no_demo(tmp_path: Path) -> None:
    assert not demo_is_built(tmp_path)


def test_concurrent_builds_are_refused(tmp_path: Path) -> None:
    from skyvault.demo.build import _build_lock

    with _build_lock(tmp_path), pytest.raises(UsageError, match="another demo build"):
        build_demo(tmp_path, "small")
    assert not demo_is_built(tmp_path)


def test_unknown_scale_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown demo scale"):
        build_demo(tmp_path, "huge")  # type: ignore[arg-type]


def test_row_counts(demo: tuple[Path, list[TableMeta]], tables: dict[str, pa.Table]) -> None:
    _, metas = demo
    for meta in metas:
        assert tables[meta.name].num_rows == meta.nrows
    assert tables["Object"].num_rows == SMALL.n_objects
    n_visits = tables["Visit"].num_rows
    assert 300 <= n_visits <= 1000
    assert tables["CcdVisit"].num_rows == n_visits * N_DETECTORS
    n_forced = tables["ForcedSource"].num_rows
    assert SMALL.epochs[0] * SMALL.n_objects <= n_forced <= SMALL.epochs[1] * SMALL.n_objects
    assert 0 < tables["Source"].num_rows < n_forced


def test_primary_keys_are_unique(tables: dict[str, pa.Table]) -> None:
    for table, (_, _, key) in _INGEST.items():
        if key is None:
            continue
        values = np.array(tables[table].column(key).to_pylist())
        assert np.unique(values).size == values.size, table


def test_forced_sources_link_to_objects_and_ccd_visits(tables: dict[str, pa.Table]) -> None:
    forced = tables["ForcedSource"]
    objects = tables["Object"]
    ccd = tables["CcdVisit"]
    f_obj = forced.column("objectId").to_numpy()
    assert np.isin(f_obj, objects.column("objectId").to_numpy()).all()
    f_ccd = forced.column("ccdVisitId").to_numpy()
    assert np.isin(f_ccd, ccd.column("ccdVisitId").to_numpy()).all()

    # Every object has epochs: between the scale's bounds nearly everywhere.
    per_object = np.unique(f_obj, return_counts=True)[1]
    assert per_object.size == objects.num_rows
    assert per_object.max() <= SMALL.epochs[1]
    assert np.mean(per_object >= SMALL.epochs[0]) > 0.99

    # The band and position of a forced source are those of its CCD visit and object.
    ccd_band = dict(
        zip(ccd.column("ccdVisitId").to_pylist(), ccd.column("band").to_pylist(), strict=True)
    )
    bands = forced.column("band").to_pylist()
    assert all(ccd_band[c] == b for c, b in zip(f_ccd.tolist(), bands, strict=True))
    obj_ra = dict(
        zip(
            objects.column("objectId").to_pylist(),
            objects.column("coord_ra").to_pylist(),
            strict=True,
        )
    )
    f_ra = forced.column("coord_ra").to_pylist()
    assert all(obj_ra[o] == r for o, r in zip(f_obj.tolist(), f_ra, strict=True))


def test_ccd_visits_and_sources_link_to_visits(tables: dict[str, pa.Table]) -> None:
    visits = tables["Visit"].column("visit").to_numpy()
    ccd = tables["CcdVisit"]
    visit_id = ccd.column("visitId").to_numpy()
    assert np.isin(visit_id, visits).all()
    detector = ccd.column("detector").to_numpy()
    assert ((detector >= 0) & (detector < N_DETECTORS)).all()
    assert (ccd.column("ccdVisitId").to_numpy() == visit_id * 1000 + detector).all()

    source = tables["Source"]
    s_ccd = source.column("ccdVisitId").to_numpy()
    assert np.isin(s_ccd, ccd.column("ccdVisitId").to_numpy()).all()
    assert (s_ccd == source.column("visit").to_numpy() * 1000 + source["detector"].to_numpy()).all()


def test_sources_lie_on_their_ccd(tables: dict[str, pa.Table]) -> None:
    """Oracle: a source's position is inside the sky quadrilateral of its CCD's corners."""
    ccd = tables["CcdVisit"]
    index = {c: i for i, c in enumerate(ccd.column("ccdVisitId").to_pylist())}
    source = tables["Source"]
    rows = np.array([index[c] for c in source.column("ccdVisitId").to_pylist()])
    ra = source.column("coord_ra").to_numpy()
    dec = source.column("coord_dec").to_numpy()
    corners = [
        (ccd[f"{k}ra"].to_numpy()[rows], ccd[f"{k}dec"].to_numpy()[rows])
        for k in ("llc", "ulc", "urc", "lrc")
    ]
    # Work in a local flat frame around each source (the CCDs are 0.23° across).
    cos_dec = np.cos(np.radians(dec))
    pts = [((c_ra - ra) * cos_dec, c_dec - dec) for c_ra, c_dec in corners]
    signs = []
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
        signs.append(np.sign(x1 * y2 - x2 * y1))  # side of the origin w.r.t. each edge
    signs_arr = np.array(signs)
    inside = (signs_arr >= 0).all(axis=0) | (signs_arr <= 0).all(axis=0)
    assert inside.mean() > 0.995  # astrometric scatter may push a few over an edge
    x = source.column("x").to_numpy()
    y = source.column("y").to_numpy()
    assert ((x >= 0) & (x <= 4072) & (y >= 0) & (y <= 4000)).all()


def test_positions_are_in_the_footprint(tables: dict[str, pa.Table]) -> None:
    for table, ra_col, dec_col in [
        ("Object", "coord_ra", "coord_dec"),
        ("ForcedSource", "coord_ra", "coord_dec"),
        ("Source", "coord_ra", "coord_dec"),
        ("Visit", "ra", "decl"),
        ("DiaObject", "ra", "decl"),
        ("DiaSource", "ra", "decl"),
        ("ForcedSourceOnDiaObject", "coord_ra", "coord_dec"),
        ("TruthSummary", "ra", "dec"),
    ]:
        ra = tables[table].column(ra_col).to_numpy()
        dec = tables[table].column(dec_col).to_numpy()
        # Astrometric noise; undetected truth entries lie up to 20" from an object.
        slack = {"Source": 0.001, "DiaSource": 0.001, "DiaObject": 0.001}.get(table, 0.0)
        slack = 0.01 if table == "TruthSummary" else slack
        assert ra.min() >= RA_MIN - slack, table
        assert ra.max() <= RA_MAX + slack, table
        assert dec.min() >= DEC_MIN - slack, table
        assert dec.max() <= DEC_MAX + slack, table


def test_columns_types_and_units_are_dp02s(
    demo: tuple[Path, list[TableMeta]], tables: dict[str, pa.Table]
) -> None:
    _, metas = demo
    for meta in metas:
        felis = felis_columns(meta.name)
        stored = tables[meta.name].schema
        for field in arrow_schema(meta.name):
            assert field.name in felis, f"{meta.name}.{field.name} is not a DP0.2 column"
            assert stored.field(field.name).type == field.type, f"{meta.name}.{field.name}"
            column = meta.column(field.name)
            unit = felis[field.name].get("ivoa:unit") or felis[field.name].get("fits:tunit")
            if unit:
                assert column.unit == unit, f"{meta.name}.{field.name}"
            assert column.description == felis[field.name]["description"]
        assert list(COLUMNS[meta.name]) == [n for n in stored.names if n != "_healpix_29"]
        assert list(COLUMNS[meta.name]) == list(felis), "every DP0.2 column, in DP0.2's order"

    obj = next(m for m in metas if m.name == "Object")
    assert len(COLUMNS["Object"]) == 991
    for band in "ugrizy":
        assert obj.column(f"{band}_cModelFlux").unit == "nJy"
        assert obj.column(f"{band}_psfFluxErr").unit == "nJy"
    assert obj.column("coord_ra").unit == "deg"
    assert obj.column("refExtendedness").datatype == "double"
    visit = next(m for m in metas if m.name == "Visit")
    assert visit.column("expMidptMJD").unit == "d"
    assert visit.column("expMidpt").xtype == "timestamp"


def test_objects_look_like_a_deep_field(tables: dict[str, pa.Table]) -> None:
    obj = tables["Object"]
    primary = obj.column("detect_isPrimary").to_numpy()
    assert 0.9 < primary.mean() < 1.0
    sky = obj.column("sky_object").to_numpy()
    assert not (primary & sky).any()
    ext = obj.column("refExtendedness").to_numpy()
    assert np.isnan(ext[sky]).all()
    share_extended = np.nanmean(ext)
    assert 0.7 < share_extended < 0.95
    assert set(obj.column("refBand").to_pylist()) <= set("ugrizy")

    # Magnitudes: counts rise steeply towards r ≈ 26-27.
    flux = obj.column("r_cModelFlux").to_numpy()[~sky]
    mag = -2.5 * np.log10(np.clip(flux, 1e-3, None)) + 31.4
    counts = np.histogram(mag, bins=[20, 21, 22, 23, 24, 25])[0]
    assert (np.diff(counts) > 0).all()
    assert 24.0 < np.median(mag) < 27.5

    # Bright point sources have PSF flux equal to cModel flux; bright galaxies do not.
    r_psf = obj.column("r_psfFlux").to_numpy()[~sky]
    bright = mag < 21
    ratio = r_psf[bright] / flux[bright]
    point = ext[~sky][bright] == 0
    assert np.median(ratio[point]) == pytest.approx(1.0, abs=0.01)
    assert np.median(ratio[~point]) < 0.9

    # Errors follow the depth: S/N ≈ 5 near the 5σ depth of the r coadd (26.9).
    err = obj.column("r_cModelFluxErr").to_numpy()[~sky]
    near_limit = (mag > 26.7) & (mag < 27.1)
    assert 3.0 < np.median(flux[near_limit] / err[near_limit]) < 8.0


def test_galaxies_are_clustered(tables: dict[str, pa.Table]) -> None:
    obj = tables["Object"]
    ra = obj.column("coord_ra").to_numpy()
    dec = obj.column("coord_dec").to_numpy()
    ext = obj.column("refExtendedness").to_numpy()
    deep = Box.deep_field(SMALL.n_objects - SMALL.n_wide)
    galaxy = (ext == 1) & (ra >= deep.ra_min) & (ra < deep.ra_max)
    galaxy &= (dec >= deep.dec_min) & (dec < deep.dec_max)
    # Counts in cells of the deep field: a Poisson field has variance ≈ mean; clustering
    # raises it.
    cells = np.histogram2d(
        ra[galaxy],
        dec[galaxy],
        bins=(16, 16),
        range=((deep.ra_min, deep.ra_max), (deep.dec_min, deep.dec_max)),
    )[0]
    assert cells.var() / cells.mean() > 3.0


def test_stars_thicken_towards_the_galactic_plane() -> None:
    from skyvault.demo.sky import _stars, uniform_in_footprint

    rng = np.random.default_rng(11)
    ra, dec = _stars(100_000, rng)
    u_ra, u_dec = uniform_in_footprint(100_000, rng)
    split = np.median(np.abs(galactic_latitude(u_ra, u_dec)))
    # Density ∝ 1/sin|b|: more than half of the stars in the lower-|b| half of the area.
    assert 0.52 < np.mean(np.abs(galactic_latitude(ra, dec)) < split) < 0.56


def test_density_is_uniform_in_sin_dec() -> None:
    from skyvault.demo.sky import uniform_in_footprint

    _, dec = uniform_in_footprint(200_000, np.random.default_rng(5))
    s = np.sin(np.radians(dec))
    lo, hi = np.sin(np.radians(DEC_MIN)), np.sin(np.radians(DEC_MAX))
    counts = np.histogram(s, bins=8, range=(lo, hi))[0]
    assert counts.std() / counts.mean() < 0.02


def test_forced_photometry_has_variable_objects(tables: dict[str, pa.Table]) -> None:
    forced = tables["ForcedSource"]
    obj = forced.column("objectId").to_numpy()
    band = np.array(forced.column("band").to_pylist())
    flux = forced.column("psfFlux").to_numpy()
    err = forced.column("psfFluxErr").to_numpy()
    diff = forced.column("psfDiffFlux").to_numpy()
    diff_err = forced.column("psfDiffFluxErr").to_numpy()
    assert (err > 0).all()
    assert (diff_err > 0).all()
    # Non-variable objects: difference flux is noise; variable ones stand out.
    chi2 = (diff / diff_err) ** 2
    keys = np.char.add(obj.astype(str), band)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    reduced = np.bincount(inverse, chi2) / counts
    repeated = counts >= 2
    share_variable = np.mean(reduced[repeated] > 25.0)
    assert 0.001 < share_variable < 0.1
    assert np.median(reduced[repeated]) < 1.5
    assert np.isfinite(flux).all()


def test_visits_span_five_years_in_six_bands(tables: dict[str, pa.Table]) -> None:
    visit = tables["Visit"]
    mjd = visit.column("expMidptMJD").to_numpy()
    assert mjd.min() >= 59580
    assert mjd.max() <= 61400
    assert mjd.max() - mjd.min() > 3 * 365
    assert set(visit.column("band").to_pylist()) == set("ugrizy")
    airmass = visit.column("airmass").to_numpy()
    assert (airmass >= 1.0).all()
    assert (airmass < 2.5).all()
    # The timestamp and the MJD columns say the same thing.
    stamps = visit.column("expMidpt").cast(pa.int64()).to_numpy() / 86400e6 + 40587.0
    assert np.allclose(stamps, mjd, atol=1e-8)
    assert np.array_equal(np.sort(visit.column("visit").to_numpy()), visit["visit"].to_numpy())


def test_generation_is_deterministic(tmp_path: Path) -> None:
    def digest(files: dict[str, list[Path]]) -> dict[str, list[str]]:
        return {
            t: [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
            for t, paths in files.items()
        }

    first = digest(generate_demo(tmp_path / "a", "small", seed=7))
    second = digest(generate_demo(tmp_path / "b", "small", seed=7))
    other = digest(generate_demo(tmp_path / "c", "small", seed=8))
    assert first == second
    assert first["Object"] != other["Object"]
    assert first["ForcedSource"] != other["ForcedSource"]


def test_galactic_latitude_matches_astropy() -> None:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 50)
    dec = rng.uniform(-89, 89, 50)
    expected = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").galactic.b.deg
    assert np.allclose(galactic_latitude(ra, dec), expected, atol=1e-6)


def test_focal_plane_has_189_detectors_without_corner_rafts() -> None:
    grid = np.linspace(-1.9, 1.9, 400)
    xi, eta = np.meshgrid(grid, grid)
    detector, _, _ = detector_at(xi.ravel(), eta.ravel(), 0.0)
    assert set(np.unique(detector[detector >= 0]).tolist()) == set(range(N_DETECTORS))
    corner, _, _ = detector_at(np.array([1.6]), np.array([1.6]), 0.0)
    centre, _, _ = detector_at(np.array([0.0]), np.array([0.0]), 0.0)
    assert corner[0] == -1
    assert centre[0] >= 0
    # At rotation 90° the focal plane's +y axis points east, not north.
    a, _, _ = detector_at(np.array([1.0]), np.array([0.0]), 90.0)
    b, _, _ = detector_at(np.array([0.0]), np.array([1.0]), 0.0)
    assert a[0] == b[0]


def test_tracts_and_patches_follow_the_sky_map() -> None:
    ra = np.array([60.0, 60.0001, 70.0])
    dec = np.array([-35.7, -35.7001, -30.0])
    tract, patch = tract_patch(ra, dec)
    assert tract[0] == tract[1]
    assert tract[0] != tract[2]
    assert ((patch >= 0) & (patch < 49)).all()


def test_generic_columns_are_plausible(tables: dict[str, pa.Table]) -> None:
    """Errors are positive, flags mostly False, fluxes follow the object's brightness."""
    for name, table in tables.items():
        for field in table.schema:
            if field.name == "_healpix_29":
                continue
            values = table.column(field.name)
            if pa.types.is_boolean(field.type) and "flag" in field.name.lower():
                assert np.mean(values.to_numpy(zero_copy_only=False)) < 0.1, (name, field.name)
            if pa.types.is_floating(field.type) and field.name.endswith("Err"):
                numbers = values.to_numpy(zero_copy_only=False)
                finite = numbers[np.isfinite(numbers)]
                assert finite.size and (finite > 0).all(), (name, field.name)
    obj = tables["Object"]
    primary = obj.column("detect_isPrimary").to_numpy()
    cmodel = obj.column("r_cModelFlux").to_numpy()[primary]
    bright = cmodel > 100 * obj.column("r_cModelFluxErr").to_numpy()[primary]
    for column in ("r_calibFlux", "r_kronFlux", "r_gaap1p0Flux", "r_ap09Flux", "r_psfFlux"):
        ratio = obj.column(column).to_numpy()[primary][bright] / cmodel[bright]
        assert 0.2 < np.median(ratio) <= 1.05, column
    # Per-band position columns sit on the object (centroid noise only).
    ra = obj.column("coord_ra").to_numpy()
    assert np.median(np.abs(obj.column("i_ra").to_numpy() - ra)) * 3600 < 0.1


def test_dia_objects_summarise_their_sources(tables: dict[str, pa.Table]) -> None:
    dia_object = tables["DiaObject"]
    dia_source = tables["DiaSource"]
    ids, counts = np.unique(dia_source.column("diaObjectId").to_numpy(), return_counts=True)
    n_sources = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    got = dict(
        zip(
            dia_object.column("diaObjectId").to_pylist(),
            dia_object.column("nDiaSources").to_pylist(),
            strict=True,
        )
    )
    assert got == n_sources
    assert max(got.values()) >= 5, "some light curves have several epochs"
    # DiaObjects are variable Objects: the id is the objectId with DIA_ID_BIT set.
    from skyvault.demo.epochs import DIA_ID_BIT

    objects = set(tables["Object"].column("objectId").to_pylist())
    assert all((i & ~DIA_ID_BIT) in objects for i in got)
    forced = tables["ForcedSourceOnDiaObject"]
    assert set(forced.column("diaObjectId").to_pylist()) == set(got)


def test_truth_entries_are_unique_and_matched(tables: dict[str, pa.Table]) -> None:
    truth = tables["TruthSummary"]
    matches = tables["MatchesTruth"]
    keys = truth.column("id_truth_type").to_pylist()
    assert len(set(keys)) == len(keys)
    assert set(matches.column("id_truth_type").to_pylist()) == set(keys)
    matched = matches.column("match_objectId").to_numpy()
    objects = tables["Object"].column("objectId").to_numpy()
    assert np.isin(matched[matched != -1], objects).all()
    assert 0.5 < np.mean(matched != -1) < 0.95
