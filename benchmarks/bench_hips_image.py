"""Image HiPS: build throughput against ``reproject.hips.reproject_to_hips`` (issue 14).

The same synthetic image (``--size``² float32, 1″ pixels, TAN, stars on a sloped sky) is
turned into a HiPS at the same order by

* **baseline** ``reproject_to_hips(..., reproject_function=reproject_interp)`` (FITS tiles,
  lower orders, ``properties``; no Allsky, no MOC), one thread and ``threads=2``;
* **skyvault** ``build_image_hips`` with FITS tiles only (the same output, plus Allsky
  0–3, ``Moc.fits`` and the manifest), ``workers=1`` and ``workers=2``; and FITS+PNG.

Throughput is input megapixels per second (and per core used).  Then **incremental**: one
more image (¼ of the size) beside the first, rebuilt into the same HiPS: the share of the
deepest tiles recomputed.  Machine load is printed with the figures (the 2-core sandbox is
shared: compare the ratios, measured in the same run).

Usage::

    .venv/bin/python benchmarks/bench_hips_image.py [--size 2048] [--repeat 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS


def synthetic_image(path: Path, ra: float, dec: float, n: int, seed: int, stars: int = 200) -> None:
    """An n×n float32 TAN image (1″ pixels) centred on (ra, dec): a gentle gradient, noise
    and ``stars`` Gaussian sources, written to ``path``."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cd = [[-1 / 3600, 0], [0, 1 / 3600]]
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    data = 100 + 0.01 * x + rng.normal(0, 1, (n, n)).astype(np.float32)
    for sx, sy in rng.uniform(0, n, (stars, 2)):
        lo_y, lo_x = int(max(sy - 8, 0)), int(max(sx - 8, 0))
        sl = (slice(lo_y, int(sy + 8)), slice(lo_x, int(sx + 8)))
        data[sl] += 1000 * np.exp(-((x[sl] - sx) ** 2 + (y[sl] - sy) ** 2) / 4.5)
    fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(path, overwrite=True)


def report(lines: list[str], out: Path | None) -> None:
    """Print the Markdown ``lines``; append them, and a blank line, to ``out`` when set."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def _timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--inc-size", type=int, default=4096, help="the incremental base image")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    from skyvault.hips.image import build_image_hips, deepest_order

    work = Path(tempfile.mkdtemp(prefix="bench-hips-image-"))
    try:
        image = work / "big.fits"
        extra = work / "extra.fits"
        synthetic_image(image, 150.0, 2.0, args.size, 0)
        base = work / "base.fits"
        synthetic_image(base, 150.0, 2.0, args.inc_size, 2)
        offset = (args.inc_size * 0.55) / 3600
        synthetic_image(extra, 150.0 + offset, 2.0 + offset, 256, 1)
        mpix = args.size**2 / 1e6
        order = deepest_order(1 / 3600)
        load_before = os.getloadavg()[0]
        count = [0]

        def out() -> Path:
            count[0] += 1
            return work / f"out{count[0]}" / "h"

        def reproject(threads: int | bool) -> Callable[[], object]:
            return lambda: reproject_to_hips(
                str(image), coord_system_out="equatorial", reproject_function=reproject_interp,
                output_directory=str(out()), level=order, threads=threads,
            )  # fmt: skip

        def ours(workers: int, formats: tuple[str, ...]) -> Callable[[], object]:
            return lambda: build_image_hips(
                [image], out(), title="bench", creator_did="ivo://bench/h",
                tile_format=formats, order=order, workers=workers,
            )  # fmt: skip

        rows = [
            ("reproject_to_hips, 1 thread", 1, _timed(reproject(False), args.repeat)),
            ("reproject_to_hips, threads=2", 2, _timed(reproject(2), args.repeat)),
            ("skyvault, FITS, 1 worker", 1, _timed(ours(1, ("fits",)), args.repeat)),
            ("skyvault, FITS, 2 workers", 2, _timed(ours(2, ("fits",)), args.repeat)),
            ("skyvault, FITS+PNG, 2 workers", 2, _timed(ours(2, ("fits", "png")), args.repeat)),
        ]
        # Incremental: the big image, then one more image beside it.
        inc = work / "inc" / "h"
        first = build_image_hips([base], inc, title="i", creator_did="ivo://b/i", order=order)
        start = time.perf_counter()
        second = build_image_hips(
            [base, extra], inc, title="i", creator_did="ivo://b/i", order=order
        )
        inc_seconds = time.perf_counter() - start
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base1, base2 = rows[0][2], rows[1][2]
    lines = [
        f"Input: one {args.size}×{args.size} float32 image ({mpix:.2f} Mpixel, 1″ pixels), "
        f"order {order}; load average {load_before:.1f} before / {load_after:.1f} after.",
        "",
        "| build | seconds | Mpixel/s | Mpixel/s per core | vs reproject (same cores) |",
        "|---|---|---|---|---|",
    ]
    for label, cores, seconds in rows:
        base = base1 if cores == 1 else base2
        lines.append(
            f"| {label} | {seconds:.2f} | {mpix / seconds:.2f} | {mpix / seconds / cores:.2f} "
            f"| {base / seconds:.2f}× |"
        )
    lines += [
        "",
        f"Incremental: a HiPS of one {args.inc_size}² image ({first.tiles} deepest tiles, "
        f"built in {first.seconds:.1f} s), then a 256² image added at its corner: "
        f"{second.computed_deepest} deepest tiles recomputed of {second.tiles} "
        f"({second.computed_deepest / second.tiles:.1%}), {second.computed} tiles over all "
        f"orders of {first.computed} in the first build "
        f"({second.computed / max(first.computed, 1):.1%}), in {inc_seconds:.2f} s "
        f"(Allsky, MOC, properties included); {second.reused_files} files kept as hard links.",
    ]
    report(lines, args.out)


if __name__ == "__main__":
    main()
