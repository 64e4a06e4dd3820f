"""FITS headers, card by card, and the celestial footprint of an image HDU's WCS.

:func:`read_headers` walks the HDUs of a FITS file reading only their headers (it seeks
over the data), and splits every header into its logical cards: keyword, value text and
comment, as astropy presents them (a long string's ``CONTINUE`` cards are one card,
``HIERARCH`` keywords lose that prefix, commentary cards have their text as value).  A plain
FITS file is read directly — an astropy ``getheader`` costs about as much per file as the
whole ingest may (see ``benchmarks/bench_images.py``); tile-compressed images (``.fits.fz``)
and gzip files go through ``astropy.io.fits``, which rebuilds a compressed image's header,
and that header is split the same way.

:func:`footprint` evaluates the WCS with wcslib (``astropy.wcs.Wcsprm``) at the image's
corners and centre; headers with distortions wcslib does not apply by itself (SIP,
lookup tables) use ``astropy.wcs.WCS``, which does.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Card",
    "Footprint",
    "HduHeader",
    "NoCelestialWcs",
    "NotFits",
    "footprint",
    "parse_cards",
    "read_file",
    "read_headers",
]

BLOCK = 2880
CARD = 80


class NotFits(Exception):
    """The file is not a FITS file (or is truncated inside a header)."""


class NoCelestialWcs(Exception):
    """The HDU has no WCS with two celestial axes that maps its corners onto the sky."""


class _UnreadableDistortion(Exception):
    """astropy cannot build the WCS with its distortions from the header alone."""


#: One logical card: keyword, value text (strings unquoted; None when undefined), comment.
Card = tuple[str, str | None, str | None]


@dataclass
class HduHeader:
    """The header of one HDU: its cards, its text (for wcslib) and its data axes."""

    index: int
    cards: list[Card]
    text: bytes
    axes: tuple[int, ...]
    is_image: bool
    values: dict[str, str | None] = field(default_factory=dict)


_STRING = re.compile(r"\s*'((?:[^']|'')*)'?(.*)", re.DOTALL)
#: A record-valued keyword card (``DP1 = 'AXIS.1: 1'``): astropy reads it as the card
#: ``DP1.AXIS.1`` with the value 1, and so does this reader.
_RECORD_VALUE = re.compile(
    r"([A-Za-z_]\w*(?:\.\d+)?(?:\.[A-Za-z_]\w*(?:\.\d+)?)*): +"
    r"([+-]?(?:\.\d+|\d+(?:\.\d*)?)(?:[DE][+-]?\d+)?)"
)


def _value_field(field_text: str) -> tuple[str | None, str | None, bool]:
    """Value and comment of a value field (the card after ``= ``); whether it is a string."""
    stripped = field_text.lstrip()
    if stripped.startswith("'"):
        match = _STRING.match(stripped)
        assert match is not None  # the pattern matches any text starting with a quote
        value = match.group(1).replace("''", "'").rstrip()
        rest = match.group(2)
        slash = rest.find("/")
        comment = rest[slash + 1 :].strip() if slash >= 0 else None
        return value, comment or None, True
    text, sep, comment = stripped.partition("/")
    value = text.strip()
    return (value or None), (comment.strip() or None) if sep else None, False


#: Keywords whose ``= `` in columns 9-10 does not start a value (or not a plain one).
_NOT_PLAIN_VALUE = frozenset(("COMMENT", "HISTORY", "", "CONTINUE", "HIERARCH"))
#: Cards already parsed, by their 80 characters: the files of a survey share most of their
#: cards (instrument, pipeline and WCS set-up), and a look-up costs a third of a parse.
#: Only cards that are one logical card by themselves are kept (no long strings).
_PARSED: dict[str, Card] = {}
_PARSED_MAX = 16_384


def parse_cards(text: str) -> list[Card]:
    """The logical cards of header text (80-character cards, up to ``END``)."""
    cards: list[Card] = []
    append = cards.append
    known = _PARSED
    if len(known) > _PARSED_MAX:
        known.clear()
    n = len(text) // CARD
    i = 0
    while i < n:
        image = text[i * CARD : (i + 1) * CARD]
        i += 1
        card = known.get(image)
        if card is not None:
            append(card)
            continue
        keyword = image[:8].rstrip()
        if image[8:10] == "= " and keyword not in _NOT_PLAIN_VALUE:
            field_text = image[10:].lstrip()
            if field_text[:1] != "'":
                # Most cards: a value that is not a string (number, T/F, nothing), which
                # neither CONTINUE nor record-valued keywords concern (_value_field inlined).
                value_text, sep, comment_text = field_text.partition("/")
                card = (
                    keyword,
                    value_text.strip() or None,
                    (comment_text.strip() or None) if sep else None,
                )
                known[image] = card
                append(card)
                continue
        if keyword == "END" and not image[8:].strip():
            break
        if keyword == "HIERARCH" and "=" in image:
            name, _, rest = image[9:].partition("=")
            value, comment, _ = _value_field(rest)
            card = known[image] = (name.strip(), value, comment)
            append(card)
            continue
        if image[8:10] != "= " or keyword in ("COMMENT", "HISTORY", "", "CONTINUE"):
            card = known[image] = (keyword, image[8:].rstrip(), None)
            append(card)
            continue
        value, comment, is_string = _value_field(image[10:])
        if is_string and ": " in image:
            raw = _STRING.match(image[10:])
            record = _RECORD_VALUE.fullmatch(raw.group(1)) if raw else None
            if record is not None:
                card = known[image] = (f"{keyword}.{record.group(1)}", record.group(2), comment)
                append(card)
                continue
        if value is None or not value.endswith("&"):
            card = known[image] = (keyword, value, comment)
            append(card)
            continue
        # A long string (&) goes on in the CONTINUE cards that follow.
        comments = [comment] if comment else []
        while is_string and value is not None and value.endswith("&") and i < n:
            follow = text[i * CARD : (i + 1) * CARD]
            if follow[:8] != "CONTINUE":
                break
            more, more_comment, more_string = _value_field(follow[8:])
            if not more_string:
                break
            i += 1
            value = value[:-1] + (more or "")
            if more_comment:
                comments.append(more_comment)
        cards.append((keyword, value, " ".join(comments) or None))
    return cards


def _int(values: dict[str, str | None], key: str, default: int = 0) -> int:
    text = values.get(key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return default


def _axes(values: dict[str, str | None], prefix: str = "NAXIS") -> tuple[int, ...]:
    return tuple(_int(values, f"{prefix}{k}") for k in range(1, _int(values, prefix) + 1))


def _needs_astropy(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".gz", ".z", ".bz2", ".fz"))


def read_headers(path: Path) -> list[HduHeader]:
    """The headers of every HDU of the FITS file at ``path``.

    Raises
    ------
    NotFits
        When the file does not start like a FITS file or ends inside a header.
    OSError
        When it cannot be read.
    """
    return read_file(path)[0]


def read_file(path: Path, keep_under: int = 0) -> tuple[list[HduHeader], bytes | None]:
    """The headers of every HDU of the file, and its bytes when it is smaller than
    ``keep_under`` (read whole in one call, so that a copy need not open it again).

    Raises as :func:`read_headers`.
    """
    if _needs_astropy(path):
        return _astropy_headers(path), None
    content: bytes | None = None
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size if keep_under > 0 else keep_under
        if size < keep_under:
            # Read whole with plain reads (no buffered file object: its set-up costs more
            # than the read of a small file).
            parts: list[bytes] = []
            while part := os.read(fd, max(size, BLOCK)):
                parts.append(part)
            content = parts[0] if len(parts) == 1 else b"".join(parts)
            hdus = list(_walk(io.BytesIO(content)))
        else:
            with open(fd, "rb", closefd=False) as handle:
                hdus = list(_walk(handle))
    finally:
        os.close(fd)
    if any(h.values.get("ZIMAGE") == "T" for h in hdus):
        # A tile-compressed image: astropy rebuilds its header.
        return _astropy_headers(path), content
    return hdus, content


def _walk(handle: BinaryIO) -> Iterator[HduHeader]:
    index = 0
    while True:
        chunks: list[bytes] = []
        while True:
            block = handle.read(BLOCK)
            if not block:
                if chunks:
                    raise NotFits("the file ends inside a header")
                return
            if len(block) < BLOCK:
                if not chunks and index > 0 and not block.strip(b"\0 "):
                    return  # padding after the last HDU
                raise NotFits("the file ends inside a header")
            if not chunks and index == 0 and not block.startswith(b"SIMPLE  ="):
                raise NotFits("it does not start with SIMPLE = T")
            if not chunks and index > 0 and not block.startswith(b"XTENSION="):
                return  # trailing bytes that are not an extension
            chunks.append(block)
            if _has_end(block):
                break
        raw = b"".join(chunks)
        text = raw.decode("ascii", "replace")
        cards = parse_cards(text)
        values = {k: v for k, v, _ in cards}
        axes = _axes(values)
        bitpix = abs(_int(values, "BITPIX", 8))
        gcount = _int(values, "GCOUNT", 1)
        pcount = _int(values, "PCOUNT", 0)
        if index == 0 and values.get("GROUPS") == "T" and axes and axes[0] == 0:
            elements = math.prod(axes[1:])  # random groups
        else:
            elements = math.prod(axes) if axes else 0
        size = bitpix // 8 * gcount * (pcount + elements) if axes else 0
        xtension = (values.get("XTENSION") or "").strip()
        is_image = (index == 0 or xtension == "IMAGE") and len(axes) >= 2 and all(axes)
        yield HduHeader(index, cards, raw, axes, is_image, values)
        handle.seek((size + BLOCK - 1) // BLOCK * BLOCK, 1)
        index += 1


_END_CARD = re.compile(rb"END {77}")


def _has_end(block: bytes) -> bool:
    """Whether a header block holds the END card (at a card boundary)."""
    return any(m.start() % CARD == 0 for m in _END_CARD.finditer(block))


def _astropy_headers(path: Path) -> list[HduHeader]:
    from astropy.io import fits

    out: list[HduHeader] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                for index, hdu in enumerate(hdul):
                    text = hdu.header.tostring()
                    cards = parse_cards(text)
                    values = {k: v for k, v, _ in cards}
                    axes = _axes(values)
                    compressed = isinstance(hdu, fits.CompImageHDU)
                    is_image = (
                        (isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) or compressed)
                        and len(axes) >= 2
                        and all(axes)
                    )
                    out.append(
                        HduHeader(index, cards, text.encode("ascii"), axes, is_image, values)
                    )
    except (OSError, ValueError, TypeError) as exc:
        raise NotFits(str(exc).split("\n")[0]) from None
    return out


# --- WCS ------------------------------------------------------------------------------------

#: Keywords (or their prefixes) wcslib reads for a celestial image WCS; wcslib's parser
#: costs time per card, so only these are handed to it.
_WCS_KEYWORD = re.compile(
    rb"(NAXIS|WCSAXES|CTYPE|CRVAL|CRPIX|CDELT|CD\d|PC\d|CROTA|PV\d|PS\d|CUNIT|LONPOLE|LATPOLE|"
    rb"RADESYS|RADECSYS|EQUINOX|EPOCH|WCSNAME|CNAME|RESTFRQ|RESTFREQ|RESTWAV|SPECSYS|"
    rb"MJD-OBS|DATE-OBS|MJDREF|DATEREF|TIMESYS|"
    # DSS plate solutions, which wcslib turns into TAN with a polynomial distortion.
    rb"PLT|AMDX|AMDY|PPO\d|CNPIX|XPIXELSZ|YPIXELSZ)"
)


#: Whether a card whose first 8 bytes are the key is a WCS card (:data:`_WCS_KEYWORD`
#: matches within them): a survey's files repeat their keywords, a lookup is cheaper than
#: the pattern.
_IS_WCS_CARD: dict[bytes, bool] = {}


#: Keys of the WCS cards that change from one image of a survey to the next without
#: changing how a TAN projection is set up: the pointing, and the date (unused here).
_POINTING = frozenset((b"CRVAL1  ", b"CRVAL2  ", b"MJD-OBS ", b"DATE-OBS"))


def _wcs_cards(text: bytes) -> tuple[bytes, bytes]:
    """The cards of ``text`` a WCS is made of (alternate descriptions included), and the
    same without the pointing cards (:data:`_POINTING`): the key of the WCS's set-up."""
    known = _IS_WCS_CARD
    if len(known) > 100_000:
        known.clear()
    kept = []
    setup = []
    for i in range(0, len(text), CARD):
        card = text[i : i + CARD]
        key = card[:8]
        wanted = known.get(key)
        if wanted is None:
            wanted = known[key] = _WCS_KEYWORD.match(key) is not None
        if wanted:
            kept.append(card)
            if key not in _POINTING:
                setup.append(card)
    kept.append(b"END".ljust(CARD))
    return b"".join(kept), b"".join(setup)


