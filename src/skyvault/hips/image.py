"""Image HiPS (IVOA HiPS 1.0, section 4.2) built from FITS images, incrementally.

Layout of the output directory::

    properties                     HiPS properties, dataproduct_type=image (subtype color)
    Moc.fits                       IVOA MOC of the sky with data (mocpy), at order K+4
    index.html                     the HiPS in Aladin Lite (the server's own copy)
    NorderK/DirD/NpixN.{fits,png,jpg}   512×512 tiles, D = N // 10000 * 10000
    NorderK/Allsky.{fits,png,jpg}  K = 0…3: the order's tiles side by side, left to right
                                   then top to bottom, int(sqrt(n)) per row, each reduced
                                   to 512 >> K pixels (64 at order 3: 27×29 tiles)
    .skyvault-hips.json            the manifest (hidden: never served)

**Tile pixels.**  A tile of order K holds the 512×512 HEALPix cells of order K + 9 inside
cell N; the cell of tile row ``i`` (from the top, as PNG stores rows) and column ``j`` is
``N·4⁹ + spread(i) + 2·spread(j)`` (``spread`` puts bit b at 2b: the NESTED Z-order).
FITS tiles store rows bottom-up (the FITS convention), so they are the same array flipped.
The value of a cell is the input image bilinearly interpolated at the cell's centre
(cdshealpix gives the centres, the input's WCS the pixel position — exactly on a grid of
every 7th pixel, interpolated between and checked, see :data:`_NODE_STEP` — and scipy
interpolates).
``reproject.reproject_interp`` onto each tile's HPX WCS would do the same, but recomputes
the tile's sky positions for every input that overlaps it, and tiles on the HPX
projection's boundaries need two WCS (``reproject_to_hips`` blends two reprojections);
cell centres from cdshealpix are exact everywhere and computed once per tile.

**The deepest order** is the first whose cells are smaller than the finest input pixel
(HiPS 1.0 §4.2.1).  **Overlaps** are combined per cell: ``mean`` (the default; every
input with data at the cell counts once) or ``median``.  **Lower orders**: each pixel is
the mean of the four pixels below it that have data (NaN ignored; HiPS 1.0 best practice).

**Values.**  FITS tiles hold science values: integer inputs without BSCALE/BZERO keep their
BITPIX (rounded; empty cells are ``BLANK``), otherwise float32 (float64 when every input
is) with NaN.  PNG (grey + alpha, transparent where empty) and JPEG (black where empty)
tiles are ``asinh`` (or ``linear``, ``sqrt``) stretched between the two
``hips_pixel_cut`` values: by default the 0.5 and 99.5 percentiles of a sample of every
input's pixels, computed once, on the first build, and kept by incremental rebuilds so that
the tiles already written stay consistent (a full rebuild recomputes them).
``y = asinh(10 v) / asinh(10)`` with ``v`` the value scaled to 0…1 between the cuts.

**Colour.**  ``color=(red, green, blue)`` (three lists of inputs, one per band) builds an RGB
HiPS (``dataproduct_subtype=color``, PNG/JPEG tiles only): each band is resampled and
combined as above, stretched between its own cuts, and the lower orders average the
children's RGB values where they have data.

**Incremental.**  The manifest records each input (path, HDU, size, mtime, sha256) and the
deepest tiles it touches, and each deepest tile's value range and MOC cells.  A rebuild with
the same settings recomputes only the deepest tiles touched by new, changed or removed
inputs (from every input that touches them), their parents, the Allsky files, ``Moc.fits``
and ``properties``; every other file is a hard link to the previous version's (same bytes,
same mtime, same inode: same ``ETag``).  A file whose size and mtime did not change is not
hashed again.  Other settings (order, formats, combine, stretch, cuts) make a full rebuild.

**Atomic.**  The HiPS is built in a new version directory and published by replacing a link
(:func:`skyvault.catalog.layout.building`): readers see the old HiPS or the new, and a
crash leaves the old one served.  Files are written with unlink-then-create, never in
place, so a hard-linked file of the published version is never modified.

**Bounded memory.**  Tile by tile: one tile's arrays per input touching it plus the pixels
of each input under that tile (memory-mapped; compressed HDUs are decompressed per HDU and
a worker keeps at most :data:`_OPEN_INPUTS` of them).  ``workers`` processes share the
tiles; ``progress(done, total)`` is called in the calling process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from skyvault import __version__
from skyvault.errors import UsageError

__all__ = [
    "ALLSKY_ORDERS",
    "MANIFEST",
    "TILE_WIDTH",
    "ImageHipsResult",
    "build_image_hips",
    "collection_images",
    "deepest_order",
    "tile_cells",
    "tile_path",
]

#: Pixels on a side of a tile (shift order 9).
TILE_WIDTH = 512
_SHIFT = 9
#: Orders that get an ``Allsky`` file.
ALLSKY_ORDERS = (0, 1, 2, 3)
#: Deepest tile order (its cells are of order 29, the deepest cdshealpix knows).
MAX_ORDER = 20
#: The manifest of an image HiPS (hidden: the web edge never serves dot files).
MANIFEST = ".skyvault-hips.json"
_MANIFEST_VERSION = 1
#: Resolution of the MOC below a deepest tile: blocks of 32×32 pixels.
_MOC_SHIFT = 4
#: Inputs a worker keeps open (compressed HDUs are held decompressed).
_OPEN_INPUTS = 4
_TILES_PER_JOB = 8
#: Below this many tiles one process does it all (starting a worker costs a second or two).
_POOL_FROM = 64
_EXT = {"fits": "fits", "png": "png", "jpeg": "jpg"}
_ASINH_SOFTENING = 10.0
#: Pixels on a side of a tile in an Allsky file (HiPS 1.0: "typically 64x64").
_ALLSKY_TILE = 64

Float64Array = npt.NDArray[np.float64]
Combine = Literal["mean", "median"]
Stretch = Literal["asinh", "linear", "sqrt"]
InputSpec = tuple[str | os.PathLike[str], int | str] | str | os.PathLike[str]


@dataclass
class ImageHipsResult:
    """What :func:`build_image_hips` did."""

    path: Path
    order: int
    inputs: int
    #: Deepest-order tiles in the HiPS, and tiles (all orders) computed by this build.
    tiles: int
    computed: int
    #: Of ``computed``, the deepest-order tiles.
    computed_deepest: int
    #: Tile files (all formats, all orders) kept from the previous version as hard links.
    reused_files: int
    incremental: bool
    megapixels: float
    seconds: float
    sky_fraction: float
    cuts: list[tuple[float, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------- geometry


def tile_path(order: int, pixel: int, ext: str) -> str:
    """The path of a tile inside a HiPS: ``NorderK/DirD/NpixN.ext``."""
    return f"Norder{order}/Dir{pixel // 10000 * 10000}/Npix{pixel}.{ext}"


def _spread(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Bit b of each value moved to bit 2b (the Z-order of HEALPix NESTED)."""
    out = np.zeros_like(values)
    for bit in range(_SHIFT):
        out |= ((values >> bit) & 1) << (2 * bit)
    return out


