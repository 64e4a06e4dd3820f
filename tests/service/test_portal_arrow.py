"""RESPONSEFORMAT=arrow (the portal's results): an Arrow IPC stream that pyarrow reads back
as the same table the Parquet and VOTable answers hold, with units and UCDs in the field
metadata; errors before the first row stay DALI VOTable documents."""

from __future__ import annotations

import io
import math
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import query_status, read_votable

ARROW = "application/vnd.apache.arrow.stream"
OBJECT = "dp02_dc2_catalogs.Object"
CONE = (
    "SELECT TOP 300 objectId, coord_ra, coord_dec, g_psfFlux, r_psfFlux, detect_isPrimary"
    f" FROM {OBJECT}"
    " WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.1)) = 1"
    " ORDER BY objectId"
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _sync(
    client: TestClient, query: str, fmt: str, files: dict[str, Any] | None = None, **extra: str
) -> Any:
    data = {"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt, **extra}
    return client.post("/tap/sync", data=data, files=files)


def _arrow(response: Any) -> tuple[pa.Table, dict[bytes, bytes]]:
    """The rows of an Arrow stream answer and its final status metadata."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW
    reader = pa.ipc.open_stream(io.BytesIO(response.content))
    batches, status = [], {}
    for item in iter(reader.read_next_batch_with_custom_metadata, None):  # pragma: no branch
        batches.append(item.batch)
        status = dict(item.custom_metadata or {})
        if item.batch.num_rows == 0:
            break
    return pa.Table.from_batches(batches, schema=reader.schema), status


def _nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _same_values(a: pa.Table, b: pa.Table) -> None:
    """Equal cell by cell, NULL where NULL, NaN where NaN (``Table.equals`` says NaN != NaN)."""
    assert a.column_names == b.column_names
    for name in a.column_names:
        left, right = a[name].to_pylist(), b[name].to_pylist()
        differ = [
            (x, y) for x, y in zip(left, right, strict=True) if x != y and not (_nan(x) and _nan(y))
        ]
        assert not differ, (name, differ[:3])


def test_the_capabilities_announce_it(client: TestClient) -> None:
    caps = client.get("/tap/capabilities").text
    assert f"<mime>{ARROW}</mime>" in caps and "<alias>arrow</alias>" in caps


def test_a_cone_as_arrow_equals_parquet_and_votable(client: TestClient) -> None:
    table, status = _arrow(_sync(client, CONE, "arrow"))
    assert status == {b"QUERY_STATUS": b"OK"} and table.num_rows > 5
    parquet = pq.read_table(io.BytesIO(_sync(client, CONE, "parquet").content))
    assert table.schema.remove_metadata() == parquet.schema.remove_metadata()
    _same_values(table, parquet)
    # Units, UCDs and descriptions as the VOTable's FIELDs give them.
    votable = read_votable(_sync(client, CONE, "votable").content).get_first_table()
    for field in votable.fields:
        meta = table.schema.field(field.name).metadata
        assert meta[b"datatype"].decode() == field.datatype
        unit = str(field.unit) if field.unit else None
        assert (meta.get(b"unit", b"").decode() or None) == unit
        assert (meta.get(b"ucd", b"").decode() or None) == field.ucd
        assert meta[b"description"].decode() == field.description
    ids = votable.array["objectId"]
    assert table["objectId"].to_pylist() == [int(i) for i in ids]
    assert max(table["objectId"].to_pylist()) > 2**53  # ids a double would round


def test_extremes_and_nulls_from_an_upload(client: TestClient) -> None:
    upload = pa.table(
        {
            "big": pa.array([INT64_MIN, None, 2**53 + 1, INT64_MAX], pa.int64()),
            "i": pa.array([None, -(2**31), 2**31 - 1, 0], pa.int32()),
            "x": pa.array([1.5, None, float("nan"), -0.0], pa.float64()),
            "ok": pa.array([True, None, False, True]),
            "name": pa.array(["a", None, "β ψ", ""]),
            "t": pa.array([datetime(2020, 5, 6, 7, 8, 9), None, datetime(1999, 1, 1), None]),
        }
    )
    body = io.BytesIO()
    pq.write_table(upload, body)
    query = "SELECT * FROM TAP_UPLOAD.u"
    files = {"u": ("u.parquet", body.getvalue(), "application/x-parquet")}
    extra = {"UPLOAD": "u,param:u"}
    table, status = _arrow(_sync(client, query, "arrow", files=files, **extra))
    assert status == {b"QUERY_STATUS": b"OK"}
    assert table["big"].to_pylist() == [INT64_MIN, None, 2**53 + 1, INT64_MAX]
    answer = _sync(client, query, "parquet", files=files, **extra)
    parquet = pq.read_table(io.BytesIO(answer.content))
    assert table.schema.remove_metadata() == parquet.schema.remove_metadata()
    _same_values(table, parquet)
    votable = read_votable(_sync(client, query, "votable", files=files, **extra).content)
    array = votable.get_first_table().array
    for name in ("big", "i"):  # the integers, NULLs and all, as the VOTable has them
        column = array[name]
        cells = zip(column.data, np.ma.getmaskarray(column), strict=True)
        assert [None if masked else int(v) for v, masked in cells] == table[name].to_pylist()


def test_maxrec_overflow_is_the_last_batch_s_status(client: TestClient) -> None:
    table, status = _arrow(_sync(client, CONE, "application/vnd.apache.arrow.stream", MAXREC="3"))
    assert table.num_rows == 3 and status == {b"QUERY_STATUS": b"OVERFLOW"}


@pytest.mark.parametrize(
    ("query", "words"),
    [
        (f"SELECT TOP 5 objectId\nFROM {OBJECT}\nWHERE coord_ra >", "line 3"),
        (f"SELECT TOP 5 nope FROM {OBJECT}", "nope"),
    ],
)
def test_a_bad_query_is_a_dali_votable_error_not_arrow(
    client: TestClient, query: str, words: str
) -> None:
    response = _sync(client, query, "arrow")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/x-votable+xml")
    statuses = query_status(read_votable(response.content))
    assert statuses and statuses[0][0] == "ERROR" and words in statuses[0][1]


def test_async_jobs_write_it_too(client: TestClient) -> None:
    created = client.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": CONE, "RESPONSEFORMAT": "arrow", "PHASE": "RUN"},
        headers={"X-Test-User": "arrow"},
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    job = created.headers["location"]
    client.get(f"{job}/phase")
    phase = client.get(job, params={"WAIT": "30"})
    assert "COMPLETED" in phase.text, phase.text
    result = client.get(f"{job}/results/result")
    table, status = _arrow(result)
    assert status == {b"QUERY_STATUS": b"OK"} and table.num_rows > 5
    assert result.headers["content-disposition"].endswith('.arrows"')
