"""Server memory under concurrent large results (issue 10, item 14).

The script ingests Tycho-2 (1.87M rows; ``/work/shared/data/tycho2``, or a synthetic
all-sky table of the same shape when it is missing) into ``benchmarks/work/memory/data``,
then, for each source tree given (``--source NAME=SRC``: the server runs that tree's
``skyvault`` through ``PYTHONPATH``, e.g. a baseline exported with ``git archive``), for
each format (BINARY2, VOParquet) and each concurrency level (1, 10, 32):

1. starts a fresh ``python -m skyvault.cli serve --workers 2`` on a free port (a new server
   per run, so one run's allocator leftovers do not count in the next);
2. sends one small query (warm-up), and records the RSS of the server's process tree
   (supervisor + workers, summed, psutil);
3. fires N concurrent ``POST /tap/sync`` of ``SELECT TOP 1000000 id, ra, dec, mag_vt FROM
   bench.tycho2`` (``MAXREC=1000000``) from a pool of N threads, each with its own httpx
   client reading the body in 64 kB pieces as it arrives, while a thread samples the summed
   RSS every 50 ms;
4. checks every answer: HTTP 200, and 1,000,000 rows (VOTable: the BINARY2 stream decoded,
   29 bytes a row; Parquet: the footer's row count), none ending with an error status;
5. records the peak RSS, the RSS before, the wall time of the whole burst and the median /
   longest request, with the load average.

Target (the issue): peak ≤ 1 GiB for the whole server at 10 concurrent requests.

Usage::

    .venv/bin/python benchmarks/bench_memory.py [--baseline REF] [--source NAME=SRC ...]
        [--source-env NAME:SKYVAULT_X=VALUE ...] [--clients 1,10,32]
        [--formats votable,parquet] [--out benchmarks/results/memory.md]

``--baseline REF`` exports ``src/`` of a git commit (``git archive``) into the work
directory and serves it as the source ``before``; without ``--source`` the checkout's own
``src`` is ``after``.  ``--source-env`` gives one source's servers a setting (e.g. a small
``SKYVAULT_MEMORY_BUDGET``, to see queries queue).

The servers run with ``SKYVAULT_AUTH_ANONYMOUS_MAX_RUNNING=64`` (so no request is refused
for the per-user limit; what the server does with 32 large requests at once is the point)
and ``SKYVAULT_MAXREC_LIMIT=10000000``; ``--env NAME=VALUE`` adds settings.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "memory"
TYCHO2 = ROOT.parent / "shared" / "data" / "tycho2" / "tycho2.parquet"
MIB = 1024**2
GIB = 1024**3
TARGET_BYTES = GIB
TABLE = "bench.tycho2"
ROWS = 1_000_000
ROW_BYTES = 1 + 8 + 8 + 8 + 4  # BINARY2: null flags, id, ra, dec, mag_vt
FORMATS = {"votable": "votable/b2", "parquet": "parquet"}
SERVER_ENV = {
    "SKYVAULT_AUTH_ANONYMOUS_MAX_RUNNING": "64",
    "SKYVAULT_MAXREC_LIMIT": "10000000",
}


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load()}] {message}", flush=True)


# --------------------------------------------------------------------------- data


def synthetic_tycho(path: Path, rows: int = 1_871_011, seed: int = 2) -> None:
    """An all-sky table shaped like Tycho-2 (id, ra, dec, mag_vt)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "ra": rng.uniform(0.0, 360.0, rows),
            "dec": np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rows))),
            "mag_vt": rng.uniform(0.1, 15.2, rows).astype(np.float32),
        }
    )
    pq.write_table(table, path)