def _sub_cells(shift: int = _SHIFT) -> npt.NDArray[np.int64]:
    """The NESTED offset of every pixel of a tile (rows from the top), ``(w, w)``."""
    w = 1 << shift
    i, j = np.mgrid[0:w, 0:w].astype(np.int64)
    return _spread(i) | (_spread(j) << 1)


_SUB = _sub_cells()


def tile_cells(order: int, pixel: int) -> npt.NDArray[np.int64]:
    """The HEALPix cells (order ``order + 9``) of a tile's pixels, rows from the top."""
    return (np.int64(pixel) << np.int64(2 * _SHIFT)) | _SUB


def _tile_lonlat(order: int, pixel: int) -> tuple[Float64Array, Float64Array]:
    """ICRS longitude, latitude (degrees) of a tile's pixel centres, rows from the top."""
    import cdshealpix

    lon, lat = cdshealpix.nested.healpix_to_lonlat(
        tile_cells(order, pixel).ravel().astype(np.uint64), order + _SHIFT
    )
    shape = (TILE_WIDTH, TILE_WIDTH)
    return (
        np.asarray(lon.deg, dtype=np.float64).reshape(shape),
        np.asarray(lat.deg, dtype=np.float64).reshape(shape),
    )


def _hips_pixel_deg(order: int) -> float:
    """The side (degrees) of a pixel of a 512-pixel tile of ``order`` (HiPS 1.0 §4.2.1)."""
    return math.degrees(math.sqrt(4 * math.pi / (12 * (TILE_WIDTH * 2**order) ** 2)))


def deepest_order(pixel_scale_deg: float) -> int:
    """The first order whose tile pixels are finer than ``pixel_scale_deg``."""
    for order in range(MAX_ORDER + 1):
        if _hips_pixel_deg(order) <= pixel_scale_deg:
            return order
    return MAX_ORDER


# ---------------------------------------------------------------------------- inputs


@dataclass
class _Input:
    key: str
    path: str
    hdu: int | str
    band: int
    size: int
    mtime_ns: int
    sha256: str
    shape: tuple[int, int]
    bitpix: int
    scaled: bool
    scale_deg: float
    lon: list[float]
    lat: list[float]


def _normalise(spec: InputSpec) -> tuple[Path, int | str]:
    if isinstance(spec, tuple):
        path, hdu = spec
        return Path(path), hdu
    return Path(spec), 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _celestial(header: Any, where: str) -> Any:
    """The 2-D celestial WCS of an HDU header, or a clear error."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception as exc:  # astropy raises many kinds for a broken WCS
            raise UsageError(f"{where}: unreadable WCS ({exc})") from None
    if not wcs.has_celestial:
        raise UsageError(
            f"{where} has no celestial WCS",
            hint="an image HiPS needs images with RA/Dec (CTYPE RA---TAN…) keywords",
        )
    return wcs.celestial


def _image_hdu(hdul: Any, hdu: int | str, where: str) -> Any:
    try:
        found = hdul[hdu]
    except (KeyError, IndexError):
        raise UsageError(f"{where}: no HDU {hdu!r}", hint="name an image HDU with --hdu") from None
    if not found.is_image or found.header.get("NAXIS", 0) < 2:
        raise UsageError(f"{where}: HDU {hdu!r} is not an image", hint="name an image HDU")
    return found


def _scan(spec: InputSpec, band: int, previous: dict[str, Any]) -> _Input:
    """Read one input's header: WCS, footprint, pixel scale; hash it if it changed."""
    from astropy.io import fits
    from astropy.wcs.utils import proj_plane_pixel_scales

    path, hdu = _normalise(spec)
    where = f"{path}[{hdu}]"
    try:
        stat = path.stat()
        hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint="give FITS image files") from None
    with hdul:
        found = _image_hdu(hdul, hdu, where)
        header = found.header
        shape = tuple(int(header[f"NAXIS{k}"]) for k in range(header["NAXIS"], 0, -1))
        if any(n != 1 for n in shape[:-2]):
            raise UsageError(f"{where} is a cube {shape}", hint="give 2-D images")
        wcs = _celestial(header, where)
        bitpix = int(header["BITPIX"])
        scaled = float(header.get("BSCALE", 1)) != 1 or float(header.get("BZERO", 0)) != 0
    ny, nx = shape[-2:]
    scale = float(np.min(np.abs(proj_plane_pixel_scales(wcs))))
    lon, lat = _footprint(wcs, ny, nx)
    key = f"{path.resolve()}[{hdu}]"
    old = previous.get(key)
    if old and old["size"] == stat.st_size and old["mtime_ns"] == stat.st_mtime_ns:
        digest = str(old["sha256"])
    else:
        digest = _sha256(path)
    return _Input(
        key=key,
        path=str(path.resolve()),
        hdu=hdu,
        band=band,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=digest,
        shape=(ny, nx),
        bitpix=bitpix,
        scaled=scaled,
        scale_deg=scale,
        lon=lon,
        lat=lat,
    )


def _footprint(wcs: Any, ny: int, nx: int, per_side: int = 8) -> tuple[list[float], list[float]]:
    """ICRS vertices (degrees) of the image outline, counter-clockwise or not."""
    from astropy.coordinates import SkyCoord

    t = np.linspace(0.0, 1.0, per_side, endpoint=False)
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    xs = np.concatenate(
        [x0 + t * (x1 - x0), np.full(per_side, x1), x1 - t * (x1 - x0), np.full(per_side, x0)]
    )
    ys = np.concatenate(
        [np.full(per_side, y0), y0 + t * (y1 - y0), np.full(per_side, y1), y1 - t * (y1 - y0)]
    )
    world = wcs.pixel_to_world(xs, ys)
    icrs = world.icrs if isinstance(world, SkyCoord) else SkyCoord(world).icrs
    lon = np.asarray(icrs.ra.deg, dtype=np.float64)
    lat = np.asarray(icrs.dec.deg, dtype=np.float64)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise UsageError("an image's corners are outside its WCS's valid region")
    return lon.tolist(), lat.tolist()


