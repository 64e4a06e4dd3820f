"""Catalogue HiPS: build throughput on Tycho-2 and tile-serving latency (issue 14).

1. **build**: ``build_catalog_hips`` of Tycho-2 (1.87M rows, ordered by ``mag_vt``) in
   rows/s, median of ``--repeat`` builds; baseline in the same run: reading the same
   columns of the same HATS table with pyarrow and sorting them by ``mag_vt`` (the least
   any build must do), so the ratio tells what tiling and writing cost on top.
2. **serve**: ``GET /hips/cat.tycho2/NorderK/DirD/NpixN.tsv`` of random tiles against a
   live ``skyvault serve`` (a subprocess), one keep-alive client, p50/p90 over
   ``--requests`` requests after a warm-up; baseline: ``GET /tap/availability`` (no
   authentication, no file) taking turns with the tile requests.

Tycho-2 is ingested (public) into ``benchmarks/work/hips/data`` when missing.  The figures
and the machine's load are printed as Markdown (``--out`` appends them to a file).

Usage::

    .venv/bin/python benchmarks/bench_hips.py [--repeat 3] [--requests 1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench_tap import Server

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "hips"
TYCHO2 = ROOT.parent / "shared" / "data" / "tycho2" / "tycho2.parquet"
TABLE = "cat.tycho2"


def _ensure_table(data: Path) -> None:
    if (data / "cat" / "tycho2").exists():
        return
    from skyvault.catalog.ingest import IngestOptions, ingest
    from skyvault.cli import main

    ingest([TYCHO2], TABLE, data, ra="ra", dec="dec", options=IngestOptions(workers=1))
    main(["grant", "cat", "--public", "--data", str(data)])


def bench_build(data: Path, repeat: int) -> dict[str, float]:
    from skyvault.hips import build_catalog_hips

    source = (data / "cat" / "tycho2").resolve() / "dataset"
    base_times, build_times, publish_times = [], [], []
    rows = tiles = order = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        table = pq.read_table(source, columns=["_healpix_29", "ra", "dec", "mag_vt"])
        table.take(pc.sort_indices(table, [("mag_vt", "ascending")]))
        base_times.append(time.perf_counter() - t0)
        result = build_catalog_hips(data, TABLE, "mag_vt", columns=["mag_vt", "id"])
        build_times.append(result.seconds)
        publish_times.append(result.publish_seconds)
        rows, tiles, order = result.nrows, result.tiles, result.order
    build = statistics.median(build_times)
    publish = statistics.median(publish_times)
    base = statistics.median(base_times)
    return {
        "rows": rows,
        "tiles": tiles,
        "order": order,
        "build_s": build,
        "build_rows_per_s": rows / build,
        "publish_s": publish,
        "tiling_rows_per_s": rows / (build - publish),
        "baseline_s": base,
        "ratio": build / base,
    }


def bench_serve(data: Path, requests: int) -> dict[str, float]:
    import httpx

    from skyvault.catalog.layout import TableName
    from skyvault.hips import hips_dir

    root = hips_dir(data, TableName("cat", "tycho2"))
    tiles = [p.relative_to(root).as_posix() for p in root.glob("Norder*/Dir*/Npix*.tsv")]
    server = Server(data, "hips")
    server.log_path = WORK / "server.log"
    with server:
        url = server.url
        site = url.removesuffix("/tap")
        rng = random.Random(14)
        tile_ms, avail_ms = [], []
        sizes = []
        with httpx.Client(timeout=30) as client:
            for i in range(requests + 50):
                tile = rng.choice(tiles)
                t0 = time.perf_counter()
                r = client.get(f"{site}/hips/cat.tycho2/{tile}")
                t1 = time.perf_counter()
                assert r.status_code == 200, (r.status_code, tile)
                a = client.get(f"{url}/availability")
                t2 = time.perf_counter()
                assert a.status_code == 200
                if i >= 50:  # warm-up
                    tile_ms.append((t1 - t0) * 1000)
                    avail_ms.append((t2 - t1) * 1000)
                    sizes.append(len(r.content))
    q = statistics.quantiles(tile_ms, n=10)
    return {
        "requests": len(tile_ms),
        "tile_p50_ms": statistics.median(tile_ms),
        "tile_p90_ms": q[8],
        "tile_bytes_median": statistics.median(sizes),
        "availability_p50_ms": statistics.median(avail_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=WORK / "data")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    _ensure_table(args.data)
    load_before = os.getloadavg()
    build = bench_build(args.data, args.repeat)
    serve = bench_serve(args.data, args.requests)
    load_after = os.getloadavg()
    lines = [
        f"## Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Command: `python benchmarks/bench_hips.py --repeat {args.repeat} "
        f"--requests {args.requests}`; {os.cpu_count()} cores, load average "
        f"{load_before[0]:.1f} before / {load_after[0]:.1f} after (shared machine).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| Tycho-2 rows | {build['rows']:,.0f} |",
        f"| tiles written (orders 1–{build['order']:.0f}) | {build['tiles']:,.0f} |",
        f"| build, median of {args.repeat} | {build['build_s']:.2f} s = "
        f"{build['build_rows_per_s']:,.0f} rows/s |",
        f"| of which atomic publish (fsync every file, drop the version before last) | "
        f"{build['publish_s']:.2f} s |",
        f"| build without the publish | {build['build_s'] - build['publish_s']:.2f} s = "
        f"{build['tiling_rows_per_s']:,.0f} rows/s |",
        f"| baseline: pyarrow read + sort of the same columns | {build['baseline_s']:.2f} s |",
        f"| build / baseline | {build['ratio']:.1f}× |",
        f"| tile GET p50 / p90 ({serve['requests']:.0f} random tiles, keep-alive) | "
        f"{serve['tile_p50_ms']:.2f} ms / {serve['tile_p90_ms']:.2f} ms |",
        f"| median tile size | {serve['tile_bytes_median']:,.0f} bytes |",
        f"| baseline: GET /tap/availability p50 | {serve['availability_p50_ms']:.2f} ms |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
