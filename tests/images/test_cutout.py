"""SODA cutouts against astropy's ``Cutout2D`` and an independent pixel-by-pixel oracle.

For every cut HDU:

* **pixels**: the cutout's data equal ``Cutout2D`` of the original (read whole by astropy) at
  the same box, value for value;
* **WCS**: every cutout pixel has the same sky position under the cutout's WCS (read back from
  its header, SIP and lookup tables included), under ``Cutout2D``'s WCS, and under the
  original WCS at the same pixel of the original;
* **which box**: every original pixel whose centre lies in the region (astropy WCS + skyvault's
  sky predicates, computed for every pixel) is inside the box, and the box is at most two
  pixels wider on any side than those pixels' bounding box.
"""

from __future__ import annotations

import io
import math
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS, FITSFixedWarning

from skyvault.errors import CutoutNoOverlap, LimitExceeded
from skyvault.images.cutout import (
    CutHDU,
    ImageExtent,
    check_filters,
    cutout,
    cutout_spec,
    pixel_bounds,
)
from skyvault.images.soda import Interval, SpatialFilter, parse_pos, parse_soda
from skyvault.sky.geometry import contains_points
from skyvault.sky.regions import Circle, Polygon, RaDecRange

ASTROPY_WCS_DATA = Path(fits.__file__).parent.parent.parent / "wcs" / "tests" / "data"
ARCSEC = 1 / 3600


def tan_header(
    ra: float, dec: float, nx: int, ny: int, scale: float = 0.2 * ARCSEC, rot: float = 0.0
) -> fits.Header:
    """A TAN WCS of ``scale`` degrees per pixel centred on (ra, dec), rotated by ``rot`` deg."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    w.wcs.cd = np.array([[-scale * c, scale * s], [scale * s, scale * c]])
    header = w.to_header()
    header["OBSERVER"] = ("skyvault tests", "a card that must survive the cut")
    return header


def sip_header(ra: float, dec: float, nx: int, ny: int) -> fits.Header:
    """TAN-SIP with strong enough distortion (tens of pixels at the corners) to matter."""
    header = tan_header(ra, dec, nx, ny, scale=1.0 * ARCSEC, rot=20)
    header["CTYPE1"] = "RA---TAN-SIP"
    header["CTYPE2"] = "DEC--TAN-SIP"
    header["A_ORDER"] = 2
    header["B_ORDER"] = 2
    header["A_2_0"] = 2e-4
    header["A_0_2"] = -1e-4
    header["A_1_1"] = 5e-5
    header["B_2_0"] = 1e-4
    header["B_0_2"] = 2e-4
    header["B_1_1"] = -4e-5
    return header


def write(path: Path, hdus: list[Any]) -> Path:
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def noise(ny: int, nx: int, seed: int = 0, dtype: Any = np.float32) -> Any:
    return np.random.default_rng(seed).normal(100, 10, (ny, nx)).astype(dtype)


def read_wcs(header: fits.Header, hdul: fits.HDUList | None = None) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        return WCS(header, fobj=hdul)


def pixels_in_region(wcs: WCS, shape: tuple[int, int], region: SpatialFilter) -> Any:
    """Boolean image: whether each pixel centre's sky position lies in the region."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    icrs = wcs.celestial.pixel_to_world(xx.ravel(), yy.ravel()).icrs  # FK4, FK5... → ICRS
    return contains_points(region, icrs.ra.deg, icrs.dec.deg).reshape(shape)