def _tiles_of(inp: _Input, order: int) -> list[int]:
    """The deepest tiles an input's outline overlaps (cdshealpix polygon search)."""
    import cdshealpix
    from astropy import units as u

    ipix, _depth, _full = cdshealpix.nested.polygon_search(
        np.asarray(inp.lon) * u.deg, np.asarray(inp.lat) * u.deg, order, flat=True
    )
    return sorted(int(p) for p in np.unique(ipix))


def collection_images(
    data_dir: Path, collection: str, band: str | None = None
) -> list[tuple[Path, int]]:
    """The (file, HDU) of every image of an image-archive collection (``skyvault images
    ingest``), of one ``band`` or all, read from its ``COLLECTION.obscore`` table."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from skyvault.catalog.layout import TableName, image_store, table_path
    from skyvault.errors import CatalogNotFound

    try:
        name = TableName.parse(f"{collection}.obscore")
        root = table_path(data_dir, name).resolve()
    except (UsageError, CatalogNotFound):
        raise UsageError(
            f"no image collection {collection!r}",
            hint="`skyvault images ingest FILES --collection NAME` makes one",
        ) from None
    table = ds.dataset(root / "dataset", format="parquet").to_table(
        columns=["band", "image_file", "image_hdu"]
    )
    if band is not None:
        table = table.filter(pc.equal(table["band"], band))
        if table.num_rows == 0:
            raise UsageError(f"collection {collection} has no image in band {band!r}")
    store = image_store(data_dir, collection)
    rows = sorted(zip(table["image_file"].to_pylist(), table["image_hdu"].to_pylist(), strict=True))
    return [(store / str(f), int(h)) for f, h in rows]


# ---------------------------------------------------------------------------- sampling


@dataclass
class _Opened:
    data: Any
    wcs: Any
    transform: Any  # None (ICRS world) or the input's celestial frame
    lon_first: bool
    blank: float | None
    bscale: float
    bzero: float


_CACHE: OrderedDict[tuple[str, int | str], _Opened] = OrderedDict()


def _open(path: str, hdu: int | str) -> _Opened:
    """An input ready to sample (cached per process, at most :data:`_OPEN_INPUTS`)."""
    from astropy.coordinates import ICRS
    from astropy.io import fits
    from astropy.wcs.utils import wcs_to_celestial_frame

    key = (path, hdu)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    hdul = fits.open(path, memmap=True, do_not_scale_image_data=True, lazy_load_hdus=True)
    found = hdul[hdu]
    data = found.data
    while data.ndim > 2:
        data = data[0]
    header = found.header
    wcs = _celestial(header, path)
    frame = wcs_to_celestial_frame(wcs)
    blank = header.get("BLANK") if int(header["BITPIX"]) > 0 else None
    opened = _Opened(
        data=data,
        wcs=wcs,
        transform=None if isinstance(frame, ICRS) else frame,
        lon_first=wcs.wcs.lng == 0,
        blank=None if blank is None else float(blank),
        bscale=float(header.get("BSCALE", 1.0)),
        bzero=float(header.get("BZERO", 0.0)),
    )
    _CACHE[key] = opened
    while len(_CACHE) > _OPEN_INPUTS:
        _CACHE.popitem(last=False)
    return opened


def _physical(opened: _Opened, raw: Any) -> Float64Array:
    values = np.asarray(raw, dtype=np.float64)
    if opened.blank is not None:
        values = np.where(np.asarray(raw) == opened.blank, np.nan, values)
    if opened.bscale != 1.0 or opened.bzero != 0.0:
        values = values * opened.bscale + opened.bzero
    return values


#: World → pixel is computed exactly on a grid of tile pixels 7 apart (0, 7, …, 511) and
#: interpolated linearly between (over 7 pixels the mapping is linear to ~1e-6 pixel for a
#: TAN image at order 9); 64 fixed check pixels must agree with the exact
#: transform within :data:`_GRID_TOLERANCE` pixel, else the whole tile is transformed
#: exactly (a tile across a projection's edge, a strong distortion).  The WCS transform of
#: 262,144 pixels was most of a tile's time.
_NODE_STEP = 7
_NODES = np.arange(0, TILE_WIDTH, _NODE_STEP)
_GRID_TOLERANCE = 1e-3
_CHECK = np.random.default_rng(0).integers(0, TILE_WIDTH, (2, 64))
_FULL = (np.mgrid[0:TILE_WIDTH, 0:TILE_WIDTH].reshape(2, -1) / _NODE_STEP).astype(np.float64)


class _TileSky:
    """The sky positions of one tile's pixels: the grid and check pixels now, all of them
    only when an input needs them."""

    def __init__(self, order: int, pixel: int) -> None:
        self.order, self.pixel = order, pixel
        cells = tile_cells(order, pixel)
        self.nodes = _lonlat(cells[np.ix_(_NODES, _NODES)], order + _SHIFT)
        self.checks = _lonlat(cells[_CHECK[0], _CHECK[1]], order + _SHIFT)
        self._all: tuple[Float64Array, Float64Array] | None = None

    def all(self) -> tuple[Float64Array, Float64Array]:
        if self._all is None:
            self._all = _tile_lonlat(self.order, self.pixel)
        return self._all


def _lonlat(cells: npt.NDArray[np.int64], depth: int) -> tuple[Float64Array, Float64Array]:
    import cdshealpix

    lon, lat = cdshealpix.nested.healpix_to_lonlat(cells.ravel().astype(np.uint64), depth)
    return (
        np.asarray(lon.deg, dtype=np.float64).reshape(cells.shape),
        np.asarray(lat.deg, dtype=np.float64).reshape(cells.shape),
    )


def _world2pix(
    opened: _Opened, lon: Float64Array, lat: Float64Array
) -> tuple[Float64Array, Float64Array]:
    if opened.transform is not None:
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        c = SkyCoord(lon * u.deg, lat * u.deg, frame="icrs").transform_to(opened.transform)
        sph = c.spherical
        lon, lat = sph.lon.deg, sph.lat.deg
    a, b = (lon, lat) if opened.lon_first else (lat, lon)
    x, y = opened.wcs.all_world2pix(a, b, 0, quiet=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _pixels(opened: _Opened, sky: _TileSky) -> tuple[Float64Array, Float64Array]:
    """Input pixel coordinates of every tile pixel (rows from the top), flattened."""
    from scipy.ndimage import map_coordinates

    def grid(f: Float64Array, where: Float64Array) -> Float64Array:
        return np.asarray(map_coordinates(f, where, order=1), dtype=np.float64)

    xn, yn = _world2pix(opened, *sky.nodes)
    if np.isfinite(xn).all() and np.isfinite(yn).all():
        xc, yc = _world2pix(opened, *sky.checks)
        at = _CHECK / _NODE_STEP
        error = max(np.abs(grid(xn, at) - xc).max(), np.abs(grid(yn, at) - yc).max())
        if error <= _GRID_TOLERANCE:
            return grid(xn, _FULL), grid(yn, _FULL)
    lon, lat = sky.all()
    return _world2pix(opened, lon.ravel(), lat.ravel())


def _sample(opened: _Opened, sky: _TileSky) -> Float64Array | None:
    """The input bilinearly interpolated at the tile's pixel centres; NaN off the image;
    None if the tile misses it entirely.  Only the input's pixels under the tile are read."""
    from scipy.ndimage import map_coordinates

    x, y = _pixels(opened, sky)
    ny, nx = opened.data.shape
    inside = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    inside &= np.isfinite(x) & np.isfinite(y)
    if not inside.any():
        return None
    xi, yi = x[inside], y[inside]
    x0 = max(int(np.floor(xi.min())), 0)
    x1 = min(int(np.floor(xi.max())) + 2, nx)
    y0 = max(int(np.floor(yi.min())), 0)
    y1 = min(int(np.floor(yi.max())) + 2, ny)
    crop = _physical(opened, opened.data[y0:y1, x0:x1])
    out = np.full(TILE_WIDTH * TILE_WIDTH, np.nan)
    out[inside] = map_coordinates(crop, [yi - y0, xi - x0], order=1, mode="nearest")
    return out.reshape(TILE_WIDTH, TILE_WIDTH)