@dataclass
class _TanTemplate:
    """A set-up TAN WCS (wcslib's ``Wcsprm``) of a survey's images, repointed for each image
    of the same set-up: its CRVAL changed and ``set()`` again, 4 µs against 56 µs for
    parsing and fixing the header again (a test holds their footprints equal).  Only for a
    2-axis RA/Dec TAN projection with nothing to fix but dates and units: then nothing else
    the header set up depends on the pointing.  LONPOLE and LATPOLE are put back as the
    header gave them (``fix()`` and ``set()`` store their defaults for the first pointing
    in them)."""

    wcs: Any
    lonpole: float
    latpole: float


#: Per thread (a Wcsprm is changed in place): set-up key -> template.
_TEMPLATES = threading.local()


def _pointing(values: dict[str, str | None]) -> tuple[float, float] | None:
    try:
        return (
            float((values.get("CRVAL1") or "").replace("D", "E")),
            float((values.get("CRVAL2") or "").replace("D", "E")),
        )
    except ValueError:
        return None


def _tan_wcs(cards: bytes, setup: bytes, values: dict[str, str | None]) -> Any:
    """The image's WCS, set: from a template of the same set-up when there is one."""
    from astropy.wcs import Wcsprm

    templates: dict[bytes, _TanTemplate] | None = getattr(_TEMPLATES, "by_setup", None)
    if templates is None or len(templates) > 64:
        templates = _TEMPLATES.by_setup = {}
    pointing = _pointing(values)
    template = templates.get(setup) if pointing is not None else None
    if template is not None:
        wcs = template.wcs
        wcs.lonpole, wcs.latpole = template.lonpole, template.latpole
        wcs.crval = pointing
        wcs.set()
        return wcs
    wcs = Wcsprm(header=cards, relax=True)
    # As the header gave them (NaN: not given), before fix() and set() store defaults
    # that depend on the pointing (LONPOLE 0 or 180 by the declination).
    lonpole, latpole = float(wcs.lonpole), float(wcs.latpole)
    fixes = wcs.fix()
    wcs.set()
    if (
        pointing is not None
        and wcs.naxis == 2
        and list(wcs.ctype) == ["RA---TAN", "DEC--TAN"]
        and tuple(float(v) for v in wcs.crval) == pointing
        and all(
            name in ("datfix", "unitfix") or message.startswith("No change")
            for name, message in fixes.items()
        )
    ):
        templates[setup] = _TanTemplate(wcs, lonpole, latpole)
    return wcs


