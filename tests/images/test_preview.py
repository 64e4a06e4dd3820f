"""Image previews: block means against numpy over the whole image, PNG/JPEG read back with
Pillow, orientation, bounded memory, and the cache (hits, invalidation, atomic writes)."""

from __future__ import annotations

import io
import math
import os
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from PIL import Image

import skyvault.images.preview as preview_module
from skyvault.errors import UsageError
from skyvault.images.preview import cached_preview, preview_array, render_preview


def block_means(data: Any, k: int) -> Any:
    """The oracle: NaN-padded k × k block means of the whole array, in one numpy call."""
    ny, nx = data.shape
    oy, ox = math.ceil(ny / k), math.ceil(nx / k)
    padded = np.full((oy * k, ox * k), np.nan)
    padded[:ny, :nx] = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(padded.reshape(oy, k, ox, k), axis=(1, 3))


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Any]:
    """A 250 × 130 image with NaNs, a bright square near FITS pixel (1, 1) and a gradient."""
    rng = np.random.default_rng(1)
    data = rng.normal(100, 5, (130, 250)).astype(np.float32)
    data += np.linspace(0, 20, 250, dtype=np.float32)
    data[:12, :12] = 1e4  # bottom-left in FITS
    data[60:64, 100:180] = np.nan
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(data).writeto(path)
    return path, data


def test_block_means_equal_numpy(image: tuple[Path, Any]) -> None:
    path, data = image
    for max_size, k in ((64, 4), (250, 1), (100, 3), (1, 250)):
        got = preview_array(path, max_size=max_size)
        np.testing.assert_allclose(got, block_means(data.astype(float), k), rtol=1e-12)
        assert max(got.shape) <= max_size


def test_png_and_jpeg(image: tuple[Path, Any]) -> None:
    path, data = image
    png = render_preview(path, max_size=64)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.mode == "L"
    assert picture.size == (63, 33)  # ceil(250/4) × ceil(130/4)
    pixels = np.asarray(picture)
    # FITS row 1 is the bottom of the picture: the bright square is at bottom-left
    assert pixels[-1, 0] == 255 and pixels[0, 0] < 255
    # zscale + linear, by astropy, over the block means; NaN blocks black
    means = block_means(data.astype(float), 4)
    lo, hi = ZScaleInterval().get_limits(means[np.isfinite(means)])
    expected = np.round(np.clip((means - lo) / (hi - lo), 0, 1) * 255)
    expected[~np.isfinite(means)] = 0
    np.testing.assert_array_equal(pixels[::-1], expected.astype(np.uint8))
    jpeg = render_preview(path, fmt="jpeg", max_size=64, stretch="asinh")
    decoded = Image.open(io.BytesIO(jpeg))
    assert decoded.format == "JPEG" and decoded.size == (63, 33)


def test_stretches_differ_and_stay_in_range(image: tuple[Path, Any]) -> None:
    path, _ = image
    decoded = {
        s: np.asarray(Image.open(io.BytesIO(render_preview(path, max_size=64, stretch=s))))
        for s in ("linear", "asinh", "sqrt", "log")
    }
    assert len({d.tobytes() for d in decoded.values()}) == 4
    # asinh, sqrt and log lift the faint end above linear
    for s in ("asinh", "sqrt", "log"):
        assert decoded[s].mean() > decoded["linear"].mean()


def test_compressed_extension_and_cube(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 1000, (3, 150, 170)).astype(np.int32)
    path = tmp_path / "cube.fits.fz"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.BinTableHDU.from_columns([fits.Column("x", "E", array=[1.0])], name="T"),
            fits.CompImageHDU(data[0], tile_shape=(7, 170), name="SCI"),
            fits.ImageHDU(data, name="CUBE"),
        ]
    ).writeto(path)
    expected = block_means(data[0].astype(float), 2)
    np.testing.assert_array_equal(preview_array(path, max_size=100), expected)  # first image
    np.testing.assert_array_equal(preview_array(path, "SCI", max_size=100), expected)
    np.testing.assert_array_equal(preview_array(path, "CUBE", max_size=100), expected)
    with pytest.raises(UsageError, match=r"HDU 'T' of image cube\.fits\.fz is not an image"):
        preview_array(path, "T")
    with pytest.raises(UsageError, match="has no HDU 'NOPE'"):
        preview_array(path, "NOPE")


