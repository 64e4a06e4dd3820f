"""User tables (issue 12): loading 1M rows of CSV into a user table, against baselines.

Writes one CSV of ``--rows`` rows (a long id, a 16-character name, ra, dec, a float mag,
an int flag), creates the user table, then times, alternating, ``--repeat`` times each:

* **baseline read**: ``pyarrow.csv.read_csv`` of the file (types inferred; all threads) —
  the parse alone, what any CSV load costs;
* **baseline read+write**: the same, then ``pyarrow.parquet.write_table`` to a file — what
  loading means at the least (parse and store), with none of skyvault's work;
* **store.load_file**: ``WorkspaceStore.load_file`` (access check, CSV with the table's
  types, cast, Parquet files, quota check, atomic publish of a new version);
* **HTTP POST /load**: the same through a live server (``POST {tap}/load/NAME``, the body
  sent by curl, spooled by the server, then loaded).

Each load appends to the same table, so a later load also hard-links the earlier files; the
rate is rows of the file per second.  Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_workspace.py \\
        --out benchmarks/results/workspace.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import skyvault
from _live import free_port, serve_in_thread
from skyvault.auth import AuthStorage, Identity, TokenService
from skyvault.auth.storage import utc_now
from skyvault.config import Settings
from skyvault.service.app import create_app
from skyvault.workspace import WorkspaceStore, column
from skyvault.workspace.columns import TableDefinition
from skyvault.workspace.quota import WorkspaceSettings

NAME = "user_bench.targets"
DEFINITION = TableDefinition(
    (
        column("id", "long"),
        column("name", "char", arraysize="16*"),
        column("ra", "double", unit="deg"),
        column("dec", "double", unit="deg"),
        column("mag", "float", unit="mag"),
        column("flag", "int"),
    )
)


def write_csv(path: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "name": pa.array([f"target-{i:09d}" for i in range(n)]),
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "mag": rng.uniform(10, 25, n).astype(np.float32),
            "flag": rng.integers(0, 1000, n, dtype=np.int32),
        }
    )
    pacsv.write_csv(table, path)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        data.mkdir()
        csv = tmp / "rows.csv"
        write_csv(csv, args.rows)
        size = csv.stat().st_size
        auth = AuthStorage.for_data_dir(data)
        auth.add_user("bench", utc_now())
        token = TokenService(auth).create_token("bench", 1)
        quota = WorkspaceSettings(max_rows=10**12, max_bytes=10**13, max_body_bytes=10**11)
        store = WorkspaceStore(data, auth, settings=quota)
        me = Identity("bench")
        store.create_table(me, NAME, DEFINITION)

        port = free_port()
        settings = Settings(data_dir=data, port=port, workspace=quota, spool_dir=tmp)
        times: dict[str, list[float]] = {
            "baseline: pyarrow.csv.read_csv": [],
            "baseline: read_csv + parquet.write_table": [],
            "store.load_file": [],
            "HTTP POST /load": [],
        }
        with serve_in_thread(create_app(settings), port) as url:

            def post() -> None:
                # curl, a process of its own: the client's CPU does not share this
                # process's interpreter with the server.
                subprocess.run(
                    [
                        "curl",
                        "-sSf",
                        "-o",
                        os.devnull,
                        "-H",
                        f"Authorization: Bearer {token}",
                        "-H",
                        "Content-Type: text/csv",
                        "--data-binary",
                        f"@{csv}",
                        f"{url}/load/{NAME}",
                    ],
                    check=True,
                )

            def read_write() -> None:
                pq.write_table(pacsv.read_csv(csv), tmp / "baseline.parquet")

            for _ in range(args.repeat):
                keys = list(times)
                fns: list[Callable[[], object]] = [
                    lambda: pacsv.read_csv(csv),
                    read_write,
                    lambda: store.load_file(me, NAME, csv, "text/csv"),
                    post,
                ]
                for key, fn in zip(keys, fns, strict=True):
                    times[key].append(timed(fn))
        total = store.describe(me, NAME).meta.nrows
        assert total == 2 * args.repeat * args.rows, total

    best = {k: min(v) for k, v in times.items()}
    base = best["baseline: read_csv + parquet.write_table"]
    lines = [
        "# User tables: loading CSV (benchmarks/bench_workspace.py)",
        "",
        f"{args.rows:,} rows of CSV ({size / 1e6:.1f} MB: long, 16-char string, 2 doubles, "
        f"float, int), {args.repeat} rounds alternating; best (median) of each.",
        "",
        "| path | best s | median s | rows/s (best) | × read+write baseline |",
        "|---|---|---|---|---|",
    ]
    for key, values in times.items():
        b, med = min(values), statistics.median(values)
        lines.append(f"| {key} | {b:.3f} | {med:.3f} | {args.rows / b:,.0f} | {b / base:.2f} |")
    lines += [
        "",
        f"Target: ≥ 500,000 rows/s for a load.  skyvault {skyvault.__version__}, "
        f"Python {platform.python_version()}, pyarrow {pa.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), shared machine.",
        "",
        "Command: `PYTHONPATH=src .venv/bin/python benchmarks/bench_workspace.py "
        f"--rows {args.rows} --repeat {args.repeat} --out benchmarks/results/workspace.md`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