def _has_distortion(values: dict[str, str | None]) -> bool:
    """Whether the header has distortions wcslib does not apply from the header alone:
    SIP polynomials, lookup tables (CPDISj, D2IMDISj)."""
    if "A_ORDER" in values or "B_ORDER" in values:
        return True
    for j in (1, 2, 3):
        if f"CPDIS{j}" in values or f"D2IMDIS{j}" in values:
            return True
        ctype = values.get(f"CTYPE{j}")
        if ctype is not None and ctype.endswith("-SIP"):
            return True
    return False


@dataclass(frozen=True)
class Footprint:
    """An image's corners (pixel edges, ``calc_footprint`` order) and centre in ICRS
    degrees, its pixel scale (arcsec) and the lengths of its two celestial axes."""

    corners: NDArray[np.float64]
    centre: tuple[float, float]
    pixel_scale: float
    shape: tuple[int, int]


def footprint(header: HduHeader) -> Footprint:
    """The celestial footprint of an image HDU.

    Raises
    ------
    NoCelestialWcs
        With the reason: no WCS, no celestial axes, a sky system that is not equatorial or
        galactic, or corners that fall off the projection.
    """
    text = header.text
    if _has_distortion(header.values):
        with contextlib.suppress(_UnreadableDistortion):
            return _astropy_footprint(header)
        # Lookup-table distortions need the file's other HDUs: the WCS without them is
        # within a few pixels, which is what a footprint needs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wcs = _tan_wcs(*_wcs_cards(text), header.values)
        except Exception as exc:  # wcslib raises its own classes for every kind of bad header
            raise NoCelestialWcs(f"its WCS cannot be read ({_first_line(exc)})") from None
        lng, lat = int(wcs.lng), int(wcs.lat)
        if lng < 0 or lat < 0:
            raise NoCelestialWcs("its WCS has no celestial (RA/Dec) axes")
        nx, ny = _celestial_shape(header, lng, lat)
        pix = _sample_pixels(wcs.naxis, lng, lat, nx, ny)
        try:
            world = wcs.p2s(pix, 1)["world"]
        except Exception as exc:
            raise NoCelestialWcs(
                f"its corners fall off the projection ({_first_line(exc)})"
            ) from None
    lon, lat_deg = world[:, lng], world[:, lat]
    ctype = str(wcs.ctype[lng]).upper()
    radesys = str(getattr(wcs, "radesys", "") or "").upper()
    equinox = float(getattr(wcs, "equinox", float("nan")))
    return _finish(lon, lat_deg, ctype, radesys, equinox, nx, ny)


