"""The portal in a real browser (Debian's chromium driven by Playwright): sign in, browse the
schema, write and run ADQL, see rows in the grid, markers on the sky and points in a plot, run a
job and reopen it from the monitor, download a result, and see a bad query's error where it is.

Screenshots of the main views go to ``docs/screenshots/`` (linked from the README).  Each test
checks what the page shows against the service itself (the same query over TAP).
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from skyvault.config import Settings
from skyvault.service.app import create_app
from tests.service.conftest import ROOMY_AUTH, _free_port, serve_in_thread

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CONE = (
    "SELECT TOP 200 objectId, coord_ra, coord_dec, g_psfFlux, r_psfFlux\n"
    "FROM dp02_dc2_catalogs.Object\n"
    "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', {ra}, {dec}, 0.6)) = 1"
)
# The flags a root process in a closed network needs (no sandbox, no background fetches).
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

if CHROMIUM is None:
    pytest.skip("chromium is not installed (make test installs it)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(demo_dir: Path) -> Iterator[tuple[str, str, Settings]]:
    """A live server over the demo, with a catalogue HiPS of Object and a user with a token."""
    from skyvault.auth import AuthStorage
    from skyvault.auth.tokens import TokenService
    from skyvault.hips.catalog import build_catalog_hips

    build_catalog_hips(demo_dir, "dp02_dc2_catalogs.Object", order_by="r_psfFlux")
    storage = AuthStorage.for_data_dir(demo_dir)
    try:
        from skyvault.auth import grant_access

        grant_access(storage, "dp02_calexp", None)  # as `skyvault demo` does
        now = datetime.now(UTC)
        if "portal_alice" not in {u.name for u in storage.list_users()}:
            storage.add_user("portal_alice", now)
            storage.add_group("portal_survey", ["portal_alice"], now)
        token = TokenService(storage).create_token("portal_alice")
    finally:
        storage.close()
    settings = Settings(data_dir=demo_dir, auth=ROOMY_AUTH, maxrec_default=100_000)
    with serve_in_thread(create_app(settings), _free_port()) as tap:
        yield tap.removesuffix("/tap"), token, settings


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, server: tuple[str, str, Settings]) -> Iterator[Any]:
    base = server[0]
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    outside: list[str] = []
    problems: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "console",
        lambda m: (
            problems.append(m.text) if m.type == "error" and "Content Security" in m.text else None
        ),
    )
    page.goto(f"{base}/")
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    yield page
    context.close()
    assert not outside, f"the page asked outside the server: {outside[:5]}"
    assert not [p for p in problems if "Content Security" in p], problems


def _tap_rows(base: str, query: str, token: str | None = None) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(
        f"{base}/tap/sync",
        data={"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv"},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.text)))


def _set_query(page: Any, text: str) -> None:
    page.click("#editor .cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.evaluate(
        "(text) => { const v = window.skyvault.editor;"
        " v.dispatch({changes: {from: 0, to: v.state.doc.length, insert: text}}); }",
        text,
    )


def _centre(base: str) -> tuple[float, float]:
    row = _tap_rows(
        base,
        "SELECT AVG(coord_ra) AS ra, AVG(coord_dec) AS dec FROM dp02_dc2_catalogs.Object",
    )[0]
    return float(row["ra"]), float(row["dec"])


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_the_root_opens_the_portal_interactive_and_anonymous(
    page: Any, server: tuple[str, str, Settings]
) -> None:
    assert page.url.endswith("/portal/")
    assert page.inner_text("#who") == "anonymous"
    ready = page.evaluate("performance.now()")
    print(f"portal interactive after {ready:.0f} ms (page clock)")
    # The schema browser lists the demo schema and its tables, with descriptions on hover.
    tables = page.locator(".schema-tree .table")
    assert tables.count() >= 10
    obj = page.locator(".table[data-table='dp02_dc2_catalogs.Object']")
    assert "Object" in obj.locator("summary").get_attribute("title")
    obj.locator("summary").click()
    first_col = obj.locator("li").first
    assert "unit" in first_col.get_attribute("title") or "UCD" in first_col.get_attribute("title")
    # Searching narrows the list.
    page.fill(".schema-search", "psfFlux")
    page.wait_for_timeout(200)
    assert 0 < page.locator(".schema-tree .table").count() < tables.count() + 1
    page.fill(".schema-search", "")
    # "query" writes a starter query for the table.
    obj.locator("button.starter").click()
    text = page.evaluate("window.skyvault.editor.state.doc.toString()")
    assert text.startswith("SELECT TOP 100") and "dp02_dc2_catalogs.Object" in text
    _shot(page, "portal-schema")


def test_a_cone_query_fills_the_grid_the_sky_and_a_plot(
    page: Any, server: tuple[str, str, Settings]
) -> None:
    base = server[0]
    ra, dec = _centre(base)
    query = CONE.format(ra=ra, dec=dec)
    expected = _tap_rows(base, query)
    assert 0 < len(expected) <= 200
    _set_query(page, query)
    # The portal asks for an Arrow IPC stream and reads it into columns.
    with page.expect_response(lambda r: r.url.endswith("/tap/sync")) as answer:
        page.click("#run")
    assert answer.value.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert "RESPONSEFORMAT=arrow" in (answer.value.request.post_data or "")
    page.wait_for_function(
        "() => document.querySelector('#status').classList.contains('ok') && "
        "/rows/.test(document.querySelector('#status').textContent)"
    )
    assert page.inner_text("#status").startswith(f"{len(expected)} rows")
    # Every id exactly as the service has it: 64-bit ids beyond 2^53 are not rounded.
    held = page.evaluate(
        "() => { const r = window.skyvault.result;"
        " return Array.from({length: r.numRows}, (_, i) => r.text(i, 0)); }"
    )
    assert sorted(held) == sorted(r["objectId"] for r in expected)
    assert any(int(r["objectId"]) > 2**53 for r in expected)
    # The grid shows those ids; only the visible rows are in the DOM.
    ids = page.evaluate(
        "Array.from(document.querySelectorAll('#grid .tabulator-row'))"
        ".map(r => r.querySelector('.tabulator-cell').textContent)"
    )
    assert ids and set(ids) <= {r["objectId"] for r in expected}
    # Units and UCDs in the column headers, from the Arrow schema's field metadata.
    tip = page.evaluate(
        "() => { const c = window.skyvault.grid.grid.getColumn('c1');"
        " return c.getDefinition().headerTooltip; }"
    )
    assert "unit: deg" in tip and "UCD: pos.eq.ra" in tip, tip
    # Sorting and header filters work on the columns (the grid pages against them).
    ras = sorted(float(r["coord_ra"]) for r in expected)
    page.click("#grid .tabulator-col[tabulator-field='c1'] .tabulator-col-title")
    page.wait_for_function(
        "(lo) => { const c = document.querySelector('#grid .tabulator-row "
        '.tabulator-cell[tabulator-field="c1"]\'); return c && Number(c.textContent) === lo; }',
        arg=ras[0],
    )
    cut = ras[len(ras) // 2]
    box = "#grid .tabulator-col[tabulator-field='c1'] .tabulator-header-filter input"
    page.fill(box, f"<{cut}")
    page.press(box, "Enter")  # (Tabulator filters on key-up, which fill() does not send)
    page.wait_for_function(
        "(n) => window.skyvault.grid.grid.getDataCount() === n",
        arg=sum(1 for ra in ras if ra < cut),
    )
    page.fill(box, "")
    page.press(box, "Enter")
    page.wait_for_function(
        "(n) => window.skyvault.grid.grid.getDataCount() === n", arg=len(expected)
    )
    pager = page.locator("#grid .tabulator-footer").bounding_box()
    panel = page.locator("#panel-table").bounding_box()
    assert pager and panel and pager["y"] + pager["height"] <= panel["y"] + panel["height"] + 1
    page.mouse.move(0, 0)  # no header tooltip over the screenshot
    page.wait_for_timeout(300)
    _shot(page, "portal-table")
    # The sky: Aladin Lite (shipped, not from a CDN) with one marker per row.
    with page.expect_response(lambda r: r.url.endswith("/Moc.fits"), timeout=30_000) as moc:
        page.click(".tabs button[data-tab='sky']")
        page.wait_for_selector("#sky canvas", timeout=30_000)
    assert moc.value.status == 200  # the HiPS coverage is drawn as a MOC layer
    page.wait_for_function("() => document.querySelector('#sky').dataset.sources !== undefined")
    assert int(page.get_attribute("#sky", "data-sources")) == len(expected)
    page.wait_for_timeout(1500)
    _shot(page, "portal-sky")
    # A plot of two flux columns: one point per row with both values.
    page.click(".tabs button[data-tab='plot']")
    page.select_option("#plot-x", label="g_psfFlux")
    page.select_option("#plot-y", label="r_psfFlux")
    both = [r for r in expected if r["g_psfFlux"] and r["r_psfFlux"]]
    page.wait_for_selector("#plot svg[data-points]")
    assert int(page.get_attribute("#plot svg[data-points]", "data-points")) == len(both)
    _shot(page, "portal-plot")
    # The python tab reproduces the query with pyvo.
    page.click(".tabs button[data-tab='python']")
    snippet = page.inner_text("#snippet")
    assert "pyvo.dal.TAPService" in snippet and "CIRCLE('ICRS'" in snippet


def _run_cone(page: Any, base: str) -> list[dict[str, str]]:
    ra, dec = _centre(base)
    query = CONE.format(ra=ra, dec=dec)
    expected = _tap_rows(base, query)
    _set_query(page, query)
    page.click("#run")
    page.wait_for_function(
        "() => document.querySelector('#status').classList.contains('ok') && "
        "/rows/.test(document.querySelector('#status').textContent)"
    )
    return expected


def _drag(
    page: Any, box: dict[str, float], start: tuple[float, float], end: tuple[float, float]
) -> None:
    """Drag across the plot's frame (margins: left 60, top 20, right 20, bottom 40 px), from
    and to fractions of it."""
    left, top = box["x"] + 60, box["y"] + 20
    width, height = box["width"] - 80, box["height"] - 60
    page.mouse.move(left + start[0] * width, top + start[1] * height)
    page.mouse.down()
    page.mouse.move(left + end[0] * width, top + end[1] * height, steps=8)
    page.mouse.up()


def _selected_ids(page: Any) -> list[str]:
    return page.evaluate(
        "() => { const s = window.skyvault.selection, r = window.skyvault.result;"
        " return s ? Array.from(s.rows, (i) => r.text(i, 0)) : []; }"
    )


def test_brushing_links_the_plot_the_grid_and_the_sky(
    page: Any, server: tuple[str, str, Settings]
) -> None:
    expected = _run_cone(page, server[0])
    page.click(".tabs button[data-tab='sky']")
    page.wait_for_function(
        "(n) => document.querySelector('#sky').dataset.sources === String(n)",
        arg=len(expected),
        timeout=30_000,
    )
    # A rectangle dragged on the scatter of position selects the rows inside it...
    page.click(".tabs button[data-tab='plot']")
    page.select_option("#plot-kind", "scatter")
    page.select_option("#plot-x", label="coord_ra")
    page.select_option("#plot-y", label="coord_dec")
    page.wait_for_selector("#plot svg[data-points]")
    box = page.locator("#plot svg[data-points]").bounding_box()
    _drag(page, box, (0.2, 0.2), (0.7, 0.8))
    page.wait_for_function(
        "() => /selected/.test(document.querySelector('#selection-count').textContent)"
    )
    region = page.evaluate("window.skyvault.selection.region")
    (xlo, xhi), (ylo, yhi) = region["x"], region["y"]
    inside = {
        r["objectId"]
        for r in expected
        if xlo <= float(r["coord_ra"]) <= xhi and ylo <= float(r["coord_dec"]) <= yhi
    }
    assert 0 < len(inside) < len(expected)
    assert sorted(_selected_ids(page)) == sorted(inside)
    # ...drawn over the points, and on the sky as its own layer...
    page.wait_for_selector(f"#plot svg[data-selected='{len(inside)}']")
    assert page.get_attribute("#sky", "data-selected") == str(len(inside))
    _shot(page, "portal-brush")
    # ...and highlighted in the grid; "selected rows only" leaves just them.
    page.click(".tabs button[data-tab='table']")
    brushed = page.evaluate(
        "Array.from(document.querySelectorAll('#grid .tabulator-row.brushed'))"
        ".map(r => r.querySelector('.tabulator-cell').textContent)"
    )
    assert brushed and set(brushed) <= inside
    page.check("#only-selected")
    page.wait_for_function(
        "(n) => window.skyvault.grid.grid.getDataCount() === n", arg=min(len(inside), 1000)
    )
    shown = page.evaluate(
        "Array.from(document.querySelectorAll('#grid .tabulator-row'))"
        ".map(r => r.querySelector('.tabulator-cell').textContent)"
    )
    assert shown and set(shown) <= inside
    page.uncheck("#only-selected")
    # The reverse: a row clicked in the grid is the selection in the plot and on the sky.
    page.wait_for_function(f"() => window.skyvault.grid.grid.getDataCount() === {len(expected)}")
    first = page.locator("#grid .tabulator-row").first
    picked = first.locator(".tabulator-cell").first.inner_text()
    first.click()
    page.wait_for_function(
        "() => window.skyvault.selection && window.skyvault.selection.rows.length === 1"
    )
    assert _selected_ids(page) == [picked]
    assert page.get_attribute("#sky", "data-selected") == "1"
    page.click(".tabs button[data-tab='plot']")
    page.wait_for_selector("#plot svg[data-selected='1']")
    # A range dragged on a histogram selects the rows whose value falls in it.
    page.select_option("#plot-kind", "histogram")
    page.select_option("#plot-x", label="coord_dec")
    page.wait_for_selector("#plot svg[data-points]")
    box = page.locator("#plot svg[data-points]").bounding_box()
    _drag(page, box, (0.3, 0.5), (0.6, 0.5))
    page.wait_for_function("() => window.skyvault.selection && window.skyvault.selection.region")
    lo, hi = page.evaluate("window.skyvault.selection.region.x")
    within = {r["objectId"] for r in expected if lo <= float(r["coord_dec"]) <= hi}
    assert 0 < len(within) < len(expected)
    assert sorted(_selected_ids(page)) == sorted(within)
    # A rectangle dragged on the sky ("select rows") selects the markers inside it: the rows
    # whose positions Aladin projects into it, highlighted in the plot.
    page.click(".tabs button[data-tab='sky']")
    page.click("#sky-select")
    box = page.locator("#sky").bounding_box()
    corners = [box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.05,
               box["x"] + box["width"] * 0.95, box["y"] + box["height"] * 0.9]  # fmt: skip
    page.mouse.move(corners[0], corners[1])
    page.mouse.down()
    page.mouse.move(corners[2], corners[3], steps=8)
    page.mouse.up()
    page.wait_for_function(
        "() => window.skyvault.selection && window.skyvault.selection.from === 'sky'"
    )
    projected = page.evaluate(
        """(c) => { const a = window.skyvault.sky.aladin, r = window.skyvault.result;
          const at = document.querySelector('#sky').getBoundingClientRect();
          const ra = r.columns[1].numbers(), dec = r.columns[2].numbers(), ids = [];
          for (let i = 0; i < r.numRows; i++) {
            const p = a.world2pix(ra[i], dec[i]);
            if (p && p[0] + at.x >= c[0] && p[0] + at.x <= c[2] && p[1] + at.y >= c[1]
                && p[1] + at.y <= c[3]) ids.push(r.text(i, 0));
          }
          return ids; }""",
        corners,
    )
    assert projected and sorted(_selected_ids(page)) == sorted(projected)
    page.click(".tabs button[data-tab='plot']")
    page.wait_for_selector(f"#plot svg[data-selected='{len(projected)}']")


def test_a_bad_query_shows_its_error_at_its_place(page: Any) -> None:
    _set_query(page, "SELECT TOP 5 objectId\nFROM dp02_dc2_catalogs.Object\nWHERE coord_ra >")
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#status').classList.contains('error')")
    message = page.inner_text("#status")
    assert "line 3" in message
    page.wait_for_selector("#editor .cm-lintRange-error")
    # An unknown table names it, with no engine text.
    _set_query(page, "SELECT TOP 5 * FROM dp02_dc2_catalogs.Nope")
    page.click("#run")
    page.wait_for_function("() => /Nope/.test(document.querySelector('#status').textContent)")
    assert "duckdb" not in page.inner_text("#status").lower()
    _shot(page, "portal-error")


def test_a_query_without_top_or_where_on_a_big_table_asks_first(page: Any) -> None:
    _set_query(page, "SELECT objectId FROM dp02_dc2_catalogs.ForcedSource")
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.click("#run")
    page.wait_for_function("() => /not run/.test(document.querySelector('#status').textContent)")
    assert asked and "TOP" in asked[0]


def test_a_job_runs_is_monitored_and_reopens_after_a_reload(
    page: Any, server: tuple[str, str, Settings]
) -> None:
    base = server[0]
    query = "SELECT band, COUNT(*) AS n FROM dp02_dc2_catalogs.Visit GROUP BY band ORDER BY band"
    expected = _tap_rows(base, query)
    _set_query(page, query)
    name = f"bands-{time.time_ns()}"
    page.fill("#runid", name)
    page.click("#run-async")
    row = page.locator("table.jobs tr", has_text=name)
    row.wait_for(timeout=30_000)
    page.wait_for_function(
        "(name) => Array.from(document.querySelectorAll('table.jobs tr')).some("
        "r => r.textContent.includes(name) && r.textContent.includes('COMPLETED'))",
        arg=name,
        timeout=60_000,
    )
    _shot(page, "portal-jobs")
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    page.click(".tabs button[data-tab='jobs']")
    row = page.locator("table.jobs tr", has_text=name)
    row.wait_for(timeout=30_000)
    row.locator("button", has_text="open").click()
    page.wait_for_function("() => /rows/.test(document.querySelector('#status').textContent)")
    assert page.inner_text("#status").startswith(f"{len(expected)} rows")
    assert "AsyncTAPJob" in page.inner_text("#snippet")


def test_a_result_downloads_in_every_format(page: Any, server: tuple[str, str, Settings]) -> None:
    base = server[0]
    query = "SELECT TOP 7 visit, band FROM dp02_dc2_catalogs.Visit ORDER BY visit"
    _set_query(page, query)
    page.click("#run")
    page.wait_for_function("() => /7 rows/.test(document.querySelector('#status').textContent)")
    with page.expect_download() as info:
        page.select_option("#download", label="CSV")
    body = Path(info.value.path()).read_text()
    assert list(csv.DictReader(io.StringIO(body))) == _tap_rows(base, query)
    # Every format the menu offers: the very bytes the service writes for that format.
    offered = page.evaluate(
        "Array.from(document.querySelectorAll('#download option'))"
        ".map(o => o.value).filter(Boolean)"
    )
    formats = {value.split("|")[0] for value in offered}
    assert {"votable", "csv", "tsv", "fits", "parquet", "arrow", "json"} <= formats
    for value in offered:
        fmt, extension = value.split("|")
        with page.expect_download() as info:
            page.select_option("#download", value=value)
        assert info.value.suggested_filename == f"result.{extension}"
        expected = httpx.post(
            f"{base}/tap/sync",
            data={"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt},
            timeout=60,
        )
        assert Path(info.value.path()).read_bytes() == expected.content, fmt


def test_signing_in_shows_the_user_and_groups(page: Any, server: tuple[str, str, Settings]) -> None:
    page.fill("#token", server[1])
    page.click("#signin button[type='submit']")
    page.wait_for_function("() => document.querySelector('#who').textContent === 'portal_alice'")
    assert "portal_survey" in page.inner_text("#groups")
    page.reload()  # the token is kept in this browser
    page.wait_for_selector("body[data-ready='true']")
    assert page.inner_text("#who") == "portal_alice"
    page.click("#signout")
    page.wait_for_function("() => document.querySelector('#who').textContent === 'anonymous'")
    # A wrong token is refused with the service's message, not a blank page.
    page.fill("#token", "sv_nope_nope")
    page.click("#signin button[type='submit']")
    page.wait_for_function("() => document.querySelector('#status').classList.contains('error')")


def test_an_image_row_offers_its_preview_header_and_a_cutout(
    page: Any, server: tuple[str, str, Settings], demo_dir: Path, tmp_path: Path
) -> None:
    from astropy.io import fits

    base = server[0]
    query = "SELECT TOP 3 obs_publisher_did, obs_id, s_ra, s_dec, s_region FROM dp02_calexp.obscore"
    expected = _tap_rows(base, query)
    assert expected
    _set_query(page, query)
    page.click("#run")
    page.wait_for_function("() => /rows/.test(document.querySelector('#status').textContent)")
    page.locator("#grid .tabulator-row").first.click()
    page.click(".tabs button[data-tab='links']")
    page.wait_for_function(
        "() => { const i = document.querySelector('#links img.preview');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=60_000,
    )
    page.wait_for_function(
        "() => /NAXIS1/.test(document.querySelector('#links pre.header').textContent)"
    )
    header = page.inner_text("#links pre.header")
    assert header.startswith("SIMPLE") and "END" in header
    _shot(page, "portal-row")
    with page.expect_download() as info:
        page.click("#cutout")
    with fits.open(info.value.path()) as cut:
        image = next(h for h in cut if h.data is not None)
        assert image.data.ndim == 2 and 0 < image.data.shape[0] < 4000
        assert any("cutout" in str(c).lower() for c in image.header.get("HISTORY", []))
