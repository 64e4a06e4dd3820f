"""The sync endpoint and VOSI through the in-process client: parameters, formats, errors."""

from __future__ import annotations

import csv
import io
import json
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table
from fastapi.testclient import TestClient

from tests.service.conftest import query_status, read_votable

OBJECT = "dp02_dc2_catalogs.Object"
CONE = (
    f"SELECT objectId, coord_ra, coord_dec FROM {OBJECT} WHERE "
    "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.3)) = 1"
)


def _error(response: object, status: int) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/x-votable+xml")  # type: ignore[attr-defined]
    document = read_votable(response.content)  # type: ignore[attr-defined]
    statuses = query_status(document)
    assert statuses and statuses[0][0] == "ERROR"
    message = statuses[0][1]
    assert "/tmp" not in message and "Traceback" not in message and "site-packages" not in message
    return message


def test_get_and_post_agree(client: TestClient) -> None:
    params = {"LANG": "ADQL", "QUERY": CONE, "RESPONSEFORMAT": "csv"}
    got = client.get("/tap/sync", params=params)
    posted = client.post("/tap/sync", data={**params, "REQUEST": "doQuery"})
    assert got.status_code == posted.status_code == 200
    assert got.text == posted.text
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0] == ["objectId", "coord_ra", "coord_dec"] and len(rows) > 5


@pytest.mark.parametrize("multipart", [False, True])
def test_a_query_over_the_form_field_limit_is_said_in_skyvault_words(
    client: TestClient, multipart: bool
) -> None:
    """Starlette refuses a form field over 1 MB with its own text ("Part exceeded maximum
    size of 1024KB."): the caller gets what was too long and what to do instead."""
    query = f"SELECT TOP 1 '{'x' * (1024 * 1024 + 10)}' FROM {OBJECT}"
    if multipart:
        fields = {"LANG": (None, "ADQL"), "QUERY": (None, query)}
        r = client.post("/tap/sync", files=fields)
    else:
        r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query})
    message = _error(r, 400)
    assert message.startswith("a parameter of this request is longer than 1 MB"), message
    assert "UPLOAD" in message and "exceeded" not in message


def test_a_body_that_is_no_form_is_said_so(client: TestClient) -> None:
    r = client.post(
        "/tap/sync", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
    )
    assert _error(r, 400).startswith("the request body is not a readable form")


def test_parameter_names_are_case_insensitive(client: TestClient) -> None:
    r = client.post("/tap/sync", data={"lang": "ADQL", "Query": CONE, "responseFormat": "tsv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/tab-separated")


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        ({"LANG": "ADQL"}, 400, "QUERY"),
        ({"LANG": "SQL", "QUERY": "SELECT 1"}, 400, "LANG"),
        ({"QUERY": CONE}, 400, "LANG"),
        ({"LANG": "ADQL", "QUERY": CONE, "MAXREC": "-1"}, 400, "MAXREC"),
        ({"LANG": "ADQL", "QUERY": CONE, "MAXREC": "abc"}, 400, "MAXREC"),
        ({"LANG": "ADQL", "QUERY": CONE, "RESPONSEFORMAT": "xls"}, 400, "RESPONSEFORMAT"),
        ({"LANG": "ADQL", "QUERY": CONE, "REQUEST": "getCapabilities"}, 400, "REQUEST"),
        ({"LANG": "ADQL", "QUERY": "SELEC objectId FROM x"}, 400, "line 1, column 1"),
        ({"LANG": "ADQL", "QUERY": "SELECT x FROM dp02_dc2_catalogs.Objet"}, 400, "Object"),
        ({"LANG": "ADQL", "QUERY": f"SELECT coord_raa FROM {OBJECT}"}, 400, "coord_ra"),
    ],
)
def test_bad_requests(client: TestClient, data: dict[str, str], status: int, words: str) -> None:
    message = _error(client.post("/tap/sync", data=data), status)
    assert words in message


def test_repeated_query_parameter(client: TestClient) -> None:
    r = client.get("/tap/sync?LANG=ADQL&QUERY=SELECT+1&query=SELECT+2")
    assert "QUERY" in _error(r, 400)


def test_maxrec_overflow_and_metadata_only(client: TestClient) -> None:
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": CONE, "MAXREC": "3"})
    document = read_votable(r.content)
    assert len(document.get_first_table().array) == 3
    assert [s for s, _ in query_status(document)] == ["OK", "OVERFLOW"]
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": CONE, "MAXREC": "0"})
    document = read_votable(r.content)
    table = document.get_first_table()
    assert len(table.array) == 0 and table.fields[0].name == "objectId"
    # No overflow mark where nothing was cut.
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": CONE, "MAXREC": "5000"})
    assert [s for s, _ in query_status(read_votable(r.content))] == ["OK"]


def test_default_maxrec_applies(client: TestClient) -> None:
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": f"SELECT objectId FROM {OBJECT}"})
    document = read_votable(r.content)
    assert len(document.get_first_table().array) == 1000  # settings.maxrec_default
    assert query_status(document)[-1][0] == "OVERFLOW"


