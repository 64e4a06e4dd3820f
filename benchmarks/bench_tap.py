"""TAP service performance (issue 4's targets) against a live ``skyvault serve``.

The script starts the server itself (a subprocess on a free port, its log in the work
directory) and measures it over HTTP, with the in-process engine as the baseline:

1. **cone**: sync cone searches (``POST /tap/sync``, BINARY2) with random centres in the
   demo footprint (RA 52–72°, Dec −44…−28°, uniform on the sphere) and radii log-uniform
   in 1″–1′, one client with keep-alive, after a warm-up; the same cones run in this
   process through ``Archive.query`` (engine only) and ``Archive.stream`` + the BINARY2
   writer, taking turns with the HTTP requests.  Every HTTP result is parsed (astropy) and
   its ``objectId`` list compared with the engine's;
2. **throughput**: the same kind of cones from 16 concurrent keep-alive connections
   driven by one asyncio process (``httpx.AsyncClient``); the client's and the server's CPU
   time are reported, and any non-200 answer counts as a failure;
3. **large**: a 1,000,000-row, 20-column result (``SELECT TOP 1000000 …`` from
   ``dp02_dc2_catalogs.Object``) as BINARY2 and as VOParquet, time to first and last
   byte, against the engine producing the same rows as Arrow in-process (and the engine +
   the same writer in-process); the first answer of each format is read back (astropy,
   pyarrow) and must hold 1M rows × 20 columns;
4. **rss**: the server's RSS (its process tree, psutil, every 50 ms) while a client
   streams and discards a 10M-row BINARY2 result of ``bench.big`` (the 20M-row catalogue
   ``bench_query.py`` builds in ``benchmarks/work/query/data``; without it, ForcedSource
   of the demo, 8M rows);
5. **async**: a small query through pyvo: ``submit_job(...).run().wait()`` then
   ``fetch_result()``, each step timed.

The servers run with ``SKYVAULT_AUTH_ANONYMOUS_MAX_RUNNING=64`` (anonymous callers share
two running queries by default: 16 clients would get 429s) and
``SKYVAULT_MAXREC_LIMIT=10000000``; everything else is the default configuration (2 DuckDB
threads, 2 GB memory limit, uvicorn's access log on, written to the work directory).

The demo data is built when missing (``skyvault demo --scale medium`` +
``skyvault grant dp02_dc2_catalogs --public``); ``bench`` of the 20M-row catalogue is
granted public when it is not yet.  A results file is written (``--out``); a
``## Notes`` section already in it is kept.

Usage::

    .venv/bin/python benchmarks/bench_tap.py [--quick] [--only cone,throughput,large,rss,async]
        [--out benchmarks/results/tap.md] [--data demo-data]
        [--big-data benchmarks/work/query/data] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
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
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "tap"
ARCSEC = 1.0 / 3600.0
SECTIONS = ("cone", "throughput", "large", "rss", "async")
SERVER_ENV = {
    "SKYVAULT_AUTH_ANONYMOUS_MAX_RUNNING": "64",
    "SKYVAULT_MAXREC_LIMIT": "10000000",
}
OBJECT = "dp02_dc2_catalogs.Object"
CONE_COLUMNS = "objectId, coord_ra, coord_dec, g_psfFlux"
# 20 columns of Object: 4 BIGINT, 1 INTEGER, 10 DOUBLE, 4 BOOLEAN, 1 VARCHAR.
LARGE_COLUMNS = (
    "objectId", "coord_ra", "coord_dec", "parentObjectId", "tract", "patch",
    "detect_isPrimary", "sky_object", "deblend_nChild", "refBand", "refExtendedness",
    "g_cModelFlux", "g_cModelFluxErr", "r_cModelFlux", "r_cModelFluxErr", "i_cModelFlux",
    "i_cModelFluxErr", "i_ixx", "i_cModel_flag", "i_pixelFlags_saturatedCenter",
)  # fmt: skip
LARGE_ROWS = 1_000_000
BIG_ROWS = 10_000_000
BIG_COLUMNS = "id, ra, dec, g, r, parallax, pmra, pmdec"
CLIENTS = 16
GIB = 1024**3
MIB = 1024**2

# Targets of issue 4, and of issue 18 (item 4: the HTTP path).
CONE_P50_MS = 20.0
CONE_P99_MS = 100.0
CONE_RATIO = 1.3  # HTTP p50 / in-process (engine + writer) p50
THROUGHPUT_QPS = 250.0
LARGE_S = 3.0
RSS_BYTES = GIB
ASYNC_S = 0.2


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load()}] {message}", flush=True)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


# --------------------------------------------------------------------------- data


def skyvault_cli() -> str:
    return str(Path(sys.executable).parent / "skyvault")


def ensure_demo(data: Path) -> None:
    """The medium demo under ``data``, its tables public (built / granted when missing)."""
    if not (data / "dp02_dc2_catalogs" / "Object").exists():
        log(f"building the medium demo data in {data}")
        subprocess.run(
            [skyvault_cli(), "demo", "--data", str(data), "--scale", "medium"], check=True
        )
    grant(data, "dp02_dc2_catalogs")


def grant(data: Path, schema: str) -> None:
    """``skyvault grant SCHEMA --public`` (says "already granted" when it is)."""
    subprocess.run(
        [skyvault_cli(), "grant", schema, "--public", "--data", str(data)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Cone:
    ra: float
    dec: float
    radius: float  # degrees

    def adql(self, columns: str = CONE_COLUMNS) -> str:
        return (
            f"SELECT {columns} FROM {OBJECT} WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
            f"CIRCLE('ICRS', {self.ra:.7f}, {self.dec:.7f}, {self.radius:.9f})) = 1"
        )


def cones(n: int, seed: int) -> list[Cone]:
    """``n`` cones: centres uniform on the sphere in RA 52–72°, Dec −44…−28°; radii
    log-uniform in 1″–60″."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(52.0, 72.0, n)
    s0, s1 = math.sin(math.radians(-44.0)), math.sin(math.radians(-28.0))
    dec = np.degrees(np.arcsin(rng.uniform(s0, s1, n)))
    radius = np.exp(rng.uniform(math.log(1.0), math.log(60.0), n)) * ARCSEC
    return [Cone(float(a), float(d), float(r)) for a, d, r in zip(ra, dec, radius, strict=True)]