def check_against_oracles(
    original: Path, result: bytes, boxes: tuple[CutHDU, ...], region: SpatialFilter | None
) -> None:
    with fits.open(original) as src, fits.open(io.BytesIO(result)) as out:
        images = [h for h in out if h.header.get("EXTNAME") not in ("WCSDVARR", "D2IMARR")]
        images = [h for h in images if h.header.get("NAXIS", 0) >= 2]
        assert len(images) == len(boxes)
        for box, cut in zip(boxes, images, strict=True):
            hdu = src[box.index]
            wcs = read_wcs(hdu.header, src)
            ny, nx = box.shape
            # Cutout2D's box for centre c and size n starts at ceil(c - n/2)
            centre = (box.x0 + (nx - 1) / 2, box.y0 + (ny - 1) / 2)
            ref = Cutout2D(hdu.data, centre, (ny, nx), wcs=wcs, mode="strict")
            assert cut.data.shape == ref.data.shape
            np.testing.assert_array_equal(cut.data, ref.data)
            assert cut.data.dtype.kind == ref.data.dtype.kind
            cut_wcs = read_wcs(cut.header, out)
            yy, xx = np.mgrid[0:ny:7j, 0:nx:7j] if ny > 7 and nx > 7 else np.mgrid[0:ny, 0:nx]
            yy, xx = np.round(yy).ravel(), np.round(xx).ravel()
            mine = np.array(cut_wcs.all_pix2world(xx, yy, 0))
            theirs = np.array(ref.wcs.all_pix2world(xx, yy, 0))
            at_source = np.array(wcs.all_pix2world(xx + box.x0, yy + box.y0, 0))
            np.testing.assert_allclose(mine, at_source, rtol=0, atol=1e-9)
            if wcs.cpdis1 is None and wcs.det2im1 is None:
                # Cutout2D shifts CRPIX and SIP but not lookup tables (its WCS is then off by
                # the tables' values; the comparison with the original above stands)
                np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-9)
            # every original card is still there (but the ones describing the layout)
            for card in hdu.header.cards:
                if card.keyword.startswith(("NAXIS", "CRPIX", "BITPIX", "CHECKSUM", "DATASUM")):
                    continue
                if card.keyword in ("SIMPLE", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", ""):
                    continue
                if card.keyword in ("BSCALE", "BZERO", "BLANK") or "EXTVER" in card.keyword:
                    continue
                assert card.keyword in cut.header, card.keyword
                if card.keyword in ("LTV1", "LTV2"):  # IRAF's physical pixels: shifted
                    origin = box.x0 if card.keyword == "LTV1" else box.y0
                    assert cut.header[card.keyword] == card.value - origin
                elif card.keyword in ("CNPIX1", "CNPIX2"):  # DSS: the corner on the plate
                    origin = box.x0 if card.keyword == "CNPIX1" else box.y0
                    assert cut.header[card.keyword] == card.value + origin
                elif card.keyword not in ("HISTORY", "COMMENT"):
                    assert cut.header[card.keyword] == card.value, card.keyword
            assert "skyvault SODA cutout" in str(cut.header["HISTORY"])
            if region is not None:
                inside = pixels_in_region(wcs, (hdu.header["NAXIS2"], hdu.header["NAXIS1"]), region)
                ys, xs = np.nonzero(inside)
                if not len(xs):
                    # smaller than a pixel: the pixel under its centre, and little more
                    assert isinstance(region, Circle)
                    ((x, y),) = wcs.all_world2pix([[region.ra, region.dec]], 0)
                    xs, ys = np.array([round(x)]), np.array([round(y)])
                assert box.x0 <= xs.min() and xs.max() <= box.x1
                assert box.y0 <= ys.min() and ys.max() <= box.y1
                assert xs.min() - box.x0 <= 2 and box.x1 - xs.max() <= 2
                assert ys.min() - box.y0 <= 2 and box.y1 - ys.max() <= 2


@pytest.fixture
def simple(tmp_path: Path) -> Path:
    """A 300 × 200 float32 image at (150, 2) with 0.2″ pixels, rotated 30°."""
    header = tan_header(150.0, 2.0, 300, 200, rot=30)
    return write(tmp_path / "simple.fits", [fits.PrimaryHDU(noise(200, 300), header)])


REGIONS = {
    "circle": Circle(150.0, 2.0, 8 * ARCSEC),
    "circle-off-centre": Circle(150.0 + 10 * ARCSEC, 2.0 - 5 * ARCSEC, 3 * ARCSEC),
    "polygon": Polygon(((149.999, 1.999), (150.002, 1.9995), (150.0015, 2.002), (149.9995, 2.001))),
    "pos-circle": parse_pos("CIRCLE 150.0 2.0 0.0015"),
    "pos-range": parse_pos("RANGE 149.998 150.001 1.999 2.0015"),
    "pos-polygon": parse_pos("POLYGON 149.999 1.999 150.002 1.999 150.0 2.002"),
    "edge-clipped": Circle(150.0 + 28 * ARCSEC, 2.0, 10 * ARCSEC),
    "corner-clipped": RaDecRange(149.9, 149.995, 2.002, 2.1),
    "covers-image": Circle(150.0, 2.0, 1.0),
    "dec-band": parse_pos("RANGE 0 360 2.001 2.002"),
    "tiny": Circle(150.0, 2.0, 0.01 * ARCSEC),
}


@pytest.mark.parametrize("name", sorted(REGIONS))
def test_cutout_matches_cutout2d(simple: Path, name: str) -> None:
    region = REGIONS[name]
    result = cutout(simple, region, image="ivo://test/simple")
    assert result.size == len(result.content) and result.size % 2880 == 0
    check_against_oracles(simple, result.content, result.hdus, region)


def test_edge_clipped_box_is_clipped(simple: Path) -> None:
    (box,) = cutout(simple, REGIONS["edge-clipped"]).hdus
    assert box.x0 == 0 or box.x1 == 299 or box.y0 == 0 or box.y1 == 199
    (whole,) = cutout(simple, REGIONS["covers-image"]).hdus
    assert (whole.x0, whole.x1, whole.y0, whole.y1) == (0, 299, 0, 199)


def test_no_region_is_the_whole_image(simple: Path) -> None:
    result = cutout(simple, None)
    check_against_oracles(simple, result.content, result.hdus, None)
    assert result.hdus[0].shape == (200, 300)


def test_outside_the_image_is_a_clear_error(simple: Path) -> None:
    with pytest.raises(CutoutNoOverlap) as caught:
        cutout(simple, Circle(151.0, 2.0, 0.01), image="ivo://test/simple")
    message = str(caught.value)
    assert "does not overlap image ivo://test/simple" in message
    assert "CIRCLE 151.0 2.0 0.01" in message
    assert str(simple.parent) not in message
    # the far side of the sky: TAN cannot even project it
    with pytest.raises(CutoutNoOverlap):
        cutout(simple, Circle(330.0, -2.0, 1.0))
    with pytest.raises(CutoutNoOverlap):
        cutout(simple, parse_pos("RANGE 0 360 -90 -1"))


def test_ra_wrap(tmp_path: Path) -> None:
    """An image straddling RA 0: regions on either side and across it."""
    header = tan_header(0.0, -30.0, 400, 300, scale=1 * ARCSEC)
    path = write(tmp_path / "wrap.fits", [fits.PrimaryHDU(noise(300, 400, 3), header)])
    for region in (
        Circle(359.99, -30.0, 20 * ARCSEC),
        Circle(0.01, -30.01, 20 * ARCSEC),
        parse_pos("RANGE -0.02 0.02 -30.01 -29.99"),  # 359.98 to 0.02
        parse_pos("POLYGON 359.98 -30.01 0.02 -30.01 0.0 -29.99"),
    ):
        result = cutout(path, region)
        check_against_oracles(path, result.content, result.hdus, region)
        (box,) = result.hdus
        assert box.shape != (300, 400)


def test_pole(tmp_path: Path) -> None:
    """An image on the north celestial pole: every RA meets there."""
    header = tan_header(45.0, 90.0, 300, 300, scale=1 * ARCSEC)
    path = write(tmp_path / "pole.fits", [fits.PrimaryHDU(noise(300, 300, 4), header)])
    for region in (
        Circle(0.0, 90.0, 30 * ARCSEC),
        Circle(200.0, 89.99, 10 * ARCSEC),
        parse_pos("RANGE 0 360 89.99 90"),
        parse_pos("RANGE 10 100 89.98 90"),
        parse_pos("POLYGON 0 89.99 120 89.99 240 89.99"),
    ):
        result = cutout(path, region)
        check_against_oracles(path, result.content, result.hdus, region)


def test_sip_distortion(tmp_path: Path) -> None:
    """SIP: the polynomials are relative to CRPIX, so the shifted header must keep them valid."""
    header = sip_header(210.0, 54.0, 600, 500)
    path = write(tmp_path / "sip.fits", [fits.PrimaryHDU(noise(500, 600, 5), header)])
    wcs = read_wcs(header)
    assert wcs.sip is not None
    corner = wcs.all_pix2world([[0, 0]], 0) - wcs.wcs_pix2world([[0, 0]], 0)
    assert np.abs(corner).max() > 5 * ARCSEC  # the distortion is not negligible
    ra, dec = wcs.all_pix2world([[500, 80]], 0)[0]
    for region in (Circle(ra, dec, 20 * ARCSEC), Circle(210.0, 54.0, 40 * ARCSEC)):
        result = cutout(path, region)
        with fits.open(io.BytesIO(result.content)) as out:
            assert out[0].header["A_2_0"] == 2e-4
            assert read_wcs(out[0].header).sip is not None
        check_against_oracles(path, result.content, result.hdus, region)


def test_astropy_sip_test_file(tmp_path: Path) -> None:
    """astropy's own SIP header (an image of its NAXISn made up here)."""
    header = fits.getheader(ASTROPY_WCS_DATA / "sip.fits")
    nx = ny = 256  # the header has none; CRPIX is 128
    path = write(tmp_path / "sip.fits", [fits.PrimaryHDU(noise(ny, nx, 6), header)])
    wcs = read_wcs(header)
    ra, dec = wcs.all_pix2world([[nx * 0.7, ny * 0.3]], 0)[0]
    region = Circle(ra, dec, 40 * float(np.abs(wcs.pixel_scale_matrix).max()))
    result = cutout(path, region)
    check_against_oracles(path, result.content, result.hdus, region)


def test_lookup_table_distortion() -> None:
    """astropy's test file with Paper IV lookup tables (CPDIS and D2IM in other HDUs)."""
    path = ASTROPY_WCS_DATA / "dist_lookup.fits.gz"
    with fits.open(path) as hdul:
        wcs = read_wcs(hdul[1].header, hdul)
        assert wcs.cpdis1 is not None and wcs.det2im1 is not None
        ra, dec = wcs.all_pix2world([[70, 30]], 0)[0]
    region = Circle(ra, dec, 15 * float(np.abs(wcs.pixel_scale_matrix).max()))
    result = cutout(path, region)
    check_against_oracles(path, result.content, result.hdus, region)


@pytest.fixture
def mosaic(tmp_path: Path) -> Path:
    """An empty primary with metadata and three detector HDUs side by side (0.2″ pixels)."""
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "skyvault-sim"
    detectors = []
    for i, ra in enumerate((150.0, 150.0 + 40 * ARCSEC, 150.3)):
        hdu = fits.ImageHDU(noise(200, 200, 10 + i), tan_header(ra, 2.0, 200, 200), name=f"CCD{i}")
        detectors.append(hdu)
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.zeros(3))], name="T")
    return write(tmp_path / "mosaic.fits", [primary, *detectors, table])