@pytest.mark.parametrize("fmt", ["votable", "votable/td", "votable/b",
                                 "application/x-votable+xml;serialization=TABLEDATA"])  # fmt: skip
def test_votable_serializations(client: TestClient, fmt: str) -> None:
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": CONE, "RESPONSEFORMAT": fmt})
    assert r.status_code == 200
    table = read_votable(r.content).get_first_table()
    assert table.get_field_by_id_or_name("coord_ra").unit == "deg"
    assert len(table.array) > 5


def test_parquet_json_fits(client: TestClient) -> None:
    base = {"LANG": "ADQL", "QUERY": CONE, "MAXREC": "4"}
    votable = read_votable(client.post("/tap/sync", data=base).content).get_first_table()
    ids = [int(v) for v in votable.array["objectId"]]

    r = client.post("/tap/sync", data={**base, "RESPONSEFORMAT": "parquet"})
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    pf = pq.ParquetFile(io.BytesIO(r.content))
    assert pf.read().column("objectId").to_pylist() == ids
    meta = pf.metadata.metadata
    assert meta[b"IVOA.VOTable-Parquet.version"] == b"1.0"
    embedded = read_votable(meta[b"IVOA.VOTable-Parquet.content"])
    ra = embedded.get_first_table().get_field_by_id_or_name("coord_ra")
    assert ra.ucd.startswith("pos.eq.ra")
    assert query_status(embedded)[-1][0] == "OVERFLOW"

    r = client.post("/tap/sync", data={**base, "RESPONSEFORMAT": "json"})
    doc = json.loads(r.text)
    assert [m["name"] for m in doc["metadata"]] == ["objectId", "coord_ra", "coord_dec"]
    assert [row[0] for row in doc["data"]] == ids and doc["status"] == "OVERFLOW"

    r = client.post("/tap/sync", data={**base, "RESPONSEFORMAT": "application/fits"})
    with fits.open(io.BytesIO(r.content)) as hdus:
        assert list(hdus[1].data["objectId"]) == ids
        assert hdus[1].header["TUNIT2"] == "deg"


def test_tap_schema_agrees_with_tables(client: TestClient) -> None:
    q = f"SELECT column_name FROM TAP_SCHEMA.columns WHERE table_name = '{OBJECT}'"
    r = client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": "csv"})
    from_tap_schema = [row[0] for row in csv.reader(io.StringIO(r.text))][1:]
    r = client.get(f"/tap/tables/{OBJECT}")
    root = ET.fromstring(r.content)
    from_vosi = [c.findtext("name") for c in root.iter("column")]
    assert from_tap_schema == from_vosi
    assert "_healpix_29" not in from_vosi and "objectId" in from_vosi


def test_vosi_documents(client: TestClient) -> None:
    root = ET.fromstring(client.get("/tap/availability").content)
    assert root.findtext("{http://www.ivoa.net/xml/VOSIAvailability/v1.0}available") == "true"
    caps = client.get("/tap/capabilities").text
    assert 'standardID="ivo://ivoa.net/std/TAP"' in caps
    assert "<mime>application/vnd.apache.parquet</mime>" in caps
    assert "ivo_healpix_index" in caps and '<hard unit="row">5000</hard>' in caps
    minimal = ET.fromstring(client.get("/tap/tables", params={"detail": "min"}).content)
    assert not list(minimal.iter("column"))
    full = ET.fromstring(client.get("/tap/tables").content)
    names = [t.findtext("name") for t in full.iter("table")]
    assert OBJECT in names and "TAP_SCHEMA.columns" in names
    assert client.get("/tap/tables/nope.nothing").status_code == 404
    assert client.get("/tap").status_code == 200


def test_unknown_path_is_a_dali_error(client: TestClient) -> None:
    _error(client.get("/tap/nothing-here"), 404)


FITS_QUERIES = [
    # Booleans, strings, integers, doubles, a POINT, and NULLs of each from the outer join.
    "SELECT TOP 40 o.objectId, o.detect_isPrimary, o.refBand, o.deblend_nChild, "
    "o.u_cModelFlux, POINT('ICRS', o.coord_ra, o.coord_dec) AS p, s.sourceId, s.band, "
    "s.sky_source, s.psfFlux FROM dp02_dc2_catalogs.Object AS o "
    "LEFT OUTER JOIN dp02_dc2_catalogs.Source AS s ON s.sourceId = o.objectId",
    # Timestamps.
    "SELECT TOP 10 ccdVisitId, expMidpt, band, zeroPoint FROM dp02_dc2_catalogs.CcdVisit",
]


