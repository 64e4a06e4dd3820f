"""Where a sync cone's time goes in the server, and what ``GET /tables`` costs (issue 18 item 4).

Four measurements, each printing a few lines per run (no results file; `results/tap.md`
quotes them):

* ``split``: a one-process server (uvicorn, as ``skyvault serve`` runs it) in this process, a
  keep-alive client in a thread sending sequential cones (as ``bench_tap.py``'s cone part);
  the process's CPU per cone is split by thread: the query service's worker thread
  (``SyncRun.start``, of which ``QueryService.run``), the client, and the rest (the event loop:
  uvicorn, the form, identity, the hand-off, the response); then the CPU of every thread by
  name (from ``/proc``) and the garbage collections per cone.  ``--cprofile FILE`` profiles
  the event loop's thread alone with cProfile; ``--yappi FILE`` profiles all threads (CPU
  clock; it inflates pure-Python code several-fold, so read shares with care).
* ``interleaved``: one ``skyvault serve`` per ``--src`` tree (``SRC|ARGS`` adds serve
  arguments for that one), sequential cones sent to each in turn and the in-process engine +
  BINARY2 writer run for each cone too: every server sees the same load at the same moments,
  so an A/B on a busy machine compares like with like.  HTTP p50 / in-process p50 and server
  CPU per cone for each.
* ``tables``: ``GET /tap/tables`` p50 and server CPU per request against a fresh
  ``skyvault serve`` (the first request, which builds the document, reported apart).
* ``servers``: sequential cones against uvicorn (httptools + uvloop) and granian, one process
  each, alternating; granian is imported from ``--granian-path`` (``pip install --target DIR
  granian``: it is not a dependency).

Run with ``PYTHONPATH`` pointing at the ``src/`` to measure (``interleaved``: at any tree with
this script's ``bench_tap``); ``benchmarks/run_tap_ab.sh`` runs ``bench_tap.py`` on two source
trees alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tap as bt

SERVER_ENV = {"SKYVAULT_AUTH_ANONYMOUS_MAX_RUNNING": "64"}


def split(data: Path, n: int, yappi_out: Path | None, cprofile_out: Path | None = None) -> None:
    os.environ.update(SERVER_ENV)
    os.environ["SKYVAULT_DATA_DIR"] = str(data)
    import uvicorn

    from skyvault.config import Settings
    from skyvault.service.app import create_app
    from skyvault.service.services import sync
    from skyvault.service.services.query import QueryService

    spent = {"start": 0.0, "run": 0.0}

    def timed(cls: Any, name: str, key: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cpu = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] += time.thread_time() - cpu

        setattr(cls, name, wrapper)

    timed(sync.SyncRun, "start", "start")
    timed(QueryService, "run", "run")
    app = create_app(Settings(), freeze_gc=True)  # as `skyvault serve` makes it
    port = bt._free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    out: dict[str, float] = {}
    loops: list[asyncio.AbstractEventLoop] = []
    startup = server.startup

    async def noting_the_loop(sockets: Any = None) -> None:
        loops.append(asyncio.get_running_loop())
        await startup(sockets=sockets)

    server.startup = noting_the_loop  # type: ignore[method-assign]
    profile = cProfile.Profile()

    def on_loop(fn: Any) -> None:
        done = threading.Event()

        def call() -> None:
            fn()
            done.set()

        loops[0].call_soon_threadsafe(call)
        done.wait()

    by_thread: dict[str, float] = {}
    gc_time: dict[int, list[float]] = {}
    gc_began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_began[0] = time.thread_time()
        else:
            gc_time.setdefault(info["generation"], []).append(time.thread_time() - gc_began[0])

    gc.callbacks.append(on_gc)

    def client() -> None:
        while not server.started:
            time.sleep(0.05)
        lean = bt.LeanClient(f"http://127.0.0.1:{port}/tap")
        sample = bt.cones(n + 50, 4)
        for cone in sample[:50]:
            lean.post("/sync", bt.sync_form(cone.adql()))
        import yappi

        if yappi_out is not None:
            yappi.set_clock_type("cpu")
            yappi.start(builtins=False, profile_threads=True)
        if cprofile_out is not None:
            on_loop(profile.enable)
        spent["start"] = spent["run"] = 0.0
        gc_time.clear()
        times = []
        before = _thread_cpu()
        process, thread = time.process_time(), time.thread_time()
        for cone in sample[50:]:
            begin = time.perf_counter()
            status, body = lean.post("/sync", bt.sync_form(cone.adql()))
            times.append(time.perf_counter() - begin)
            assert status == 200, body[:300]
        out["process"] = time.process_time() - process
        out["client"] = time.thread_time() - thread
        after = _thread_cpu()
        for name, cpu in after.items():
            by_thread[name] = cpu - before.get(name, 0.0)
        if yappi_out is not None:
            yappi.stop()
        if cprofile_out is not None:
            on_loop(profile.disable)
        times.sort()
        out["p50"] = times[len(times) // 2]
        lean.close()
        server.should_exit = True

    threading.Thread(target=client, daemon=True).start()
    server.run()
    ms = {k: 1e3 * v / n for k, v in {**out, **spent}.items()}
    print(
        f"p50 {1e3 * out['p50']:.2f} ms; CPU per cone: process {ms['process']:.2f} ms = "
        f"worker thread {ms['start']:.2f} (QueryService.run {ms['run']:.2f}) + client "
        f"{ms['client']:.2f} + event loop and the rest "
        f"{ms['process'] - ms['start'] - ms['client']:.2f}; load {os.getloadavg()[0]:.1f}"
    )
    gc.callbacks.remove(on_gc)
    print(
        "  garbage collection per cone: "
        + ", ".join(
            f"generation {g}: {len(t) / n:.2f} runs, {1e3 * sum(t) / n:.3f} ms"
            for g, t in sorted(gc_time.items())
        )
    )
    kinds = sorted(by_thread.items(), key=lambda kv: -kv[1])
    print(
        "  by thread: "
        + ", ".join(f"{name} {1e3 * cpu / n:.3f}" for name, cpu in kinds if cpu * 1e3 / n >= 0.001)
    )
    if cprofile_out is not None:
        with cprofile_out.open("w") as f:
            pstats.Stats(profile, stream=f).sort_stats("tottime").print_stats(80)
            pstats.Stats(profile, stream=f).sort_stats("cumulative").print_stats(80)
        print(f"cProfile of the event loop's thread: {cprofile_out}")
    if yappi_out is not None:
        import yappi

        total = sum(t.ttot for t in yappi.get_thread_stats())
        rows = sorted(yappi.get_func_stats(), key=lambda s: -s.ttot)[:250]
        with yappi_out.open("w") as f:
            for s in rows:
                f.write(f"{100 * s.ttot / total:6.1f}% {100 * s.tsub / total:6.1f}% ")
                f.write(f"{s.ncall:8d} {s.module}:{s.lineno} {s.name}\n")
        print(f"yappi: {yappi_out}")


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, summed by thread
    name with digits dropped (``skyvault-sync_3`` counts as ``skyvault-sync_``)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "(not Python)")
        name = name.rstrip("0123456789").split(" (")[0]
        spent[name] = spent.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return spent


def tables(data: Path, n: int) -> None:
    import httpx

    with bt.Server(data, "tables") as server, httpx.Client() as client:
        begin = time.perf_counter()
        first = client.get(f"{server.url}/tables")
        first_ms = 1e3 * (time.perf_counter() - begin)
        assert first.status_code == 200
        times = []
        cpu = server.cpu_seconds()
        for _ in range(n):
            begin = time.perf_counter()
            answer = client.get(f"{server.url}/tables")
            times.append(time.perf_counter() - begin)
            assert answer.content == first.content
        cpu_ms = 1e3 * (server.cpu_seconds() - cpu) / n
    times.sort()
    print(
        f"/tables: first {first_ms:.1f} ms, then p50 {1e3 * times[n // 2]:.1f} ms, server CPU "
        f"{cpu_ms:.1f} ms per request, {len(first.content)} bytes; load {os.getloadavg()[0]:.1f}"
    )


def servers(data: Path, n: int, rounds: int, granian_path: Path) -> None:
    import httpx
    import psutil

    app_dir = Path(bt.WORK) / "app"
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "svapp.py").write_text(
        "from skyvault.config import Settings\n"
        "from skyvault.service.app import create_app\n"
        "app = create_app(Settings())\n"
    )
    path = os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(app_dir), str(granian_path)])
    env = {**os.environ, **SERVER_ENV, "SKYVAULT_DATA_DIR": str(data), "PYTHONPATH": path}
    py = sys.executable
    commands = {
        "uvicorn": [py, "-m", "uvicorn", "svapp:app", "--log-level", "warning",
                    "--no-proxy-headers", "--port"],
        "granian": [py, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--no-ws",
                    "--log-level", "warning", "svapp:app", "--port"],
    }  # fmt: skip
    for round_ in range(1, rounds + 1):
        for kind, command in commands.items():
            port = bt._free_port()
            proc = subprocess.Popen([*command, str(port)], env=env, stdout=subprocess.DEVNULL)
            url = f"http://127.0.0.1:{port}/tap"
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/availability").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            lean = bt.LeanClient(url)
            sample = bt.cones(n + 50, 4)
            for cone in sample[:50]:
                lean.post("/sync", bt.sync_form(cone.adql()))
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            cpu = sum(sum(p.cpu_times()[:2]) for p in tree)
            times = []
            for cone in sample[50:]:
                begin = time.perf_counter()
                status, _ = lean.post("/sync", bt.sync_form(cone.adql()))
                times.append(time.perf_counter() - begin)
                assert status == 200
            cpu = sum(sum(p.cpu_times()[:2]) for p in tree) - cpu
            lean.close()
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
            times.sort()
            print(
                f"round {round_} {kind}: p50 {1e3 * times[n // 2]:.2f} ms, server CPU "
                f"{1e3 * cpu / n:.2f} ms per cone; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


def interleaved(data: Path, n: int, sources: list[str], serve_args: list[str]) -> None:
    """Sequential cones sent to one server per source tree in turn (``PYTHONPATH`` = each
    ``src``), with the in-process engine + BINARY2 writer run for each cone too: every server
    sees the same load at the same moments, so a busy machine moves all of them alike."""
    import skyvault
    from skyvault.formats import write_votable

    archive = skyvault.open(data)

    def writer(cone: bt.Cone) -> float:
        begin = time.perf_counter()
        result = archive.stream(cone.adql() + "\n")
        for _ in write_votable(result.batches, result.columns, overflow=lambda: result.overflow):
            pass
        return time.perf_counter() - begin

    servers = []
    path = os.environ.get("PYTHONPATH")
    try:
        for i, source in enumerate(sources):
            src, _, more = source.partition("|")
            os.environ["PYTHONPATH"] = src
            args = [*serve_args, *shlex.split(more)]
            servers.append(bt.Server(data, f"interleaved-{i}", args).__enter__())
    finally:
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path
    try:
        clients = [bt.LeanClient(s.url) for s in servers]
        sample = bt.cones(n + 30, 4)
        http: list[list[float]] = [[] for _ in servers]
        cpu = [0.0 for _ in servers]
        local: list[float] = []
        for k, cone in enumerate(sample):
            order = list(range(len(servers)))
            if k % 2:
                order.reverse()
            for i in order:
                before = servers[i].cpu_seconds()
                begin = time.perf_counter()
                status, body = clients[i].post("/sync", bt.sync_form(cone.adql()))
                took = time.perf_counter() - begin
                spent = servers[i].cpu_seconds() - before
                assert status == 200, body[:300]
                if k >= 30:
                    http[i].append(took)
                    cpu[i] += spent
            took = writer(cone)
            if k >= 30:
                local.append(took)
        base = bt.pct(local, 50)
        print(f"in-process engine + writer p50 {1e3 * base:.2f} ms; load {os.getloadavg()[0]:.1f}")
        for i, src in enumerate(sources):
            p50 = bt.pct(http[i], 50)
            print(
                f"  {src}: HTTP p50 {1e3 * p50:.2f} ms = {p50 / base:.2f}×, "
                f"server CPU {1e3 * cpu[i] / n:.2f} ms per cone",
                flush=True,
            )
        for c in clients:
            c.close()
    finally:
        for s in servers:
            s.__exit__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("split", "tables", "servers", "interleaved"))
    parser.add_argument("--data", type=Path, default=bt.ROOT / "demo-data", help="medium demo")
    parser.add_argument("-n", type=int, default=500, help="requests per run")
    parser.add_argument("--rounds", type=int, default=2, help="servers: rounds")
    parser.add_argument("--yappi", type=Path, help="split: profile into this file")
    parser.add_argument(
        "--cprofile", type=Path, help="split: cProfile the event loop's thread into this file"
    )
    parser.add_argument("--granian-path", type=Path, default=Path("/tmp/granian"))
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        help="interleaved: a src/ directory to serve from (give two or more); "
        "'SRC|ARGS' adds `skyvault serve` arguments for that server alone",
    )
    parser.add_argument(
        "--serve-args", default="--workers 2", help="interleaved: more `skyvault serve` arguments"
    )
    args = parser.parse_args()
    data = args.data.resolve()
    if args.what == "split":
        split(data, args.n, args.yappi, args.cprofile)
    elif args.what == "interleaved":
        for _ in range(args.rounds):
            interleaved(data, args.n, args.src, shlex.split(args.serve_args))
    elif args.what == "tables":
        tables(data, args.n)
    else:
        servers(data, args.n, args.rounds, args.granian_path)


if __name__ == "__main__":
    main()
