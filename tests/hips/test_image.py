"""Image HiPS (``skyvault.hips.image``) against independent oracles.

* ``reproject.hips.reproject_to_hips`` on the same image: the same tiles, the same values
  (both interpolate bilinearly at the HEALPix cell centres);
* astropy-healpix: point sources at known RA/Dec are the brightest pixel of their
  neighbourhood at the tile pixel of their HEALPix cell (decoded here bit by bit from the
  HiPS NESTED layout, not with the module's own helper);
* mocpy: ``Moc.fits`` contains the images' footprints;
* CDS Hipsgen's LINT (Debian's ``aladin``), where installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from skyvault.errors import UsageError
from skyvault.hips.image import MANIFEST, build_image_hips

ORDER = 9  # 1"/pixel images: the first order with pixels finer than 1" is 9 (0.805")
SOURCES = [(150.02, 2.01), (149.99, 1.98), (150.05, 2.03), (150.12, 2.06)]
ALADIN_JAR = Path("/usr/share/java/aladin.jar")


def _galactic(ra: float, dec: float) -> tuple[float, float]:
    from astropy.coordinates import SkyCoord

    g = SkyCoord(ra, dec, unit="deg").galactic
    return float(g.l.deg), float(g.b.deg)


def _wcs(
    ra: float, dec: float, n: int, rot: float = 0.0, scale: float = 1 / 3600, gal: bool = False
) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["GLON-TAN", "GLAT-TAN"] if gal else ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = _galactic(ra, dec) if gal else [ra, dec]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    w.wcs.cd = np.array([[-scale * c, scale * s], [scale * s, scale * c]])
    return w


def _image(
    path: Path,
    ra: float,
    dec: float,
    *,
    n: int = 600,
    rot: float = 0.0,
    seed: int = 0,
    level: float = 100.0,
    dtype: type = np.float32,
    gal: bool = False,
) -> Path:
    """A smooth background, a little noise and Gaussian stars at ``SOURCES``."""
    w = _wcs(ra, dec, n, rot, gal=gal)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n].astype(float)
    data = level + 0.02 * x + rng.normal(0, 1.0, (n, n))
    for sra, sdec in SOURCES:
        sx, sy = w.all_world2pix(*(_galactic(sra, sdec) if gal else (sra, sdec)), 0)
        data += 2000.0 * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * 1.5**2))
    tmp = path.with_name(path.name + ".tmp")
    fits.PrimaryHDU(data.astype(dtype), header=w.to_header()).writeto(tmp)
    os.replace(tmp, path)  # a new file (inode) when it replaces one
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    return {
        "a": _image(d / "a.fits", 150.0, 2.0),
        "b": _image(d / "b.fits", 150.1, 2.05, rot=20, seed=1),
        "far": _image(d / "far.fits", 152.0, 3.0, seed=2),
    }


@pytest.fixture(scope="module")
def built(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hips") / "two"
    build_image_hips(
        [inputs["a"], inputs["b"]],
        out,
        title="two images",
        creator_did="ivo://skyvault.test/P/two",
        tile_format=("fits", "png", "jpeg"),
        workers=1,
    )
    return out


def _props(root: Path) -> dict[str, str]:
    out = {}
    for line in (root / "properties").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _tiles(root: Path, order: int, ext: str = "fits") -> dict[int, Path]:
    return {int(p.name[4:].split(".")[0]): p for p in root.glob(f"Norder{order}/Dir*/Npix*.{ext}")}


def _unspread(v: int) -> int:
    return sum(((v >> (2 * b)) & 1) << b for b in range(16))


# ------------------------------------------------------------------------ layout


def test_properties_have_the_mandatory_keywords(built: Path) -> None:
    props = _props(built)
    for key in (
        "creator_did", "obs_title", "dataproduct_type", "hips_version", "hips_release_date",
        "hips_status", "hips_tile_format", "hips_order", "hips_frame",
        "hips_initial_ra", "hips_initial_dec", "hips_initial_fov", "hips_pixel_cut",
        "hips_data_range", "hips_tile_width", "hips_order_min", "moc_sky_fraction",
        "hips_pixel_bitpix",
    ):  # fmt: skip
        assert props.get(key), key
    assert props["dataproduct_type"] == "image"
    assert props["hips_version"] == "1.4"
    assert props["hips_order"] == str(ORDER)
    assert props["hips_tile_format"] == "fits png jpeg"
    assert props["hips_tile_width"] == "512"
    assert props["hips_pixel_bitpix"] == "-32"
    assert abs(float(props["hips_initial_ra"]) - 150.05) < 0.1
    lo, hi = map(float, props["hips_pixel_cut"].split())
    assert 90 < lo < hi
    dmin, dmax = map(float, props["hips_data_range"].split())
    assert dmin < lo and dmax > 1500  # the stars' peaks are in the data, not in the cut


def test_tiles_follow_the_directory_rule(built: Path) -> None:
    files = list(built.glob("Norder*/Dir*/Npix*.*"))
    assert len(files) > 30
    for f in files:
        n = int(f.name[4:].split(".")[0])
        assert f.parent.name == f"Dir{n // 10000 * 10000}"
    assert any(f.parent.name != "Dir0" for f in files)
    # Every order from 0 to the deepest, each with fits, png and jpg tiles.
    for order in range(ORDER + 1):
        assert _tiles(built, order).keys() == _tiles(built, order, "png").keys()
        assert _tiles(built, order).keys() == _tiles(built, order, "jpg").keys()
        assert _tiles(built, order)


def test_allsky_dimensions(built: Path) -> None:
    # HiPS 1.0 §4.3.2: int(sqrt(768)) = 27 tiles a row at order 3, so 29 rows; 64 px each.
    for order, (cols, rows) in {0: (3, 4), 1: (6, 8), 2: (13, 15), 3: (27, 29)}.items():
        data = fits.getdata(built / f"Norder{order}" / "Allsky.fits")
        assert data.shape == (rows * 64, cols * 64)
        with Image.open(built / f"Norder{order}" / "Allsky.png") as png:
            assert png.size == (cols * 64, rows * 64)
    # The one order-3 tile with data sits at its slot (FITS rows bottom-up).
    (pixel,) = _tiles(built, 3)
    data = fits.getdata(built / "Norder3" / "Allsky.fits")[::-1]
    r, c = divmod(pixel, 27)
    assert np.isfinite(data[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]).any()
    data[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64] = np.nan
    assert not np.isfinite(data).any()


def test_index_html_uses_the_servers_aladin_lite(built: Path) -> None:
    text = (built / "index.html").read_text()
    assert "portal/vendor/aladin-lite/aladin.js" in text
    assert '"imports"' in text
    assert "cds.unistra.fr" not in text and "https://" not in text


# ------------------------------------------------------------------------ values


@pytest.mark.slow
def test_tiles_match_reproject_to_hips(inputs: dict[str, Path], tmp_path: Path) -> None:
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    theirs = tmp_path / "reproject"
    reproject_to_hips(
        str(inputs["b"]),
        coord_system_out="equatorial",
        reproject_function=reproject_interp,
        output_directory=str(theirs),
        level=ORDER,
    )
    ours = tmp_path / "ours"
    build_image_hips([inputs["b"]], ours, title="b", creator_did="ivo://t/b", workers=1)
    their_tiles, our_tiles = _tiles(theirs, ORDER), _tiles(ours, ORDER)
    assert their_tiles.keys() == our_tiles.keys()
    compared = 0
    for pixel, path in their_tiles.items():
        a = fits.getdata(path).astype(float)
        b = fits.getdata(our_tiles[pixel]).astype(float)
        both = np.isfinite(a) & np.isfinite(b)
        # The same cells have data, give or take the image's edge pixels.
        assert abs(int(np.isfinite(a).sum()) - int(np.isfinite(b).sum())) <= 0.01 * a.size
        np.testing.assert_allclose(b[both], a[both], rtol=1e-4, atol=1e-3)
        compared += int(both.sum())
    assert compared > 300_000


def test_galactic_images_land_at_their_icrs_position(tmp_path: Path) -> None:
    path = _image(tmp_path / "gal.fits", 150.0, 2.0, n=300, rot=30, gal=True)
    build_image_hips([path], tmp_path / "h", title="g", creator_did="ivo://t/g", workers=1)
    _check_sources(tmp_path / "h", SOURCES[:2])


def test_point_sources_are_at_their_healpix_pixel(built: Path) -> None:
    _check_sources(built, SOURCES)


def _check_sources(built: Path, sources: list[tuple[float, float]]) -> None:
    """Each source is the brightest pixel around the tile pixel of its HEALPix cell."""
    from astropy import units as u
    from astropy_healpix import HEALPix

    hp = HEALPix(nside=2 ** (ORDER + 9), order="nested")
    tiles = _tiles(built, ORDER)
    for ra, dec in sources:
        cell = int(hp.lonlat_to_healpix(ra * u.deg, dec * u.deg))
        tile, sub = cell >> 18, cell & (4**9 - 1)
        i, j = _unspread(sub), _unspread(sub >> 1)  # row from the top, column
        data = fits.getdata(tiles[tile]).astype(float)[::-1]  # FITS rows are bottom-up
        patch = data[max(i - 3, 0) : i + 4, max(j - 3, 0) : j + 4]
        assert data[i, j] == np.nanmax(patch), (ra, dec)
        assert data[i, j] > 1000  # a star over a background of ~100
        # PNG rows are top-down: the same pixel is the brightest there too.
        with Image.open(tiles[tile].with_suffix(".png")) as png:
            grey = np.asarray(png)[:, :, 0].astype(int)
        assert grey[i, j] == grey[max(i - 3, 0) : i + 4, max(j - 3, 0) : j + 4].max()


def test_lower_orders_average_their_children(built: Path) -> None:
    parent_order = ORDER - 1
    for pixel, path in _tiles(built, parent_order).items():
        parent = fits.getdata(path).astype(float)[::-1]
        for q in range(4):
            child_path = _tiles(built, ORDER).get(4 * pixel + q)
            r0, c0 = (q & 1) * 256, (q >> 1) * 256
            block = parent[r0 : r0 + 256, c0 : c0 + 256]
            if child_path is None:
                assert np.isnan(block).all()
                continue
            child = fits.getdata(child_path).astype(float)[::-1]
            with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
                expected = np.nanmean(child.reshape(256, 2, 256, 2), axis=(1, 3))
            np.testing.assert_allclose(block, expected, rtol=1e-6, equal_nan=True)


def test_overlap_is_the_mean_or_the_median(tmp_path: Path) -> None:
    same = [_image(tmp_path / f"s{k}.fits", 150.0, 2.0, n=200, seed=k) for k in range(2)]
    odd = _image(tmp_path / "odd.fits", 150.0, 2.0, n=200, seed=9, level=10_000.0)
    stack = [fits.getdata(p).astype(float) for p in [*same, odd]]
    mean = build_image_hips([*same, odd], tmp_path / "mean", title="m", creator_did="ivo://t/m",
                            workers=1, order=7)  # fmt: skip
    median = build_image_hips([*same, odd], tmp_path / "median", title="m",
                              creator_did="ivo://t/m", workers=1, order=7,
                              combine="median")  # fmt: skip
    assert mean.order == median.order == 7

    def values(root: Path) -> np.ndarray:
        tiles = [fits.getdata(p).astype(float) for p in _tiles(root, 7).values()]
        flat = np.concatenate([t.ravel() for t in tiles])
        return flat[np.isfinite(flat)]

    expected_mean = np.mean([np.median(s) for s in stack])
    assert abs(np.median(values(tmp_path / "mean")) - expected_mean) < 50
    # The median ignores the outlier image.
    assert abs(np.median(values(tmp_path / "median")) - np.median(stack[0])) < 5


def test_integer_images_keep_their_bitpix(tmp_path: Path) -> None:
    path = _image(tmp_path / "int.fits", 150.0, 2.0, n=200, dtype=np.int16)
    build_image_hips([path], tmp_path / "h", title="i", creator_did="ivo://t/i", workers=1)
    assert _props(tmp_path / "h")["hips_pixel_bitpix"] == "16"
    tile = next(iter(_tiles(tmp_path / "h", ORDER).values()))
    with fits.open(tile, do_not_scale_image_data=True) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        blank = hdul[0].header["BLANK"]
        raw = hdul[0].data.copy()
    assert raw.dtype.kind == "i"
    assert (raw == blank).any() and (raw != blank).any()  # the image is smaller than a tile


def test_moc_covers_the_images(built: Path, inputs: dict[str, Path]) -> None:
    from astropy.coordinates import SkyCoord
    from mocpy import MOC

    moc = MOC.from_fits(built / "Moc.fits")
    union = None
    rng = np.random.default_rng(3)
    for key in ("a", "b"):
        with fits.open(inputs[key]) as hdul:
            w = WCS(hdul[0].header)
            n = hdul[0].data.shape[0]
        x, y = rng.uniform(0, n - 1, (2, 2000))
        inside = w.pixel_to_world(x, y)
        assert moc.contains_skycoords(inside).all()
        corners = w.pixel_to_world([-0.5, n - 0.5, n - 0.5, -0.5], [-0.5, -0.5, n - 0.5, n - 0.5])
        poly = MOC.from_polygon_skycoord(SkyCoord(corners), max_depth=16)
        union = poly if union is None else union.union(poly)
    assert union is not None
    far = SkyCoord(152.0, 3.0, unit="deg")
    assert not moc.contains_skycoords(far)
    # No more than the blocks of 32×32 cells the edges cross.
    assert union.sky_fraction <= moc.sky_fraction <= 1.25 * union.sky_fraction
    assert abs(float(_props(built)["moc_sky_fraction"]) - moc.sky_fraction) < 1e-8


def test_colour_hips(inputs: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "bands"
    d.mkdir()
    red = _image(d / "r.fits", 150.0, 2.0, n=300)
    w = _wcs(150.0, 2.0, 300)
    flat = np.full((300, 300), 100.0, dtype=np.float32)
    for name in ("g", "b"):
        fits.PrimaryHDU(flat, header=w.to_header()).writeto(d / f"{name}.fits")
    build_image_hips(
        [], tmp_path / "rgb", title="rgb", creator_did="ivo://t/rgb",
        tile_format=("png", "jpeg"), color=([red], [d / "g.fits"], [d / "b.fits"]), workers=1,
    )  # fmt: skip
    props = _props(tmp_path / "rgb")
    assert props["dataproduct_subtype"] == "color"
    assert props["hips_tile_format"] == "png jpeg"
    assert not list((tmp_path / "rgb").glob("Norder*/Dir*/*.fits"))
    from astropy import units as u
    from astropy_healpix import HEALPix

    ra, dec = SOURCES[0]
    cell = int(
        HEALPix(nside=2 ** (ORDER + 9), order="nested").lonlat_to_healpix(ra * u.deg, dec * u.deg)
    )
    tile = _tiles(tmp_path / "rgb", ORDER, "png")[cell >> 18]
    i, j = _unspread(cell & (4**9 - 1)), _unspread((cell & (4**9 - 1)) >> 1)
    with Image.open(tile) as png:
        rgba = np.asarray(png.convert("RGBA")).astype(int)
    r, g, b, a = rgba[i, j]
    assert a == 255 and r > g + 100 and r > b + 100  # a star in the red band only
    assert rgba[:, :, 3].min() == 0  # transparent off the images
    with Image.open(tmp_path / "rgb" / "Norder3" / "Allsky.png") as allsky:
        assert allsky.size == (27 * 64, 29 * 64)


def test_mistakes_are_clear(inputs: dict[str, Path], tmp_path: Path) -> None:
    no_wcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.zeros((10, 10), dtype=np.float32)).writeto(no_wcs)
    with pytest.raises(UsageError, match="has no celestial WCS"):
        build_image_hips([no_wcs], tmp_path / "x", title="x", creator_did="ivo://t/x")
    with pytest.raises(UsageError, match="no HDU 3"):
        build_image_hips([(inputs["a"], 3)], tmp_path / "x", title="x", creator_did="ivo://t/x")
    with pytest.raises(UsageError, match="keeps FITS tiles"):
        build_image_hips([inputs["a"]], tmp_path / "x", title="x", creator_did="ivo://t/x",
                         tile_format=("png",))  # fmt: skip
    with pytest.raises(UsageError, match="PNG/JPEG tiles only"):
        build_image_hips([], tmp_path / "x", title="x", creator_did="ivo://t/x",
                         color=([inputs["a"]], [inputs["a"]], [inputs["a"]]))  # fmt: skip
    with pytest.raises(UsageError, match="cannot read"):
        build_image_hips([tmp_path / "missing.fits"], tmp_path / "x", title="x",
                         creator_did="ivo://t/x")  # fmt: skip
    assert not (tmp_path / "x").exists()
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="exists and is not a HiPS skyvault built"):
        build_image_hips([inputs["a"]], tmp_path / "plain", title="x", creator_did="ivo://t/x")


# ------------------------------------------------------------------------ incremental


def _snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for p in root.glob("Norder*/Dir*/Npix*.*"):
        st = p.stat()
        out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mtime_ns, st.st_ino)
    return out


def test_incremental_rebuild_touches_only_the_new_images_tiles(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "inc"
    first = build_image_hips([inputs["a"]], out, title="inc", creator_did="ivo://t/inc", workers=1)
    assert not first.incremental
    before = _snapshot(out)
    second = build_image_hips(
        [inputs["a"], inputs["far"]], out, title="inc", creator_did="ivo://t/inc", workers=1
    )
    assert second.incremental
    after = _snapshot(out)
    far_tiles = set(_tiles_of_input(out, inputs["far"]))
    a_tiles = set(_tiles_of_input(out, inputs["a"]))
    assert far_tiles and not far_tiles & a_tiles
    for rel, (data, mtime, ino) in before.items():
        order = int(rel.split("/")[0][6:])
        pixel = int(rel.split("/")[2][4:].split(".")[0])
        shares_parent = any(t >> (2 * (ORDER - order)) == pixel for t in far_tiles)
        if shares_parent:
            continue  # a common ancestor of both images: recomputed
        assert after[rel] == (data, mtime, ino), rel  # same bytes, mtime, inode (ETag)
    new = set(after) - set(before)
    assert {f"Norder{ORDER}/Dir{t // 10000 * 10000}/Npix{t}.fits" for t in far_tiles} <= new
    # Only the far image's tiles and their ancestors were computed.
    expected = len(far_tiles) + sum(
        len({t >> (2 * k) for t in far_tiles}) for k in range(1, ORDER + 1)
    )
    assert second.computed == expected
    assert second.computed < 0.5 * first.computed + len(far_tiles) + ORDER + 1
    # Nothing changed: nothing recomputed, every tile file kept.
    third = build_image_hips(
        [inputs["a"], inputs["far"]], out, title="inc", creator_did="ivo://t/inc", workers=1
    )
    assert third.incremental and third.computed == 0
    assert _snapshot(out) == after
    # Removing an input removes the tiles only it touched.
    build_image_hips([inputs["a"]], out, title="inc", creator_did="ivo://t/inc", workers=1)
    assert set(_tiles(out, ORDER)) == a_tiles
    assert _snapshot(out).keys() == before.keys()


def _tiles_of_input(root: Path, path: Path) -> list[int]:
    import json

    manifest = json.loads((root / MANIFEST).read_text())
    for key, entry in manifest["inputs"].items():
        if key.startswith(str(path.resolve())):
            return [int(t) for t in entry["tiles"]]
    return []


def test_changed_input_is_rehashed_and_rebuilt(tmp_path: Path) -> None:
    path = _image(tmp_path / "c.fits", 150.0, 2.0, n=200)
    out = tmp_path / "h"
    build_image_hips([path], out, title="c", creator_did="ivo://t/c", workers=1, cut=(0, 3000))
    tile = next(iter(_tiles(out, ORDER).values()))
    old = fits.getdata(tile).copy()
    with fits.open(path, mode="update") as hdul:
        hdul[0].data += 500
    result = build_image_hips([path], out, title="c", creator_did="ivo://t/c", workers=1,
                              cut=(0, 3000))  # fmt: skip
    assert result.incremental and result.computed > 0
    new = fits.getdata(next(iter(_tiles(out, ORDER).values())))
    both = np.isfinite(old) & np.isfinite(new)
    np.testing.assert_allclose(new[both] - old[both], 500, atol=0.01)
    assert "manifest" not in (out / "properties").read_text()
    # Replaced by a new file (another inode) between two builds of one process: reread.
    _image(path, 150.0, 2.0, n=200, level=1100.0)
    build_image_hips([path], out, title="c", creator_did="ivo://t/c", workers=1,
                     cut=(0, 3000))  # fmt: skip
    newer = fits.getdata(next(iter(_tiles(out, ORDER).values())))
    np.testing.assert_allclose(np.nanmedian(newer) - np.nanmedian(old), 1000, atol=5)


def test_failed_build_leaves_the_previous_hips(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "atomic"
    build_image_hips([inputs["a"]], out, title="x", creator_did="ivo://t/x", workers=1)
    before = _snapshot(out)

    def boom(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_image_hips([inputs["a"], inputs["far"]], out, title="x", creator_did="ivo://t/x",
                         workers=1, progress=boom)  # fmt: skip
    assert _snapshot(out) == before
    assert not any((tmp_path / ".skyvault" / "tmp").iterdir())


def test_two_workers_build_the_same_tiles(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyvault.hips import image

    monkeypatch.setattr(image, "_POOL_FROM", 0)  # a pool even for these few tiles
    seen: list[tuple[int, int]] = []
    one = build_image_hips([inputs["a"], inputs["b"]], tmp_path / "one", title="w",
                           creator_did="ivo://t/w", workers=1)  # fmt: skip
    two = build_image_hips([inputs["a"], inputs["b"]], tmp_path / "two", title="w",
                           creator_did="ivo://t/w", workers=2,
                           progress=lambda d, t: seen.append((d, t)))  # fmt: skip
    assert one.tiles == two.tiles and seen[-1] == (two.computed, two.computed)
    a, b = _snapshot(tmp_path / "one"), _snapshot(tmp_path / "two")
    assert a.keys() == b.keys()
    assert all(a[k][0] == b[k][0] for k in a)


# ------------------------------------------------------------------------ Hipsgen


@pytest.mark.slow
@pytest.mark.skipif(
    not ALADIN_JAR.exists() or shutil.which("java") is None,
    reason="Hipsgen needs Java and Debian's aladin package (apt-get install aladin)",
)
def test_hipsgen_lint_accepts_the_image_hips(built: Path, tmp_path: Path) -> None:
    def lint(root: Path) -> str:
        done = subprocess.run(
            ["java", "-Xmx512m", "-jar", str(ALADIN_JAR), "-hipsgen", f"out={root}", "LINT"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        return done.stdout + done.stderr

    copy = tmp_path / "copy"
    shutil.copytree(built.resolve(), copy)
    out = lint(copy)
    assert "is IVOA HiPS 1.0 compatible" in out, out
    assert "not IVOA HiPS 1.0 compatible" not in out, out
    for part in ('"properties" file ok', '"Moc.fits" ok', "[Norder3/Allsky.fits] ok",
                 "[Norder3/Allsky.png] ok"):  # fmt: skip
        assert part in out, out
    # The check can fail: without a mandatory keyword the same HiPS is refused.
    props = copy / "properties"
    props.write_text("".join(f"{line}\n" for line in props.read_text().splitlines()
                             if not line.startswith("hips_frame")))  # fmt: skip
    assert "not IVOA HiPS 1.0 compatible" in lint(copy)
    os.sync()


# ------------------------------------------------------------------------ serving


def test_served_by_name_and_listed(inputs: dict[str, Path], tmp_path: Path) -> None:
    import re
    from urllib.parse import urljoin

    from fastapi.testclient import TestClient

    from skyvault.config import Settings
    from skyvault.hips.store import image_hips_dir
    from skyvault.service.app import create_app
    from tests.service.conftest import ROOMY_AUTH

    data = tmp_path / "data"
    data.mkdir()
    build_image_hips([inputs["a"]], image_hips_dir(data, "deep-r"), title="deep r",
                     creator_did="ivo://t/deep-r", workers=1)  # fmt: skip
    settings = Settings(data_dir=data, auth=ROOMY_AUTH)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/hips/images/deep-r/properties")
        assert r.status_code == 200 and "dataproduct_type" in r.text
        assert r.headers["access-control-allow-origin"] == "*"
        tile = next(iter(_tiles(image_hips_dir(data, "deep-r"), ORDER, "png").values()))
        rel = tile.relative_to(image_hips_dir(data, "deep-r"))
        r = client.get(f"/hips/images/deep-r/{rel}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        etag = r.headers["etag"]
        r = client.get(f"/hips/images/deep-r/{rel}", headers={"If-None-Match": etag})
        assert r.status_code == 304
        # Hidden, missing and outside files are the same 404.
        for bad in (MANIFEST, "nope.fits", "%2e%2e/%2e%2e/properties", "Norder9/%2e%2e"):
            assert client.get(f"/hips/images/deep-r/{bad}").status_code == 404, bad
        assert client.get("/hips/images/other/properties").status_code == 404
        # The list names it with its URL; the index page loads Aladin Lite from here.
        listing = client.get("/hips/list").text
        assert "hips_service_url        = http://testserver/hips/images/deep-r" in listing
        page = client.get("/hips/images/deep-r/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        (aladin,) = re.findall(r'"(\.\./[^"]+aladin\.js)"', page.text)
        assert client.get(urljoin(str(page.url), aladin)).status_code == 200


def test_cli_builds_by_name(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skyvault.cli import main
    from skyvault.hips.store import image_hips_dir

    data = tmp_path / "data"
    status = main(["hips", "build", "--images", str(inputs["a"]), "--name", "cli",
                   "--format", "fits,jpeg", "--workers", "1", "--data", str(data)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0 and "cli: image HiPS built, 1 images" in out
    assert _props(image_hips_dir(data, "cli"))["hips_tile_format"] == "fits jpeg"
    status = main(["hips", "build", "--images", str(inputs["a"]), "--data", str(data)])
    err = capsys.readouterr().err
    assert status == 2 and "needs --name NAME" in err and err.count("\n") == 1
    status = main(["hips", "build", "--data", str(data)])
    assert status == 2 and "--images" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(
    not ALADIN_JAR.exists() or shutil.which("java") is None,
    reason="Hipsgen needs Java and Debian's aladin package (apt-get install aladin)",
)
def test_same_tiles_as_a_hipsgen_build(inputs: dict[str, Path], tmp_path: Path) -> None:
    """CDS Hipsgen (the reference generator) on the same image: the same deepest tiles with
    the same values (both bilinear at the cell centres), the same Allsky geometry."""
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(inputs["b"], source / "b.fits")
    theirs = tmp_path / "hipsgen"
    done = subprocess.run(
        ["java", "-Xmx1g", "-jar", str(ALADIN_JAR), "-hipsgen", f"in={source}",
         f"out={theirs}", "id=skyvault/P/test", f"order={ORDER}", "INDEX", "TILES"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ours = tmp_path / "ours"
    build_image_hips([inputs["b"]], ours, title="b", creator_did="ivo://t/b", workers=1)
    their_tiles, our_tiles = _tiles(theirs, ORDER), _tiles(ours, ORDER)
    assert their_tiles.keys() == our_tiles.keys()
    equal = total = 0
    for pixel, path in their_tiles.items():
        a = fits.getdata(path).astype(float)
        b = fits.getdata(our_tiles[pixel]).astype(float)
        # Hipsgen fills a few more cells along the image's edge.
        assert np.isfinite(b).sum() <= np.isfinite(a).sum() <= np.isfinite(b).sum() + 0.01 * a.size
        both = np.isfinite(a) & np.isfinite(b)
        equal += int((np.abs(a - b)[both] <= 1e-3 * np.abs(a[both])).sum())
        total += int(both.sum())
    assert total > 300_000 and equal >= 0.995 * total  # the rest: cells at the edge
    # Hipsgen writes the order-3 Allsky (the one Aladin uses); the same mosaic geometry.
    a = fits.getdata(theirs / "Norder3" / "Allsky.fits")
    assert a.shape == fits.getdata(ours / "Norder3" / "Allsky.fits").shape == (29 * 64, 27 * 64)


def test_cli_builds_a_colour_hips(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skyvault.cli import main

    out = tmp_path / "rgb"
    a, b = str(inputs["a"]), str(inputs["b"])
    status = main(["hips", "build", "--red", a, "--green", a, b, "--blue", b, "--out", str(out),
                   "--workers", "1"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert _props(out)["dataproduct_subtype"] == "color"
    assert _props(out)["hips_tile_format"] == "png"
    status = main(["hips", "build", "--red", a, "--green", a, "--out", str(tmp_path / "x")])
    assert status == 2 and "needs --red, --green and --blue" in capsys.readouterr().err


def test_grid_transform_matches_the_exact_one(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """World → pixel interpolated from a 7-pixel grid equals the exact transform; a tile
    whose check fails (forced here) is transformed exactly, with the same values."""
    from skyvault.hips import image

    fast = build_image_hips([inputs["b"]], tmp_path / "fast", title="f", creator_did="ivo://t/f",
                            workers=1)  # fmt: skip
    opened = image._open(str(inputs["b"].resolve()), 0)
    for pixel in list(_tiles(tmp_path / "fast", ORDER))[:3]:
        sky = image._TileSky(ORDER, pixel)
        x, y = image._pixels(opened, sky)
        lon, lat = sky.all()
        xe, ye = image._world2pix(opened, lon.ravel(), lat.ravel())
        assert np.abs(x - xe).max() < 1e-3 and np.abs(y - ye).max() < 1e-3
    monkeypatch.setattr(image, "_GRID_TOLERANCE", -1.0)
    exact = build_image_hips([inputs["b"]], tmp_path / "exact", title="f",
                             creator_did="ivo://t/f", workers=1)  # fmt: skip
    assert fast.tiles == exact.tiles
    for pixel, path in _tiles(tmp_path / "fast", ORDER).items():
        a, b = fits.getdata(path), fits.getdata(_tiles(tmp_path / "exact", ORDER)[pixel])
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3, equal_nan=True)


def test_cli_builds_a_collections_hips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skyvault.cli import main
    from skyvault.hips.store import image_hips_dir
    from skyvault.images.ingest import ingest_images

    src = tmp_path / "src"
    src.mkdir()
    files = []
    for k, (band, ra) in enumerate([("r", 150.0), ("r", 150.05), ("g", 150.0)]):
        path = _image(src / f"img{k}.fits", ra, 2.0, n=200, seed=k)
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["FILTER"] = band
        files.append(path)
    data = tmp_path / "data"
    ingest_images(files, "deep", data)
    status = main(["hips", "build", "--collection", "deep", "--band", "r", "--workers", "1",
                   "--data", str(data)])  # fmt: skip
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "deep-r: image HiPS built, 2 images" in out.out
    assert _props(image_hips_dir(data, "deep-r"))["dataproduct_type"] == "image"
    status = main(["hips", "build", "--collection", "deep", "--color", "r,g,g", "--workers", "1",
                   "--data", str(data)])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert _props(image_hips_dir(data, "deep-color"))["dataproduct_subtype"] == "color"
    status = main(["hips", "build", "--collection", "deep", "--band", "z", "--data", str(data)])
    assert status == 2 and "has no image in band 'z'" in capsys.readouterr().err
    status = main(["hips", "build", "--collection", "nope", "--data", str(data)])
    assert status == 2 and "no image collection 'nope'" in capsys.readouterr().err


def test_a_collections_hips_is_as_visible_as_the_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from skyvault.auth import AuthStorage, grant_access
    from skyvault.cli import main
    from skyvault.config import Settings
    from skyvault.images.ingest import ingest_images
    from skyvault.service.app import create_app
    from tests.service.conftest import ROOMY_AUTH

    path = _image(tmp_path / "img.fits", 150.0, 2.0, n=200)
    data = tmp_path / "data"
    ingest_images([path], "hidden", data)
    assert main(["hips", "build", "--collection", "hidden", "--workers", "1",
                 "--data", str(data)]) == 0  # fmt: skip
    assert main(["hips", "build", "--images", str(path), "--name", "files", "--workers", "1",
                 "--data", str(data)]) == 0  # fmt: skip
    capsys.readouterr()
    settings = Settings(data_dir=data, auth=ROOMY_AUTH)

    def seen() -> tuple[int, int, str]:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            return (
                client.get("/hips/images/hidden/properties").status_code,
                client.get("/hips/images/files/properties").status_code,
                client.get("/hips/list").text,
            )

    hidden, files, listing = seen()
    assert (hidden, files) == (404, 200)  # the collection is not public yet
    assert "/hips/images/files" in listing and "/hips/images/hidden" not in listing
    storage = AuthStorage.for_data_dir(data)
    try:
        grant_access(storage, "hidden", None)
    finally:
        storage.close()
    hidden, files, listing = seen()
    assert (hidden, files) == (200, 200)
    assert "/hips/images/hidden" in listing