def _astropy_footprint(header: HduHeader) -> Footprint:
    from astropy.io import fits
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(fits.Header.fromstring(header.text.decode("ascii", "replace")), relax=True)
    except Exception:
        raise _UnreadableDistortion from None
    lng, lat = int(wcs.wcs.lng), int(wcs.wcs.lat)
    if lng < 0 or lat < 0:
        raise NoCelestialWcs("its WCS has no celestial (RA/Dec) axes")
    nx, ny = _celestial_shape(header, lng, lat)
    pix = _sample_pixels(wcs.naxis, lng, lat, nx, ny)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            world = np.asarray(wcs.all_pix2world(pix, 1), dtype=np.float64)
    except Exception as exc:
        raise NoCelestialWcs(f"its corners fall off the projection ({_first_line(exc)})") from None
    ctype = str(wcs.wcs.ctype[lng]).upper()
    radesys = str(wcs.wcs.radesys or "").upper()
    return _finish(world[:, lng], world[:, lat], ctype, radesys, float(wcs.wcs.equinox), nx, ny)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().split("\n") or [type(exc).__name__])[0][:200]


def _celestial_shape(header: HduHeader, lng: int, lat: int) -> tuple[int, int]:
    axes = header.axes
    if max(lng, lat) >= len(axes):
        raise NoCelestialWcs("its celestial WCS axes are not axes of the image data")
    return axes[lng], axes[lat]


