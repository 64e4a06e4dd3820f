"""The portal in a real browser (Debian's chromium, Playwright) over real Tycho-2.

1. **first view**: navigation to ``/`` until the page is interactive (schema loaded, editor
   ready: ``body[data-ready]``), against loading the TAP landing page (``/tap``, static HTML)
   in the same browser;
2. **1M rows**: ``SELECT TOP 1000000 ...`` run from the portal until the grid shows it (the
   portal fetches an Arrow IPC stream and pages the grid against its columns), against the JSON
   path the portal used before: the same query fetched as JSON and parsed with the reviver that
   keeps 64-bit ids exact, then one row object per row (what the grid was given), and plain
   ``JSON.parse`` for reference; then the rows in the DOM (a few dozen, not a million), a jump
   to row 900,000, and a scatter plot of the million rows;
3. **100k points on the sky**: a 100,000-row result drawn as an Aladin Lite catalogue layer,
   against the grid of the same rows.

Run from the repository root:
    .venv/bin/python benchmarks/bench_portal.py [--data DIR] [--repeat 5]
Writes ``benchmarks/results/portal.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _live import free_port, serve_in_thread

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


#: The JSON path of the portal before the Arrow format (its api.parseResult and
#: results.toRecords), timed in the page: seconds with the reviver, and plain JSON.parse.
JSON_PATH = """async (q) => {
  const fetchText = async () => {
    const r = await fetch('/tap/sync', {method: 'POST', body: new URLSearchParams(
      {LANG: 'ADQL', QUERY: q, RESPONSEFORMAT: 'json'})});
    return r.text();
  };
  let t = performance.now();
  const doc = JSON.parse(await fetchText(), (key, value, context) => {
    if (typeof value === 'number' && !Number.isSafeInteger(value) && context
        && /^-?\\d+$/.test(context.source)) return context.source;
    return value;
  });
  const n = doc.metadata.length;
  const records = doc.data.map((row, index) => {
    const record = {__row: index};
    for (let i = 0; i < n; i++) record[`c${i}`] = row[i];
    return record;
  });
  const reviver = (performance.now() - t) / 1000;
  if (records.length !== 1000000) throw new Error(`JSON path: ${records.length} rows`);
  t = performance.now();
  const plain = JSON.parse(await fetchText());
  return {reviver, plain: (performance.now() - t) / 1000, rows: plain.data.length};
}"""


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


def _serve(data: Path) -> contextlib.AbstractContextManager[str]:
    """The service on ``data`` in a thread (see ``_live``); entered, yields the TAP URL."""
    from skyvault.config import Settings
    from skyvault.service.app import create_app

    settings = Settings(data_dir=data, maxrec_default=2_000_000, maxrec_limit=2_000_000)
    return serve_in_thread(create_app(settings), free_port())


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
    serving = contextlib.ExitStack()
    base = serving.enter_context(_serve(args.data)).removesuffix("/tap")
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

        # 2. 1M rows into the grid (Arrow), against the JSON path of the portal before it.
        query = "SELECT TOP 1000000 id, ra, dec, mag_vt FROM cat.tycho2"
        _set_query(page, query)
        grid = _run_until_rows(page, 1_000_000)
        in_dom = page.evaluate("document.querySelectorAll('#grid .tabulator-row').length")
        json_path = page.evaluate(JSON_PATH, query)
        jump = page.evaluate(
            """() => new Promise((done) => {
              const t = performance.now();
              window.skyvault.grid.showRow(900000).then(() =>
                requestAnimationFrame(() => requestAnimationFrame(() => done([
                  (performance.now() - t) / 1000,
                  document.querySelectorAll('#grid .tabulator-row').length]))));
            })"""
        )
        # One draw: the axes chosen first (no change event), then the plot tab opened.
        page.evaluate(
            "() => { document.querySelector('#plot-x').value = '1';"
            " document.querySelector('#plot-y').value = '2'; }"
        )
        t = time.perf_counter()
        page.click(".tabs button[data-tab='plot']")
        page.wait_for_selector("#plot svg[data-points='1000000']", timeout=600_000)
        plot = time.perf_counter() - t
        page.click(".tabs button[data-tab='table']")
        lines.append(
            f"| 1M rows × 4 columns into the grid (run → rows shown; Arrow) | {grid:.2f} s | "
            f"JSON path: fetch + `JSON.parse` with the 64-bit reviver + row objects "
            f"{json_path['reviver']:.2f} s | {grid / json_path['reviver']:.2f}× |"
        )
        lines.append(
            f"| (reference) fetch + plain `JSON.parse` of the same result | "
            f"{json_path['plain']:.2f} s | — | — |"
        )
        lines.append(
            f"| rows in the DOM with 1M loaded (pages of 1,000, virtualised) | {in_dom} | — | — |"
        )
        lines.append(
            f"| jump to row 900,000 (page 901 → next frame drawn) | {jump[0] * 1000:.0f} ms, "
            f"{jump[1]} rows in the DOM | — | — |"
        )
        lines.append(
            f"| scatter of the 1M rows (plot tab → drawn; 20,000 drawn, all brushable) | "
            f"{plot:.2f} s | — | — |"
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
    serving.close()
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
