"""The TAP service over a real uvicorn server, driven by real clients: pyvo, STILTS.

Each RESPONSEFORMAT is read back by an independent reader (astropy for VOTable and FITS,
pyarrow for Parquet, the csv module for CSV); ``stilts votlint`` checks the VOTables and
``stilts taplint`` the whole service.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import pyvo
from astropy.io import fits
from astropy.table import Table

from skyvault.service.services.examples import EXAMPLES
from tests.service.conftest import query_status, read_votable

STILTS = shutil.which("stilts")
needs_stilts = pytest.mark.skipif(STILTS is None, reason="stilts is not installed")

OBJECT = "dp02_dc2_catalogs.Object"
CONE = (
    f"SELECT objectId, coord_ra, coord_dec FROM {OBJECT} WHERE "
    "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.3)) = 1"
)

#: taplint stages run: every one that applies to a TAP 1.1 service with UWS and uploads —
#: metadata (TMV TME TMS TMC), capabilities (CPV CAP), availability (AVV), sync and async
#: queries (QGE QPO QAS), UWS behaviour (UWS), query metadata (MDQ), ObsCore (OBS: taplint
#: skips it itself while no ivoa.obscore table is declared), uploads (UPL), examples (EXA).
#: Not run: LOC, the ObsLocTAP data model (ivoa.obsplan), which this service does not claim:
#: taplint reports its absence as a failure (F-LOC-NOTP).
TAPLINT_STAGES = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ OBS UPL EXA"

#: Errors of STILTS 3.4.7 that are its own age, not the service's: it predates the ADQL 2.1
#: feature type for COALESCE, which newer STILTS releases know.
KNOWN_VALIDATOR_ERRORS = (
    re.compile(r"E-CAP-KEYX-\d+ Unknown standard feature key \S+#features-adql-conditional"),
)


def _sync(url: str, **params: str) -> httpx.Response:
    return httpx.post(f"{url}/sync", data={"LANG": "ADQL", **params}, timeout=60)


def test_pyvo_sync_rows_units_ucds(live_url: str) -> None:
    service = pyvo.dal.TAPService(live_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = service.run_sync(CONE)
    table = result.to_table()
    assert len(table) > 5
    assert table["coord_ra"].unit == "deg"
    assert result.getdesc("coord_ra").ucd == "pos.eq.ra;meta.main"
    assert result.getdesc("coord_dec").unit == "deg"
    # The same rows as the in-process engine gives, checked by an independent cone filter.
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(62.0, -37.0, unit="deg")
    separations = SkyCoord(table["coord_ra"], table["coord_dec"], unit="deg").separation(centre)
    assert (separations.deg <= 0.3 + 1e-9).all()


def test_pyvo_overflow(live_url: str) -> None:
    service = pyvo.dal.TAPService(live_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = service.run_sync(CONE, maxrec=3)
    assert len(result) == 3
    assert result.query_status == "OVERFLOW"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = service.run_sync(CONE, maxrec=5000)
    assert full.query_status == "OK"


def test_pyvo_error_message(live_url: str) -> None:
    service = pyvo.dal.TAPService(live_url)
    with pytest.raises(pyvo.dal.DALQueryError) as info:
        service.run_sync(f"SELECT coord_raa FROM {OBJECT}")
    assert "coord_ra" in str(info.value) and "column" in str(info.value)


def test_every_format_reads_back(live_url: str) -> None:
    reference = read_votable(_sync(live_url, QUERY=CONE).content).get_first_table()
    ids = sorted(int(v) for v in reference.array["objectId"])

    for fmt in ("votable", "votable/td", "votable/b"):
        table = read_votable(_sync(live_url, QUERY=CONE, RESPONSEFORMAT=fmt).content)
        assert sorted(int(v) for v in table.get_first_table().array["objectId"]) == ids

    text = _sync(live_url, QUERY=CONE, RESPONSEFORMAT="text/csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(int(r["objectId"]) for r in rows) == ids

    text = _sync(live_url, QUERY=CONE, RESPONSEFORMAT="tsv").text
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    assert sorted(int(r["objectId"]) for r in rows) == ids

    data = _sync(live_url, QUERY=CONE, RESPONSEFORMAT="fits").content
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = Table.read(io.BytesIO(data), format="fits")
    assert sorted(int(v) for v in table["objectId"]) == ids
    assert str(table["coord_ra"].unit) == "deg"
    with fits.open(io.BytesIO(data)) as hdus:
        assert hdus[1].header["TUCD2"].startswith("pos.eq.ra")

    data = _sync(live_url, QUERY=CONE, RESPONSEFORMAT="parquet").content
    pf = pq.ParquetFile(io.BytesIO(data))
    assert sorted(pf.read().column("objectId").to_pylist()) == ids
    embedded = read_votable(pf.metadata.metadata[b"IVOA.VOTable-Parquet.content"])
    assert embedded.get_first_table().get_field_by_id_or_name("coord_ra").unit == "deg"

    data = _sync(live_url, QUERY=CONE, RESPONSEFORMAT="json").json()
    assert sorted(row[0] for row in data["data"]) == ids


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"QUERY": "SELECT objectId\nFROM dp02_dc2_catalogs.Object\nWHER x = 1"}, 400, "line 3"),
        ({"QUERY": "SELECT x FROM dp02_dc2_catalogs.NoSuchTable"}, 400, "NoSuchTable"),
        ({"QUERY": f"SELECT coord_raa FROM {OBJECT}"}, 400, 'did you mean "coord_ra"'),
        ({"QUERY": CONE, "MAXREC": "-1"}, 400, "MAXREC"),
        ({"QUERY": CONE, "MAXREC": "abc"}, 400, "MAXREC"),
        ({"QUERY": CONE, "RESPONSEFORMAT": "image/png"}, 400, "RESPONSEFORMAT"),
        ({}, 400, "QUERY"),
        ({"QUERY": CONE, "LANG": "SQL"}, 400, "LANG"),
    ],
)
def test_errors_over_http(live_url: str, params: dict[str, str], status: int, words: str) -> None:
    r = _sync(live_url, **params)
    assert r.status_code == status
    statuses = query_status(read_votable(r.content))
    assert statuses[0][0] == "ERROR" and words in statuses[0][1]
    assert "/tmp" not in r.text and "Traceback" not in r.text and str(Path.home()) not in r.text


def test_repeated_query_over_http(live_url: str) -> None:
    r = httpx.get(f"{live_url}/sync", params=[("LANG", "ADQL"), ("QUERY", CONE), ("QUERY", CONE)])
    assert r.status_code == 400 and "QUERY" in r.text


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_examples_run(live_url: str, example: object) -> None:
    from skyvault.service.services.examples import Example

    assert isinstance(example, Example)
    r = _sync(live_url, QUERY=example.query, MAXREC="100")
    assert r.status_code == 200, r.text
    document = read_votable(r.content)
    assert query_status(document)[0][0] == "OK"
    assert len(document.get_first_table().array) > 0, example.id


@needs_stilts
@pytest.mark.parametrize("fmt", ["votable", "votable/td", "votable/b"])
def test_votlint(live_url: str, tmp_path: Path, fmt: str) -> None:
    queries = [CONE, "SELECT * FROM TAP_SCHEMA.columns", EXAMPLES[4].query]
    for i, query in enumerate(queries):
        path = tmp_path / f"result{i}.vot"
        path.write_bytes(_sync(live_url, QUERY=query, RESPONSEFORMAT=fmt, MAXREC="50").content)
        out = subprocess.run(
            [str(STILTS), "votlint", "validate=true", f"votable={path}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


@needs_stilts
def test_taplint(live_url: str) -> None:
    out = subprocess.run(
        [str(STILTS), "taplint", f"tapurl={live_url}", f"stages={TAPLINT_STAGES}",
         "maxrepeat=3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    report = out.stdout + out.stderr
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", report)
    assert totals, report[-2000:]
    errors = [line for line in report.splitlines() if line.startswith("E-")]
    unexplained = [e for e in errors if not any(p.match(e) for p in KNOWN_VALIDATOR_ERRORS)]
    assert not unexplained, "\n".join(unexplained)
    failures = [line for line in report.splitlines() if line.startswith("F-")]
    assert not failures, "\n".join(failures)
    # Every stage ran, and the async, UWS and upload stages did their work.
    for stage in TAPLINT_STAGES.split():
        assert f"Section {stage}:" in report, stage
    assert re.search(r"S-QAS-QNUM-1 Successful/submitted TAP queries: (\d+)/\1\b", report)
    assert "I-UWS-CJOB-1 Created new job" in report
    assert report.count("I-UPL-QJOB-") >= 2