def test_multi_hdu(mosaic: Path) -> None:
    """A region across CCD0 and CCD1 cuts both; CCD2, far away, and the table are dropped."""
    region = Circle(150.0 + 20 * ARCSEC, 2.0, 6 * ARCSEC)
    result = cutout(mosaic, region)
    assert [b.name for b in result.hdus] == ["CCD0", "CCD1"]
    check_against_oracles(mosaic, result.content, result.hdus, region)
    with fits.open(io.BytesIO(result.content)) as out:
        assert len(out) == 3
        assert out[0].header["TELESCOP"] == "skyvault-sim"
        assert out[0].data is None
        assert [h.name for h in out[1:]] == ["CCD0", "CCD1"]
    only = cutout(mosaic, region, hdus=["CCD1"])
    assert [b.name for b in only.hdus] == ["CCD1"]
    with pytest.raises(CutoutNoOverlap):  # CCD0 and CCD1 are cut, but CCD2 was asked for
        cutout(mosaic, region, hdus=[3])
    from skyvault.errors import InternalError

    with pytest.raises(InternalError, match="names an HDU 'NOPE' the image lacks"):
        cutout(mosaic, region, hdus=["NOPE"])
    far = cutout(mosaic, Circle(150.3, 2.0, 5 * ARCSEC))
    assert [b.index for b in far.hdus] == [3]
    with pytest.raises(CutoutNoOverlap, match=r"does not overlap image mosaic\.fits"):
        cutout(mosaic, Circle(150.15, 2.0, 5 * ARCSEC))