# ---------------------------------------------------------------------------- tile files


def _write(path: Path, data: bytes) -> None:
    """Unlink then create: a hard link shared with the published version is never
    modified in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_bytes(data)


@dataclass(frozen=True)
class _Settings:
    """Everything that decides the bytes of a tile (a change means a full rebuild)."""

    order: int
    formats: tuple[str, ...]
    combine: str
    stretch: str
    color: bool
    bitpix: int
    cuts: tuple[tuple[float, float], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "formats": list(self.formats),
            "combine": self.combine,
            "stretch": self.stretch,
            "color": self.color,
            "bitpix": self.bitpix,
            "cuts": [list(c) for c in self.cuts],
        }


def _blank_of(bitpix: int) -> int:
    return {8: 0, 16: -32768, 32: -(2**31), 64: -(2**63)}[bitpix]


def _fits_bytes(values: Float64Array, bitpix: int) -> bytes:
    """A FITS tile (rows bottom-up) of ``values`` (rows top-down) in ``bitpix``."""
    from astropy.io import fits

    flipped = values[::-1]
    if bitpix > 0:
        dtype = np.dtype(f"{'u' if bitpix == 8 else 'i'}{bitpix // 8}")
        info = np.iinfo(dtype)
        blank = _blank_of(bitpix)
        rounded = np.clip(np.rint(np.nan_to_num(flipped, nan=0.0)), info.min, info.max)
        data = np.where(np.isnan(flipped), blank, rounded).astype(dtype)
        hdu = fits.PrimaryHDU(data)
        hdu.header["BLANK"] = blank
    else:
        hdu = fits.PrimaryHDU(flipped.astype(np.float32 if bitpix == -32 else np.float64))
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def _read_fits(path: Path) -> Float64Array | None:
    """A FITS tile's values, rows top-down, NaN where BLANK; None if there is none."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = hdul[0]
            raw = hdu.data
            blank = hdu.header.get("BLANK")
    except FileNotFoundError:
        return None
    values = np.asarray(raw, dtype=np.float64)
    if blank is not None and np.issubdtype(raw.dtype, np.integer):
        values[raw == blank] = np.nan
    return values[::-1].copy()


def _stretch(values: Float64Array, cut: tuple[float, float], how: str) -> npt.NDArray[np.uint8]:
    """Values to 0…255 between the cuts (NaN → 0), float32 for speed."""
    lo, hi = cut
    span = hi - lo if hi > lo else 1.0
    v = values.astype(np.float32)
    v -= np.float32(lo)
    v *= np.float32(1.0 / span)
    np.nan_to_num(v, copy=False, nan=0.0)
    np.clip(v, 0.0, 1.0, out=v)
    if how == "asinh":
        v *= np.float32(_ASINH_SOFTENING)
        np.arcsinh(v, out=v)
        v *= np.float32(1.0 / math.asinh(_ASINH_SOFTENING))
    elif how == "sqrt":
        np.sqrt(v, out=v)
    v *= np.float32(255.0)
    v += np.float32(0.5)
    return v.astype(np.uint8)


def _image_bytes(rgba: npt.NDArray[np.uint8], fmt: str) -> bytes:
    """PNG (with alpha) or JPEG (on black) of an (h, w, 2|4) grey+alpha or RGBA array."""
    from PIL import Image

    mode = "LA" if rgba.shape[2] == 2 else "RGBA"
    image = Image.fromarray(rgba, mode=mode)
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=1)
    else:
        colour = image.convert("L" if mode == "LA" else "RGB")
        if mode == "LA":
            alpha = rgba[:, :, 1]
            colour = Image.fromarray(np.where(alpha > 0, rgba[:, :, 0], 0).astype(np.uint8))
        else:
            rgb = np.where(rgba[:, :, 3:4] > 0, rgba[:, :, :3], 0).astype(np.uint8)
            colour = Image.fromarray(rgb)
        colour.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _render_grey(values: Float64Array, settings: _Settings) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    grey_alpha: npt.NDArray[np.uint8] | None = None
    for fmt in settings.formats:
        if fmt == "fits":
            out[fmt] = _fits_bytes(values, settings.bitpix)
            continue
        if grey_alpha is None:
            grey = _stretch(values, settings.cuts[0], settings.stretch)
            alpha = np.where(np.isnan(values), 0, 255).astype(np.uint8)
            grey_alpha = np.stack([grey, alpha], axis=-1)
        out[fmt] = _image_bytes(grey_alpha, fmt)
    return out


def _render_color(bands: Sequence[Float64Array], settings: _Settings) -> dict[str, bytes]:
    rgba = _color_rgba(bands, settings)
    return {fmt: _image_bytes(rgba, fmt) for fmt in settings.formats}


def _color_rgba(bands: Sequence[Float64Array], settings: _Settings) -> npt.NDArray[np.uint8]:
    channels = [
        _stretch(b, cut, settings.stretch) for b, cut in zip(bands, settings.cuts, strict=True)
    ]
    has = ~np.all([np.isnan(b) for b in bands], axis=0)
    alpha = np.where(has, 255, 0).astype(np.uint8)
    return np.stack([*channels, alpha], axis=-1)


