"""The non-VOTable writers on their own: text forms, and errors after streaming started."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.metadata import ColumnMeta
from skyvault.errors import QueryTimeout
from skyvault.formats.parquet import write_parquet
from skyvault.formats.tabular import write_csv, write_json, write_tsv
from tests.service.conftest import query_status, read_votable

TABLE = pa.table(
    {
        "id": pa.array([1, None, 3], pa.int64()),
        "name": ['a,"b"', "tab\there", None],
        "flux": [1.5, float("nan"), None],
        "vec": pa.array([[1.0, 2.0], None, [3.0]]),
    }
)
FIELDS = [ColumnMeta.from_arrow(f) for f in TABLE.schema]


def _failing() -> Iterator[pa.RecordBatch]:
    yield TABLE.to_batches()[0]
    raise QueryTimeout("the query ran longer than its time limit of 1 s")


def test_csv_quoting_and_nulls() -> None:
    text = b"".join(write_csv(TABLE.to_batches(), FIELDS)).decode()
    assert text.split("\r\n")[:4] == [
        "id,name,flux,vec",
        '1,"a,""b""",1.5,1 2',
        ",tab\there,nan,",
        "3,,,3",
    ]


def test_tsv_has_no_tabs_in_cells() -> None:
    lines = b"".join(write_tsv(TABLE.to_batches(), FIELDS)).decode().splitlines()
    assert [len(line.split("\t")) for line in lines] == [4, 4, 4, 4]


def test_json_status_and_nan() -> None:
    doc = json.loads(b"".join(write_json(TABLE.to_batches(), FIELDS, overflow=True)))
    assert doc["data"][1] == [None, "tab\there", None, None]
    assert doc["status"] == "OVERFLOW"


def test_json_error_after_start() -> None:
    doc = json.loads(b"".join(write_json(_failing(), FIELDS)))
    assert doc["status"] == "ERROR" and "time limit" in doc["message"]
    assert len(doc["data"]) == 3


def test_parquet_error_after_start_is_marked() -> None:
    data = b"".join(write_parquet(_failing(), FIELDS, schema=TABLE.schema))
    pf = pq.ParquetFile(io.BytesIO(data))
    assert pf.read().num_rows == 3
    embedded = read_votable(pf.metadata.metadata[b"IVOA.VOTable-Parquet.content"])
    assert query_status(embedded)[-1] == (
        "ERROR",
        "the query ran longer than its time limit of 1 s",
    )


def test_csv_error_after_start_propagates() -> None:
    with pytest.raises(QueryTimeout):
        b"".join(write_csv(_failing(), FIELDS))