def sync_form(adql: str, fmt: str = "votable/b2", maxrec: int | None = None) -> dict[str, str]:
    form = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": fmt}
    if maxrec is not None:
        form["MAXREC"] = str(maxrec)
    return form


# --------------------------------------------------------------------------- a lean client


def _request(path: str, host: str, form: dict[str, str]) -> bytes:
    body = urllib.parse.urlencode(form).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _head(head: bytes) -> tuple[int, int | None]:
    """Status and Content-Length (None: chunked) of a response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    return status, None


class LeanClient:
    """One keep-alive HTTP/1.1 connection that POSTs forms and reads whole answers.

    The cone and throughput parts measure the server, so the client is kept cheap: httpx
    costs 1–2 ms of CPU per request, which on these 2 cores is taken from the server, and
    counts in every latency.  (The large-result parts keep httpx.)"""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.netloc
        self.prefix = parts.path
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def post(self, path: str, form: dict[str, str]) -> tuple[int, bytes]:
        self.sock.sendall(_request(self.prefix + path, self.host, form))
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            head += line
        status, length = _head(head)
        if length is not None:
            return status, self.file.read(length)
        parts = []
        while size := int(self.file.readline().strip(), 16):
            parts.append(self.file.read(size))
            self.file.readline()
        self.file.readline()
        return status, b"".join(parts)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


async def _lean_post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str, form: dict[str, str]
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    writer.write(_request(parts.path + "/sync", parts.netloc, form))
    status, length = _head(await reader.readuntil(b"\r\n\r\n"))
    if length is not None:
        return status, await reader.readexactly(length)
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        chunks.append(await reader.readexactly(size + 2))
    await reader.readuntil(b"\r\n")
    return status, b"".join(c[:-2] for c in chunks)


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``skyvault serve --data DATA`` on a free port, with :data:`SERVER_ENV`."""

    def __init__(self, data: Path, name: str, extra: Sequence[str] = ()) -> None:
        self.data = data
        self.extra = list(extra)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/tap"
        self.log_path = WORK / f"server-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        import httpx

        WORK.mkdir(parents=True, exist_ok=True)
        # ``python -m skyvault.cli serve`` is ``skyvault serve``; a command line without
        # "skyvault serve" in it escapes other sessions' name-matching restarts of theirs.
        cmd = [
            sys.executable, "-m", "skyvault.cli", "serve", "--data", str(self.data),
            "--port", str(self.port), *self.extra,
        ]  # fmt: skip
        log(f"starting {' '.join(cmd)} (log: {self.log_path.relative_to(ROOT)})")
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, env={**os.environ, **SERVER_ENV}, stdout=out, stderr=subprocess.STDOUT
            )
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

    @contextlib.contextmanager
    def watch(self, part: str) -> Iterator[None]:
        """Stop the run with a clear message if the server exits (crashes, or is signalled
        from outside) during ``part``."""
        assert self.proc is not None
        try:
            yield
        except Exception:
            if self.proc.poll() is None:
                raise
        if self.proc.poll() is not None:
            raise SystemExit(
                f"the server exited with status {self.proc.returncode} during {part}; "
                f"see {self.log_path}"
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's process tree so far."""
        import psutil

        proc = psutil.Process(self.pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total

    def rss(self) -> int:
        import psutil

        proc = psutil.Process(self.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


class RssSampler:
    """The server's RSS every ``interval`` seconds, in a thread, while in the ``with``."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while True:
            self.samples.append((time.perf_counter() - start, self.server.rss()))
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
        return max(r for _, r in self.samples)


class Profiler:
    """``py-spy record --gil`` of the server (raw collapsed stacks of the thread holding the
    GIL, 200 Hz) while in the ``with``."""

    def __init__(self, server: Server, name: str, enabled: bool) -> None:
        self.server = server
        self.path = WORK / f"pyspy-{name}.txt"
        self.enabled = enabled
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if self.enabled:
            spy = Path(sys.executable).parent / "py-spy"
            cmd = [
                str(spy),
                "record",
                "-p",
                str(self.server.pid),
                "--gil",
                "-f",
                "raw",
                "-r",
                "200",
            ]
            self.proc = subprocess.Popen(
                [*cmd, "-o", str(self.path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(1.0)  # attach
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        summarise_profile(self.path)


def summarise_profile(path: Path, top: int = 25) -> None:
    """Print the functions with most samples (inclusive and self) of a raw py-spy file."""
    if not path.exists():
        log(f"py-spy wrote nothing to {path}")
        return
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";")[1:]:  # the first is the process / thread
            name, _, where = frame.partition(" (")
            frames.append(f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})")
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    print(f"py-spy {path.relative_to(ROOT)}: {total} samples of the thread holding the GIL")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"  top {top} {title}:")
        for frame, count in counter.most_common(top):
            print(f"    {100 * count / total:5.1f}%  {frame}")


# --------------------------------------------------------------------------- 1. cones


#: The order of the three measurements of each cone (``--cone-order``).  The default runs
#: the two compared paths, HTTP and the in-process engine + writer, each right after work
#: of the other process; ``http,engine,writer`` (the order before 2026-12-02) runs the
#: writer right after the engine ran the very same cone in this process, with its caches
#: warm for it, while the server's are cold after this process's work.
CONE_ORDERS = ("http,writer,engine", "http,engine,writer")


@dataclass
class ConeResult:
    n: int
    warmup: int
    http_ms: list[float]
    engine_ms: list[float]
    writer_ms: list[float]
    statuses: Counter[int]
    rows: int
    mismatches: int
    bytes_: int
    order: str = CONE_ORDERS[0]
    """The order of the three measurements of each cone."""
    server_cpu_ms: float = 0.0
    """Server CPU (its process tree) per HTTP cone."""
    writer_cpu_ms: float = 0.0
    """CPU of this thread per in-process cone (engine + writer)."""

    @property
    def ratio(self) -> float:
        return pct(self.http_ms, 50) / pct(self.writer_ms, 50)

    @property
    def ok(self) -> bool:
        return pct(self.http_ms, 50) <= CONE_P50_MS and pct(self.http_ms, 99) <= CONE_P99_MS


def votable_ids(body: bytes, column: str = "objectId") -> list[int]:
    from astropy.io.votable import parse_single_table

    table = parse_single_table(io.BytesIO(body)).to_table()
    return sorted(int(x) for x in table[column])


def run_cones(
    server: Server,
    archive: Any,
    n: int,
    warmup: int,
    seed: int,
    order: str = CONE_ORDERS[0],
) -> ConeResult:
    from skyvault.formats import write_votable

    sample = cones(n + warmup, seed)
    bodies: list[bytes] = []
    http_ms: list[float] = []
    engine_ms: list[float] = []
    writer_ms: list[float] = []
    engine_ids: list[list[int]] = []
    statuses: Counter[int] = Counter()
    server_cpu = 0.0
    writer_cpu = 0.0
    client = LeanClient(server.url)
    try:

        def http(cone: Cone) -> tuple[float, int, bytes]:
            start = time.perf_counter()
            status, body = client.post("/sync", sync_form(cone.adql()))
            return time.perf_counter() - start, status, body

        def engine(cone: Cone) -> tuple[float, list[int]]:
            start = time.perf_counter()
            table = archive.query(cone.adql())
            elapsed = time.perf_counter() - start
            return elapsed, sorted(table["objectId"].to_pylist())

        def writer(cone: Cone) -> float:
            nonlocal writer_cpu
            start = time.perf_counter()
            cpu = time.thread_time()
            # A trailing newline: the same query, but not the text `engine` just planned
            # (the archive keeps recent plans by text; a server's new cone is never in it).
            result = archive.stream(cone.adql() + "\n")
            size = 0
            for chunk in write_votable(
                result.batches, result.columns, overflow=lambda: result.overflow
            ):
                size += len(chunk)
            writer_cpu += time.thread_time() - cpu
            return time.perf_counter() - start

        log(f"cones: {warmup} warm-up, then {n} cones by HTTP / engine / engine + writer")
        for cone in sample[:warmup]:
            http(cone)
            engine(cone)
            writer(cone)
        for cone in sample[warmup:]:
            for step in order.split(","):
                if step == "http":
                    cpu = server.cpu_seconds()
                    t, status, body = http(cone)
                    server_cpu += server.cpu_seconds() - cpu
                    http_ms.append(1e3 * t)
                    statuses[status] += 1
                    bodies.append(body)
                elif step == "engine":
                    t, ids = engine(cone)
                    engine_ms.append(1e3 * t)
                    engine_ids.append(ids)
                else:
                    writer_ms.append(1e3 * writer(cone))
    finally:
        client.close()
    mismatches = 0
    rows = 0
    for body, ids in zip(bodies, engine_ids, strict=True):
        try:
            got = votable_ids(body)
        except Exception:  # an error document or a broken body
            mismatches += 1
            continue
        rows += len(got)
        mismatches += got != ids
    return ConeResult(
        n, warmup, http_ms, engine_ms, writer_ms, statuses, rows, mismatches,
        sum(len(b) for b in bodies), order, 1e3 * server_cpu / n, 1e3 * writer_cpu / n,
    )  # fmt: skip


# --------------------------------------------------------------------------- 2. throughput


@dataclass
class ThroughputResult:
    clients: int
    n: int
    wall_s: float
    latencies_ms: list[float]
    statuses: Counter[str]
    client_cpu_s: float
    server_cpu_s: float
    bytes_: int

    @property
    def ok_count(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def qps(self) -> float:
        return self.ok_count / self.wall_s

    @property
    def failures(self) -> int:
        return self.n - self.ok_count


async def _load(
    url: str, sample: list[Cone], clients: int
) -> tuple[list[float], Counter[str], int, float]:
    """``clients`` keep-alive connections (the lean client), each sending its next cone
    when its answer has been read."""
    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    size = 0
    position = 0

    async def worker() -> None:
        nonlocal position, size
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while position < len(sample):
                cone = sample[position]
                position += 1
                start = time.perf_counter()
                try:
                    status, body = await _lean_post(reader, writer, url, sync_form(cone.adql()))
                    key = str(status)
                    size += len(body)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    key = type(exc).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                latencies.append(1e3 * (time.perf_counter() - start))
                statuses[key] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - start
    return latencies, statuses, size, wall


def run_throughput(server: Server, n: int, seed: int, profile: bool) -> ThroughputResult:
    sample = cones(n + 4 * CLIENTS, seed)
    log(f"throughput: {CLIENTS} clients, warm-up {4 * CLIENTS} then {n} cones")
    asyncio.run(_load(server.url, sample[: 4 * CLIENTS], CLIENTS))
    cpu_server = server.cpu_seconds()
    cpu_client = time.process_time()
    with Profiler(server, "throughput", profile):
        latencies, statuses, size, wall = asyncio.run(
            _load(server.url, sample[4 * CLIENTS :], CLIENTS)
        )
    client_cpu = time.process_time() - cpu_client
    server_cpu = server.cpu_seconds() - cpu_server
    return ThroughputResult(CLIENTS, n, wall, latencies, statuses, client_cpu, server_cpu, size)


# --------------------------------------------------------------------------- 3. large results


@dataclass
class Transfer:
    status: int
    first_s: float
    last_s: float
    size: int
    client_cpu_s: float
    server_cpu_s: float
    body: bytes | None = None
    newlines: int = 0
    head: bytes = b""
    tail: bytes = b""


def fetch(server: Server, form: dict[str, str], keep: bool = False) -> Transfer:
    """POST ``form`` to ``/sync`` and read the answer to its last byte, kept (``keep``) or
    discarded; discarded answers have their newlines counted and their head and tail kept.
    The client's (this process's) and the server's CPU time are measured around it."""
    import httpx

    chunks: list[bytes] = []
    size = newlines = 0
    head = tail = b""
    first = 0.0
    server_cpu = server.cpu_seconds()
    client_cpu = time.process_time()
    start = time.perf_counter()
    with (
        httpx.Client(timeout=900) as client,
        client.stream("POST", f"{server.url}/sync", data=form) as response,
    ):
        for chunk in response.iter_raw(1 << 20):
            if not first:
                first = time.perf_counter() - start
            size += len(chunk)
            if keep:
                chunks.append(chunk)
                continue
            newlines += chunk.count(b"\n")
            if len(head) < 65536:
                head += chunk[: 65536 - len(head)]
            tail = (tail + chunk)[-8192:]
        last = time.perf_counter() - start
        status = response.status_code
    return Transfer(
        status, first, last, size, time.process_time() - client_cpu,
        server.cpu_seconds() - server_cpu, b"".join(chunks) if keep else None, newlines, head,
        tail,
    )  # fmt: skip


@dataclass
class LargeResult:
    fmt: str
    http: list[Transfer]
    engine_s: list[float]
    writer_s: list[float]
    writer_bytes: int
    rows_read: int | None
    columns_read: int | None
    read_s: float | None
    rss_before: int
    peak_rss: int
    note: str = ""

    @property
    def median_s(self) -> float:
        return statistics.median(t.last_s for t in self.http)

    @property
    def ok(self) -> bool:
        return (
            self.median_s <= LARGE_S
            and all(t.status == 200 for t in self.http)
            and self.rows_read == LARGE_ROWS
        )


def large_adql() -> str:
    return f"SELECT TOP {LARGE_ROWS} {', '.join(LARGE_COLUMNS)} FROM {OBJECT}"


def write_in_process(archive: Any, adql: str, fmt: str) -> int:
    """Run ``adql`` in-process and encode it with the writer the service uses for ``fmt``
    (called directly: ``skyvault.formats``); returns the bytes written."""
    from skyvault.formats import write_votable
    from skyvault.formats.parquet import write_parquet

    result = archive.stream(adql, maxrec=LARGE_ROWS)
    if fmt == "parquet":
        chunks = write_parquet(
            result.batches, result.columns, schema=result.schema, overflow=lambda: result.overflow
        )
    else:
        chunks = write_votable(result.batches, result.columns, overflow=lambda: result.overflow)
    return sum(len(chunk) for chunk in chunks)


def run_large(server: Server, archive: Any, repeat: int) -> list[LargeResult]:
    adql = large_adql()
    out: list[LargeResult] = []
    for fmt in ("votable/b2", "parquet"):
        transfers: list[Transfer] = []
        engine_s: list[float] = []
        writer_s: list[float] = []
        writer_bytes = 0
        log(f"large: {LARGE_ROWS:,} rows × {len(LARGE_COLUMNS)} columns as {fmt}, {repeat}×")
        with RssSampler(server) as sampler:
            for i in range(repeat):
                transfers.append(fetch(server, sync_form(adql, fmt, LARGE_ROWS), keep=i == 0))
                start = time.perf_counter()
                table = archive.query(adql, maxrec=LARGE_ROWS)
                engine_s.append(time.perf_counter() - start)
                if table.num_rows != LARGE_ROWS:
                    raise SystemExit(f"the engine gave {table.num_rows:,} rows")
                del table
                start = time.perf_counter()
                writer_bytes = write_in_process(archive, adql, fmt)
                writer_s.append(time.perf_counter() - start)
        body = transfers[0].body
        transfers[0].body = None
        rows_read = columns_read = None
        read_s = None
        note = ""
        if transfers[0].status != 200 or body is None:
            note = f"HTTP {transfers[0].status}: {(body or b'')[:500]!r}"
        else:
            log(f"large: reading the {fmt} answer back ({len(body) / 1e6:.0f} MB)")
            start = time.perf_counter()
            if fmt == "parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(io.BytesIO(body))
                rows_read, columns_read = table.num_rows, table.num_columns
            else:
                from astropy.io.votable import parse

                votable = parse(io.BytesIO(body))
                vtable = votable.get_first_table().to_table()
                rows_read, columns_read = len(vtable), len(vtable.columns)
                overflow = [i.value for i in votable.resources[0].infos if i.name == "QUERY_STATUS"]
                note = f"QUERY_STATUS {overflow}"
            read_s = time.perf_counter() - start
        del body
        out.append(
            LargeResult(
                fmt,
                transfers,
                engine_s,
                writer_s,
                writer_bytes,
                rows_read,
                columns_read,
                read_s,
                sampler.samples[0][1],
                sampler.peak,
                note,
            )
        )
    return out


# --------------------------------------------------------------------------- 4. RSS


@dataclass
class RssResult:
    source: str
    rows: int
    rss_idle: int
    rss_before: int
    rss_peak: int
    rss_after: int
    transfer: Transfer
    rows_estimate: float
    trailer: str
    samples: int

    @property
    def ok(self) -> bool:
        return self.rss_peak < RSS_BYTES and self.transfer.status == 200


def payload_rows(head: bytes, tail: bytes, size: int, newlines: int, row_bytes: int) -> float:
    """Rows in a BINARY2 answer from its size: base64 characters between the STREAM tags
    (newlines excluded) × 3/4 / bytes per row."""
    open_tag = b'<STREAM encoding="base64">\n'
    start = head.find(open_tag) + len(open_tag)
    end_in_tail = tail.find(b"</STREAM>")
    end = size - (len(tail) - end_in_tail)
    head_newlines = head[:start].count(b"\n")
    tail_newlines = tail[end_in_tail:].count(b"\n")
    characters = (end - start) - (newlines - head_newlines - tail_newlines)
    stream = tail[:end_in_tail].rstrip(b"\n")
    padding = len(stream) - len(stream.rstrip(b"="))
    return (characters * 3 / 4 - padding) / row_bytes


def row_bytes_of(url: str, adql_top: str) -> int:
    """Bytes per BINARY2 row of a fixed-width result, from a 1,000-row answer."""
    import base64

    import httpx

    r = httpx.post(f"{url}/sync", data=sync_form(adql_top), timeout=60)
    r.raise_for_status()
    body = r.content
    open_tag = b'<STREAM encoding="base64">\n'
    start = body.find(open_tag) + len(open_tag)
    end = body.find(b"</STREAM>")
    return len(base64.b64decode(body[start:end])) // 1000


def run_rss(big_data: Path, demo: Path, profile: bool, extra: Sequence[str]) -> RssResult:
    if (big_data / "bench" / "big").exists():
        data, table, columns, rows = big_data, "bench.big", BIG_COLUMNS, BIG_ROWS
        grant(big_data, "bench")
    else:
        log(f"no bench.big under {big_data}: using ForcedSource of the demo instead")
        data, table, columns, rows = (
            demo, "dp02_dc2_catalogs.ForcedSource",
            "forcedSourceId, objectId, ccdVisitId, band, psfFlux, psfFluxErr", 7_986_828,
        )  # fmt: skip
    adql = f"SELECT TOP {rows} {columns} FROM {table}"
    with Server(data, "rss", extra) as server:
        rss_idle = server.rss()
        row_bytes = row_bytes_of(server.url, f"SELECT TOP 1000 {columns} FROM {table}")
        time.sleep(1.0)
        rss_before = server.rss()
        log(f"rss: streaming {rows:,} rows of {table} as BINARY2, RSS sampled every 50 ms")
        with (
            server.watch("rss"),
            RssSampler(server) as sampler,
            Profiler(server, "rss", profile),
        ):
            transfer = fetch(server, sync_form(adql, "votable/b2", rows))
        time.sleep(1.0)
        rss_after = server.rss()
    tail = transfer.tail
    estimate = payload_rows(transfer.head, tail, transfer.size, transfer.newlines, row_bytes)
    trailer = " ".join(tail[tail.find(b"</STREAM>") :].decode(errors="replace").split())
    return RssResult(
        f"{table} ({data.relative_to(ROOT) if data.is_relative_to(ROOT) else data})",
        rows, rss_idle, rss_before, sampler.peak, rss_after, transfer, estimate, trailer,
        len(sampler.samples),
    )  # fmt: skip


# --------------------------------------------------------------------------- 5. async


@dataclass
class AsyncResult:
    n: int
    total_s: list[float]
    steps: dict[str, list[float]] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)
    phases: Counter[str] = field(default_factory=Counter)

    @property
    def median_s(self) -> float:
        return statistics.median(self.total_s)

    @property
    def ok(self) -> bool:
        return self.median_s <= ASYNC_S and self.phases.get("COMPLETED", 0) == self.n


def run_async(server: Server, n: int, seed: int) -> AsyncResult:
    import pyvo

    service = pyvo.dal.TAPService(server.url)
    sample = cones(n + 2, seed)
    result = AsyncResult(n, [], {k: [] for k in ("submit", "run", "wait", "fetch")})
    log(f"async: {n} small queries through pyvo (2 warm-up)")
    for i, cone in enumerate(sample):
        adql = cone.adql()
        t0 = time.perf_counter()
        job = service.submit_job(adql)
        t1 = time.perf_counter()
        job.run()
        t2 = time.perf_counter()
        job.wait()
        t3 = time.perf_counter()
        table = job.fetch_result()
        t4 = time.perf_counter()
        phase = job.phase
        try:
            job.delete()
        except Exception as exc:  # only tidying up
            log(f"async: could not delete job {job.job_id}: {exc}")
        if i < 2:
            continue
        result.total_s.append(t4 - t0)
        for key, value in zip(result.steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            result.steps[key].append(value)
        result.rows.append(len(table))
        result.phases[phase] += 1
    return result


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    import duckdb
    import httpx
    import pyarrow as pa
    import pyvo
    import uvicorn

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
    changed = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True, text=True, check=False,
    ).stdout.split("\n")  # fmt: skip
    import importlib.util

    fast = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m) is not None]
    return {
        "http": " + ".join(fast) if fast else "h11 + asyncio",
        "changed": ", ".join(f"`{line[3:]}`" for line in changed if line.strip()),
        "cpu": f"{os.cpu_count()} CPUs (nproc), {platform.machine()}, {model}",
        "memory": f"{mem / GIB:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "versions": (
            f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
            f"pyarrow {pa.__version__}, uvicorn {uvicorn.__version__}, "
            f"httpx {httpx.__version__}, pyvo {pyvo.__version__}"
        ),
        "commit": commit,
    }


