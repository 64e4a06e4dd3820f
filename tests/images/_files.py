"""FITS files for the image tests: astropy's own test data and small synthetic images."""

from __future__ import annotations

from pathlib import Path

import astropy
import numpy as np
import pytest
from astropy.io import fits

ASTROPY = Path(astropy.__file__).parent
FITS_DATA = ASTROPY / "io" / "fits" / "tests" / "data"
WCS_DATA = ASTROPY / "wcs" / "tests" / "data"

#: Files shipped with astropy that hold images with a celestial WCS: extensions (test0),
#: a primary (scale), a tile-compressed image (comp), gzip (dss), SIP + lookup-table
#: distortions (j94f05bgq_flt).
REAL_WITH_WCS = (
    FITS_DATA / "test0.fits",
    FITS_DATA / "scale.fits",
    FITS_DATA / "comp.fits",
    WCS_DATA / "dss.14.29.56-62.41.05.fits.gz",
    WCS_DATA / "j94f05bgq_flt.fits",
    # M13 tile-compressed with RICE_1 and HCOMPRESS_1, an AZP projection (Calabretta &
    # Greisen's test images), a SIP WCS.
    ASTROPY / "io" / "fits" / "hdu" / "compressed" / "tests" / "data" / "m13_rice.fits",
    ASTROPY / "io" / "fits" / "hdu" / "compressed" / "tests" / "data" / "m13_hcomp.fits",
    ASTROPY / "modeling" / "tests" / "data" / "1904-66_AZP.fits",
    ASTROPY / "nddata" / "tests" / "data" / "sip-wcs.fits",
)
#: Files shipped with astropy without a usable image WCS: a linear WCS only, a table only.
REAL_WITHOUT_WCS = (FITS_DATA / "arange.fits", FITS_DATA / "table.fits")


def real(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"astropy {astropy.__version__} ships no {path.name}")
    return path


def tan_header(
    ra: float = 62.0,
    dec: float = -37.0,
    nx: int = 64,
    ny: int = 48,
    scale_arcsec: float = 0.2,
    rotation_deg: float = 20.0,
    band: str = "r",
) -> fits.Header:
    """A TAN image header with the keywords ObsCore is derived from."""
    h = fits.Header()
    rot = np.radians(rotation_deg)
    s = scale_arcsec / 3600.0
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = ra, dec
    h["CRPIX1"], h["CRPIX2"] = (nx + 1) / 2, (ny + 1) / 2
    h["CD1_1"], h["CD1_2"] = -s * np.cos(rot), s * np.sin(rot)
    h["CD2_1"], h["CD2_2"] = s * np.sin(rot), s * np.cos(rot)
    h["RADESYS"] = "ICRS"
    h["DATE-OBS"] = ("2023-10-05T03:04:05.500", "start of the exposure (TAI)")
    h["EXPTIME"] = (30.0, "[s] exposure time")
    h["FILTER"] = (f"{band}_sim_1.4", "filter name")
    h["BAND"] = band
    h["TELESCOP"] = "Rubin:Simonyi"
    h["INSTRUME"] = "LSSTCam"
    h["OBJECT"] = "test field"
    h["COMMENT"] = "a comment card"
    h["HISTORY"] = "a history card"
    h["LONGSTR"] = "a long string value " * 8
    h["HIERARCH ESO DET CHIP ID"] = ("chip 1", "a HIERARCH card")
    h["QUOTE"] = "it's quoted"
    h["BLANKVAL"] = (None, "no value")
    return h


def write_image(
    path: Path, header: fits.Header, *, compressed: bool = False, shape: tuple[int, int] = (48, 64)
) -> Path:
    """An image of noise of ``shape`` (ny, nx) with ``header``, plain or tile-compressed."""
    ny, nx = shape
    data = np.random.default_rng(1).normal(size=(ny, nx)).astype(np.float32)
    if compressed:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header)]).writeto(path)
    else:
        fits.PrimaryHDU(data, header).writeto(path)
    return path
