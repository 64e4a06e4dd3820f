"""The portal in a real browser (Debian's chromium, Playwright) over real Tycho-2.

1. **first view**: navigation to ``/`` until the page is interactive (schema loaded, editor
   ready: ``body[data-ready]``), against loading the TAP landing page (``/tap``, static HTML)
   in the same browser;
2. **1M rows**: ``SELECT TOP 1000000 ...`` run from the portal until the grid shows it,
   against the same query fetched and ``JSON.parse``d by the page (no grid); then the rows in
   the DOM (virtualised: a few dozen, not a million) and a jump to row 900,000;
3. **100k points on the sky**: a 100,000-row result drawn as an Aladin Lite catalogue layer,
   against the grid of the same rows.

Run from the repository root:
    .venv/bin/python benchmarks/bench_portal.py [--data DIR] [--repeat 5]
Writes ``benchmarks/results/portal.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TYCHO2 = ROOT.parent / "shared" / "data" / "tycho2" / "tycho2.parquet"
TABLE = "cat.tycho2"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ensure_table(data: Path) -> None:
    from skyvault.auth import AuthStorage, grant_access
    from skyvault.catalog.ingest import IngestOptions, ingest

    if not (data / "cat" / "tycho2").exists():
        ingest([TYCHO2], TABLE, data, ra="ra", dec="dec", options=IngestOptions(workers=2))
    storage = AuthStorage.for_data_dir(data)
    try:
        grant_access(storage, "cat", None)
    finally:
        storage.close()


def _serve(data: Path) -> tuple[str, Any]:
    import uvicorn

    from skyvault.config import Settings
    from skyvault.service.app import create_app

    port = _free_port()
    settings = Settings(data_dir=data, maxrec_default=2_000_000, maxrec_limit=2_000_000)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def _set_query(page: Any, text: str) -> None:
    page.evaluate(
        "(t) => { const v = window.skyvault.editor;"
        " v.dispatch({changes: {from: 0, to: v.state.doc.length, insert: t}}); }",
        text,
    )


def _run_until_rows(page: Any, rows: int) -> float:
    start = time.perf_counter()
    page.click("#run")
    page.wait_for_function(
        "() => !document.querySelector('#status').classList.contains('busy')", timeout=600_000
    )
    elapsed = time.perf_counter() - start
    status = page.inner_text("#status")
    if not status.startswith(f"{rows:,}"):
        sys.exit(f"the portal did not show {rows:,} rows: {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/bench-portal-data"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    _ensure_table(args.data)
    base, server = _serve(args.data)
    load = os.getloadavg()[0]
    lines: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        # 1. first view, alternating with the landing page.
        first, landing = [], []
        for _ in range(args.repeat):
            page.goto("about:blank")
            t = time.perf_counter()
            page.goto(f"{base}/tap", wait_until="load")
            landing.append(time.perf_counter() - t)
            page.goto("about:blank")
            t = time.perf_counter()
            page.goto(f"{base}/")
            page.wait_for_selector("body[data-ready='true']", timeout=60_000)
            first.append(time.perf_counter() - t)
        f, lnd = statistics.median(first), statistics.median(landing)
        lines.append(
            f"| first view interactive (`/` → schema + editor ready) | {f * 1000:.0f} ms | "
            f"`/tap` landing page load {lnd * 1000:.0f} ms | {f / lnd:.1f}× |"
        )

        # 2. 1M rows into the grid, against fetch + JSON.parse of the same query.
        query = "SELECT TOP 1000000 id, ra, dec, mag_vt FROM cat.tycho2"
        _set_query(page, query)
        grid = _run_until_rows(page, 1_000_000)
        in_dom = page.evaluate("document.querySelectorAll('#grid .tabulator-row').length")
        parse = page.evaluate(
            """async (q) => {
              const t = performance.now();
              const r = await fetch('/tap/sync', {method: 'POST', body: new URLSearchParams(
                {LANG: 'ADQL', QUERY: q, RESPONSEFORMAT: 'json'})});
              const d = JSON.parse(await r.text());
              return [(performance.now() - t) / 1000, d.data.length];
            }""",
            query,
        )
        jump = page.evaluate(
            """() => new Promise((done) => {
              const holder = document.querySelector('#grid .tabulator-tableholder');
              const t = performance.now();
              holder.scrollTop = holder.scrollHeight * 0.9;
              requestAnimationFrame(() => requestAnimationFrame(() => done([
                (performance.now() - t) / 1000,
                document.querySelectorAll('#grid .tabulator-row').length])));
            })"""
        )
        lines.append(
            f"| 1M rows × 4 columns into the grid (run → rows shown) | {grid:.2f} s | "
            f"fetch + `JSON.parse` of the same result {parse[0]:.2f} s | {grid / parse[0]:.1f}× |"
        )
        lines.append(f"| rows in the DOM with 1M loaded (virtualised) | {in_dom} | — | — |")
        lines.append(
            f"| jump to row 900,000 (scroll → next frame drawn) | {jump[0] * 1000:.0f} ms, "
            f"{jump[1]} rows in the DOM | — | — |"
        )

        # 3. 100k points on the sky, against the grid of the same rows.
        query = "SELECT TOP 100000 id, ra, dec, mag_vt FROM cat.tycho2"
        _set_query(page, query)
        grid100k = _run_until_rows(page, 100_000)
        t = time.perf_counter()
        page.click(".tabs button[data-tab='sky']")
        page.wait_for_function(
            "() => document.querySelector('#sky').dataset.sources === '100000'", timeout=600_000
        )
        sky = time.perf_counter() - t
        lines.append(
            f"| 100k rows as an Aladin Lite layer (sky tab → markers) | {sky:.2f} s | "
            f"the same rows run into the grid {grid100k:.2f} s | {sky / grid100k:.2f}× |"
        )
        browser.close()
    server.should_exit = True
    out = ROOT / "benchmarks" / "results" / "portal.md"
    text = "\n".join(
        [
            "# The portal in a browser",
            "",
            "Command (from the repository root): `.venv/bin/python benchmarks/bench_portal.py "
            f"--repeat {args.repeat}`",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
            f"{os.cpu_count()} CPU {platform.machine()}, Debian chromium headless (software "
            f"WebGL), one `skyvault` server process in the same script; load average "
            f"{load:.1f} at the start.",
            "- Data: Tycho-2 (1.87M real stars) ingested as `cat.tycho2`.",
            "",
            "| measure | portal | baseline in the same run | ratio |",
            "|---|---:|---|---:|",
            *lines,
            "",
        ]
    )
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
