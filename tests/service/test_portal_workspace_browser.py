"""The user's own tables in the portal, in a real browser: upload a file as a table, query it,
save a query's result as a table, share it and delete it (the workspace, docs/workspace.md).

Each step is checked against the service's own API (TAP, the youcat permissions document).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import Table

from skyvault.config import Settings
from tests.service import test_portal_browser as portal_browser
from tests.service.test_portal_browser import _run_cone, _set_query, _tap_rows

pytestmark = pytest.mark.slow

# The browser test's fixtures: its live server (user portal_alice), chromium, a fresh page.
server = portal_browser.server
browser = portal_browser.browser
page = portal_browser.page


def _wait_status(tab: Any, pattern: str, kind: str = "ok") -> None:
    tab.wait_for_function(
        "([pattern, kind]) => { const s = document.querySelector('#status');"
        " return s.classList.contains(kind) && new RegExp(pattern).test(s.textContent); }",
        arg=[pattern, kind],
        timeout=60_000,
    )


def test_a_user_uploads_queries_saves_shares_and_deletes_tables(
    page: Any, server: tuple[str, str, Settings], tmp_path: Any
) -> None:
    base, token, _settings = server
    auth = {"Authorization": f"Bearer {token}"}
    # Anonymous callers see nothing of the workspace.
    assert page.locator("#workspace-bar").is_hidden()
    page.fill("#token", token)
    page.click("#signin button[type='submit']")
    page.wait_for_function("() => document.querySelector('#who').textContent === 'portal_alice'")
    session = httpx.get(f"{base}/portal/api/session", headers=auth, timeout=30).json()
    schema = session["workspace"]
    assert schema == "user_portal_alice"
    assert httpx.get(f"{base}/portal/api/session", timeout=30).json()["workspace"] is None
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("#workspace-bar").is_visible()
    stamp = time.time_ns() % 10**9
    uploaded, saved = f"stars_{stamp}", f"cone_{stamp}"

    # Upload a CSV: it becomes a table with the right types, in the schema browser.
    source = tmp_path / "stars.csv"
    source.write_text('id,ra,dec,label\n1,10.5,-20.25,"a, b"\n2,11.0,-21.0,c\n3,12.5,-22.5,\n')
    page.once("dialog", lambda d: d.accept(uploaded))
    page.set_input_files("#upload-table", str(source))
    _wait_status(page, "Inserted 3 rows")
    own = page.locator(f".table[data-table='{schema}.{uploaded}']")
    own.wait_for(timeout=30_000)
    # ...and it can be queried, from the page as over TAP.
    query = f"SELECT id, ra, dec, label FROM {schema}.{uploaded} ORDER BY id"
    got = [
        (int(r["id"]), float(r["ra"]), float(r["dec"]), r["label"])
        for r in _tap_rows(base, query, token)
    ]
    assert got == [(1, 10.5, -20.25, "a, b"), (2, 11.0, -21.0, "c"), (3, 12.5, -22.5, "")]
    columns = _tap_rows(
        base,
        "SELECT column_name, datatype FROM TAP_SCHEMA.columns "
        f"WHERE table_name = '{schema}.{uploaded}' ORDER BY column_index",
        token,
    )
    assert [(c["column_name"], c["datatype"]) for c in columns] == [
        ("id", "long"),
        ("ra", "double"),
        ("dec", "double"),
        ("label", "char"),
    ]
    _set_query(page, query)
    page.click("#run")
    _wait_status(page, "^3 rows")
    assert page.evaluate("window.skyvault.result.text(0, 3)") == "a, b"

    # Save a cone result as a table: a job (in the monitor), then the table in the browser.
    expected = _run_cone(page, base)
    page.once("dialog", lambda d: d.accept(saved))
    page.click("#save-table")
    _wait_status(page, f"saved as {schema}.{saved}")
    page.locator(f".table[data-table='{schema}.{saved}']").wait_for(timeout=30_000)
    assert page.locator("table.jobs tr", has_text=f"save as {schema}.{saved}").count() == 1
    rows = _tap_rows(base, f"SELECT COUNT(*) AS n FROM {schema}.{saved}", token)
    assert int(rows[0]["n"]) == len(expected) > 0
    # The same name again: the service's refusal is shown, nothing is replaced.
    page.once("dialog", lambda d: d.accept(saved))
    page.click("#save-table")
    page.wait_for_function(
        "(name) => { const s = document.querySelector('#status');"
        " return s.classList.contains('error') && s.textContent.includes(name); }",
        arg=saved,
        timeout=60_000,
    )

    # Share it with a group: the permissions document says so.
    line = page.locator(f".table[data-table='{schema}.{saved}'] > summary")
    line.locator("button.share").click()
    form = page.locator(f"form[data-share='{schema}.{saved}']")
    form.locator("input[name='r-group']").fill("portal_survey")
    form.locator("button[type='submit']").click()
    _wait_status(page, "sharing saved")
    perms = httpx.get(f"{base}/tap/permissions/{schema}.{saved}", headers=auth, timeout=30)
    assert perms.status_code == 200, perms.text
    assert "r-group=portal_survey" in perms.text.splitlines()
    assert "public=false" in perms.text.splitlines()

    # A VOTable (created with its rows in one PUT), a FITS table (a definition from its header,
    # then a load) and a Parquet file (a job over the upload).
    others = {"vot": f"vot_{stamp}", "fits": f"fits_{stamp}", "parquet": f"pq_{stamp}"}
    table = Table({"id": [7, 8], "mag": [12.5, 13.25]})
    table["mag"].unit = "mag"
    table.write(tmp_path / "t.vot", format="votable")
    table.write(tmp_path / "t.fits", format="fits")
    pq.write_table(pa.table({"id": [7, 8], "mag": [12.5, 13.25]}), tmp_path / "t.parquet")
    for extension, name in others.items():
        page.once("dialog", lambda d, name=name: d.accept(name))
        page.set_input_files("#upload-table", str(tmp_path / f"t.{extension}"))
        page.locator(f".table[data-table='{schema}.{name}']").wait_for(timeout=60_000)
        got = _tap_rows(base, f"SELECT id, mag FROM {schema}.{name} ORDER BY id", token)
        assert [(int(r["id"]), float(r["mag"])) for r in got] == [(7, 12.5), (8, 13.25)]
    unit = _tap_rows(
        base,
        "SELECT unit FROM TAP_SCHEMA.columns "
        f"WHERE table_name = '{schema}.{others['fits']}' AND column_name = 'mag'",
        token,
    )
    assert unit == [{"unit": "mag"}]

    # Delete them all (after a confirmation): gone from the browser and from the service.
    for name in (saved, uploaded, *others.values()):
        page.once("dialog", lambda d: d.accept())
        page.locator(f".table[data-table='{schema}.{name}'] > summary button.delete").click()
        _wait_status(page, f"{schema}.{name} deleted")
        page.locator(f".table[data-table='{schema}.{name}']").wait_for(
            state="detached", timeout=30_000
        )
        gone = httpx.get(f"{base}/tap/permissions/{schema}.{name}", headers=auth, timeout=30)
        assert gone.status_code == 404
    # The archive's tables have no such buttons.
    archive = page.locator(".table[data-table='dp02_dc2_catalogs.Object'] > summary")
    assert archive.locator("button.delete").count() == 0
