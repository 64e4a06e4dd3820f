"""How skyvault's costs grow with the catalogue: 1.87M, 20M and 200M rows.

Each size is ``bench_query.generate_big``'s seeded catalogue (70 % uniform, 30 % in Gaussian
clusters; written a million rows at a time) with a partner of 10 % as many rows
(``bench_peers.make_partner``, a row group at a time): memory stays bounded at every size.
The inputs are shared with ``bench_peers.py`` (``benchmarks/work/peers/synthetic-N``).

For each size, on skyvault (in-process) with hand-written DuckDB over the same files as the
baseline in the same run (``bench_peers.build_measures``: same queries, same checks, engines
taking turns query by query):

* **ingest** of the objects table (child process: wall, CPU, peak RSS) — the partner is
  ingested too, untimed;
* **cones** of 5″, 1′ and 6′ (p50): these should stay flat;
* **aggregates** (``COUNT(*), AVG(r) WHERE r < 18`` and the ``GROUP BY
  ivo_healpix_index(3, ra, dec)`` one): these should grow linearly;
* a 1″ **cross-match** partner × objects (10 % × 100 %): linear in the rows too; it is also
  run as one DuckDB join (``LocalExecutor(crossmatch_tasks=False)``, the path before large
  cross-matches ran as aligned tasks), in the same turns, as the before/after row.

Growth is given as the exponent ``log(t₂/t₁) / log(N₂/N₁)`` between successive sizes (0: flat,
1: linear).  Before a size starts the script checks the free disk (≈ 110 bytes per row:
input, partner, HATS with margins) and, with ``--deadline HH:MM`` (UTC), whether the
previous size's time scaled by the rows fits; a size that does not is recorded as not
measured, with the extrapolation from the sizes that were.  The results file is rewritten
after every size, so an interrupted run keeps what it measured.

Usage (from the repository root; results in ``benchmarks/results/scale.md``)::

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1871011,20000000,200000000]
        [--cones 20] [--repeat 3] [--deadline 01:55] [--delete-after]
"""

from __future__ import annotations

import argparse
import calendar
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

import bench_peers
from bench_peers import LoadSampler, loadavg, log, summary

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "scale"
RESULTS = ROOT / "benchmarks" / "results" / "scale.md"
GENERATE_S_PER_ROW = 2.5e-6  # generate_big + make_partner, one core
BYTES_PER_ROW = 110  # input ≈ 44, partner ≈ 5, HATS + margin ≈ 50, partner HATS ≈ 6


@dataclasses.dataclass
class SizeResult:
    rows: int
    status: str = "measured"
    ingest: dict[str, Any] = dataclasses.field(default_factory=dict)
    measures: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    load: str = ""
    minutes: float = 0.0
    generate_s: float = 0.0


def deadline_epoch(text: str | None) -> float | None:
    if not text:
        return None
    hour, minute = (int(x) for x in text.split(":"))
    now = time.gmtime()
    day = calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, hour, minute, 0, 0, 0, 0))
    return day if day > time.time() - 12 * 3600 else day + 86400


def run_size(rows: int, args: argparse.Namespace) -> SizeResult:
    out = SizeResult(rows)
    start = time.time()
    with LoadSampler() as sampler:
        ds = bench_peers.prepare_synthetic(
            bench_peers.WORK / f"synthetic-{rows}", rows, parts=False
        )
        out.generate_s = time.time() - start
        ds = dataclasses.replace(ds, root=args.workdir / f"n{rows}")
        ds.root.mkdir(parents=True, exist_ok=True)
        log(f"{rows:,} rows: ingest")
        fig = bench_peers.ingest_skyvault(ds, ds.root)
        out.ingest = {
            "wall_s": fig.wall_s,
            "cpu_s": fig.cpu_s,
            "peak_rss": fig.peak_rss,
            "load": fig.load,
        }
        import skyvault

        engines: dict[str, Any] = {
            "skyvault": skyvault.open(ds.data),
            "duckdb": bench_peers.HandWritten(ds.data),
        }
        measures = bench_peers.build_measures(ds, engines, {}, args.cones)
        add_one_join(measures, engines["skyvault"])
        bench_peers.run_measures(measures, args.repeat, args.budget, sampler)
        for m in measures:
            out.measures[m.label] = {
                "skyvault": summary(m, "skyvault"),
                "duckdb": summary(m, "duckdb"),
                "check": m.checks.get("duckdb", "-"),
                "failures": m.failures,
                "load": f"{m.load[0]:.1f}–{m.load[1]:.1f}",
            }
            if ONE_JOIN in m.runs:
                out.measures[m.label][ONE_JOIN] = summary(m, ONE_JOIN)
                out.measures[m.label]["one join check"] = m.checks.get(ONE_JOIN, "-")
        loads = [v for _, v in sampler.samples]
    out.load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else ""
    out.minutes = (time.time() - start) / 60
    if args.delete_after:
        shutil.rmtree(ds.root, ignore_errors=True)
    return out


