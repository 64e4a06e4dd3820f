"""Rubin DP0.2 tutorial queries, unchanged in their columns, tables and joins, run against the
small demo: they must run and give plausible values (not hard-coded counts).

The queries follow the DP0.2 tutorial notebooks (02a/02b catalog queries with TAP, 05/07
DiaObject light curves, 08 truth tables) and the DP0.2 schema browser; every table and
every column of the Felis schema's ``dp02_dc2_catalogs`` (but ObsCore, served as
``ivoa.ObsCore``) must exist in the demo with its declared datatype.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from skyvault.catalog.metadata import TableMeta
from skyvault.demo.schema import NOT_GENERATED, SCHEMA_NAME, felis_path
from skyvault.engine.archive import Archive, open_archive

S = SCHEMA_NAME
CONE = "CONTAINS(POINT('ICRS', {a}coord_ra, {a}coord_dec), CIRCLE('ICRS', 62.0, -37.0, {r})) = 1"


@pytest.fixture(scope="module")
def archive(demo_data: Path) -> Iterator[Archive]:
    archive = open_archive(demo_data)
    yield archive
    archive.close()


def _mag(flux: np.ndarray) -> np.ndarray:
    return -2.5 * np.log10(flux) + 31.4


def _column(result: pa.Table, name: str) -> np.ndarray:
    return np.asarray(result[name].to_numpy(zero_copy_only=False))


# --- Object ------------------------------------------------------------------------------


def test_cone_of_primary_objects_with_calib_fluxes(archive: Archive) -> None:
    """02a: a 0.01° cone around (62, -37), primary objects, calibration fluxes."""
    result = archive.query(
        "SELECT objectId, coord_ra, coord_dec, detect_isPrimary, g_calibFlux, r_calibFlux, "
        "i_calibFlux, z_calibFlux, r_calibFluxErr, r_cModelFlux, r_extendedness "
        f"FROM {S}.Object WHERE {CONE.format(a='', r=0.01)} AND detect_isPrimary = 1"
    )
    # DP0.2's density: about a hundred objects in such a cone, more where galaxies cluster
    # (the average is tested below).
    assert 40 <= result.num_rows <= 400
    assert _column(result, "detect_isPrimary").all()
    calib = _column(result, "r_calibFlux")
    cmodel = _column(result, "r_cModelFlux")
    bright = cmodel > 10 * _column(result, "r_calibFluxErr")
    assert bright.sum() > 10
    mags = _mag(calib[bright])
    assert ((mags > 14) & (mags < 29)).all()
    # An aperture flux never holds much more than the total flux.
    assert np.median(calib[bright] / cmodel[bright]) < 1.05
    assert (_column(result, "r_calibFluxErr") > 0).all()
    assert set(np.unique(_column(result, "r_extendedness"))) <= {0.0, 1.0}


def test_density_matches_dp02_around_the_tutorial_position(archive: Archive) -> None:
    """About 100 Object rows per 0.01° cone near (62, -37), averaged over cones."""
    rng = np.random.default_rng(4)
    counts = []
    centres = zip(
        62 + rng.uniform(-0.04, 0.04, 12), -37 + rng.uniform(-0.04, 0.04, 12), strict=True
    )
    for ra, dec in centres:
        got = archive.query(
            f"SELECT COUNT(*) AS n FROM {S}.Object WHERE CONTAINS(POINT('ICRS', coord_ra, "
            f"coord_dec), CIRCLE('ICRS', {ra}, {dec}, 0.01)) = 1"
        )
        counts.append(got["n"][0].as_py())
    assert 60 <= np.mean(counts) <= 160


def test_magnitudes_colours_and_extendedness(archive: Archive) -> None:
    """02b: magnitudes from cModel fluxes with scisql, stars against galaxies."""
    result = archive.query(
        "SELECT objectId, scisql_nanojanskyToAbMag(g_cModelFlux) AS gmag, "
        "scisql_nanojanskyToAbMag(r_cModelFlux) AS rmag, "
        "scisql_nanojanskyToAbMag(i_cModelFlux) AS imag, "
        "scisql_nanojanskyToAbMagSigma(r_cModelFlux, r_cModelFluxErr) AS rmag_err, "
        "refExtendedness, r_extendedness, i_extendedness "
        f"FROM {S}.Object WHERE {CONE.format(a='', r=0.05)} AND detect_isPrimary = 1 "
        "AND r_cModelFlux > 0 AND g_cModelFlux > 0 AND i_cModelFlux > 0 "
        "AND scisql_nanojanskyToAbMag(r_cModelFlux) < 24"
    )
    assert result.num_rows > 50
    rmag = _column(result, "rmag")
    assert ((rmag > 14) & (rmag < 24)).all()
    g_r = _column(result, "gmag") - rmag
    assert -1.0 < np.median(g_r) < 2.0
    assert (_column(result, "rmag_err") > 0).all()
    assert np.median(_column(result, "rmag_err")) < 0.05
    ext = _column(result, "refExtendedness")
    assert 0.05 < np.mean(ext == 0) < 0.9, "bright stars and galaxies both present"


def test_shapes_psf_moments_aperture_and_deblend_columns(archive: Archive) -> None:
    """Schema-browser columns that used to be missing: shapes, PSF moments, footprints,
    aperture/Kron/GaaP fluxes, deblending, pixel positions."""
    result = archive.query(
        "SELECT objectId, x, y, xErr, footprintArea, deblend_nChild, deblend_skipped, "
        "parentObjectId, shape_xx, shape_yy, shape_xy, shape_flag, i_ixxPSF, i_iyyPSF, "
        "i_ixyPSF, i_psfFlux, i_psfFluxErr, i_ap12Flux, i_ap25Flux, i_kronFlux, i_kronRad, "
        "i_gaap1p0Flux, i_gaapOptimalFlux, i_bdFluxB, i_bdFluxD, i_cModelFlux, "
        "i_hsmShapeRegauss_e1, i_blendedness, i_inputCount, i_pixelFlags_saturated "
        f"FROM {S}.Object WHERE {CONE.format(a='', r=0.03)} AND detect_isPrimary = 1"
    )
    assert result.num_rows > 100
    assert (_column(result, "footprintArea") > 0).all()
    assert (_column(result, "xErr") > 0).all()
    assert (_column(result, "x") >= 0).all() and (_column(result, "y") >= 0).all()
    xx, yy, xy = (_column(result, f"shape_{c}") for c in ("xx", "yy", "xy"))
    assert (xx > 0).all() and (yy > 0).all()
    assert (xy**2 <= xx * yy * 1.5).mean() > 0.95, "moments form a positive matrix"
    psf_xx = _column(result, "i_ixxPSF")
    assert (psf_xx > 0).all() and np.ptp(psf_xx) < psf_xx.mean()
    assert np.median(xx / psf_xx) >= 1.0, "sources are no smaller than the PSF"
    cmodel = _column(result, "i_cModelFlux")
    bright = cmodel > 50 * _column(result, "i_psfFluxErr")
    assert bright.sum() > 10
    ap12, ap25 = _column(result, "i_ap12Flux")[bright], _column(result, "i_ap25Flux")[bright]
    assert np.median(ap25 / ap12) >= 1.0, "a bigger aperture holds more light"
    bulge_disk = _column(result, "i_bdFluxB") + _column(result, "i_bdFluxD")
    assert np.median(bulge_disk[bright] / cmodel[bright]) == pytest.approx(1.0, abs=0.05)
    kron = _column(result, "i_kronFlux")[bright] / cmodel[bright]
    assert 0.8 < np.median(kron) <= 1.0
    assert (_column(result, "i_inputCount") > 0).all()
    flags = _column(result, "i_pixelFlags_saturated")
    assert flags.dtype == bool and flags.mean() < 0.1
    assert (_column(result, "deblend_nChild") == 0).all(), "primary objects are not parents"


# --- single-epoch photometry -------------------------------------------------------------


def _bright_object(archive: Archive) -> int:
    row = archive.query(
        f"SELECT TOP 1 objectId FROM {S}.Object WHERE {CONE.format(a='', r=0.05)} "
        "AND detect_isPrimary = 1 AND r_psfFlux > 20000 ORDER BY r_psfFlux"
    )
    return int(row["objectId"][0].as_py())


def test_forced_source_light_curve_joined_with_ccd_visit(archive: Archive) -> None:
    """02b: an object's forced photometry with the CCD visits' times and zero points."""
    object_id = _bright_object(archive)
    result = archive.query(
        "SELECT src.band, src.ccdVisitId, src.coord_ra, src.coord_dec, src.objectId, "
        "src.psfFlux, src.psfFluxErr, scisql_nanojanskyToAbMag(src.psfFlux) AS psfMag, "
        "visinfo.ccdVisitId AS visit_ccd, visinfo.band AS visit_band, visinfo.expMidptMJD, "
        "visinfo.zeroPoint "
        f"FROM {S}.ForcedSource AS src JOIN {S}.CcdVisit AS visinfo "
        f"ON visinfo.ccdVisitId = src.ccdVisitId WHERE src.objectId = {object_id} "
        "ORDER BY visinfo.expMidptMJD"
    )
    assert result.num_rows >= 4, "several epochs"
    assert result["band"].to_pylist() == result["visit_band"].to_pylist()
    mjd = _column(result, "expMidptMJD")
    assert (np.diff(mjd) >= 0).all() and mjd.min() > 59500
    mags = _column(result, "psfMag")
    assert ((mags > 14) & (mags < 25)).all()
    assert (_column(result, "zeroPoint") > 25).all()


def test_sources_of_a_visit_with_pixel_positions(archive: Archive) -> None:
    result = archive.query(
        "SELECT TOP 200 sourceId, ccdVisitId, visit, detector, band, x, y, xErr, psfFlux, "
        "psfFluxErr, calibFlux, ap12Flux, ap12FluxErr, gaussianFlux, ixx, iyy, ixxPSF, "
        "extendedness, localPhotoCalib, localWcs_CDMatrix_1_1, footprintArea_value, "
        f"detect_isPrimary, physical_filter FROM {S}.Source "
        f"WHERE {CONE.format(a='', r=0.1)} AND psfFlux > 5000"
    )
    assert result.num_rows > 20
    assert ((_column(result, "x") >= 0) & (_column(result, "x") <= 4072)).all()
    assert (_column(result, "ap12FluxErr") > 0).all()
    # calibFlux is the 12-pixel aperture flux.
    assert np.allclose(_column(result, "calibFlux"), _column(result, "ap12Flux"))
    assert (_column(result, "localPhotoCalib") > 0).all()
    cd = np.abs(_column(result, "localWcs_CDMatrix_1_1"))
    assert (cd <= 0.2 / 3600 * 1.0001).all()
    filters = result["physical_filter"].to_pylist()
    assert all(f.startswith(b) for f, b in zip(filters, result["band"].to_pylist(), strict=True))


# --- difference imaging ------------------------------------------------------------------


def test_dia_objects_have_light_curves(archive: Archive) -> None:
    """05/07: DiaObjects with several DiaSources, their light curve in DiaSource and in
    ForcedSourceOnDiaObject joined with CcdVisit."""
    dia = archive.query(
        "SELECT ra, decl, diaObjectId, nDiaSources, "
        "scisql_nanojanskyToAbMag(rPSFluxMin) AS rMagMax, "
        "scisql_nanojanskyToAbMag(rPSFluxMax) AS rMagMin, rPSFluxMean, rPSFluxSigma, "
        "rPSFluxNdata, rPSFluxChi2, rPSFluxLinearSlope, gPSFluxNdata, iPSFluxNdata "
        f"FROM {S}.DiaObject WHERE nDiaSources > 2 ORDER BY nDiaSources DESC"
    )
    assert dia.num_rows > 0
    top = dia.slice(0, 3).to_pylist()
    for row in top:
        curve = archive.query(
            "SELECT ra, decl, diaObjectId, diaSourceId, filterName, midPointTai, "
            "scisql_nanojanskyToAbMag(psFlux) AS psAbMag, psFlux, psFluxErr, ccdVisitId "
            f"FROM {S}.DiaSource WHERE diaObjectId = {row['diaObjectId']} "
            "ORDER BY midPointTai"
        )
        assert curve.num_rows == row["nDiaSources"] > 2
        assert (np.diff(_column(curve, "midPointTai")) >= 0).all()
        snr = np.abs(_column(curve, "psFlux") / _column(curve, "psFluxErr"))
        assert (snr >= 5).all(), "DiaSources are 5-sigma difference-image detections"
        r = np.array(curve["filterName"].to_pylist()) == "r"
        assert r.sum() == row["rPSFluxNdata"]
        if r.sum():
            flux = _column(curve, "psFlux")[r]
            assert row["rPSFluxMean"] == pytest.approx(flux.mean())
        # Sky positions agree with the DiaObject's within an arcsecond.
        sep = np.hypot(
            (_column(curve, "ra") - row["ra"]) * np.cos(np.radians(row["decl"])),
            _column(curve, "decl") - row["decl"],
        )
        assert (sep * 3600 < 1.0).all()

        forced = archive.query(
            "SELECT fsodo.coord_ra, fsodo.coord_dec, fsodo.diaObjectId, fsodo.ccdVisitId, "
            "fsodo.band, fsodo.psfDiffFlux, fsodo.psfDiffFluxErr, fsodo.psfFlux, "
            "fsodo.psfFluxErr, cv.expMidptMJD "
            f"FROM {S}.ForcedSourceOnDiaObject AS fsodo JOIN {S}.CcdVisit AS cv "
            "ON cv.ccdVisitId = fsodo.ccdVisitId "
            f"WHERE fsodo.diaObjectId = {row['diaObjectId']} ORDER BY cv.expMidptMJD"
        )
        assert forced.num_rows >= curve.num_rows
        assert set(curve["ccdVisitId"].to_pylist()) <= set(forced["ccdVisitId"].to_pylist())
        assert (_column(forced, "psfDiffFluxErr") > 0).all()


# --- truth -------------------------------------------------------------------------------


def test_truth_matched_to_objects_within_an_arcsecond(archive: Archive) -> None:
    """08: MatchesTruth joined with TruthSummary and Object."""
    result = archive.query(
        "SELECT mt.id_truth_type, mt.match_objectId, ts.ra, ts.dec, ts.truth_type, ts.mag_r, "
        "ts.is_pointsource, ts.redshift, ts.flux_r, obj.coord_ra, obj.coord_dec, "
        "obj.refExtendedness, scisql_nanojanskyToAbMag(obj.r_cModelFlux) AS cModelMag_r, "
        "DISTANCE(POINT('ICRS', ts.ra, ts.dec), POINT('ICRS', obj.coord_ra, obj.coord_dec)) "
        "AS sep "
        f"FROM {S}.MatchesTruth AS mt "
        f"JOIN {S}.TruthSummary AS ts ON mt.id_truth_type = ts.id_truth_type "
        f"JOIN {S}.Object AS obj ON mt.match_objectId = obj.objectId "
        "WHERE CONTAINS(POINT('ICRS', ts.ra, ts.dec), CIRCLE('ICRS', 62.0, -37.0, 0.05)) = 1 "
        "AND obj.detect_isPrimary = 1"
    )
    assert result.num_rows > 100
    assert (_column(result, "sep") * 3600 < 1.0).all()
    types = set(_column(result, "truth_type").tolist())
    assert {1, 2} <= types
    bright = _column(result, "mag_r") < 22
    assert bright.sum() > 5
    dmag = _column(result, "cModelMag_r")[bright] - _column(result, "mag_r")[bright]
    assert np.abs(np.median(dmag)) < 0.1, "measured and true magnitudes agree when bright"
    stars = _column(result, "truth_type") == 2
    assert (_column(result, "is_pointsource")[stars] == 1).all()
    assert (_column(result, "redshift")[~stars] > 0).all()
    flux_r = _column(result, "flux_r").astype(np.float64)
    assert np.allclose(_mag(flux_r), _column(result, "mag_r"), atol=1e-3)


def test_unmatched_truth_and_supernovae(archive: Archive) -> None:
    result = archive.query(
        "SELECT ts.truth_type, mt.match_objectId, mt.match_candidate, ts.mag_r "
        f"FROM {S}.TruthSummary AS ts JOIN {S}.MatchesTruth AS mt "
        "ON mt.id_truth_type = ts.id_truth_type WHERE mt.match_objectId = -1"
    )
    assert result.num_rows > 0
    faint = _column(result, "mag_r")[_column(result, "truth_type") == 1]
    assert np.median(faint) > 26.5, "undetected galaxies are faint"


# --- the schema --------------------------------------------------------------------------

_VOTABLE = {
    "boolean": "boolean",
    "short": "short",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "char": "char",
    "string": "char",
    "text": "char",
    "timestamp": "char",
}


def test_every_felis_table_and_column_exists_with_its_datatype(
    archive: Archive, demo_data: Path
) -> None:
    import yaml

    document = yaml.safe_load(felis_path().read_text())
    assert document["name"] == SCHEMA_NAME
    for table in document["tables"]:
        if table["name"] in NOT_GENERATED:
            continue
        meta = TableMeta.read(demo_data / SCHEMA_NAME / table["name"])
        published = {c.name: c for c in meta.columns}
        for column in table["columns"]:
            name = column["name"]
            assert name in published, f"{table['name']}.{name} is missing"
            got = published[name]
            assert got.datatype == _VOTABLE[column["datatype"]], f"{table['name']}.{name}"
            if column["datatype"] == "timestamp":
                assert got.xtype == "timestamp"
        # Every column answers a query.
        names = ", ".join(c["name"] for c in table["columns"])
        result = archive.query(f"SELECT TOP 5 {names} FROM {S}.{table['name']}")
        assert result.num_rows == 5
        assert result.column_names == [c["name"] for c in table["columns"]]


# --- the tutorials' own queries ----------------------------------------------------------
# As the DP0.2 tutorial notebooks (02a, 02b, 07a, 07b, 08) write them, with their Python
# variables replaced by the values the notebooks give them (cone centre (62, -37); the
# known RR Lyrae star of 07b at (62.1479031, -35.799138)).  ``rows`` says whether the
# small demo must return rows (selections of rare objects may find none in it).

_OBJECT_CONE = "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, {r})) = 1 "
_DIA_STATS = (
    "diao.diaObjectId, diao.ra, diao.decl, diao.nDiaSources, "
    "diao.gPSFluxMin, diao.gPSFluxMax, diao.gPSFluxMean, diao.gPSFluxSigma, "
    "diao.gPSFluxMAD, diao.gPSFluxChi2, diao.gPSFluxNdata, diao.gPSFluxSkew, "
    "diao.gPSFluxStetsonJ, diao.gPSFluxPercentile05, diao.gPSFluxPercentile25, "
    "diao.gPSFluxPercentile50, diao.gPSFluxPercentile75, diao.gPSFluxPercentile95, "
    "diao.gTOTFluxMean, diao.gTOTFluxSigma, "
    "scisql_nanojanskyToAbMag(diao.gTOTFluxMean) as diao_gmag, "
)
_DIA_CUTS = (
    "WHERE diao.gTOTFluxSigma/diao.gTOTFluxMean > 0.25 "
    "AND diao.gTOTFluxSigma/diao.gTOTFluxMean < 1.25 "
    "AND scisql_nanojanskyToAbMag(diao.gTOTFluxMean) > 18 "
    "AND scisql_nanojanskyToAbMag(diao.gTOTFluxMean) < 23 "
    "AND diao.gPSFluxNdata > 30 "
    "AND diao.gPSFluxStetsonJ > 20 "
)
_TRUTH = (
    "FROM dp02_dc2_catalogs.MatchesTruth AS mt "
    "JOIN dp02_dc2_catalogs.TruthSummary AS ts ON mt.id_truth_type = ts.id_truth_type "
)

TUTORIAL_QUERIES: list[tuple[str, str, bool]] = [
    (
        "02a-cone",
        "SELECT coord_ra, coord_dec FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.01)
        + "AND detect_isPrimary = 1",
        True,
    ),
    (
        "02a-top-ordered",
        "SELECT TOP 10 coord_ra, coord_dec FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.01)
        + "AND detect_isPrimary = 1 ORDER BY coord_ra ASC",
        True,
    ),
    (
        "02b-radians",
        "SELECT RADIANS(coord_ra) AS ra_radians, RADIANS(coord_dec) AS dec_radians "
        "FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.01)
        + "AND detect_isPrimary = 1",
        True,
    ),
    (
        "02b-magnitudes",
        "SELECT coord_ra, coord_dec, -2.5 * LOG10(g_cModelFlux) + 31.4 AS gmag1, "
        "scisql_nanojanskyToAbMag(g_cModelFlux) AS gmag2, "
        "scisql_nanojanskyToAbMagSigma(g_cModelFlux, g_cModelFluxErr) AS gmag2err "
        "FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.01)
        + "AND detect_isPrimary = 1",
        True,
    ),
    (
        "02b-colours",
        "SELECT scisql_nanojanskyToAbMag(g_cModelFlux) AS gmag, "
        "scisql_nanojanskyToAbMag(r_cModelFlux) AS rmag, "
        "scisql_nanojanskyToAbMag(i_cModelFlux) AS imag, "
        "scisql_nanojanskyToAbMag(g_cModelFlux) - "
        "scisql_nanojanskyToAbMag(r_cModelFlux) AS grclr, "
        "scisql_nanojanskyToAbMag(r_cModelFlux) - "
        "scisql_nanojanskyToAbMag(i_cModelFlux) AS riclr "
        "FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.01)
        + "AND detect_isPrimary = 1",
        True,
    ),
    (
        "02b-not-zero-and-cut",
        "SELECT scisql_nanojanskyToAbMag(g_cModelFlux) AS gmag, "
        "scisql_nanojanskyToAbMag(r_cModelFlux) AS rmag, "
        "scisql_nanojanskyToAbMag(i_cModelFlux) AS imag "
        "FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.05)
        + "AND detect_isPrimary != 0 AND scisql_nanojanskyToAbMag(i_cModelFlux) <= 25",
        True,
    ),
    (
        "02b-distance",
        "SELECT coord_ra, coord_dec, DISTANCE(POINT('ICRS', coord_ra, coord_dec), "
        "POINT('ICRS', 61.989258, -37.005119)) AS dist FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.05)
        + "AND detect_isPrimary = 1 AND DISTANCE(POINT('ICRS', coord_ra, coord_dec), "
        "POINT('ICRS', 61.989258, -37.005119)) < 0.005 ORDER BY dist ASC",
        True,
    ),
    (
        "02b-between",
        "SELECT scisql_nanojanskyToAbMag(g_cModelFlux) AS gmag, "
        "scisql_nanojanskyToAbMag(r_cModelFlux) AS rmag, "
        "scisql_nanojanskyToAbMag(i_cModelFlux) AS imag FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.05)
        + "AND detect_isPrimary = 1 AND r_cModelFlux BETWEEN g_cModelFlux AND i_cModelFlux",
        True,
    ),
    (
        "02b-object-forced-ccdvisit",
        "SELECT scisql_nanojanskyToAbMag(fs.psfFlux) AS mag, "
        "scisql_nanojanskyToAbMagSigma(fs.psfFlux, fs.psfFluxErr) AS magerr, "
        "cv.band, cv.expMidptMJD FROM dp02_dc2_catalogs.Object AS o "
        "JOIN dp02_dc2_catalogs.ForcedSource AS fs ON o.objectId = fs.objectId "
        "JOIN dp02_dc2_catalogs.CcdVisit AS cv ON fs.ccdVisitId = cv.ccdVisitId "
        "WHERE CONTAINS(POINT('ICRS', o.coord_ra, o.coord_dec), "
        "CIRCLE('ICRS', 62.0, -37.0, 0.002)) = 1 AND o.detect_isPrimary = 1",
        True,
    ),
    (
        "02b-extendedness-cuts",
        "SELECT objectId, detect_isPrimary, coord_ra AS ra, coord_dec AS dec, "
        "scisql_nanojanskyToAbMag(g_cModelFlux) AS mag_g_cModel, "
        "scisql_nanojanskyToAbMag(r_cModelFlux) AS mag_r_cModel, "
        "scisql_nanojanskyToAbMag(i_cModelFlux) AS mag_i_cModel, r_extendedness "
        "FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.05)
        + "AND detect_isPrimary = 1 "
        "AND scisql_nanojanskyToAbMag(g_cModelFlux) > 17.0 "
        "AND scisql_nanojanskyToAbMag(g_cModelFlux) < 23.0 "
        "AND scisql_nanojanskyToAbMag(r_cModelFlux) > 17.0 "
        "AND scisql_nanojanskyToAbMag(r_cModelFlux) < 23.0 "
        "AND scisql_nanojanskyToAbMag(i_cModelFlux) > 17.0 "
        "AND scisql_nanojanskyToAbMag(i_cModelFlux) < 23.0 "
        "AND r_extendedness IS NOT NULL ",
        True,
    ),
    (
        "07a-dia-statistics",
        "SELECT TOP 100000 ra, decl, diaObjectId, nDiaSources, "
        "rPSFluxMin, rPSFluxMax, rPSFluxMean, rPSFluxSigma, "
        "rPSFluxMAD, rPSFluxChi2, rPSFluxNdata, rPSFluxSkew, "
        "rPSFluxStetsonJ, rPSFluxPercentile05, rPSFluxPercentile25, "
        "rPSFluxPercentile50, rPSFluxPercentile75, rPSFluxPercentile95, "
        "rTOTFluxMean, rTOTFluxSigma FROM dp02_dc2_catalogs.DiaObject",
        True,
    ),
    (
        "07a-supernova-candidates",
        "SELECT TOP 1000 ra, decl, diaObjectId, nDiaSources, "
        "scisql_nanojanskyToAbMag(rPSFluxMin) AS rMagMax, "
        "scisql_nanojanskyToAbMag(rPSFluxMax) AS rMagMin, "
        "scisql_nanojanskyToAbMag(gPSFluxMax) AS gMagMin, "
        "scisql_nanojanskyToAbMag(iPSFluxMax) AS iMagMin "
        "FROM dp02_dc2_catalogs.DiaObject WHERE nDiaSources > 15 AND nDiaSources < 100 "
        "AND scisql_nanojanskyToAbMag(rPSFluxMax) > 17.5 "
        "AND scisql_nanojanskyToAbMag(rPSFluxMax) < 22.5 "
        "AND scisql_nanojanskyToAbMag(gPSFluxMax) < 24.0 "
        "AND scisql_nanojanskyToAbMag(iPSFluxMax) < 24.0 "
        "AND scisql_nanojanskyToAbMag(rPSFluxMin) - scisql_nanojanskyToAbMag(rPSFluxMax) "
        "< 5.5 AND scisql_nanojanskyToAbMag(rPSFluxMin) - "
        "scisql_nanojanskyToAbMag(rPSFluxMax) > 1.5",
        False,
    ),
    (
        "07b-object-near-rr-lyrae",
        "SELECT TOP 100 coord_ra, coord_dec, objectId, "
        "g_psfFlux, r_psfFlux, i_psfFlux, detect_isPrimary, "
        "scisql_nanojanskyToAbMag(g_psfFlux) as gPSFMag, "
        "scisql_nanojanskyToAbMag(r_psfFlux) as rPSFMag, "
        "scisql_nanojanskyToAbMag(i_psfFlux) as iPSFMag, "
        "g_extendedness, r_extendedness, i_extendedness "
        "FROM dp02_dc2_catalogs.Object WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
        "CIRCLE('ICRS',62.1479031, -35.799138, 0.001)) = 1 AND detect_isPrimary = 1",
        False,
    ),
    (
        "07b-dia-object-forced-ccdvisit",
        "SELECT "
        + _DIA_STATS
        + "fsodo.diaObjectId, fsodo.ccdVisitId, fsodo.band, fsodo.psfFlux, fsodo.psfFluxErr, "
        "fsodo.psfDiffFlux, fsodo.psfDiffFluxErr, cv.expMidptMJD, "
        "scisql_nanojanskyToAbMag(fsodo.psfFlux) as fsodo_gmag "
        "FROM dp02_dc2_catalogs.DiaObject as diao "
        "JOIN dp02_dc2_catalogs.ForcedSourceOnDiaObject as fsodo "
        "ON fsodo.diaObjectId = diao.diaObjectId "
        "JOIN dp02_dc2_catalogs.CcdVisit as cv ON cv.ccdVisitId = fsodo.ccdVisitId "
        + _DIA_CUTS
        + "AND fsodo.band = 'g' AND CONTAINS(POINT('ICRS', diao.ra, diao.decl), "
        "CIRCLE('ICRS',62.1479031, -35.799138, 5)) = 1 ",
        False,
    ),
    (
        "07b-dia-object-dia-source",
        "SELECT " + _DIA_STATS + "dias.diaSourceId, dias.diaObjectId, dias.midPointTai, "
        "dias.ccdVisitId, dias.filterName, dias.psFlux, dias.psFluxErr, "
        "dias.totFlux, dias.totFluxErr, scisql_nanojanskyToAbMag(dias.totFlux) as dias_gmag "
        "FROM dp02_dc2_catalogs.DiaObject as diao "
        "JOIN dp02_dc2_catalogs.DiaSource as dias ON dias.diaObjectId = diao.diaObjectId "
        + _DIA_CUTS
        + "AND dias.filterName = 'g' AND CONTAINS(POINT('ICRS', diao.ra, diao.decl), "
        "CIRCLE('ICRS',62.1479031, -35.799138, 5)) = 1 ",
        False,
    ),
    (
        "08-truth-cone",
        "SELECT mt.id_truth_type, mt.match_objectId, ts.ra, ts.dec, ts.truth_type "
        + _TRUTH
        + "WHERE CONTAINS(POINT('ICRS', ts.ra, ts.dec), CIRCLE('ICRS', 62.0, -37.0, 0.10)) = 1 ",
        True,
    ),
    (
        "08-truth-object-cone",
        "SELECT mt.id_truth_type, mt.match_objectId, ts.ra, ts.dec, ts.truth_type, "
        "obj.coord_ra, obj.coord_dec "
        + _TRUTH
        + "JOIN dp02_dc2_catalogs.Object AS obj ON mt.match_objectId = obj.objectId "
        "WHERE CONTAINS(POINT('ICRS', obj.coord_ra, obj.coord_dec), "
        "CIRCLE('ICRS', 62.0, -37.0, 0.10)) = 1 ",
        True,
    ),
    (
        "08-truth-one-object",
        "SELECT mt.id_truth_type AS mt_id_truth_type, "
        "mt.match_objectId AS mt_match_objectId, obj.objectId AS obj_objectId, "
        "ts.redshift AS ts_redshift FROM dp02_dc2_catalogs.MatchesTruth AS mt "
        "JOIN dp02_dc2_catalogs.TruthSummary AS ts ON mt.id_truth_type=ts.id_truth_type "
        "JOIN dp02_dc2_catalogs.Object AS obj ON mt.match_objectId=obj.objectId "
        "WHERE obj.objectId=1486698050427598336 AND ts.truth_type=1 "
        "AND obj.detect_isPrimary=1 ORDER BY obj_objectId DESC",
        False,
    ),
    (
        "08-truth-galaxies-photometry",
        "SELECT mt.id_truth_type AS mt_id_truth_type, "
        "mt.match_objectId AS mt_match_objectId, ts.ra AS ts_ra, ts.dec AS ts_dec, "
        "ts.truth_type AS ts_truth_type, ts.mag_r AS ts_mag_r, "
        "ts.is_pointsource AS ts_is_pointsource, ts.redshift AS ts_redshift, "
        "ts.flux_u AS ts_flux_u, ts.flux_g AS ts_flux_g, ts.flux_r AS ts_flux_r, "
        "ts.flux_i AS ts_flux_i, ts.flux_z AS ts_flux_z, ts.flux_y AS ts_flux_y, "
        "obj.coord_ra AS obj_coord_ra, obj.coord_dec AS obj_coord_dec, "
        "obj.refExtendedness AS obj_refExtendedness, "
        "scisql_nanojanskyToAbMag(obj.r_cModelFlux) AS obj_cModelMag_r, "
        "obj.u_cModelFlux AS obj_u_cModelFlux, obj.g_cModelFlux AS obj_g_cModelFlux, "
        "obj.r_cModelFlux AS obj_r_cModelFlux, obj.i_cModelFlux AS obj_i_cModelFlux, "
        "obj.z_cModelFlux AS obj_z_cModelFlux, obj.y_cModelFlux AS obj_y_cModelFlux "
        + _TRUTH
        + "JOIN dp02_dc2_catalogs.Object AS obj ON mt.match_objectId = obj.objectId "
        "WHERE CONTAINS(POINT('ICRS', obj.coord_ra, obj.coord_dec), "
        "CIRCLE('ICRS', 62.0, -37.0, 0.10)) = 1 AND ts.truth_type = 1 "
        "AND obj.detect_isPrimary = 1",
        True,
    ),
]


@pytest.mark.parametrize(
    ("query", "rows"),
    [(q, r) for _, q, r in TUTORIAL_QUERIES],
    ids=[n for n, _, _ in TUTORIAL_QUERIES],
)
def test_tutorial_query_runs_unchanged(archive: Archive, query: str, rows: bool) -> None:
    result = archive.query(query)
    if rows:
        assert result.num_rows > 0
    for column in result.itercolumns():
        if pa.types.is_floating(column.type) and column.null_count < len(column):
            values = column.to_numpy(zero_copy_only=False)
            assert np.isfinite(values).any()


def test_tutorial_id_list_queries(archive: Archive) -> None:
    """02b and 07a: lists of ids from one query fed to the next with IN."""
    ids = archive.query(
        "SELECT objectId FROM dp02_dc2_catalogs.Object WHERE "
        + _OBJECT_CONE.format(r=0.005)
        + "AND detect_isPrimary = 1"
    )["objectId"].to_pylist()[:5]
    id_list = "(" + ", ".join(str(i) for i in ids) + ")"
    got = archive.query(
        "SELECT objectId, scisql_nanojanskyToAbMag(g_psfFlux) AS gmag, "
        "scisql_nanojanskyToAbMag(r_psfFlux) AS rmag, "
        "scisql_nanojanskyToAbMag(r_psfFlux) AS imag, "
        "scisql_nanojanskyToAbMag(i_psfFlux) AS zmag "
        "FROM dp02_dc2_catalogs.Object WHERE objectId IN " + id_list
    )
    assert sorted(got["objectId"].to_pylist()) == sorted(ids)
    dia_ids = archive.query("SELECT TOP 4 diaObjectId FROM dp02_dc2_catalogs.DiaObject")
    temp_list = "(" + ", ".join(str(i) for i in dia_ids["diaObjectId"].to_pylist()) + ")"
    times = archive.query(
        "SELECT diaObjectId, midPointTai FROM dp02_dc2_catalogs.DiaSource "
        "WHERE diaObjectId IN " + temp_list
    )
    assert set(times["diaObjectId"].to_pylist()) == set(dia_ids["diaObjectId"].to_pylist())
    one = dia_ids["diaObjectId"][0].as_py()
    curve = archive.query(
        "SELECT ra, decl, diaObjectId, diaSourceId, ccdVisitId,filterName, midPointTai, "
        "psFlux, totFlux, totFluxErr, apFlux, apFluxErr,psFluxErr, snr  "
        f"FROM dp02_dc2_catalogs.DiaSource WHERE diaObjectId = {one}"
    )
    assert curve.num_rows > 0
    assert (np.abs(_column(curve, "snr")) >= 5).all()
    upper = archive.query(
        "SELECT ra, decl, diaObjectId, diaSourceId, psFlux, psFluxErr, "
        "filterName, midPointTai, SNR, ccdVisitId, "
        "scisql_nanojanskyToAbMag(psFlux) AS psAbMag "
        f"FROM dp02_dc2_catalogs.DiaSource WHERE diaObjectId = {one}"
    )
    assert upper.num_rows == curve.num_rows