def ensure_data(data: Path, source: Path) -> str:
    """``bench.tycho2`` under ``data`` (ingested and made public when missing)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cli = [sys.executable, "-m", "skyvault.cli"]
    if not (data / "bench" / "tycho2").exists():
        if not source.exists():
            source = WORK / "synthetic-tycho2.parquet"
            if not source.exists():
                log(f"{TYCHO2} is missing: generating a synthetic table of its shape")
                synthetic_tycho(source)
        log(f"ingesting {source} as {TABLE}")
        subprocess.run(
            [*cli, "ingest", str(source), "--table", TABLE, "--ra", "ra", "--dec", "dec",
             "--quiet", "--data", str(data)],
            check=True, env=env,
        )  # fmt: skip
        subprocess.run(
            [*cli, "grant", "bench", "--public", "--data", str(data)],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        (WORK / "data-source.txt").write_text(str(source))
    origin = WORK / "data-source.txt"
    return origin.read_text() if origin.exists() else "(ingested earlier)"


def export_tree(ref: str) -> Path:
    """``src/`` of git ``ref`` under the work directory (``git archive``); its path."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=10", ref],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    target = WORK / f"tree-{commit}"
    if not (target / "src" / "skyvault" / "cli.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m skyvault.cli serve --workers 2`` of the tree ``src`` on a free port."""

    def __init__(self, src: Path, data: Path, name: str, env: dict[str, str]) -> None:
        self.src = src
        self.data = data
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/tap"
        self.log_path = WORK / f"server-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        import httpx

        cmd = [
            sys.executable, "-m", "skyvault.cli", "serve", "--data", str(self.data),
            "--port", str(self.port), "--workers", "2", "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, **SERVER_ENV, **self.env, "PYTHONPATH": str(self.src)}
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"the server exited ({self.proc.returncode}):\n{tail}")
            try:
                if httpx.get(f"{self.url}/availability", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit("the server did not answer /availability within 120 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def rss(self) -> int:
        """Summed RSS of the server's process tree (0 for a process gone meanwhile)."""
        import psutil

        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total


class RssSampler:
    """The server's summed RSS every ``interval`` seconds, in a thread, while in the ``with``."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(self.server.rss())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples)


# --------------------------------------------------------------------------- requests


def adql(rows: int) -> str:
    return f"SELECT TOP {rows} id, ra, dec, mag_vt FROM {TABLE}"


def count_rows(body: bytes, fmt: str) -> tuple[int, str]:
    """Rows in an answer, and how it ended (``OK`` or the trailing QUERY_STATUS)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(io.BytesIO(body)).metadata
        content = (meta.metadata or {}).get(b"IVOA.VOTable-Parquet.content", b"")
        status = "ERROR" if b'value="ERROR"' in content else "OK"
        return meta.num_rows, status
    start = body.index(b'<STREAM encoding="base64">') + len(b'<STREAM encoding="base64">')
    end = body.index(b"</STREAM>", start)
    size = len(base64.b64decode(body[start:end]))
    tail = body[end:]
    status = "ERROR" if b'value="ERROR"' in tail else "OVERFLOW" if b"OVERFLOW" in tail else "OK"
    return size // ROW_BYTES, status


@dataclass
class Answer:
    status: int
    size: int
    seconds: float
    rows: int = -1
    ended: str = ""
    error: str = ""


def fetch(url: str, fmt: str, rows: int, check: bool) -> Answer:
    """One sync request, the body read as it arrives (kept only when ``check``)."""
    import httpx

    form = {
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql(rows),
        "RESPONSEFORMAT": FORMATS[fmt], "MAXREC": str(rows),
    }  # fmt: skip
    started = time.perf_counter()
    kept: list[bytes] = []
    size = 0
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(900.0)) as client,
            client.stream("POST", f"{url}/sync", data=form) as response,
        ):
            for piece in response.iter_bytes(65_536):
                size += len(piece)
                if check or response.status_code != 200:
                    kept.append(piece)
            status = response.status_code
    except httpx.HTTPError as exc:
        return Answer(0, size, time.perf_counter() - started, error=repr(exc))
    answer = Answer(status, size, time.perf_counter() - started)
    body = b"".join(kept)
    if status != 200:
        answer.error = body[:300].decode(errors="replace")
    elif check:
        answer.rows, answer.ended = count_rows(body, fmt)
    return answer


@dataclass
class Run:
    source: str
    fmt: str
    clients: int
    before: int = 0
    peak: int = 0
    after: int = 0
    wall: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    load_start: str = ""
    load_end: str = ""
    samples: int = 0

    @property
    def ok(self) -> bool:
        return all(
            a.status == 200 and a.rows in (-1, ROWS) and a.ended in ("", "OK", "OVERFLOW")
            for a in self.answers
        )

    def failures(self) -> str:
        bad = [a for a in self.answers if a.status != 200 or a.rows not in (-1, ROWS)]
        if not bad:
            return "none"
        first = bad[0]
        return f"{len(bad)} (first: HTTP {first.status}, {first.rows} rows, {first.error[:120]})"


def run_level(name: str, src: Path, data: Path, fmt: str, clients: int, env: dict[str, str]) -> Run:
    run = Run(name, fmt, clients)
    with Server(src, data, f"{name}-{fmt}-{clients}", env) as server:
        warm = fetch(server.url, fmt, 10, check=True)
        if warm.status != 200:
            raise SystemExit(f"the warm-up query failed: HTTP {warm.status} {warm.error}")
        time.sleep(0.5)
        run.before = server.rss()
        run.load_start = load()
        log(f"{name}: {clients} × 1M rows {fmt}, server RSS before {run.before / MIB:.0f} MiB")
        # Every answer is checked when few are in flight; with many, a few of them are
        # (keeping 32 bodies of ~39 MB in this process would load the machine needlessly).
        checked = set(range(min(clients, 4)))
        with RssSampler(server) as sampler, ThreadPoolExecutor(clients) as pool:
            started = time.perf_counter()
            futures = [
                pool.submit(fetch, server.url, fmt, ROWS, i in checked) for i in range(clients)
            ]
            run.answers = [f.result() for f in futures]
            run.wall = time.perf_counter() - started
        time.sleep(1.0)
        run.after = server.rss()
        run.peak = max(sampler.peak, run.after)
        run.samples = len(sampler.samples)
        run.load_end = load()
        if server.proc is not None and server.proc.poll() is not None:
            raise SystemExit(f"the server exited during the run; see {server.log_path}")
    log(
        f"{name}: {clients} × {fmt}: peak {run.peak / MIB:.0f} MiB, wall {run.wall:.1f} s, "
        f"failures {run.failures()}"
    )
    return run


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    import duckdb
    import pyarrow as pa

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) * 1024
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=10"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "cpu": f"{os.cpu_count()} CPUs (nproc), {platform.machine()}, {model}",
        "memory": f"{mem / GIB:.1f} GiB",
        "versions": (
            f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
            f"pyarrow {pa.__version__}"
        ),
        "commit": commit,
    }