def ms(values: Sequence[float], q: float) -> str:
    return f"{pct(values, q):.1f}"


def report(
    args: argparse.Namespace,
    info: dict[str, str],
    loads: list[tuple[str, str]],
    started: str,
    elapsed: float,
    cone: ConeResult | None,
    throughput: ThroughputResult | None,
    large: list[LargeResult] | None,
    rss: RssResult | None,
    async_: AsyncResult | None,
) -> str:
    command = ".venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv)
    extra = f" {args.serve_args}" if args.serve_args else ""
    lines = [
        "# TAP service performance (issue 4's targets, issue 18's HTTP path), live server",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"- Date: {started} UTC; the run took {elapsed / 60:.1f} min"
        + (" (`--quick`: a smoke run, too few queries for tail figures)" if args.quick else ""),
        f"- Machine: {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- Software: {info['versions']}",
        f"- Code: `git describe --dirty` = `{info['commit']}`"
        + (
            f"; the working tree (shared with other sessions) had uncommitted changes in "
            f"{info['changed']}, which the server ran"
            if info["changed"]
            else ""
        ),
        "- Load average (1/5/15 min) when each part started, and at the end: "
        + "; ".join(f"{k} {v}" for k, v in loads),
        f"- Server: `skyvault serve --data DIR --port P{extra}`"
        " (started as `python -m skyvault.cli serve …`, a subprocess on a free port; uvicorn "
        f"with its defaults: {info['http']}, access log on"
        + ("" if args.serve_args else ", one process")
        + ") with "
        + ", ".join(f"`{k}={v}`" for k, v in SERVER_ENV.items())
        + " in its environment (anonymous callers share 2 running queries by default, so "
        "16 clients would get 429s; the MAXREC limit is the default, set explicitly). "
        "Defaults otherwise: 2 DuckDB threads, 2 GB memory limit.",
        "- Baselines run in this script's process: `skyvault.open(DIR)` with its defaults "
        "(2 DuckDB threads, 2 GB), taking turns with the HTTP requests.",
        "",
        "**This is a first run, taken under load**: other engineers were running tests, "
        "servers and benchmarks on the same 2 cores (see the load averages), and are changing "
        "the engine and the service. Absolute times are noisy; the ratios against the "
        "in-process baselines hold up better.",
        "",
        "## Summary",
        "",
        "| # | measure | skyvault over HTTP | baseline (in-process, same run) | target | met? |",
        "|---|---|---:|---:|---|---|",
    ]
    if cone is not None:
        h, e, w = cone.http_ms, cone.engine_ms, cone.writer_ms
        lines.append(
            f"| 1 | sync cone 1″–1′, 1 client, p50 / p99 ({cone.n} cones) | "
            f"{ms(h, 50)} / {ms(h, 99)} ms | engine {ms(e, 50)} / {ms(e, 99)} ms; "
            f"engine + BINARY2 writer {ms(w, 50)} / {ms(w, 99)} ms (HTTP p50 = "
            f"{pct(h, 50) / pct(e, 50):.2f}× engine) | "
            f"p50 ≤ {CONE_P50_MS:.0f} ms, p99 ≤ {CONE_P99_MS:.0f} ms | {met(cone.ok)} |"
        )
        lines.append(
            f"| 1 | HTTP cone p50 / in-process (engine + writer) p50, same run | "
            f"**{cone.ratio:.2f}×** | server CPU {cone.server_cpu_ms:.2f} ms per cone vs "
            f"{cone.writer_cpu_ms:.2f} ms in-process | ≤ {CONE_RATIO}× (issue 18) | "
            f"{met(cone.ratio <= CONE_RATIO)} |"
        )
    if throughput is not None:
        t = throughput
        lines.append(
            f"| 2 | sync cones, {t.clients} concurrent clients | {t.qps:.1f} q/s "
            f"({t.failures} failures of {t.n}); server CPU "
            f"{100 * t.server_cpu_s / t.wall_s:.0f} % of one core | — | "
            f"≥ {THROUGHPUT_QPS:.0f} q/s, no failures (issue 18; issue 4: 150) | "
            f"{met(t.qps >= THROUGHPUT_QPS and t.failures == 0)} |"
        )
    for item in large or []:
        label = "BINARY2" if item.fmt.startswith("votable") else "VOParquet"
        size = item.http[0].size
        lines.append(
            f"| 3 | 1M rows × 20 columns as {label}, time to last byte (median of "
            f"{len(item.http)}) | {item.median_s:.2f} s ({size / 1e6:.0f} MB, "
            f"{LARGE_ROWS / item.median_s / 1e3:,.0f}k rows/s) | engine → Arrow "
            f"{statistics.median(item.engine_s):.2f} s; engine + writer "
            f"{statistics.median(item.writer_s):.2f} s (HTTP = "
            f"{item.median_s / statistics.median(item.writer_s):.2f}× engine + writer) | "
            f"≤ {LARGE_S:.0f} s | {met(item.ok)} |"
        )
    if rss is not None:
        lines.append(
            f"| 4 | peak server RSS streaming {rss.rows / 1e6:.0f}M rows (BINARY2) | "
            f"{rss.rss_peak / MIB:,.0f} MiB (before: {rss.rss_before / MIB:,.0f} MiB; "
            f"{rss.transfer.last_s:.1f} s) | — | < 1 GiB | {met(rss.ok)} |"
        )
    if async_ is not None:
        lines.append(
            f"| 5 | small async query through pyvo, submit → fetch (median of {async_.n}) | "
            f"{async_.median_s:.3f} s | — | ≤ {ASYNC_S} s | {met(async_.ok)} |"
        )
    lines += [
        "",
        "Reference only (figures quoted in issue 4 for DaCHS, not measured here): cone p50 "
        "48–60 ms, 19.6 queries/s with 16 clients, 1–2 s for a small pyvo async query.",
    ]
    if cone is not None:
        lines += _cone_details(cone)
    if throughput is not None:
        lines += _throughput_details(throughput)
    if large is not None:
        lines += _large_details(large)
    if rss is not None:
        lines += _rss_details(rss)
    if async_ is not None:
        lines += _async_details(async_)
    return "\n".join(lines) + "\n"


