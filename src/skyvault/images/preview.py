"""Previews of FITS images (DataLink ``#preview``): a PNG or JPEG of one HDU, small, cached.

**What it shows.**  The image HDU's pixels (the first plane of a cube), block-averaged by an
integer factor ``k`` so that the long side is at most ``max_size`` pixels (1024 by default):
each preview pixel is the mean of a ``k × k`` block, NaN and blank pixels left out.  North is
not turned up: rows are shown as FITS numbers them, row 1 at the bottom, as DS9 does.

**The stretch** (astropy.visualization): limits by IRAF's *zscale* (``ZScaleInterval``:
a line fitted to the sorted pixel values around the median, the usual choice for sky
images: faint sources show, the noise is grey), then ``linear`` (default), ``asinh``
(``AsinhStretch(0.1)``: bright cores kept, faint wings lifted), ``sqrt`` or ``log``; pixels
with no value are black.

**Memory.**  The pixels are read in strips of ``k`` rows (a whole number of compression tiles
for a tile-compressed HDU) through ``.section``, each strip reduced before the next is read:
memory is the preview plus one strip, whatever the image's size.

**Cache.**  :func:`cached_preview` keeps each rendering under a directory the caller gives,
named by a hash of the file's resolved path, size and modification time, the HDU and the
rendering options, so a changed file is rendered afresh; a rendering is written to a temporary
file and renamed into place (readers never see half a file; two renderers of one preview
both succeed).  A cache that cannot be written is skipped: the preview is still returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from skyvault.errors import InternalError, UsageError
from skyvault.images.cutout import open_image

__all__ = [
    "MEDIA_TYPES",
    "Preview",
    "cached_preview",
    "preview_array",
    "render_preview",
]

log = logging.getLogger(__name__)

Format = Literal["png", "jpeg"]
Stretch = Literal["linear", "asinh", "sqrt", "log"]

#: The media type of each format.
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg"}

#: Part of every cache key: raise it when the rendering changes.
RENDERING_VERSION = 1

#: Bytes (as float64) of a strip at most (but one block of rows at least): a few times this
#: is the working memory besides the preview itself.
_STRIP_BYTES = 4 << 20


def _image_hdu(hdul: fits.HDUList, hdu: int | str | None, image: str) -> Any:
    if hdu is not None:
        try:
            found = hdul[hdu]
        except (KeyError, IndexError):
            raise UsageError(f"image {image} has no HDU {hdu!r}") from None
        if int(found.header.get("NAXIS", 0)) < 2 or not hasattr(found, "section"):
            raise UsageError(f"HDU {hdu!r} of image {image} is not an image")
        return found
    for candidate in hdul:
        if isinstance(candidate, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU) and (
            int(candidate.header.get("NAXIS", 0)) >= 2
        ):
            return candidate
    raise InternalError(f"image {image} has no image HDU to preview")


def _strip_rows(header: fits.Header, nx: int, k: int, compressed: bool) -> int:
    """Rows per strip: whole k-row blocks, whole compression tiles, about 4 MiB."""
    rows = k * max(1, _STRIP_BYTES // (8 * nx * k))
    if compressed:
        tile = int(header.get("ZTILE2", 1)) if "ZTILE2" in header else 1
        rows = max(rows, math.lcm(k, tile) if tile <= 4096 else k)
    return rows


def preview_array(
    path: str | os.PathLike[str],
    hdu: int | str | None = None,
    *,
    max_size: int = 1024,
    image: str | None = None,
) -> npt.NDArray[np.float64]:
    """The block-averaged pixels of an image HDU (numpy order, row 0 = FITS row 1).

    Parameters
    ----------
    path
        The FITS file.
    hdu
        Index or EXTNAME of the HDU; ``None``: the first HDU holding an image.
    max_size
        The longest side of the result, in pixels.
    image
        The image's name in messages (never a server path); the file's name by default.
    """
    if max_size < 1:
        raise UsageError(f"a preview is at least 1 pixel wide, not {max_size}")
    name = image if image is not None else Path(path).name
    with open_image(path, name, memmap=False) as hdul:
        chosen = _image_hdu(hdul, hdu, name)
        header = chosen.header
        naxis = int(header["NAXIS"])
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
        k = max(1, math.ceil(max(nx, ny) / max_size))
        out_x, out_y = math.ceil(nx / k), math.ceil(ny / k)
        out = np.empty((out_y, out_x))
        rows = _strip_rows(header, nx, k, isinstance(chosen, fits.CompImageHDU))
        planes = (0,) * (naxis - 2)
        for r0 in range(0, ny, rows):
            r1 = min(ny, r0 + rows)
            blocks = math.ceil((r1 - r0) / k)
            # one float64 buffer of whole blocks; NaN (no value) counts as nothing
            padded = np.full((blocks * k, out_x * k), np.nan)
            padded[: r1 - r0, :nx] = chosen.section[(*planes, slice(r0, r1), slice(None))]
            empty = np.isnan(padded)
            padded[empty] = 0.0
            sums = padded.reshape(blocks, k, out_x, k).sum(axis=(1, 3))
            counts = k * k - empty.reshape(blocks, k, out_x, k).sum(axis=(1, 3))
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(counts > 0, sums / counts, np.nan)
            out[r0 // k : r0 // k + blocks] = means
    return out


def _stretched(values: npt.NDArray[np.float64], stretch: Stretch) -> npt.NDArray[np.uint8]:
    from astropy.visualization import (
        AsinhStretch,
        LinearStretch,
        LogStretch,
        SqrtStretch,
        ZScaleInterval,
    )

    stretches = {
        "linear": LinearStretch(),
        "asinh": AsinhStretch(0.1),
        "sqrt": SqrtStretch(),
        "log": LogStretch(),
    }
    if stretch not in stretches:
        raise UsageError(f"unknown stretch {stretch!r}: use one of {', '.join(stretches)}")
    finite = np.isfinite(values)
    unit = values.astype(np.float32)  # the one working copy, stretched in place
    if finite.any():
        lo, hi = ZScaleInterval().get_limits(values[finite])
        if hi <= lo:
            hi = lo + 1.0
        unit -= lo
        unit /= hi - lo
        unit[~finite] = 0.0
        np.clip(unit, 0.0, 1.0, out=unit)
        stretches[stretch](unit, clip=True, out=unit)
    else:
        unit[:] = 0.0
    unit *= 255.0
    np.rint(unit, out=unit)
    out: npt.NDArray[np.uint8] = unit.astype(np.uint8)
    return out


def render_preview(
    path: str | os.PathLike[str],
    hdu: int | str | None = None,
    *,
    fmt: Format = "png",
    max_size: int = 1024,
    stretch: Stretch = "linear",
    image: str | None = None,
) -> bytes:
    """A PNG or JPEG preview of an image HDU (see the module docstring for what it shows)."""
    from PIL import Image

    if fmt not in MEDIA_TYPES:
        raise UsageError(f"unknown preview format {fmt!r}: use png or jpeg")
    grey = _stretched(preview_array(path, hdu, max_size=max_size, image=image), stretch)
    picture = Image.fromarray(np.ascontiguousarray(grey[::-1]), mode="L")
    buffer = io.BytesIO()
    if fmt == "png":
        picture.save(buffer, format="PNG")
    else:
        picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass(frozen=True)
class Preview:
    """A rendered preview: in the cache (``path``) or, when the cache could not take it, in
    memory (``content``)."""

    media_type: str
    path: Path | None = None
    content: bytes | None = None

    def read(self) -> bytes:
        """The image's bytes."""
        if self.content is not None:
            return self.content
        assert self.path is not None
        return self.path.read_bytes()