def report(
    runs: list[Run],
    sources: dict[str, Path],
    envs: dict[str, dict[str, str]],
    dataset: str,
    argv: Sequence[str],
) -> str:
    info = machine()
    lines = [
        "# Server memory under concurrent large results",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', *argv])}`",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; code {info['commit']}",
        f"- Machine: {info['cpu']}, {info['memory']}; {info['versions']}",
        f"- Data: `{TABLE}` = {dataset}; each request `{adql(ROWS)}` with MAXREC={ROWS:,}",
        "- Server: `skyvault serve --workers 2` (supervisor + 2 worker processes), env "
        + ", ".join(f"`{k}={v}`" for k, v in SERVER_ENV.items()),
        "- Sources: "
        + "; ".join(
            f"{k} = `{v}`" + "".join(f", `{n}={x}`" for n, x in envs[k].items())
            for k, v in sources.items()
        ),
        "- RSS: summed over the server's process tree, sampled every 50 ms (psutil); a fresh "
        "server for every row",
        "",
        "| source | format | clients | RSS before | **peak RSS** | RSS 1 s after | wall time | "
        "request median / longest | failures | load avg (start → end) | target ≤ 1 GiB at 10 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in runs:
        seconds = [a.seconds for a in r.answers]
        target = ("met" if r.peak <= TARGET_BYTES else "**missed**") if r.clients == 10 else ""
        lines.append(
            f"| {r.source} | {r.fmt} | {r.clients} | {r.before / MIB:.0f} MiB | "
            f"**{r.peak / MIB:.0f} MiB** | {r.after / MIB:.0f} MiB | {r.wall:.1f} s | "
            f"{statistics.median(seconds):.1f} / {max(seconds):.1f} s | {r.failures()} | "
            f"{r.load_start} → {r.load_end} | {target} |"
        )
    return "\n".join(lines) + "\n"


def keep_notes(path: Path) -> str:
    """The ``## Notes`` section of an existing results file (kept across runs)."""
    if not path.exists():
        return ""
    text = path.read_text()
    at = text.find("\n## Notes")
    return text[at:] if at >= 0 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="a source tree to serve (repeatable); default: after=src of this checkout",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also serve the src/ of git REF (exported to benchmarks/work/memory/) as 'before'",
    )
    parser.add_argument("--clients", default="1,10,32")
    parser.add_argument("--formats", default="votable,parquet")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--source-env",
        action="append",
        default=[],
        metavar="SOURCE:NAME=VALUE",
        help="a setting for one source's servers only (e.g. a small memory budget)",
    )
    parser.add_argument("--tycho2", type=Path, default=TYCHO2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/memory.md")
    args = parser.parse_args()
    sources = dict(s.split("=", 1) for s in args.source) or {"after": "src"}
    if args.baseline:
        sources = {"before": str(export_tree(args.baseline)), **sources}
    trees = {name: Path(src).resolve() for name, src in sources.items()}
    for name, tree in trees.items():
        if not (tree / "skyvault" / "cli.py").exists():
            raise SystemExit(f"--source {name}={tree}: no skyvault package there")
    env = dict(e.split("=", 1) for e in args.env)
    envs: dict[str, dict[str, str]] = {name: dict(env) for name in trees}
    for item in args.source_env:
        name, setting = item.split(":", 1)
        key, value = setting.split("=", 1)
        envs[name][key] = value
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / "data"
    dataset = ensure_data(data, args.tycho2)
    runs: list[Run] = []
    for fmt in args.formats.split(","):
        for clients in (int(c) for c in args.clients.split(",")):
            for name, tree in trees.items():
                runs.append(run_level(name, tree, data, fmt, clients, envs[name]))
    shown = {k: t.relative_to(ROOT) if t.is_relative_to(ROOT) else t for k, t in trees.items()}
    text = report(runs, shown, envs, dataset, sys.argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + keep_notes(args.out))
    print(text)


if __name__ == "__main__":
    main()