def _stats(values: Float64Array) -> dict[str, Any] | None:
    """Value range and MOC cells (bit mask of 32×32-pixel blocks) of a deepest tile."""
    finite = np.isfinite(values)
    if not finite.any():
        return None
    w = TILE_WIDTH >> _MOC_SHIFT  # pixels on a side of a block
    blocks = finite.reshape(1 << _MOC_SHIFT, w, 1 << _MOC_SHIFT, w).any(axis=(1, 3))
    sub = _sub_cells(_MOC_SHIFT)[blocks]
    mask = np.zeros(1 << (2 * _MOC_SHIFT), dtype=bool)
    mask[sub] = True
    return {
        "min": float(np.nanmin(values)),
        "max": float(np.nanmax(values)),
        "moc": np.packbits(mask).tobytes().hex(),
    }


# ---------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Job:
    root: str
    order: int
    settings: _Settings
    #: (pixel, [(path, hdu, band)]) for deepest tiles, or (pixel, []) for parents.
    tiles: tuple[tuple[int, tuple[tuple[str, int | str, int], ...]], ...]


def _combine(layers: list[Float64Array], how: str) -> Float64Array:
    if len(layers) == 1:
        return layers[0]
    stack = np.stack(layers)
    with np.errstate(invalid="ignore"), _quiet():
        if how == "median":
            return np.asarray(np.nanmedian(stack, axis=0), dtype=np.float64)
        return np.asarray(np.nanmean(stack, axis=0), dtype=np.float64)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's "mean of empty slice" (an empty cell is NaN, as wanted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _remove_tile(root: Path, order: int, pixel: int, settings: _Settings) -> None:
    for fmt in settings.formats:
        (root / tile_path(order, pixel, _EXT[fmt])).unlink(missing_ok=True)


def _run_deepest(job: _Job) -> list[tuple[int, dict[str, Any] | None]]:
    """Resample and write a batch of deepest tiles; each tile's stats (None: empty)."""
    root = Path(job.root)
    settings = job.settings
    out: list[tuple[int, dict[str, Any] | None]] = []
    nbands = 3 if settings.color else 1
    for pixel, inputs in job.tiles:
        sky = _TileSky(job.order, pixel)
        layers: list[list[Float64Array]] = [[] for _ in range(nbands)]
        for path, hdu, band in inputs:
            sampled = _sample(_open(path, hdu), sky)
            if sampled is not None:
                layers[band].append(sampled)
        if not any(layers):
            _remove_tile(root, job.order, pixel, settings)
            out.append((pixel, None))
            continue
        empty = np.full((TILE_WIDTH, TILE_WIDTH), np.nan)
        bands = [_combine(lay, settings.combine) if lay else empty for lay in layers]
        stats = _stats(bands[0] if nbands == 1 else _any_band(bands))
        if stats is None:
            _remove_tile(root, job.order, pixel, settings)
            out.append((pixel, None))
            continue
        files = (
            _render_color(bands, settings) if settings.color else _render_grey(bands[0], settings)
        )
        for fmt, data in files.items():
            _write(root / tile_path(job.order, pixel, _EXT[fmt]), data)
        out.append((pixel, stats))
    return out


def _any_band(bands: Sequence[Float64Array]) -> Float64Array:
    """For colour stats: band 0's values where it has data, else any band's."""
    merged = bands[0].copy()
    for b in bands[1:]:
        merged = np.where(np.isnan(merged), b, merged)
    return merged


def _halve(values: Float64Array) -> Float64Array:
    """2×2 mean ignoring NaN (NaN where all four are)."""
    h, w = values.shape[0] // 2, values.shape[1] // 2
    with _quiet():
        return np.asarray(np.nanmean(values.reshape(h, 2, w, 2), axis=(1, 3)), dtype=np.float64)


def _read_children(
    root: Path, order: int, pixel: int, settings: _Settings
) -> list[Float64Array] | None:
    """The parent tile's values assembled from its four children (per band), or None."""
    half = TILE_WIDTH // 2
    nb = 3 if settings.color else 1
    planes = [np.full((TILE_WIDTH, TILE_WIDTH), np.nan) for _ in range(nb)]
    found = False
    for q in range(4):
        child = 4 * pixel + q
        if settings.color:
            children = _read_rgb(root / tile_path(order + 1, child, _color_source(settings)))
        else:
            one = _read_fits(root / tile_path(order + 1, child, "fits"))
            children = None if one is None else [one]
        if children is None:
            continue
        found = True
        r0, c0 = (q & 1) * half, (q >> 1) * half
        for band, values in enumerate(children):
            planes[band][r0 : r0 + half, c0 : c0 + half] = _halve(values)
    return planes if found else None


def _color_source(settings: _Settings) -> str:
    return "png" if "png" in settings.formats else "jpg"


def _read_rgb(path: Path) -> list[Float64Array] | None:
    """An RGB tile as three float planes (0…255), NaN where transparent."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
    except FileNotFoundError:
        return None
    empty = rgba[:, :, 3] == 0
    return [np.where(empty, np.nan, rgba[:, :, k]) for k in range(3)]


def _run_parents(job: _Job) -> list[tuple[int, dict[str, Any] | None]]:
    """Write a batch of tiles of a lower order from their children."""
    root = Path(job.root)
    settings = job.settings
    out: list[tuple[int, dict[str, Any] | None]] = []
    for pixel, _ in job.tiles:
        planes = _read_children(root, job.order, pixel, settings)
        if planes is None or all(np.isnan(p).all() for p in planes):
            _remove_tile(root, job.order, pixel, settings)
            out.append((pixel, None))
            continue
        if settings.color:
            rgba = np.stack(
                [np.nan_to_num(p, nan=0.0) for p in planes]
                + [np.where(np.isnan(_any_band(planes)), 0.0, 255.0)],
                axis=-1,
            )
            rgba8 = np.asarray(np.rint(rgba), dtype=np.uint8)
            files = {fmt: _image_bytes(rgba8, fmt) for fmt in settings.formats}
        else:
            files = _render_grey(planes[0], settings)
        for fmt, data in files.items():
            _write(root / tile_path(job.order, pixel, _EXT[fmt]), data)
        out.append((pixel, {}))
    return out


# ---------------------------------------------------------------------------- the build


def _cuts_of(
    inputs: Sequence[_Input], nbands: int, percentiles: tuple[float, float]
) -> list[tuple[float, float]]:
    """Per band, the two percentiles of a sample of every input's pixels (~250k each)."""
    rng = np.random.default_rng(0)
    cuts: list[tuple[float, float]] = []
    for band in range(nbands):
        samples: list[Float64Array] = []
        for inp in inputs:
            if inp.band != band:
                continue
            opened = _open(inp.path, inp.hdu)
            ny, nx = opened.data.shape
            step = max(1, int(math.sqrt(ny * nx / 250_000)))
            values = _physical(opened, opened.data[::step, ::step]).ravel()
            samples.append(values[np.isfinite(values)])
        pool = np.concatenate(samples) if samples else np.zeros(0)
        if pool.size > 2_000_000:
            pool = rng.choice(pool, 2_000_000, replace=False)
        if pool.size == 0:
            cuts.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(pool, percentiles)
        cuts.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
    return cuts


