"""The header reader against astropy.io.fits, card by card; the footprint against astropy.wcs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame

from skyvault.images.fitsheader import (
    NoCelestialWcs,
    NotFits,
    footprint,
    parse_cards,
    read_headers,
)
from tests.images._files import REAL_WITH_WCS, REAL_WITHOUT_WCS, real, tan_header, write_image

ALL_REAL = sorted(
    {*REAL_WITH_WCS, *REAL_WITHOUT_WCS, *Path(REAL_WITH_WCS[0]).parent.glob("*.fits")},
    key=str,
)


def _same_value(mine: str | None, theirs: Any) -> bool:
    """Whether a stored value text says what astropy's parsed value is."""
    if isinstance(theirs, fits.card.Undefined):
        return mine is None
    if isinstance(theirs, bool):
        return mine == ("T" if theirs else "F")
    if isinstance(theirs, (int, float, complex)) and not isinstance(theirs, bool):
        assert mine is not None
        text = mine.replace("D", "E").replace("d", "e")
        if isinstance(theirs, complex):
            re_, im = text.strip("()").split(",")
            return complex(float(re_), float(im)) == theirs
        return float(text) == float(theirs) or (np.isnan(float(text)) and np.isnan(theirs))
    return mine == theirs


def _astropy_cards(path: Path) -> list[list[tuple[str, Any, str]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdul:
            return [[(c.keyword, c.value, c.comment) for c in h.header.cards] for h in hdul]


@pytest.mark.parametrize("path", ALL_REAL, ids=lambda p: p.name)
def test_every_card_of_astropys_test_files_matches_astropy(path: Path) -> None:
    try:
        expected = _astropy_cards(path)
    except Exception as exc:  # a file astropy itself cannot open is not a reference
        pytest.skip(f"astropy cannot open {path.name}: {exc}")
    hdus = read_headers(path)
    assert len(hdus) == len(expected)
    for hdu, cards in zip(hdus, expected, strict=True):
        assert len(hdu.cards) == len(cards), f"HDU {hdu.index}"
        for (keyword, value, comment), (keyword_a, value_a, comment_a) in zip(
            hdu.cards, cards, strict=True
        ):
            assert keyword == keyword_a
            assert _same_value(value, value_a), (keyword, value, value_a)
            assert (comment or "") == comment_a, keyword


@pytest.mark.parametrize("compressed", [False, True])
def test_unusual_cards_match_astropy(tmp_path: Path, compressed: bool) -> None:
    path = write_image(tmp_path / "x.fits", tan_header(), compressed=compressed)
    expected = _astropy_cards(path)
    hdus = read_headers(path)
    image = hdus[-1]
    got = {k: v for k, v, _ in image.cards}
    assert got["LONGSTR"] == ("a long string value " * 8).rstrip()
    assert got["ESO DET CHIP ID"] == "chip 1"
    assert got["QUOTE"] == "it's quoted"
    assert got["BLANKVAL"] is None
    assert [c[0] for c in image.cards] == [c[0] for c in expected[-1]]
    assert image.is_image and image.axes == (64, 48)


def test_record_valued_keywords_read_as_astropy_reads_them() -> None:
    text = "".join(
        card.ljust(80)
        for card in (
            "DP1     = 'AXIS.1: 1'",
            "DP1     = 'NAXES: 2' / n",
            "DP2     = 'not: a'",
            "END",
        )
    )
    assert parse_cards(text) == [("DP1.AXIS.1", "1", None), ("DP1.NAXES", "2", "n"),
                                 ("DP2", "not: a", None)]  # fmt: skip
    header = fits.Header.fromstring(text)
    assert [c.keyword for c in header.cards] == ["DP1.AXIS.1", "DP1.NAXES", "DP2"]


def test_cards_seen_before_parse_as_when_first_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_cards keeps the cards it parsed by their text (a survey's files share most
    cards): a card met again, in another header and another place (after a long string,
    alone, before END), reads as a fresh parse reads it."""
    from skyvault.images import fitsheader

    def header(*cards: str) -> str:
        return "".join(c.ljust(80) for c in (*cards, "END"))

    texts = [
        header("LONG    = 'abc&'", "CONTINUE  'def&' / more", "CONTINUE  'ghi'", "X       = 1"),
        header("CONTINUE  'def&' / more", "CONTINUE  'ghi'", "LONG    = 'abc&'"),
        header("DP1     = 'AXIS.1: 1'", "X       = 1 / one", "HIERARCH ESO DET = 'c' / x"),
        header("COMMENT   x = 'y'", "X       = 1", "", "BLANK   =", "S       = 'it''s' / q"),
        header("X       = 1 / one", "DP1     = 'AXIS.1: 1'", "LONG    = 'abc&'"),
    ]

    def fresh(text: str) -> list[Any]:
        fitsheader._PARSED.clear()
        return fitsheader.parse_cards(text)

    expected = [fresh(t) for t in texts]
    fitsheader._PARSED.clear()
    for order in (texts, texts[::-1], texts + texts):
        for text in order:
            assert fitsheader.parse_cards(text) == expected[texts.index(text)]
    assert fitsheader._PARSED  # the cache was used
    assert expected[0][0] == ("LONG", "abcdefghi", "more")
    assert expected[1][-1] == ("LONG", "abc&", None)
    # A full cache is emptied, not grown.
    monkeypatch.setattr(fitsheader, "_PARSED_MAX", 2)
    for text in texts:
        assert fitsheader.parse_cards(text) == expected[texts.index(text)]
        assert len(fitsheader._PARSED) <= 2 + 5


def test_not_fits_and_truncated_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.fits").write_bytes(b"hello" * 1000)
    with pytest.raises(NotFits):
        read_headers(tmp_path / "a.fits")
    path = write_image(tmp_path / "b.fits", tan_header())
    (tmp_path / "c.fits").write_bytes(path.read_bytes()[:2000])
    with pytest.raises(NotFits):
        read_headers(tmp_path / "c.fits")


def _astropy_footprint(path: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdul:
            wcs = WCS(hdul[index].header, fobj=hdul)
            corners = wcs.calc_footprint(center=False)
            shape = hdul[index].shape
            centre = wcs.all_pix2world([[(shape[1] + 1) / 2, (shape[0] + 1) / 2]], 1)
            # In ICRS, as ObsCore wants them (comp.fits is FK4 B1950).
            frame = wcs_to_celestial_frame(wcs)
            points = SkyCoord(np.vstack([corners, centre]) * u.deg, frame=frame).icrs
    icrs = np.stack([points.ra.deg, points.dec.deg], axis=1)
    return icrs[:4], icrs[4]


def _sep_arcsec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from astropy.coordinates import angular_separation

    ra1, de1, ra2, de2 = (np.radians(x) for x in (a[..., 0], a[..., 1], b[..., 0], b[..., 1]))
    return np.degrees(np.asarray(angular_separation(ra1, de1, ra2, de2))) * 3600


@pytest.mark.parametrize("path", REAL_WITH_WCS, ids=lambda p: p.name)
def test_footprint_matches_astropy_calc_footprint(path: Path) -> None:
    images = [h for h in read_headers(real(path)) if h.is_image]
    measured = 0
    for hdu in images:
        try:
            fp = footprint(hdu)
        except NoCelestialWcs:
            continue
        corners, centre = _astropy_footprint(path, hdu.index)
        # Lookup-table distortions (j94f05bgq_flt) are left out: a fraction of an arcsecond.
        assert _sep_arcsec(fp.corners, corners).max() < 0.5
        assert _sep_arcsec(np.array(fp.centre), centre) < 0.5
        measured += 1
    assert measured >= 1


def test_footprint_of_rotated_tan_image(tmp_path: Path) -> None:
    path = write_image(tmp_path / "x.fits", tan_header(rotation_deg=33.0, scale_arcsec=0.4))
    fp = footprint(read_headers(path)[0])
    corners, centre = _astropy_footprint(path, 0)
    assert _sep_arcsec(fp.corners, corners).max() < 1e-6
    assert _sep_arcsec(np.array(fp.centre), centre) < 1e-6
    assert fp.pixel_scale == pytest.approx(0.4, rel=1e-6)
    assert fp.shape == (64, 48)


def test_image_without_celestial_axes_says_so(tmp_path: Path) -> None:
    header = fits.Header({"CTYPE1": "LINEAR", "CTYPE2": "LINEAR"})
    path = write_image(tmp_path / "x.fits", header)
    with pytest.raises(NoCelestialWcs, match="no celestial"):
        footprint(read_headers(path)[0])


def _tan_hdu(ra: float, dec: float, extra: tuple[str, ...] = ()) -> Any:
    from skyvault.images.fitsheader import HduHeader, parse_cards

    cards = [
        "SIMPLE  =                    T", "BITPIX  =                  -32",
        "NAXIS   =                    2",
        "NAXIS1  =                  100", "NAXIS2  =                   80",
        "CTYPE1  = 'RA---TAN'", "CTYPE2  = 'DEC--TAN'", "CRPIX1  = 50.5", "CRPIX2  = 40.5",
        f"CRVAL1  = {ra!r}", f"CRVAL2  = {dec!r}", "CD1_1   = -1.1E-04", "CD1_2   = 3.0E-05",
        "CD2_1   = 2.0E-05", "CD2_2   = 1.2E-04", "RADESYS = 'ICRS'", "MJD-OBS = 60000.5",
        *extra, "END",
    ]  # fmt: skip
    text = "".join(c.ljust(80) for c in cards)
    parsed = parse_cards(text)
    return HduHeader(0, parsed, text.encode(), (100, 80), True, {k: v for k, v, _ in parsed})


@pytest.mark.parametrize("extra", [(), ("LONPOLE = 170.0",), ("LATPOLE = -10.0",)])
def test_a_repointed_tan_wcs_gives_the_footprint_of_a_fresh_one(extra: tuple[str, ...]) -> None:
    """Images of one TAN set-up reuse one wcslib WCS, repointed: every footprint equals the
    one of a WCS parsed afresh, whichever pointing came first (a pole's included)."""
    from concurrent.futures import ThreadPoolExecutor

    from skyvault.images import fitsheader

    rng = np.random.default_rng(7)
    pointings = [(0.0, 90.0), (10.0, -90.0), (359.999, 0.0), (0.0, 89.99), (180.0, -89.99)]
    pointings += [(float(rng.uniform(0, 360)), float(rng.uniform(-90, 90))) for _ in range(60)]
    hdus = [_tan_hdu(ra, dec, extra) for ra, dec in pointings]

    def fresh(hdu: Any) -> Any:
        fitsheader._TEMPLATES.__dict__.clear()
        return footprint(hdu)

    expected = [fresh(h) for h in hdus]
    for order in (hdus, hdus[::-1]):
        fitsheader._TEMPLATES.__dict__.clear()
        for hdu in order:
            got, want = footprint(hdu), expected[hdus.index(hdu)]
            np.testing.assert_array_equal(got.corners, want.corners)
            assert got.centre == want.centre and got.pixel_scale == want.pixel_scale
        assert len(fitsheader._TEMPLATES.by_setup) == 1  # one set-up, one WCS
    with ThreadPoolExecutor(4) as pool:
        for got, want in zip(pool.map(footprint, hdus * 3), expected * 3, strict=True):
            np.testing.assert_array_equal(got.corners, want.corners)
    # And against astropy's own WCS of the same cards.
    for hdu, want in zip(hdus, expected, strict=True):
        wcs = WCS(fits.Header.fromstring(hdu.text.decode()))
        corners = wcs.calc_footprint(axes=(100, 80), center=False)
        sep = SkyCoord(corners * u.deg).separation(SkyCoord(want.corners * u.deg))
        assert sep.max() < 1e-9 * u.deg
