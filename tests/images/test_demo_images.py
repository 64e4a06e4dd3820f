"""The demo's images: DP0.2-like calexps and deepCoadds drawn from the demo catalogue."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from photutils.centroids import centroid_com, centroid_sources

from skyvault.catalog.layout import image_store
from skyvault.demo import build_demo
from skyvault.demo.schema import BANDS


def _rows(data: Path, schema: str, table: str) -> pa.Table:
    root = (data / schema / table).resolve()
    return pa.concat_tables(
        [pq.ParquetFile(f).read() for f in sorted(root.glob("dataset/**/*.parquet"))]
    )


@pytest.fixture(scope="module")
def objects(demo_data: Path) -> pa.Table:
    columns = ["coord_ra", "coord_dec", *(f"{b}_psfFlux" for b in BANDS)]
    return _rows(demo_data, "dp02_dc2_catalogs", "Object").select(columns)


def _image(data: Path, collection: str, row: dict[str, object]) -> tuple[np.ndarray, WCS]:
    path = image_store(data, collection) / str(row["image_file"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdul:
            return hdul[0].data.astype(np.float64), WCS(hdul[0].header)


def test_demo_returns_and_publishes_the_image_collections(demo_data: Path) -> None:
    metas = build_demo(demo_data, "small")  # built already: read back
    names = [m.qualified_name for m in metas if m.schema != "dp02_dc2_catalogs"]
    assert names == [
        "dp02_calexp.obscore",
        "dp02_calexp.headers",
        "dp02_deepcoadd.obscore",
        "dp02_deepcoadd.headers",
    ]


def test_calexps_are_ccd_visits_of_the_survey(demo_data: Path) -> None:
    obscore = _rows(demo_data, "dp02_calexp", "obscore").to_pylist()
    assert sorted(r["band"] for r in obscore) == sorted(BANDS)
    headers = _rows(demo_data, "dp02_calexp", "headers")
    visits = {r["visit"]: r for r in _rows(demo_data, "dp02_dc2_catalogs", "Visit").to_pylist()}
    ccds = {
        r["ccdVisitId"]: r for r in _rows(demo_data, "dp02_dc2_catalogs", "CcdVisit").to_pylist()
    }
    for row in obscore:
        cards = {
            r["keyword"]: r["card_value"]
            for r in headers.to_pylist()
            if r["obs_id"] == row["obs_id"]
        }
        visit, ccd = visits[int(cards["VISIT"])], ccds[int(cards["CCDVISIT"])]
        assert visit["band"] == row["band"]
        assert row["t_min"] == pytest.approx(visit["expMidptMJD"] - 15 / 86400, abs=1e-9)
        assert row["t_exptime"] == 30.0
        # The image is the CCD visit's: same centre, within a pixel (0.8 arcsec).
        centre = np.radians([row["s_ra"], row["s_dec"], ccd["ra"], ccd["decl"]])
        cos = np.sin(centre[1]) * np.sin(centre[3]) + np.cos(centre[1]) * np.cos(
            centre[3]
        ) * np.cos(centre[0] - centre[2])
        assert np.degrees(np.arccos(min(cos, 1.0))) * 3600 < 0.8
        assert row["calib_level"] == 2 and row["dataproduct_subtype"] == "lsst.calexp"
    coadds = _rows(demo_data, "dp02_deepcoadd", "obscore").to_pylist()
    assert sorted(r["band"] for r in coadds) == sorted(BANDS)
    assert all(r["calib_level"] == 3 for r in coadds)


@pytest.mark.parametrize("collection", ["dp02_calexp", "dp02_deepcoadd"])
def test_a_source_in_the_catalogue_is_a_source_in_the_pixels(
    demo_data: Path, objects: pa.Table, collection: str
) -> None:
    ra = objects.column("coord_ra").to_numpy()
    dec = objects.column("coord_dec").to_numpy()
    checked = 0
    for row in _rows(demo_data, collection, "obscore").to_pylist():
        data, wcs = _image(demo_data, collection, row)
        noise = 1.4826 * np.median(np.abs(data - np.median(data)))
        flux = np.nan_to_num(objects.column(f"{row['band']}_psfFlux").to_numpy())
        x, y = wcs.world_to_pixel_values(ra, dec)
        ny, nx = data.shape
        inside = (x > 5) & (x < nx - 6) & (y > 5) & (y < ny - 6)
        # Bright (peak well above the noise) and alone (nothing a tenth as bright within
        # 4 pixels), as the catalogue says.
        bright = np.flatnonzero(inside & (flux > 300 * noise))
        keep = []
        for i in bright:
            near = np.hypot(x - x[i], y - y[i]) < 4
            near[i] = False
            if not np.any(near & (flux > 0.1 * flux[i])):
                keep.append(i)
        if not keep:
            continue
        cx, cy = centroid_sources(data, x[keep], y[keep], box_size=5, centroid_func=centroid_com)
        offset = np.hypot(cx - x[keep], cy - y[keep])
        assert np.median(offset) < 0.1, row["obs_id"]
        assert np.quantile(offset, 0.9) < 0.2, row["obs_id"]
        assert np.max(offset) < 0.5, row["obs_id"]
        checked += len(keep)
    assert checked >= 20


def test_pixels_differ_where_a_source_is_moved(demo_data: Path, objects: pa.Table) -> None:
    """The check above can fail: centroids at positions shifted by 1.5 pixels are off."""
    (row, *_) = _rows(demo_data, "dp02_calexp", "obscore").to_pylist()
    data, wcs = _image(demo_data, "dp02_calexp", row)
    noise = 1.4826 * np.median(np.abs(data - np.median(data)))
    flux = np.nan_to_num(objects.column(f"{row['band']}_psfFlux").to_numpy())
    x, y = wcs.world_to_pixel_values(
        objects.column("coord_ra").to_numpy(), objects.column("coord_dec").to_numpy()
    )
    ny, nx = data.shape
    pick = np.flatnonzero((x > 8) & (x < nx - 9) & (y > 8) & (y < ny - 9) & (flux > 300 * noise))
    assert pick.size
    cx, cy = centroid_sources(data, x[pick] + 1.5, y[pick], box_size=5, centroid_func=centroid_com)
    assert np.median(np.hypot(cx - x[pick] - 1.5, cy - y[pick])) > 0.5


def test_the_drawing_erf_agrees_with_math_erf() -> None:
    import math

    from skyvault.demo.images import erf

    x = np.linspace(-6.0, 6.0, 20001)
    assert np.max(np.abs(erf(x) - np.array([math.erf(v) for v in x]))) < 2e-7