def test_compressed(tmp_path: Path) -> None:
    """Tile-compressed (.fits.fz): RICE-quantised floats and lossless integers."""
    header = tan_header(150.0, 2.0, 300, 200, rot=10)
    floats = fits.CompImageHDU(noise(200, 300, 7), header, compression_type="RICE_1")
    ints = fits.CompImageHDU(
        noise(200, 300, 8, np.int32), tan_header(150.0, 2.0, 300, 200), tile_shape=(32, 32)
    )
    path = write(tmp_path / "image.fits.fz", [fits.PrimaryHDU(), floats, ints])
    region = REGIONS["circle-off-centre"]
    result = cutout(path, region)
    assert [b.index for b in result.hdus] == [1, 2]
    check_against_oracles(path, result.content, result.hdus, region)
    with fits.open(io.BytesIO(result.content)) as out:
        assert not any(isinstance(h, fits.CompImageHDU) for h in out)
        assert out[2].data.dtype == np.dtype(">i4")


def test_scaled_and_unsigned_integers(tmp_path: Path) -> None:
    """BSCALE/BZERO (scaled int16) and uint16: the cutout holds what astropy reads."""
    header = tan_header(150.0, 2.0, 300, 200)
    scaled = fits.PrimaryHDU(noise(200, 300, 9, np.int16), header)
    scaled.scale("int16", bscale=0.5, bzero=10.0)
    scaled.header["BSCALE"] = 0.5
    unsigned = fits.ImageHDU(noise(200, 300, 1, np.uint16), tan_header(150.0, 2.0, 300, 200))
    path = write(tmp_path / "scaled.fits", [scaled, unsigned])
    with fits.open(path) as check:
        assert "BZERO" in check[0].header and "BZERO" in check[1].header
    region = REGIONS["circle"]
    result = cutout(path, region)
    check_against_oracles(path, result.content, result.hdus, region)