ONE_JOIN = "skyvault one join"


def add_one_join(measures: list[Any], archive: Any) -> None:
    """The cross-match also as one DuckDB join (the local executor's path before it ran
    large cross-matches as aligned tasks), over the same archive, taking turns with the
    others and checked against skyvault's answer."""
    from skyvault.engine.executor import LocalExecutor

    single = LocalExecutor(archive.sandbox, crossmatch_tasks=False)
    for m in measures:
        if not m.label.startswith("cross-match") or "skyvault" not in m.runs:
            continue
        run, answer = m.runs["skyvault"], m.answer["skyvault"]

        def one_join(query: Any, run: Any = run) -> Any:
            tasks, archive.executor = archive.executor, single
            try:
                return run(query)
            finally:
                archive.executor = tasks

        m.runs[ONE_JOIN] = one_join
        m.answer[ONE_JOIN] = answer


def input_ready(rows: int) -> bool:
    stamp = bench_peers.WORK / f"synthetic-{rows}" / "input" / "stamp.json"
    return stamp.exists() and json.loads(stamp.read_text()).get("rows") == rows


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    return math.log(t2 / t1) / math.log(n2 / n1)


def markdown(results: list[SizeResult], args: argparse.Namespace, started: str) -> str:
    measured = [r for r in results if r.status == "measured"]
    labels = list(measured[0].measures) if measured else []
    head = "| measure | " + " | ".join(f"{r.rows:,} rows" for r in results)
    head += " | growth exponent (successive sizes) |"
    lines = [
        "# How skyvault's costs grow with the rows (`benchmarks/bench_scale.py`)",
        "",
        "Command (from the repository root):",
        "",
        "```",
        " ".join([".venv/bin/python", *sys.argv]),
        "```",
        "",
        f"- Date: {started} UTC; skyvault commit {bench_peers.machine()['commit']}",
        f"- Machine: {bench_peers.machine()['cpu']}, {bench_peers.machine()['ram']} RAM",
        f"- Load: `/proc/loadavg` at the end `{loadavg()}`; the 1-minute load during each "
        "size is in the last row",
        f"- {args.repeat} pass(es), {args.cones} cone centres per radius; p50 in ms of skyvault "
        "in-process, with hand-written DuckDB over the same files in brackets (same run, "
        "engines taking turns). Growth exponent: log(t₂/t₁)/log(N₂/N₁) of skyvault's p50 "
        "between successive sizes — 0 is flat, 1 is linear.",
        "",
        head,
        "|---|" + "---:|" * len(results) + "---|",
    ]

    def row(label: str, values: list[float | None], cells: list[str]) -> str:
        pairs = [
            (r.rows, v) for r, v in zip(results, values, strict=True) if v is not None and v > 0
        ]
        growth = ", ".join(
            f"{exponent(a[1], b[1], a[0], b[0]):.2f}" for a, b in itertools.pairwise(pairs)
        )
        return f"| {label} | " + " | ".join(cells) + f" | {growth or '—'} |"

    ingest_values = [r.ingest.get("wall_s") if r.status == "measured" else None for r in results]
    cells = []
    for r in results:
        if r.status != "measured":
            cells.append("not measured")
        else:
            cells.append(
                f"{r.ingest['wall_s']:.1f} s ({r.rows / r.ingest['wall_s'] / 1e6:.2f} M rows/s, "
                f"CPU {r.ingest['cpu_s']:.0f} s, RSS {r.ingest['peak_rss'] / 2**30:.2f} GiB)"
            )
    lines.append(row("ingest (catalogue + 5″ margin)", ingest_values, cells))
    for label in labels:
        values: list[float | None] = []
        cells = []
        for r in results:
            m = r.measures.get(label) if r.status == "measured" else None
            own = m and m.get("skyvault")
            if not own:
                values.append(None)
                cells.append("not measured" if r.status != "measured" else "failed")
                continue
            values.append(own["p50_ms"])
            base = m.get("duckdb") if m else None
            text = bench_peers.fmt_ms(own["p50_ms"])
            if base:
                text += f" ({bench_peers.fmt_ms(base['p50_ms'])})"
            if m and m.get("check") not in ("same", "-"):
                text += " ✗"
            cells.append(text)
        lines.append(row(label, values, cells))
        if any(r.measures.get(label, {}).get(ONE_JOIN) for r in measured):
            values, cells = [], []
            for r in results:
                m = r.measures.get(label) if r.status == "measured" else None
                own = m.get(ONE_JOIN) if m else None
                values.append(own["p50_ms"] if own else None)
                text = bench_peers.fmt_ms(own["p50_ms"]) if own else "not measured"
                if m and m.get("one join check") not in ("same", "-", None):
                    text += " ✗"
                cells.append(text)
            lines.append(row(f"{label}: as one join (before: no tasks)", values, cells))
    lines.append("| load (1-min, min–max) | " + " | ".join(r.load or "—" for r in results) + " | |")
    lines.append("")
    for r in results:
        if r.status != "measured":
            lines.append(f"- **{r.rows:,} rows: not measured** — {r.status}.")
    lines += extrapolation(results)
    return "\n".join(lines) + "\n"


