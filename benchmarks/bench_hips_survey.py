"""Image HiPS at survey scale: the incremental share and image-tile serving (issue 14).

``bench_hips_image.py`` measures build throughput on one image; its incremental check has
only 128 deepest tiles, so "one new image" is 1.6 % of the HiPS by granularity alone.
This benchmark builds a *survey*: ``--grid``² images of ``--size``² pixels (1″, TAN, stars
on a sloped sky, neighbours overlapping by 5 %) into one HiPS (FITS + PNG tiles), then

1. **incremental**: one more image inside the survey → the share of deepest tiles (and of
   tiles over all orders) recomputed, and the rebuild time against the first build's;
2. **serving**: a live ``skyvault serve`` (a subprocess); random FITS and PNG tiles of the
   deepest order and random lower-order tiles over one keep-alive client, p50/p90 after a
   warm-up, with the same tile revalidated (``If-None-Match`` → 304); baseline taking turns
   with them: ``GET /tap/availability`` (no authentication, no file).

The machine is shared: compare the ratios measured in the same run; the load is printed.

Usage::

    .venv/bin/python benchmarks/bench_hips_survey.py [--grid 10] [--size 512] \
        [--requests 600] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench_hips_image import report, synthetic_image
from bench_tap import Server

NAME = "survey"


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the build's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _serve(data: Path, hips: Path, requests: int) -> dict[str, dict[str, float]]:
    import httpx

    deepest = max(int(p.name[len("Norder") :]) for p in hips.glob("Norder*"))
    groups = {
        "deepest FITS": sorted(hips.glob(f"Norder{deepest}/Dir*/Npix*.fits")),
        "deepest PNG": sorted(hips.glob(f"Norder{deepest}/Dir*/Npix*.png")),
        "lower orders PNG": sorted(
            p for p in hips.glob("Norder*/Dir*/Npix*.png") if p.parts[-3] != f"Norder{deepest}"
        ),
    }
    rel = {k: [p.relative_to(hips).as_posix() for p in v] for k, v in groups.items()}
    timings: dict[str, list[float]] = {k: [] for k in [*rel, "304 revalidation", "baseline"]}
    with Server(data, "hips-survey") as server:
        site = server.url.removesuffix("/tap")
        rng = random.Random(14)
        with httpx.Client(timeout=30) as client:
            for i in range(requests + 60):
                for kind, tiles in rel.items():
                    tile = rng.choice(tiles)
                    t0 = time.perf_counter()
                    r = client.get(f"{site}/hips/images/{NAME}/{tile}")
                    t1 = time.perf_counter()
                    assert r.status_code == 200, (r.status_code, tile)
                    if kind == "deepest PNG":
                        etag = r.headers["etag"]
                        t2 = time.perf_counter()
                        r304 = client.get(
                            f"{site}/hips/images/{NAME}/{tile}", headers={"If-None-Match": etag}
                        )
                        t3 = time.perf_counter()
                        assert r304.status_code == 304, r304.status_code
                        if i >= 60:
                            timings["304 revalidation"].append((t3 - t2) * 1000)
                    if i >= 60:
                        timings[kind].append((t1 - t0) * 1000)
                t0 = time.perf_counter()
                a = client.get(f"{site}/tap/availability")
                t1 = time.perf_counter()
                assert a.status_code == 200
                if i >= 60:
                    timings["baseline"].append((t1 - t0) * 1000)
    out = {}
    for kind, ms in timings.items():
        q = statistics.quantiles(ms, n=10)
        out[kind] = {"p50": statistics.median(ms), "p90": q[8], "n": len(ms)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=int, default=10, help="grid × grid images")
    parser.add_argument("--size", type=int, default=512, help="pixels on a side")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from skyvault.catalog.layout import image_hips_root
    from skyvault.hips.image import build_image_hips, deepest_order

    work = Path(tempfile.mkdtemp(prefix="bench-hips-survey-"))
    try:
        data = work / "data"
        data.mkdir()
        step = args.size * 0.95 / 3600  # degrees between neighbours: 5 % overlap
        stars = max(args.size // 20, 5)
        images = []
        for i in range(args.grid):
            for j in range(args.grid):
                path = work / f"img_{i:02d}_{j:02d}.fits"
                ra, dec = 150.0 + i * step, 2.0 + j * step
                synthetic_image(path, ra, dec, args.size, i * args.grid + j, stars)
                images.append(path)
        extra = work / "extra.fits"
        middle = (args.grid - 1) / 2
        ra, dec = 150.0 + middle * step + step / 3, 2.0 + middle * step
        synthetic_image(extra, ra, dec, args.size, 99_999, stars)
        order = deepest_order(1 / 3600)
        out = image_hips_root(data) / NAME
        out.parent.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()[0]
        cpu0 = _cpu()
        first = build_image_hips(
            images, out, title="survey", creator_did="ivo://bench/survey",
            tile_format=("fits", "png"), order=order, workers=args.workers,
        )  # fmt: skip
        first_cpu = _cpu() - cpu0
        start = time.perf_counter()
        second = build_image_hips(
            [*images, extra], out, title="survey", creator_did="ivo://bench/survey",
            tile_format=("fits", "png"), order=order, workers=args.workers,
        )  # fmt: skip
        inc_seconds = time.perf_counter() - start
        load_mid = os.getloadavg()[0]
        serve = _serve(data, out.resolve(), args.requests)
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = serve["baseline"]["p50"]
    lines = [
        f"Survey: {args.grid}×{args.grid} images of {args.size}² float32 (1″ pixels, 5 % "
        f"overlap), order {order}, FITS + PNG tiles, {args.workers} workers; load average "
        f"{load_before:.1f} before / {load_mid:.1f} after the builds / {load_after:.1f} at "
        "the end.",
        "",
        f"First build: {first.tiles} deepest tiles, {first.computed} tiles over all orders, "
        f"{first.megapixels:.1f} Mpixel in {first.seconds:.1f} s "
        f"({first_cpu:.1f} CPU-seconds over all processes: "
        f"{first.megapixels / first_cpu:.2f} Mpixel per CPU-second).",
        "",
        f"Incremental (one {args.size}² image added inside the survey): "
        f"**{second.computed_deepest} of {second.tiles} deepest tiles recomputed "
        f"({second.computed_deepest / second.tiles:.2%})**, {second.computed} of "
        f"{first.computed} tiles over all orders "
        f"({second.computed / max(first.computed, 1):.2%}); {second.seconds:.1f} s "
        f"({inc_seconds:.1f} s wall) = {second.seconds / first.seconds:.1%} of the first "
        f"build; {second.reused_files} files kept as hard links.",
        "",
        "| GET (keep-alive, one client) | p50 ms | p90 ms | p50 / baseline | requests |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, t in serve.items():
        lines.append(
            f"| {kind} | {t['p50']:.2f} | {t['p90']:.2f} | {t['p50'] / base:.2f}× | {t['n']:.0f} |"
        )
    lines.append("")
    lines.append("(baseline: `GET /tap/availability`, taking turns with the tile requests)")
    report(lines, args.out)


if __name__ == "__main__":
    main()