@pytest.mark.parametrize("query", FITS_QUERIES)
def test_fits_matches_parquet_and_votable(client: TestClient, query: str) -> None:
    """Every value of a FITS result against the same query's Parquet result, every unit,
    UCD and description against its VOTable fields."""
    from tests.formats.test_fits import check_cell

    base = {"LANG": "ADQL", "QUERY": query}
    r = client.post("/tap/sync", data={**base, "RESPONSEFORMAT": "parquet"})
    expected = pq.read_table(io.BytesIO(r.content))
    fields = read_votable(client.post("/tap/sync", data=base).content).get_first_table().fields
    r = client.post("/tap/sync", data={**base, "RESPONSEFORMAT": "fits"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = Table.read(io.BytesIO(r.content), format="fits")
    with fits.open(io.BytesIO(r.content), logical_as_bytes=True) as hdus:
        hdus.verify("exception")
        header, rows = hdus[1].header, hdus[1].data
        assert header["NAXIS2"] == expected.num_rows > 0
        assert rows.names == expected.column_names == [f.name for f in fields]
        nulls = 0
        for i, field in enumerate(fields, start=1):
            assert header.get(f"TUNIT{i}") == (field.unit and str(field.unit))
            assert header.get(f"TUCD{i}") == field.ucd
            description = field.description[:68] if field.description else None
            assert header.get(f"TCOMM{i}") == description
            assert (table[field.name].unit or None) == field.unit
            values = expected.column(field.name).to_pylist()
            nulls += values.count(None)
            mask = np.ma.getmaskarray(table[field.name])
            for row, value in enumerate(values):
                masked = bool(np.all(mask[row]))
                cell = rows[field.name][row]
                check_cell(value, cell, masked, header[f"TFORM{i}"], header.get(f"TNULL{i}"))
    assert nulls > 0 or "LEFT" not in query


def _limits(document: str, name: str) -> tuple[int, int]:
    """(default, hard) of the TAP capability's ``name`` limit."""
    root = ET.fromstring(document)
    (tap,) = [c for c in root.iter("capability") if c.get("standardID") == "ivo://ivoa.net/std/TAP"]
    element = tap.find(name)
    assert element is not None, name
    return int(element.findtext("default") or -1), int(element.findtext("hard") or -1)


def test_capabilities_advertise_the_async_job_limits(client: TestClient) -> None:
    """TAPRegExt's executionDuration and retentionPeriod are the limits of the service's
    jobs (seconds): the async EXECUTIONDURATION and DESTRUCTION settings, not the sync
    time-out."""
    from skyvault.adql import LanguageFeature
    from skyvault.formats.output import OUTPUT_FORMATS
    from skyvault.service.services.vosi import capabilities_document

    settings = client.app.state.context.settings  # type: ignore[attr-defined]
    caps = client.get("/tap/capabilities").text
    assert _limits(caps, "executionDuration") == (3600, 4 * 3600) != (60, 60)
    assert _limits(caps, "retentionPeriod") == (7 * 86400, 30 * 86400)
    assert settings.query_timeout == 60
    custom = settings.model_copy(
        update={
            "job_execution_duration": 123,
            "job_execution_duration_max": 4567,
            "job_destruction_days": 0.5,
            "job_destruction_max_days": 2.0,
        }
    )
    features: list[LanguageFeature] = []
    document = capabilities_document("http://x/tap", custom, OUTPUT_FORMATS, features)
    assert _limits(document, "executionDuration") == (123, 4567)
    assert _limits(document, "retentionPeriod") == (43200, 172800)
    # The schema's order: retentionPeriod, executionDuration, outputLimit, uploadLimit.
    (tap,) = [
        c
        for c in ET.fromstring(document).iter("capability")
        if c.get("standardID") == "ivo://ivoa.net/std/TAP"
    ]
    order = [child.tag for child in tap if child.tag in
             ("retentionPeriod", "executionDuration", "outputLimit", "uploadLimit")]  # fmt: skip
    assert order == ["retentionPeriod", "executionDuration", "outputLimit", "uploadLimit"]


def test_async_fits_result_is_the_sync_one(client: TestClient) -> None:
    """An async job writes the same FITS file through the same spooling writer."""
    from tests.service.test_uws import wait_final

    data = {"LANG": "ADQL", "QUERY": FITS_QUERIES[0], "RESPONSEFORMAT": "fits"}
    sync = client.post("/tap/sync", data=data)
    r = client.post("/tap/async", data={**data, "PHASE": "RUN"}, follow_redirects=False)
    assert r.status_code == 303
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert wait_final(client, job_id) == "COMPLETED"
    result = client.get(f"/tap/async/{job_id}/results/result")
    assert result.headers["content-type"] == "application/fits"
    assert result.content == sync.content


def test_query_service_timeout_argument(client: TestClient) -> None:
    """``QueryService.run(timeout=...)`` replaces the sync time-out (what async jobs use)."""
    from skyvault.auth import Identity
    from skyvault.errors import QueryTimeout
    from skyvault.service.params import collect_params, tap_query_params
    from tests.service.test_uws import SLOW

    context = client.app.state.context  # type: ignore[attr-defined]
    params = tap_query_params(
        collect_params([("LANG", "ADQL"), ("QUERY", SLOW)]), maxrec_default=10, maxrec_limit=10
    )
    tables = context.visible_tables(Identity.anonymous())
    with pytest.raises(QueryTimeout, match=r"time limit of 0\.5 s"):
        context.queries.run(params, tables=tables, timeout=0.5)