def _cone_details(c: ConeResult) -> list[str]:
    overhead = [a - b for a, b in zip(c.http_ms, c.engine_ms, strict=True)]
    rows = [
        ("HTTP (`POST /tap/sync`, BINARY2, one keep-alive connection, minimal client)", c.http_ms),
        ("in-process engine (`Archive.query` → Arrow)", c.engine_ms),
        ("in-process engine + BINARY2 writer (`Archive.stream` + `write_votable`)", c.writer_ms),
        ("HTTP − engine, per cone", overhead),
    ]
    lines = [
        "",
        "## 1. Sync cone search, one client",
        "",
        f"{c.warmup} warm-up cones, then {c.n} cones; for each cone "
        f"{_order_text(c.order)} run one after the other (each compiles and plans the "
        "query afresh, as the server does for a new cone). Centres uniform on the "
        "sphere in RA 52–72°, Dec −44…−28°; radii log-uniform in 1″–60″. "
        f"`SELECT {CONE_COLUMNS} FROM {OBJECT} WHERE CONTAINS(POINT('ICRS', coord_ra, "
        "coord_dec), CIRCLE('ICRS', ra, dec, r)) = 1`, `RESPONSEFORMAT=votable/b2`.",
        "",
        "| path | p50 ms | p90 ms | p99 ms | max ms | mean ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, values in rows:
        lines.append(
            f"| {label} | {ms(values, 50)} | {ms(values, 90)} | {ms(values, 99)} | "
            f"{max(values):.1f} | {statistics.fmean(values):.1f} |"
        )
    lines += [
        "",
        f"HTTP statuses: {dict(c.statuses)}. Rows returned over all cones: {c.rows:,} "
        f"({c.rows / c.n:.2f} per cone), "
        f"{c.bytes_ / c.n / 1e3:.1f} kB per answer on average. Every HTTP answer was parsed "
        f"with astropy and its `objectId`s compared with the engine's: {c.mismatches} "
        "differed or did not parse.",
        "",
        f"CPU per cone: the server's process tree {c.server_cpu_ms:.2f} ms over HTTP; this "
        f"process {c.writer_cpu_ms:.2f} ms for the engine + writer in-process (ratio "
        f"{c.server_cpu_ms / max(c.writer_cpu_ms, 1e-9):.2f}×; CPU time is less disturbed "
        "by other work on the machine than wall time).",
    ]
    return lines


def _order_text(order: str) -> str:
    names = {"http": "the HTTP request", "engine": "the engine", "writer": "the engine + writer"}
    steps = [names[step] for step in order.split(",")]
    text = ", ".join(steps[:-1]) + " and " + steps[-1]
    if order == CONE_ORDERS[0]:
        text += (
            " (so each of the two compared paths runs right after work of the other process;"
            " `--cone-order http,engine,writer` runs the writer right after the engine ran "
            "the same cone in this process instead)"
        )
    return text


def _throughput_details(t: ThroughputResult) -> list[str]:
    return [
        "",
        f"## 2. Throughput, {t.clients} concurrent clients",
        "",
        f"{t.n} cones (as in 1, another seed) after {4 * t.clients} warm-up cones, sent by "
        f"{t.clients} coroutines in the benchmark process, each with its own keep-alive "
        "connection (a minimal HTTP/1.1 client on asyncio streams: httpx took 2 ms of CPU per "
        "request from the same 2 cores); each sends its next cone when its answer has been "
        "read.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| successful queries / s | {t.qps:.1f} |",
        f"| answers by status | {dict(t.statuses)} |",
        f"| wall time | {t.wall_s:.1f} s |",
        f"| latency p50 / p90 / p99 under load | {ms(t.latencies_ms, 50)} / "
        f"{ms(t.latencies_ms, 90)} / {ms(t.latencies_ms, 99)} ms |",
        f"| server CPU (user + system) | {t.server_cpu_s:.1f} s = "
        f"{100 * t.server_cpu_s / t.wall_s:.0f} % of one core, "
        f"{1e3 * t.server_cpu_s / max(t.n, 1):.1f} ms per query |",
        f"| client CPU (this process) | {t.client_cpu_s:.1f} s = "
        f"{100 * t.client_cpu_s / t.wall_s:.0f} % of one core, "
        f"{1e3 * t.client_cpu_s / max(t.n, 1):.2f} ms per query |",
    ]


def _large_details(items: list[LargeResult]) -> list[str]:
    lines = [
        "",
        "## 3. A 1,000,000-row, 20-column result",
        "",
        f"`{large_adql()}` with `MAXREC={LARGE_ROWS}` (Object has exactly 1,000,000 rows; "
        "columns: 4 BIGINT, 1 INTEGER, 10 DOUBLE, 4 BOOLEAN, 1 VARCHAR). The client "
        "(httpx, one connection) reads the answer to its last byte; the first answer of each "
        "format is kept and read back. Each HTTP request is followed by the engine alone "
        "(`Archive.query` → Arrow table) and by the engine + the same writer in-process.",
        "",
        "| format | runs: time to last byte (first byte) | size | rows/s (median) | engine → "
        "Arrow | engine + writer | CPU per request: server / client | server RSS before → "
        "peak | read back |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for item in items:
        runs = ", ".join(f"{t.last_s:.2f} s ({t.first_s:.2f})" for t in item.http)
        statuses = {t.status for t in item.http}
        read = (
            f"{item.rows_read:,} rows × {item.columns_read} columns in {item.read_s:.1f} s"
            if item.rows_read is not None
            else "not read"
        )
        if item.note:
            read += f"; {item.note}"
        lines.append(
            f"| `RESPONSEFORMAT={item.fmt}` | {runs} (HTTP {sorted(statuses)}) | "
            f"{item.http[0].size / 1e6:.1f} MB (in-process writer: "
            f"{item.writer_bytes / 1e6:.1f} MB) | {LARGE_ROWS / item.median_s / 1e3:,.0f}k | "
            f"{', '.join(f'{s:.2f}' for s in item.engine_s)} s | "
            f"{', '.join(f'{s:.2f}' for s in item.writer_s)} s | "
            f"{statistics.median(t.server_cpu_s for t in item.http):.2f} / "
            f"{statistics.median(t.client_cpu_s for t in item.http):.2f} s | "
            f"{item.rss_before / MIB:,.0f} → {item.peak_rss / MIB:,.0f} MiB | {read} |"
        )
    return lines


def _rss_details(r: RssResult) -> list[str]:
    t = r.transfer
    return [
        "",
        f"## 4. Server memory while streaming {r.rows:,} rows",
        "",
        f"A second server on {r.source}; `SELECT TOP {r.rows} …` with `MAXREC={r.rows}`, "
        "BINARY2, read by one httpx client that counts and discards the bytes. The RSS of "
        f"the server's process tree was sampled every 50 ms ({r.samples} samples).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| RSS after start-up | {r.rss_idle / MIB:,.0f} MiB |",
        f"| RSS before the query (after a 1,000-row query) | {r.rss_before / MIB:,.0f} MiB |",
        f"| **peak RSS while streaming** | **{r.rss_peak / MIB:,.0f} MiB** |",
        f"| RSS 1 s after the answer ended | {r.rss_after / MIB:,.0f} MiB |",
        f"| time to first / last byte | {t.first_s:.2f} / {t.last_s:.1f} s |",
        f"| CPU: server / client | {t.server_cpu_s:.1f} / {t.client_cpu_s:.1f} s |",
        f"| bytes, rate | {t.size / 1e6:,.0f} MB, {t.size / t.last_s / 1e6:.0f} MB/s, "
        f"{r.rows / t.last_s / 1e6:.2f}M rows/s |",
        f"| rows in the answer (from the base64 payload size) | {r.rows_estimate:,.0f} |",
        f"| HTTP status; document end | {t.status}; `{r.trailer[:120]}` |",
    ]


def _async_details(a: AsyncResult) -> list[str]:
    lines = [
        "",
        "## 5. Small async query through pyvo",
        "",
        f"`pyvo.dal.TAPService(url).submit_job(adql)`, `.run()`, `.wait()`, "
        f"`.fetch_result()` for {a.n} cones as in 1 (after 2 warm-up jobs; each job "
        "deleted afterwards, outside the timing). pyvo's `wait()` sends `WAIT=-1` and, if "
        "the phase it gets back is not final, sleeps 1 s before asking again.",
        "",
        "| step | median s | max s |",
        "|---|---:|---:|",
        f"| total | {a.median_s:.3f} | {max(a.total_s):.3f} |",
    ]
    for step, values in a.steps.items():
        lines.append(f"| {step} | {statistics.median(values):.3f} | {max(values):.3f} |")
    lines += [
        "",
        f"Final phases: {dict(a.phases)}; rows per result: {sum(a.rows)} in all.",
    ]
    return lines


def keep_notes(path: Path) -> str:
    """The ``## Notes`` section (to the end) of an existing results file, if any."""
    if not path.exists():
        return ""
    text = path.read_text()
    at = text.find("\n## Notes")
    return text[at:] if at >= 0 else ""


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries (a smoke run)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated: {','.join(SECTIONS)}"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tap.md"))
    parser.add_argument("--data", type=Path, default=ROOT / "demo-data", help="medium demo")
    parser.add_argument(
        "--big-data",
        type=Path,
        default=ROOT / "benchmarks" / "work" / "query" / "data",
        help="data root holding bench.big (bench_query.py)",
    )
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during throughput and rss (files in benchmarks/work/tap)",
    )
    parser.add_argument(
        "--cone-order",
        choices=CONE_ORDERS,
        default=CONE_ORDERS[0],
        help="the order of each cone's three measurements (default: %(default)s)",
    )
    parser.add_argument(
        "--serve-args",
        default="",
        help="more arguments for `skyvault serve` (e.g. '--workers 2'); default: none",
    )
    args = parser.parse_args()
    serve_args = shlex.split(args.serve_args)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := only - set(SECTIONS):
        parser.error(f"unknown --only parts: {sorted(unknown)}")
    n_cones = 60 if args.quick else 500
    n_load = 300 if args.quick else 3000
    repeat = 1 if args.quick else 3
    n_async = 5 if args.quick else 20

    import skyvault

    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t0 = time.perf_counter()
    info = machine()
    loads: list[tuple[str, str]] = [("start", load())]
    log(f"{info['cpu']}; {info['commit']}")
    data = args.data.resolve()
    cone = throughput = rss = async_ = None
    large = None
    if only & {"cone", "throughput", "large", "async"}:
        ensure_demo(data)
        archive = skyvault.open(data)
        with Server(data, "demo", serve_args) as server:
            if "cone" in only:
                loads.append(("cone", load()))
                with server.watch("cone"):
                    cone = run_cones(server, archive, n_cones, 30, args.seed, args.cone_order)
                log(
                    f"cone p50 {pct(cone.http_ms, 50):.1f} ms, p99 {pct(cone.http_ms, 99):.1f}"
                    f" ms (engine {pct(cone.engine_ms, 50):.1f} ms); {dict(cone.statuses)}"
                )
            if "throughput" in only:
                loads.append(("throughput", load()))
                with server.watch("throughput"):
                    throughput = run_throughput(server, n_load, args.seed + 1, args.profile)
                log(
                    f"throughput {throughput.qps:.1f} q/s, {dict(throughput.statuses)}; "
                    f"client CPU {throughput.client_cpu_s:.1f} s, server CPU "
                    f"{throughput.server_cpu_s:.1f} s in {throughput.wall_s:.1f} s"
                )
            if "large" in only:
                loads.append(("large", load()))
                with server.watch("large"):
                    large = run_large(server, archive, repeat)
                for item in large:
                    log(
                        f"large {item.fmt}: {[round(t.last_s, 2) for t in item.http]} s, "
                        f"{item.http[0].size / 1e6:.0f} MB, engine {item.engine_s} s, "
                        f"read back {item.rows_read} rows × {item.columns_read}"
                    )
            if "async" in only:
                loads.append(("async", load()))
                with server.watch("async"):
                    async_ = run_async(server, n_async, args.seed + 2)
                log(f"async median {async_.median_s:.3f} s, {dict(async_.phases)}")
        archive.close()
    if "rss" in only:
        loads.append(("rss", load()))
        rss = run_rss(args.big_data.resolve(), data, args.profile, serve_args)
        log(
            f"rss peak {rss.rss_peak / MIB:.0f} MiB (before {rss.rss_before / MIB:.0f} MiB), "
            f"{rss.transfer.last_s:.1f} s, {rss.transfer.size / 1e6:.0f} MB, "
            f"≈{rss.rows_estimate:,.0f} rows"
        )
    loads.append(("end", load()))
    text = report(
        args, info, loads, started, time.perf_counter() - t0, cone, throughput, large, rss,
        async_,
    )  # fmt: skip
    out = args.out if args.out.is_absolute() else ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + keep_notes(out))
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    print(text)


if __name__ == "__main__":
    main()