def extrapolation(results: list[SizeResult]) -> list[str]:
    measured = [r for r in results if r.status == "measured"]
    missing = [r for r in results if r.status != "measured"]
    if len(measured) < 2 or not missing:
        return []
    a, b = measured[-2], measured[-1]
    lines = [
        "",
        f"Extrapolation to the sizes not measured (from the growth between {a.rows:,} and "
        f"{b.rows:,} rows; an estimate, not a measurement):",
        "",
    ]
    for r in missing:
        factor = r.rows / b.rows

        def grow(t1: float, t2: float, flat: bool, f: float = factor) -> str:
            e = exponent(t1, t2, a.rows, b.rows)
            ideal = t2 if flat else t2 * f
            return (
                f"{bench_peers.fmt_ms(t2 * f ** max(0.0, e))} at the measured exponent "
                f"{e:.2f}; {bench_peers.fmt_ms(ideal)} if {'flat' if flat else 'linear'}"
            )

        lines.append(
            f"- {r.rows:,} rows, ingest (s): "
            + grow(a.ingest["wall_s"], b.ingest["wall_s"], flat=False)
        )
        for label in b.measures:
            s1, s2 = a.measures[label].get("skyvault"), b.measures[label].get("skyvault")
            if s1 and s2:
                flat = label.startswith("cone")
                lines.append(f"  - {label} (ms): " + grow(s1["p50_ms"], s2["p50_ms"], flat))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1871011,20000000,200000000")
    parser.add_argument("--cones", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds: slower runs once")
    parser.add_argument("--deadline", help="HH:MM UTC: skip a size that would end after it")
    parser.add_argument("--delete-after", action="store_true", help="delete each size's HATS")
    parser.add_argument("--workdir", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    deadline = deadline_epoch(args.deadline)
    sizes = [int(x) for x in args.sizes.split(",")]
    results = [SizeResult(n, status="pending") for n in sizes]
    per_row_s: float | None = None
    for k, rows in enumerate(sizes):
        need = rows * BYTES_PER_ROW
        args.workdir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(args.workdir)
        if free.free < need * 1.2:
            results[k].status = (
                f"needs ≈{need / 1e9:.0f} GB of disk, {free.free / 1e9:.0f} GB free; "
                f"run `{' '.join(['.venv/bin/python', *sys.argv])}` where there is room"
            )
            continue
        if deadline is not None and per_row_s is not None:
            estimate = per_row_s * rows
            if not input_ready(rows):
                estimate += GENERATE_S_PER_ROW * rows
            if time.time() + estimate > deadline:
                results[k].status = (
                    f"it would take ≈{estimate / 60:.0f} min (the previous size's time per row), "
                    f"past the deadline {args.deadline} UTC of this run; the command above "
                    "without `--deadline` measures it"
                )
                continue
        args.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        try:
            results[k] = run_size(rows, args)
        except (Exception, KeyboardInterrupt) as exc:
            results[k].status = f"the run failed or was interrupted: {type(exc).__name__}: {exc}"
            args.out.write_text(markdown(results, args, started))
            raise
        # Linear in the rows (cones are not, so this overestimates).
        per_row_s = (time.time() - t0 - results[k].generate_s) / rows
        args.out.write_text(markdown(results, args, started))
        (args.workdir / "results.json").write_text(
            json.dumps([dataclasses.asdict(r) for r in results], indent=1, default=str)
        )
        log(f"{rows:,} rows done in {results[k].minutes:.1f} min; written to {args.out}")
    args.out.write_text(markdown(results, args, started))


if __name__ == "__main__":
    main()