def test_checksums_recomputed(tmp_path: Path) -> None:
    header = tan_header(150.0, 2.0, 300, 200)
    path = tmp_path / "sums.fits"
    fits.PrimaryHDU(noise(200, 300), header).writeto(path, checksum=True)
    result = cutout(path, REGIONS["circle"])
    with fits.open(io.BytesIO(result.content), checksum=True) as out:
        assert out[0].verify_checksum() == 1 and out[0].verify_datasum() == 1


def test_cube_keeps_its_other_axes(tmp_path: Path) -> None:
    header = tan_header(150.0, 2.0, 120, 100)
    header["CTYPE3"] = "WAVE"
    header["CRVAL3"] = 5e-7
    header["CDELT3"] = 1e-9
    header["CRPIX3"] = 1
    data = np.random.default_rng(2).normal(size=(4, 100, 120)).astype(np.float32)
    path = write(tmp_path / "cube.fits", [fits.PrimaryHDU(data, header)])
    result = cutout(path, Circle(150.0, 2.0, 3 * ARCSEC))
    (box,) = result.hdus
    with fits.open(io.BytesIO(result.content)) as out:
        np.testing.assert_array_equal(
            out[0].data, data[:, box.y0 : box.y1 + 1, box.x0 : box.x1 + 1]
        )
        assert out[0].header["CRPIX3"] == 1


