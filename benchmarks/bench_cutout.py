"""SODA cutout latency: a 256 × 256 cutout of a 4096 × 4096 float32 image, against astropy.

skyvault's :func:`skyvault.images.cutout.cutout` (open, WCS, pixel box of a CIRCLE of 128
pixels' radius, read of the box alone, FITS bytes with the original cards and a shifted WCS)
is timed against the same work done with astropy directly: ``fits.open(memmap=True)``,
``WCS``, ``Cutout2D`` of the memory-mapped ``hdu.data`` at the circle's centre (256 × 256),
the original header updated with ``Cutout2D``'s WCS, FITS bytes.  Both run interleaved, one
call each in turn at the same random positions, in one process, so the load of the machine
falls on both alike; the figure that counts is the ratio of the medians.

The same is repeated on a tile-compressed copy (RICE_1, fpack's row tiles), where astropy's
``hdu.data`` decompresses the whole image and skyvault only the tiles the box meets.

Usage::

    .venv/bin/python benchmarks/bench_cutout.py [--runs 200] [--out benchmarks/results/cutout.md]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import astropy
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

from skyvault.images.cutout import cutout
from skyvault.sky.regions import Circle

N = 4096
SCALE = 0.2 / 3600  # degrees per pixel
CUT = 256


def make_image(directory: Path) -> tuple[Path, Path]:
    """The 4096² float32 image (sky noise and point sources) and its RICE_1 compressed copy."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(N + 1) / 2, (N + 1) / 2]
    w.wcs.cd = [[-SCALE, 0.0], [0.0, SCALE]]
    header = w.to_header()
    for i in range(60):  # a header of a realistic length
        header[f"HIERARCH SKYVAULT BENCH {i}"] = (i * 1.5, "filler card")
    rng = np.random.default_rng(7)
    data = rng.normal(1000.0, 10.0, (N, N)).astype(np.float32)
    ys, xs = rng.integers(0, N, (2, 3000))
    data[ys, xs] += 5000.0
    plain = directory / "image.fits"
    fits.PrimaryHDU(data, header).writeto(plain)
    packed = directory / "image.fits.fz"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, header, compression_type="RICE_1")]
    ).writeto(packed)
    return plain, packed


def with_astropy(path: Path, index: int, ra: float, dec: float) -> int:
    """The baseline: astropy's own tools on a memory-mapped HDU, to FITS bytes."""
    with fits.open(path, memmap=True) as hdul:
        hdu = hdul[index]
        wcs = WCS(hdu.header)
        cut = Cutout2D(hdu.data, SkyCoord(ra, dec, unit="deg"), (CUT, CUT), wcs=wcs)
        header = hdu.header.copy()
        header.update(cut.wcs.to_header())
        buffer = io.BytesIO()
        fits.PrimaryHDU(cut.data, header).writeto(buffer)
        return len(buffer.getvalue())


def with_skyvault(path: Path, ra: float, dec: float) -> int:
    return cutout(path, Circle(ra, dec, (CUT / 2 - 0.5) * SCALE)).size


def interleaved(
    runs: int, positions: list[tuple[float, float]], a: Callable[..., int], b: Callable[..., int]
) -> tuple[list[float], list[float]]:
    """Times of ``a`` and ``b`` called in turn at the same positions (after a warm-up)."""
    a(*positions[0])
    b(*positions[0])
    ta: list[float] = []
    tb: list[float] = []
    for i in range(runs):
        ra, dec = positions[i % len(positions)]
        for call, times in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            start = time.perf_counter()
            call(ra, dec)
            times.append(time.perf_counter() - start)
    return ta, tb


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--packed-runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(11)
    span = N / 2 * SCALE - CUT * SCALE
    positions = [
        (150.0 + rng.uniform(-span, span), 2.0 + rng.uniform(-span, span)) for _ in range(64)
    ]
    with tempfile.TemporaryDirectory(prefix="bench-cutout-") as tmp:
        plain, packed = make_image(Path(tmp))
        load_before = os.getloadavg()[0]
        sv, ap = interleaved(
            args.runs,
            positions,
            lambda ra, dec: with_skyvault(plain, ra, dec),
            lambda ra, dec: with_astropy(plain, 0, ra, dec),
        )
        svz, apz = interleaved(
            args.packed_runs,
            positions,
            lambda ra, dec: with_skyvault(packed, ra, dec),
            lambda ra, dec: with_astropy(packed, 1, ra, dec),
        )
        load_after = os.getloadavg()[0]
        size = with_skyvault(plain, *positions[0])

    rows = [
        ("plain float32, skyvault `cutout`", sv),
        ("plain float32, astropy `Cutout2D` (memmap)", ap),
        ("RICE_1 tiles, skyvault `cutout`", svz),
        ("RICE_1 tiles, astropy `Cutout2D` (`.data`)", apz),
    ]
    lines = [
        "| case | runs | p50 ms | p90 ms |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {len(t)} | {pct(t, 50):.1f} | {pct(t, 90):.1f} |" for name, t in rows),
    ]
    ratio = statistics.median(sv) / statistics.median(ap)
    ratio_z = statistics.median(svz) / statistics.median(apz)
    summary = (
        f"p50 ratio skyvault / astropy: **{ratio:.2f}×** (plain), **{ratio_z:.3f}×** "
        f"(compressed); skyvault p50 {pct(sv, 50):.1f} ms against the 50 ms target; "
        f"cutout file {size:,} bytes."
    )
    machine = (
        f"{os.cpu_count()} CPUs, {platform.machine()}, {platform.system()}; Python "
        f"{platform.python_version()}, numpy {np.__version__}, astropy {astropy.__version__}; "
        f"load average {load_before:.1f} → {load_after:.1f} (1 min)"
    )
    print("\n".join(lines))
    print(summary)
    print(machine)
    if args.out:
        text = f"""# SODA cutout latency (`skyvault.images.cutout`)

Command (from the repository root):

```
.venv/bin/python benchmarks/bench_cutout.py --runs {args.runs} --out {args.out}
```

- Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
- Machine: {machine}. The two sides run interleaved in one process: the ratio is the figure.
- Image: {N} × {N} float32 (64 MiB), TAN, 0.2″ pixels, 60 extra header cards; a
  compressed copy with RICE_1 row tiles. Cutout: CIRCLE of radius 127.5 px at 64 random
  positions (skyvault's box 256–258 px a side: it covers the circle), astropy
  `Cutout2D` of 256 × 256 at the same centres; both produce FITS bytes in memory.

{chr(10).join(lines)}

{summary}
"""
        args.out.write_text(text)


if __name__ == "__main__":
    main()