def _output_bitpix(inputs: Sequence[_Input]) -> int:
    kinds = {(i.bitpix, i.scaled) for i in inputs}
    if len(kinds) == 1:
        bitpix, scaled = kinds.pop()
        if bitpix > 0 and not scaled:
            return bitpix
        if bitpix == -64:
            return -64
    return -32


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(loaded, dict) or loaded.get("version") != _MANIFEST_VERSION:
        return None
    return loaded


def _link_tree(old: Path, new: Path) -> int:
    """Hard-link every file of ``old`` into ``new`` (same layout); how many."""
    count = 0
    for dirpath, _dirs, files in os.walk(old):
        rel = Path(dirpath).relative_to(old)
        target = new / rel
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.startswith("."):
                continue
            os.link(Path(dirpath) / name, target / name)
            count += 1
    return count


def _pool_map(
    fn: Callable[[_Job], list[tuple[int, dict[str, Any] | None]]],
    jobs: list[_Job],
    pool: ProcessPoolExecutor | None,
    tick: Callable[[int], None],
) -> list[tuple[int, dict[str, Any] | None]]:
    out: list[tuple[int, dict[str, Any] | None]] = []
    if pool is None:
        for job in jobs:
            done = fn(job)
            out.extend(done)
            tick(len(done))
        return out
    for done in pool.map(fn, jobs):
        out.extend(done)
        tick(len(done))
    return out