def test_galactic_wcs(tmp_path: Path) -> None:
    """An image whose WCS is galactic: the ICRS region is converted before projecting."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    w.wcs.crval = [120.0, 10.0]
    w.wcs.crpix = [100.5, 100.5]
    w.wcs.cdelt = [-1 * ARCSEC, 1 * ARCSEC]
    path = write(tmp_path / "gal.fits", [fits.PrimaryHDU(noise(200, 200), w.to_header())])
    from astropy.coordinates import SkyCoord

    icrs = SkyCoord(120.01, 10.01, unit="deg", frame="galactic").icrs
    region = Circle(icrs.ra.deg, icrs.dec.deg, 15 * ARCSEC)
    (box,) = cutout(path, region).hdus
    x, y = w.all_world2pix([[120.01, 10.01]], 0)[0]
    assert box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1
    assert box.shape[0] == pytest.approx(31, abs=2) and box.shape[1] == pytest.approx(31, abs=2)


def test_band_time_pol_against_the_extent(simple: Path) -> None:
    extent = ImageExtent(em_min=5.4e-7, em_max=7.0e-7, t_min=60310.1, t_max=60310.2)
    spec = parse_soda(
        {
            "ID": ["ivo://x"],
            "CIRCLE": ["150 2 0.001"],
            "BAND": ["6e-7 +Inf"],
            "TIME": ["60310 60311"],
        }
    ).single()
    assert cutout_spec(simple, spec, extent).hdus
    with pytest.raises(CutoutNoOverlap, match=r"BAND 1e-06 \+Inf does not overlap image ivo://x"):
        check_filters("ivo://x", extent, band=Interval(1e-6, math.inf))
    with pytest.raises(CutoutNoOverlap, match=r"covers 5\.4e-07 to 7e-07 m \(BAND is a wavelength"):
        check_filters("ivo://x", extent, band=Interval(500, 550))
    with pytest.raises(CutoutNoOverlap, match="TIME -Inf 60000 does not overlap"):
        check_filters("ivo://x", extent, time=Interval(-math.inf, 60000))
    with pytest.raises(CutoutNoOverlap, match="has no polarisation states"):
        check_filters("ivo://x", extent, pol=["I"])
    with pytest.raises(
        CutoutNoOverlap, match="POL V does not overlap image ivo://x, which has I Q"
    ):
        check_filters("ivo://x", ImageExtent(pol_states="/I/Q/"), pol=["V"])
    check_filters("ivo://x", ImageExtent(pol_states="/I/Q/"), pol=["V", "Q"])
    # a limit not recorded does not constrain
    check_filters("ivo://x", ImageExtent(), band=Interval(1, 2), time=Interval(0, 1))
    bad = parse_soda({"ID": ["ivo://x"], "TIME": ["50000 50001"]}).single()
    with pytest.raises(CutoutNoOverlap, match=r"taken MJD 60310\.1 to 60310\.2"):
        cutout_spec(simple, bad, extent)


def test_size_limit(simple: Path) -> None:
    with pytest.raises(LimitExceeded, match="above the limit") as caught:
        cutout(simple, REGIONS["covers-image"], max_bytes=100_000)
    assert caught.value.hint == "ask for a smaller region"
    assert cutout(simple, REGIONS["circle"], max_bytes=100_000).hdus


def test_pixel_bounds_without_a_celestial_wcs() -> None:
    header = fits.Header({"NAXIS": 2, "NAXIS1": 10, "NAXIS2": 10, "CTYPE1": "X", "CTYPE2": "Y"})
    assert pixel_bounds(header, Circle(1, 2, 3)) is None


def _big_image(path: Path, n: int, *, compressed: bool = False, scaled: bool = False) -> Path:
    header = tan_header(150.0, 2.0, n, n)
    data = np.zeros((n, n), dtype=np.int16 if scaled else np.float32)
    data[::97, ::89] = 7
    if compressed:
        hdu: Any = fits.CompImageHDU(data, header, compression_type="GZIP_1", tile_shape=(16, n))
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    else:
        hdu = fits.PrimaryHDU(data, header)
        if scaled:
            hdu.header["BSCALE"] = 2.0
            hdu.header["BZERO"] = 1.0
        hdu.writeto(path)
    return path


@pytest.mark.parametrize("kind", ["compressed", "scaled"])
def test_memory_bounded(tmp_path: Path, kind: str) -> None:
    """A 256-pixel cutout of a 4096² image allocates a few times the cutout, not the image:
    reading ``.data`` would allocate ≥ 64 MiB (decompressed / scaled to float32)."""
    n = 4096
    path = _big_image(
        tmp_path / f"big-{kind}.fits", n, compressed=kind == "compressed", scaled=kind == "scaled"
    )
    region = Circle(150.0, 2.0, 128 * 0.2 * ARCSEC)
    cutout(path, region)  # warm imports and caches
    tracemalloc.start()
    try:
        result = cutout(path, region)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    image_bytes = n * n * 4
    assert peak < image_bytes / 8, f"peak {peak / 2**20:.1f} MiB"
    (box,) = result.hdus
    assert box.shape == (258, 258) or abs(box.shape[0] - 257) <= 2


def _rss_file_bytes() -> int:
    """Resident file-backed memory of this process (Linux ``RssFile``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status RssFile on this system")


def test_memory_mapped_read_touches_only_the_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain float32 4096² file is sliced from its memory map: while it is mapped, the
    pages resident for it are the box's rows (258 rows of 16 KiB: 4 MiB) and the kernel's
    read-around of them, not the 64 MiB of the image."""
    import skyvault.images.cutout as module

    n = 4096
    path = _big_image(tmp_path / "big-plain.fits", n)
    region = Circle(150.0, 2.0, 128 * 0.2 * ARCSEC)
    seen: dict[str, int] = {}
    read_box = module._read_box

    def measured(*args: Any, **kwargs: Any) -> Any:
        before = _rss_file_bytes()
        out = read_box(*args, **kwargs)
        seen["resident"] = _rss_file_bytes() - before
        seen["mapped"] = int(kwargs.get("mapped_file", False))
        return out

    monkeypatch.setattr(module, "_read_box", measured)
    tracemalloc.start()
    try:
        result = cutout(path, region)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen["mapped"] == 1
    assert seen["resident"] < n * n * 4 / 4, f"{seen['resident'] / 2**20:.1f} MiB resident"
    assert peak < n * n * 4 / 8
    check = fits.open(path, memmap=True)
    (box,) = result.hdus
    with check, fits.open(io.BytesIO(result.content)) as out:
        np.testing.assert_array_equal(
            out[0].data, check[0].data[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1]
        )


def test_real_dss_image_gzipped() -> None:
    """A real DSS plate scan that astropy ships (gzip-compressed FITS, read through
    ``.section``): wcslib takes its WCS from the DSS plate solution, whose pixels are counted
    from ``CNPIXn`` on the plate; the cut shifts those as well as CRPIX."""
    path = ASTROPY_WCS_DATA / "dss.14.29.56-62.41.05.fits.gz"
    with fits.open(path) as hdul:
        wcs = read_wcs(hdul[0].header)
        ra, dec = wcs.all_pix2world([[30, 60]], 0)[0]
    region = Circle(ra, dec, 10 * float(np.abs(wcs.pixel_scale_matrix).max()))
    result = cutout(path, region)
    assert [b.index for b in result.hdus] == [0]
    check_against_oracles(path, result.content, result.hdus, region)


def test_unreadable_files_are_the_archive_s_fault(tmp_path: Path) -> None:
    from skyvault.errors import InternalError

    with pytest.raises(InternalError, match="the file of image ivo://x/1 is missing") as missing:
        cutout(tmp_path / "gone.fits", None, image="ivo://x/1")
    assert str(tmp_path) not in str(missing.value)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a FITS file at all" * 200)
    with pytest.raises(InternalError, match="cannot be read as FITS") as bad:
        cutout(junk, None, image="ivo://x/2")
    assert str(tmp_path) not in str(bad.value)
    table = write(
        tmp_path / "table.fits",
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1])])],
    )
    with pytest.raises(InternalError, match="has no image HDU with a celestial WCS"):
        cutout(table, Circle(1, 2, 3))


@pytest.fixture(scope="module")
def random_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160 × 120 image, 1″ pixels, rotated 37°, near RA 0 at dec 60 (RA wraps inside)."""
    header = tan_header(0.01, 60.0, 160, 120, scale=1 * ARCSEC, rot=37)
    path = tmp_path_factory.mktemp("random") / "target.fits"
    return write(path, [fits.PrimaryHDU(noise(120, 160, 21), header)])


def _random_region(rng: np.random.Generator) -> SpatialFilter:
    """Regions of every shape around the image: inside, across edges, covering, missing."""
    ra = (0.01 + rng.normal(0, 0.03) / math.cos(math.radians(60))) % 360
    dec = 60.0 + rng.normal(0, 0.03)
    kind = rng.integers(3)
    size = float(rng.choice([2, 10, 40, 150])) * ARCSEC * rng.uniform(0.5, 1.5)
    if kind == 0:
        return Circle(ra, dec, size)
    if kind == 1:
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        if np.max(np.diff(np.append(angles, angles[0] + 2 * math.pi))) >= math.pi:
            angles = np.linspace(0, 2 * math.pi, n, endpoint=False)
        vertices = [
            (
                (ra + size * math.cos(a) / math.cos(math.radians(dec))) % 360,
                dec + size * math.sin(a),
            )
            for a in angles
        ]
        return Polygon(tuple(vertices))
    half_ra = size / math.cos(math.radians(dec))
    return parse_pos(f"RANGE {ra - half_ra} {ra + half_ra} {dec - size} {dec + size}")


@pytest.mark.parametrize("seed", range(40))
def test_random_regions_against_the_oracles(random_target: Path, seed: int) -> None:
    """Random circles, polygons and ranges: a cutout wherever the oracle finds pixels of the
    region, ``CutoutNoOverlap`` where it finds none and no pixel box could hold one."""
    rng = np.random.default_rng(seed)
    region = _random_region(rng)
    with fits.open(random_target) as hdul:
        inside = pixels_in_region(read_wcs(hdul[0].header), (120, 160), region)
    try:
        result = cutout(random_target, region)
    except CutoutNoOverlap:
        assert not inside.any(), "pixels of the region were inside the image"
        return
    if inside.any():
        check_against_oracles(random_target, result.content, result.hdus, region)
    else:  # the region meets the image between pixel centres: a box of a pixel or two
        (box,) = result.hdus
        assert box.shape[0] <= 3 and box.shape[1] <= 3


def test_extent_from_an_obscore_row() -> None:
    row = {"em_min": 5.4e-7, "em_max": 7e-7, "t_min": None, "pol_states": "/I/"}
    assert ImageExtent.from_obscore(row) == ImageExtent(5.4e-7, 7e-7, None, None, "/I/")


ASTROPY_FITS_DATA = Path(fits.__file__).parent / "tests" / "data"


@pytest.mark.parametrize(
    "name",
    ["test0.fits", "scale.fits", "comp.fits", "dss.14.29.56-62.41.05.fits.gz"],
)
def test_real_files_astropy_ships(name: str) -> None:
    """Every image HDU with a celestial WCS of astropy's own test files (extensions, a
    scaled primary, a tile-compressed image whose WCS is FK4 B1950, a DSS scan), cut around
    a pixel in each: the ICRS region is taken to the image's frame."""
    path = ASTROPY_FITS_DATA / name
    if not path.is_file():
        path = ASTROPY_WCS_DATA / name
    if not path.is_file():
        pytest.skip(f"this astropy ships no {name}")
    cut_any = False
    with fits.open(path) as hdul:
        targets = []
        for index, hdu in enumerate(hdul):
            if hdu.header.get("NAXIS", 0) < 2 or not hasattr(hdu, "section"):
                continue
            wcs = read_wcs(hdu.header, hdul)
            if not wcs.has_celestial:
                continue
            ny, nx = hdu.data.shape[-2:]
            at = wcs.celestial.pixel_to_world(nx * 0.3, ny * 0.6).icrs
            radius = 4 * float(np.max(np.abs(wcs.celestial.pixel_scale_matrix)))
            targets.append((index, Circle(at.ra.deg, at.dec.deg, radius)))
    for index, region in targets:
        result = cutout(path, region, hdus=[index])
        assert [b.index for b in result.hdus] == [index]
        check_against_oracles(path, result.content, result.hdus, region)
        cut_any = True
    assert cut_any


def test_write_cutout_streams_to_a_non_seekable_sink(simple: Path) -> None:
    """The FITS file goes out through ``write`` alone (a socket, a pipe), identical to the
    in-memory cutout."""
    from skyvault.images.cutout import write_cutout

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def writable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def write(self, data: Any) -> int:
            chunk = memoryview(data).cast("B").tobytes()
            self.chunks.append(chunk)
            return len(chunk)

    sink = Sink()
    written = write_cutout(simple, REGIONS["polygon"], sink, image="ivo://test/simple")
    expected = cutout(simple, REGIONS["polygon"], image="ivo://test/simple")
    assert written.hdus == expected.hdus
    assert b"".join(sink.chunks) == expected.content
    assert written.size == expected.size


def test_every_combination_of_an_async_request(simple: Path, mosaic: Path) -> None:
    """One outcome per combination, in order; the misses are SODA error texts."""
    from skyvault.errors import CatalogNotFound, InternalError
    from skyvault.images.cutout import ArchivedImage, cutouts

    archive = {
        "ivo://x/simple": ArchivedImage(simple, ImageExtent(t_min=60000.0, t_max=60000.1)),
        "ivo://x/ccd1": ArchivedImage(mosaic, ImageExtent(), hdus=(2,)),
    }

    def resolve(id_: str) -> ArchivedImage:
        if id_ not in archive:
            raise CatalogNotFound(f"no image {id_}")
        return archive[id_]

    request = parse_soda(
        {
            "ID": ["ivo://x/simple", "ivo://x/ccd1", "ivo://x/nope"],
            "CIRCLE": ["150.006 2.0 0.003"],  # across the simple image and CCD1
            "TIME": ["59000 60000.05", "61000 +Inf"],
        }
    )
    outcomes = list(cutouts(request, resolve))
    assert [(o.spec.id, o.spec.time) for o in outcomes] == [
        (s.id, s.time) for s in request.cutouts()
    ]
    assert len(outcomes) == 6
    made = [o for o in outcomes if o.cutout is not None]
    assert [(o.spec.id, o.spec.time) for o in made] == [
        ("ivo://x/simple", Interval(59000, 60000.05)),
        ("ivo://x/ccd1", Interval(59000, 60000.05)),
        ("ivo://x/ccd1", Interval(61000, math.inf)),
    ]
    assert [b.name for b in made[1].cutout.hdus] == ["CCD1"]  # type: ignore[union-attr]
    errors = [o.error for o in outcomes if o.cutout is None]
    assert errors[0] is not None and errors[0].startswith("UsageError: TIME 61000.0 +Inf")
    assert errors[1] == errors[2] == "UsageError: no image ivo://x/nope"

    def broken(id_: str) -> ArchivedImage:
        return ArchivedImage(simple.parent / "gone.fits", ImageExtent())

    with pytest.raises(InternalError, match="missing from the archive"):
        list(cutouts(request, broken))