@functools.lru_cache(maxsize=256)
def _sample_pixels(naxis: int, lng: int, lat: int, nx: int, ny: int) -> NDArray[np.float64]:
    """Pixel coordinates (1-based) of the four corner edges, the centre, and the centre
    moved one pixel along each celestial axis (read-only: kept for the next image of the
    same shape)."""
    cx, cy = (nx + 1) / 2.0, (ny + 1) / 2.0
    points = [
        (0.5, 0.5),
        (0.5, ny + 0.5),
        (nx + 0.5, ny + 0.5),
        (nx + 0.5, 0.5),
        (cx, cy),
        (cx + 1.0, cy),
        (cx, cy + 1.0),
    ]
    pix = np.ones((len(points), naxis), dtype=np.float64)
    for row, (x, y) in enumerate(points):
        pix[row, lng] = x
        pix[row, lat] = y
    pix.flags.writeable = False
    return pix


def _finish(
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    ctype: str,
    radesys: str,
    equinox: float,
    nx: int,
    ny: int,
) -> Footprint:
    if ctype.startswith("RA"):
        if radesys.startswith("FK4") or (not radesys and math.isfinite(equinox) and equinox < 1984):
            lon, lat = _to_icrs(lon, lat, "fk4")
    elif ctype.startswith("GLON"):
        lon, lat = _to_icrs(lon, lat, "galactic")
    else:
        raise NoCelestialWcs(
            f"its sky axes are {ctype.split('-', maxsplit=1)[0]}, not RA/Dec or galactic"
        )
    lons, lats = [float(x) % 360.0 for x in lon], [float(x) for x in lat]
    if not all(map(math.isfinite, lons + lats)):
        raise NoCelestialWcs("its corners fall off the projection")
    # The pixel scale: angles from the centre to its neighbours along each axis, as
    # atan2(|a x b|, a.b) (arccos loses the precision of angles this small).  Plain floats:
    # for three points NumPy's per-call cost is most of the time.
    centre = _unit_vector(lons[4], lats[4])
    steps = []
    for k in (5, 6):
        a = _unit_vector(lons[k], lats[k])
        cross = (
            a[1] * centre[2] - a[2] * centre[1],
            a[2] * centre[0] - a[0] * centre[2],
            a[0] * centre[1] - a[1] * centre[0],
        )
        dot = a[0] * centre[0] + a[1] * centre[1] + a[2] * centre[2]
        steps.append(math.degrees(math.atan2(math.hypot(*cross), dot)) * 3600.0)
    return Footprint(
        corners=np.array([lons[:4], lats[:4]], dtype=np.float64).T,
        centre=(lons[4], lats[4]),
        pixel_scale=math.sqrt(steps[0] * steps[1]),
        shape=(nx, ny),
    )


def _unit_vector(lon: float, lat: float) -> tuple[float, float, float]:
    a, d = math.radians(lon), math.radians(lat)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def _to_icrs(
    lon: NDArray[np.float64], lat: NDArray[np.float64], frame: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    coord = SkyCoord(lon * u.deg, lat * u.deg, frame=frame).icrs
    return (
        np.asarray(coord.ra.deg, dtype=np.float64),
        np.asarray(coord.dec.deg, dtype=np.float64),
    )