def test_bad_options(image: tuple[Path, Any]) -> None:
    path, _ = image
    with pytest.raises(UsageError, match="unknown preview format 'gif'"):
        render_preview(path, fmt="gif")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown stretch 'hist'"):
        render_preview(path, stretch="hist")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="at least 1 pixel"):
        render_preview(path, max_size=0)


def test_memory_bounded(tmp_path: Path) -> None:
    """A 512² preview of a 4096² compressed float32 image: memory is the preview and a strip,
    not the 64 MiB image (reading ``.data`` would allocate all of it)."""
    n = 4096
    data = np.zeros((n, n), dtype=np.float32)
    data[::50, ::50] = 1.0
    path = tmp_path / "big.fits.fz"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="GZIP_1", tile_shape=(16, n))]
    ).writeto(path)
    del data
    render_preview(path, max_size=64)  # imports, caches
    tracemalloc.start()
    try:
        png = render_preview(path, max_size=512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Image.open(io.BytesIO(png)).size == (512, 512)
    assert peak < n * n * 4 / 4, f"peak {peak / 2**20:.1f} MiB"


def test_cache_hit_invalidation_and_no_partial_files(
    image: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = image
    cache = tmp_path / "cache"
    first = cached_preview(path, cache, max_size=64)
    assert first.path is not None and first.path.is_file()
    assert first.media_type == "image/png"
    assert first.read() == render_preview(path, max_size=64)
    assert [p.name for p in cache.rglob(".tmp-*")] == []

    def no_render(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("rendered again")

    with monkeypatch.context() as patch:
        patch.setattr(preview_module, "render_preview", no_render)
        again = cached_preview(path, cache, max_size=64)
        assert again.path == first.path
        with pytest.raises(AssertionError, match="rendered again"):
            cached_preview(path, cache, max_size=64, fmt="jpeg")  # another key
        with pytest.raises(AssertionError, match="rendered again"):
            cached_preview(path, cache, max_size=32)
    # the file changes: a new entry
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = cached_preview(path, cache, max_size=64)
    assert changed.path != first.path


def test_cache_that_cannot_be_written(image: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = image
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    got = cached_preview(path, blocker, max_size=64, fmt="jpeg")
    assert got.path is None and got.content is not None
    assert got.media_type == "image/jpeg"
    assert Image.open(io.BytesIO(got.read())).format == "JPEG"


ASTROPY_DATA = Path(fits.__file__).parent.parent.parent


@pytest.mark.parametrize(
    "relative",
    [
        "io/fits/tests/data/comp.fits",  # tile-compressed, int16
        "io/fits/tests/data/scale.fits",  # BSCALE/BZERO
        "wcs/tests/data/dss.14.29.56-62.41.05.fits.gz",  # gzip
    ],
)
def test_real_files_astropy_ships(relative: str) -> None:
    path = ASTROPY_DATA / relative
    if not path.is_file():
        pytest.skip(f"this astropy ships no {path.name}")
    with fits.open(path) as hdul:
        hdu = next(h for h in hdul if h.header.get("NAXIS", 0) >= 2 and h.data is not None)
        data = np.asarray(hdu.data, dtype=float)
    k = math.ceil(max(data.shape) / 32)
    np.testing.assert_allclose(preview_array(path, max_size=32), block_means(data, k), rtol=1e-12)
    assert Image.open(io.BytesIO(render_preview(path, max_size=32))).size == (
        math.ceil(data.shape[1] / k),
        math.ceil(data.shape[0] / k),
    )


@pytest.mark.parametrize("fill", [np.nan, 7.0])
def test_blank_and_constant_images(tmp_path: Path, fill: float) -> None:
    """No value at all (black) or one value everywhere: a picture, not an error."""
    path = tmp_path / "flat.fits"
    fits.PrimaryHDU(np.full((40, 3000), fill, dtype=np.float32)).writeto(path)
    picture = Image.open(io.BytesIO(render_preview(path)))
    assert picture.size == (1000, 14)
    pixels = np.asarray(picture)
    assert len(np.unique(pixels)) == 1
    if np.isnan(fill):
        assert pixels.max() == 0