def cache_key(
    path: str | os.PathLike[str],
    hdu: int | str | None,
    *,
    fmt: str,
    max_size: int,
    stretch: str,
) -> str:
    """The cache name of a preview: a hash of the file (resolved path, size, mtime), the HDU
    and the rendering options."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    parts = (
        RENDERING_VERSION,
        str(resolved),
        stat.st_size,
        stat.st_mtime_ns,
        repr(hdu),
        fmt,
        max_size,
        stretch,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40]


def cached_preview(
    path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    hdu: int | str | None = None,
    *,
    fmt: Format = "png",
    max_size: int = 1024,
    stretch: Stretch = "linear",
    image: str | None = None,
) -> Preview:
    """The preview of an image HDU from the cache under ``cache_dir``, rendered on a miss.

    The cache entry is ``cache_dir/<2 hex>/<40 hex>.<fmt>``; the caller may empty the
    directory at any time.
    """
    if fmt not in MEDIA_TYPES:
        raise UsageError(f"unknown preview format {fmt!r}: use png or jpeg")
    key = cache_key(path, hdu, fmt=fmt, max_size=max_size, stretch=stretch)
    target = Path(cache_dir) / key[:2] / f"{key}.{fmt}"
    media_type = MEDIA_TYPES[fmt]
    if target.is_file():
        return Preview(media_type, path=target)
    content = render_preview(path, hdu, fmt=fmt, max_size=max_size, stretch=stretch, image=image)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=".tmp-", suffix=f".{fmt}", delete=False
        ) as handle:
            try:
                handle.write(content)
            except BaseException:
                handle.close()
                with contextlib.suppress(OSError):
                    os.unlink(handle.name)
                raise
        os.replace(handle.name, target)
    except OSError as exc:
        log.warning("preview cache %s not written: %s", target.parent, exc)
        return Preview(media_type, content=content)
    return Preview(media_type, path=target)