def _mp_context() -> Any:
    """``fork`` from a single-threaded process (a worker starts at once, with the modules
    already imported), else ``spawn`` (forking a process with threads can deadlock)."""
    import multiprocessing
    import threading

    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _job_size(tiles: int, workers: int) -> int:
    """Tiles per job: at most :data:`_TILES_PER_JOB`, and at least 4 jobs per worker when
    there are enough tiles, so that the workers finish together."""
    return max(1, min(_TILES_PER_JOB, -(-tiles // (4 * workers))))


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing(root: Path, order: int, ext: str) -> list[int]:
    """The pixels of the tiles of an order present in ``root`` (a listing, not n opens)."""
    ext = "jpg" if ext == "jpeg" else ext
    return sorted(
        int(p.name[4 : -len(ext) - 1]) for p in root.glob(f"Norder{order}/Dir*/Npix*.{ext}")
    )


def _allsky(root: Path, order: int, settings: _Settings) -> None:
    """``NorderK/Allsky.*``: every tile of the order, reduced to 64×64 pixels, side by
    side (int(sqrt(n)) per row, left to right then top to bottom; HiPS 1.0 §4.3.2)."""
    n = 12 * 4**order
    cols = math.isqrt(n)
    rows = -(-n // cols)
    w = _ALLSKY_TILE
    factor = TILE_WIDTH // w
    nb = 3 if settings.color else 1
    planes = [np.full((rows * w, cols * w), np.nan) for _ in range(nb)]
    for pixel in _existing(root, order, _color_source(settings) if settings.color else "fits"):
        if settings.color:
            tile = _read_rgb(root / tile_path(order, pixel, _color_source(settings)))
        else:
            one = _read_fits(root / tile_path(order, pixel, "fits"))
            tile = None if one is None else [one]
        if tile is None:
            continue
        r, c = divmod(pixel, cols)
        for band, values in enumerate(tile):
            with _quiet():
                small = np.nanmean(values.reshape(w, factor, w, factor), axis=(1, 3))
            planes[band][r * w : (r + 1) * w, c * w : (c + 1) * w] = small
    base = root / f"Norder{order}"
    base.mkdir(parents=True, exist_ok=True)
    if settings.color:
        rgba = np.stack(
            [np.nan_to_num(p, nan=0.0) for p in planes]
            + [np.where(np.isnan(_any_band(planes)), 0.0, 255.0)],
            axis=-1,
        )
        rgba8 = np.asarray(np.rint(rgba), dtype=np.uint8)
        for fmt in settings.formats:
            _write(base / f"Allsky.{_EXT[fmt]}", _image_bytes(rgba8, fmt))
        return
    for fmt, data in _render_grey(planes[0], settings).items():
        _write(base / f"Allsky.{_EXT[fmt]}", data)


def _moc(order: int, stats: dict[str, dict[str, Any]]) -> Any:
    from mocpy import MOC

    depth = order + _MOC_SHIFT
    cells: list[npt.NDArray[np.int64]] = []
    for pixel, st in stats.items():
        mask = np.unpackbits(np.frombuffer(bytes.fromhex(st["moc"]), dtype=np.uint8)).astype(bool)
        sub = np.flatnonzero(mask).astype(np.int64)
        cells.append((np.int64(int(pixel)) << np.int64(2 * _MOC_SHIFT)) | sub)
    ipix = np.unique(np.concatenate(cells)) if cells else np.zeros(0, dtype=np.int64)
    return MOC.from_healpix_cells(
        ipix.astype(np.uint64), np.full(ipix.size, depth, dtype=np.uint8), max_depth=depth
    )


_INDEX_HTML = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<script type="importmap">{{"imports": {{"aladin-lite": "{aladin}"}}}}</script>
</head>
<body>
<h1>{title}</h1>
<p>{description}</p>
<div id="aladin" style="width: 100%; height: 640px"></div>
<script type="module">
import A from "aladin-lite";
await A.init;
const here = window.location.href.replace(/[^/]*$/, "");
A.aladin("#aladin", {{survey: here, fov: {fov}, target: "{ra} {dec}", showLayersControl: true}});
</script>
</body>
</html>
"""

#: Aladin Lite as the skyvault server ships it (no CDN), relative to a HiPS served at
#: ``/hips/images/NAME/``; a HiPS elsewhere needs the same server beside it.
ALADIN_FROM_IMAGE_HIPS = "../../../portal/vendor/aladin-lite/aladin.js"


def _index_html(path: Path, props: dict[str, str], aladin: str) -> None:
    """``index.html``: the HiPS in Aladin Lite from the skyvault server (every value in its
    text through the one XML escaping, as catalogue HiPS pages)."""
    from skyvault.formats._xml import escape_text

    _write(
        path,
        _INDEX_HTML.format(
            title=escape_text(props["obs_title"]),
            description=escape_text(props["obs_description"]),
            aladin=escape_text(aladin),
            fov=float(props["hips_initial_fov"]),
            ra=float(props["hips_initial_ra"]),
            dec=float(props["hips_initial_dec"]),
        ).encode(),
    )


def build_image_hips(
    inputs: Sequence[InputSpec],
    out_dir: Path,
    *,
    title: str,
    creator_did: str,
    tile_format: Sequence[str] = ("fits", "png"),
    order: int | None = None,
    combine: Combine = "mean",
    color: tuple[Sequence[InputSpec], Sequence[InputSpec], Sequence[InputSpec]] | None = None,
    stretch: Stretch = "asinh",
    cut: tuple[float, float] | None = None,
    cut_percentiles: tuple[float, float] = (0.5, 99.5),
    status: str = "public master clonableOnce",
    description: str | None = None,
    collection: str | None = None,
    aladin_url: str = ALADIN_FROM_IMAGE_HIPS,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 2,
) -> ImageHipsResult:
    """Build (or update) the image HiPS at ``out_dir`` and publish it atomically.

    ``inputs`` are FITS files or ``(file, hdu)`` pairs (grey HiPS); ``color`` three such
    lists, red, green, blue, instead (``inputs`` then empty).  ``out_dir`` becomes a link
    to a version directory beside it (``out_dir.parent/.skyvault/``), replaced at each
    build; a previous build there with the same settings is updated incrementally.
    Raises :class:`~skyvault.errors.UsageError` for inputs or options that cannot work.
    """
    start = time.perf_counter()
    formats = tuple(dict.fromkeys(f.lower().replace("jpg", "jpeg") for f in tile_format))
    unknown = [f for f in formats if f not in _EXT]
    if unknown or not formats:
        raise UsageError(
            f"unknown tile format {', '.join(unknown) or '(none)'}", hint="use fits, png, jpeg"
        )
    if combine not in ("mean", "median"):
        raise UsageError(f"combine must be mean or median, not {combine!r}")
    if stretch not in ("asinh", "linear", "sqrt"):
        raise UsageError(f"stretch must be asinh, linear or sqrt, not {stretch!r}")
    if order is not None and not 0 <= order <= MAX_ORDER:
        raise UsageError(f"the order must be between 0 and {MAX_ORDER}, not {order}")
    if workers < 1:
        raise UsageError(f"workers must be 1 or more, not {workers}")
    if color is not None:
        if inputs:
            raise UsageError("give either grey inputs or the three colour bands, not both")
        if len(color) != 3 or not all(color):
            raise UsageError("a colour HiPS needs inputs for each of its three bands")
        if "fits" in formats:
            raise UsageError(
                "a colour HiPS has PNG/JPEG tiles only", hint="tile formats png and/or jpeg"
            )
        banded = [(spec, band) for band, specs in enumerate(color) for spec in specs]
    else:
        if not inputs:
            raise UsageError("no input images", hint="give one or more FITS images")
        if "fits" not in formats:
            raise UsageError(
                "a grey image HiPS keeps FITS tiles (its lower orders are built from them)",
                hint="add fits to the tile formats",
            )
        banded = [(spec, 0) for spec in inputs]

    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_symlink():
        raise UsageError(
            f"{out_dir} exists and is not a HiPS skyvault built",
            hint="choose another output directory (skyvault makes it a link to its versions)",
        )
    previous_root = out_dir.resolve() if out_dir.is_symlink() else None
    previous = _read_manifest(previous_root) if previous_root is not None else None
    old_inputs: dict[str, Any] = previous["inputs"] if previous else {}

    _CACHE.clear()  # an input replaced since an earlier build in this process is reread
    try:
        return _build(
            banded, out_dir, previous_root, previous, old_inputs, title=title,
            creator_did=creator_did, formats=formats, order=order, combine=combine,
            color=color is not None, stretch=stretch, cut=cut, cut_percentiles=cut_percentiles,
            status=status, description=description, collection=collection,
            aladin_url=aladin_url, progress=progress,
            workers=workers, start=start,
        )  # fmt: skip
    finally:
        _CACHE.clear()  # no input stays open after the build


def _build(
    banded: list[tuple[InputSpec, int]],
    out_dir: Path,
    previous_root: Path | None,
    previous: dict[str, Any] | None,
    old_inputs: dict[str, Any],
    *,
    title: str,
    creator_did: str,
    formats: tuple[str, ...],
    order: int | None,
    combine: str,
    color: bool,
    stretch: str,
    cut: tuple[float, float] | None,
    cut_percentiles: tuple[float, float],
    status: str,
    description: str | None,
    collection: str | None,
    aladin_url: str,
    progress: Callable[[int, int], None] | None,
    workers: int,
    start: float,
) -> ImageHipsResult:
    """The build proper (see :func:`build_image_hips`; arguments checked there)."""
    from skyvault.catalog.layout import TableName, building
    from skyvault.hips.catalog import _initial_view

    nbands = 3 if color else 1
    scanned = [_scan(spec, band, old_inputs) for spec, band in banded]
    seen: dict[str, _Input] = {}
    for inp in scanned:
        seen.setdefault(inp.key, inp)
    scanned = list(seen.values())
    deepest = order if order is not None else deepest_order(min(i.scale_deg for i in scanned))
    bitpix = _output_bitpix(scanned) if not color else 8

    tiles_of = {inp.key: _tiles_of(inp, deepest) for inp in scanned}
    by_tile: dict[int, list[tuple[str, int | str, int]]] = {}
    for inp in scanned:
        for pixel in tiles_of[inp.key]:
            by_tile.setdefault(pixel, []).append((inp.path, inp.hdu, inp.band))

    # Settings: a rebuild keeps the previous cuts (tiles already written used them).
    old_settings = previous.get("settings") if previous else None
    if cut is not None:
        cuts = [(float(cut[0]), float(cut[1]))] * nbands
    elif old_settings is not None and _same_but_cuts(
        old_settings, deepest, formats, combine, stretch, color, bitpix
    ):
        cuts = [(float(a), float(b)) for a, b in old_settings["cuts"]]
    else:
        cuts = _cuts_of(scanned, nbands, cut_percentiles)
    settings = _Settings(
        order=deepest,
        formats=formats,
        combine=combine,
        stretch=stretch,
        color=color,
        bitpix=bitpix,
        cuts=tuple(cuts),
    )
    incremental = previous is not None and old_settings == settings.as_json()

    if incremental:
        assert previous is not None
        changed = {
            k
            for k, inp in seen.items()
            if k not in old_inputs
            or old_inputs[k]["sha256"] != inp.sha256
            or old_inputs[k]["band"] != inp.band
        }
        removed = set(old_inputs) - set(seen)
        dirty_set: set[int] = set()
        for k in changed:
            dirty_set.update(tiles_of[k])
        for k in changed | removed:
            if k in old_inputs:
                dirty_set.update(int(p) for p in old_inputs[k]["tiles"])
        tile_stats: dict[str, dict[str, Any]] = dict(previous["tiles"])
    else:
        dirty_set = set(by_tile)
        tile_stats = {}
    dirty = sorted(dirty_set)
    levels: list[list[int]] = [dirty]
    for _k in range(deepest - 1, -1, -1):
        levels.append(sorted({p >> 2 for p in levels[-1]}))
    total = sum(len(level) for level in levels)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    # The visible path out_dir is the link; its versions live beside it.
    name = TableName(out_dir.parent.name, out_dir.name)
    reused = 0
    with building(out_dir.parent.parent, name) as build:
        root = build.path
        if incremental and previous_root is not None:
            reused = _link_tree(previous_root, root)
        pool = None
        if workers > 1 and total > _POOL_FROM:
            pool = ProcessPoolExecutor(workers, mp_context=_mp_context())
        try:
            jobs = [
                _Job(
                    str(root),
                    deepest,
                    settings,
                    tuple((p, tuple(by_tile.get(p, ()))) for p in chunk),
                )
                for chunk in _chunks(dirty, _job_size(len(dirty), workers))
            ]
            for pixel, st in _pool_map(_run_deepest, jobs, pool, tick):
                if st is None:
                    tile_stats.pop(str(pixel), None)
                else:
                    tile_stats[str(pixel)] = st
            for depth, level in zip(range(deepest - 1, -1, -1), levels[1:], strict=True):
                jobs = [
                    _Job(str(root), depth, settings, tuple((p, ()) for p in chunk))
                    for chunk in _chunks(level, _job_size(len(level), workers))
                ]
                _pool_map(_run_parents, jobs, pool, tick)
        finally:
            if pool is not None:
                pool.shutdown()
        for allsky_order in ALLSKY_ORDERS:
            if allsky_order <= deepest:
                _allsky(root, allsky_order, settings)

        moc = _moc(deepest, tile_stats)
        moc.save(str(root / "Moc.fits"), format="fits", overwrite=True)
        sky_fraction = float(moc.sky_fraction)
        cells = np.array(sorted(int(p) for p in tile_stats), dtype=np.int64)
        ra0, dec0, fov0 = _initial_view(cells, deepest, sky_fraction)
        lo = min((s["min"] for s in tile_stats.values()), default=0.0)
        hi = max((s["max"] for s in tile_stats.values()), default=0.0)
        now = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
        created = (previous or {}).get("created", now) if incremental else now
        props = {
            "creator_did": creator_did,
            "obs_title": title,
            "obs_description": description or f"image HiPS of {len(seen)} images",
            "dataproduct_type": "image",
            **({"dataproduct_subtype": "color"} if color else {}),
            "hips_version": "1.4",
            "hips_release_date": now,
            "hips_creation_date": created,
            "hips_status": status,
            "hips_tile_format": " ".join("jpeg" if f == "jpeg" else f for f in formats),
            "hips_order": str(deepest),
            "hips_order_min": "0",
            "hips_tile_width": str(TILE_WIDTH),
            "hips_frame": "equatorial",
            "hips_builder": f"skyvault {__version__}",
            "hips_initial_ra": f"{ra0:.6f}",
            "hips_initial_dec": f"{dec0:.6f}",
            "hips_initial_fov": f"{fov0:.6f}",
            "hips_pixel_scale": f"{_hips_pixel_deg(deepest):.6g}",
            "s_pixel_scale": f"{min(i.scale_deg for i in scanned):.6g}",
            "hips_sampling": "bilinear",
            "moc_sky_fraction": f"{sky_fraction:.8f}",
            "moc_order": str(deepest + _MOC_SHIFT),
            "skyvault_combine": combine,
            "skyvault_stretch": stretch,
        }
        if not color:
            props["hips_pixel_bitpix"] = str(bitpix)
            props["hips_pixel_cut"] = f"{cuts[0][0]:.6g} {cuts[0][1]:.6g}"
            props["hips_data_range"] = f"{lo:.6g} {hi:.6g}"
        else:
            props["skyvault_color_cuts"] = " ".join(f"{a:.6g} {b:.6g}" for a, b in cuts)
        if collection is not None:
            # The web edge serves it only to callers who may read COLLECTION.obscore.
            props["skyvault_collection"] = collection
        text = "".join(f"{k:<24}= {' '.join(v.split())}\n" for k, v in props.items())
        _write(root / "properties", text.encode())
        _index_html(root / "index.html", props, aladin_url)

        manifest = {
            "version": _MANIFEST_VERSION,
            "created": created,
            "settings": settings.as_json(),
            "inputs": {
                inp.key: {
                    "path": inp.path,
                    "hdu": inp.hdu,
                    "band": inp.band,
                    "size": inp.size,
                    "mtime_ns": inp.mtime_ns,
                    "sha256": inp.sha256,
                    "tiles": tiles_of[inp.key],
                }
                for inp in seen.values()
            },
            "tiles": tile_stats,
        }
        _write(root / MANIFEST, json.dumps(manifest, separators=(",", ":")).encode())

    return ImageHipsResult(
        path=out_dir,
        order=deepest,
        inputs=len(seen),
        tiles=len(tile_stats),
        computed=total,
        computed_deepest=len(dirty),
        reused_files=reused,
        incremental=incremental,
        megapixels=sum(i.shape[0] * i.shape[1] for i in seen.values()) / 1e6,
        seconds=time.perf_counter() - start,
        sky_fraction=sky_fraction,
        cuts=cuts,
    )


def _same_but_cuts(
    old: dict[str, Any],
    order: int,
    formats: tuple[str, ...],
    combine: str,
    stretch: str,
    color: bool,
    bitpix: int,
) -> bool:
    return bool(
        old.get("order") == order
        and tuple(old.get("formats", ())) == formats
        and old.get("combine") == combine
        and old.get("stretch") == stretch
        and old.get("color") == color
        and old.get("bitpix") == bitpix
    )
