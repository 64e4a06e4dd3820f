"""TAP_UPLOAD: inline and URL uploads, formats, joins and cross-matches, limits, security.

Oracles: the catalogue read through the Python API (all rows, no MAXREC) and astropy's
``search_around_sky`` for cross-matches; astropy/pyarrow for what went up and came back.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import ipaddress
import random
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import MaskedColumn, Table
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from skyvault.config import Settings
from skyvault.engine.archive import Archive
from skyvault.errors import AdqlSemanticError, IngestError, LimitExceeded, UsageError
from skyvault.service import uploads
from skyvault.service.app import create_app
from skyvault.service.uploads import (
    AddressPolicy,
    UploadRef,
    parse_upload_param,
    parse_uploads,
    with_upload_hint,
)
from tests.service.conftest import query_status, read_votable

OBJECT = "dp02_dc2_catalogs.Object"
JOIN = (
    "SELECT m.tag, o.objectId, o.coord_ra FROM TAP_UPLOAD.mine AS m "
    f"JOIN {OBJECT} AS o ON m.objectId = o.objectId ORDER BY o.objectId"
)


# --- helpers --------------------------------------------------------------------------------


def _error(response: Any, status: int) -> str:
    """The DALI error message of ``response`` (a VOTable error document with ``status``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/x-votable+xml")
    statuses = query_status(read_votable(response.content))
    assert statuses and statuses[0][0] == "ERROR"
    message = statuses[0][1]
    assert "/tmp" not in message and "Traceback" not in message
    return message


def _votable_bytes(table: Table) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table.write(buf, format="votable")
    return buf.getvalue()


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _post(
    client: TestClient, query: str, upload: str, files: dict[str, Any] | None = None, **extra: str
) -> Any:
    data = {"LANG": "ADQL", "QUERY": query, "UPLOAD": upload, **extra}
    return client.post("/tap/sync", data=data, files=files)


def _result(response: Any) -> Table:
    assert response.status_code == 200, response.text
    return read_votable(response.content).get_first_table().to_table(use_names_over_ids=True)


@pytest.fixture(scope="module")
def archive(demo_dir: Path) -> Iterator[Archive]:
    a = Archive(demo_dir)
    yield a
    a.close()


@pytest.fixture(scope="module")
def objects(archive: Archive) -> pa.Table:
    """Every Object row's id and position (the oracle's side of joins and cross-matches)."""
    return archive.query(f"SELECT objectId, coord_ra, coord_dec FROM {OBJECT}")


@pytest.fixture(scope="module")
def some_objects(objects: pa.Table) -> Table:
    """Seven Object rows (ids and positions) with a unicode tag: the usual upload."""
    picked = objects.take([0, 11, 222, 3333, 4444, 15555, 19999])
    table = Table(
        {
            "objectId": picked["objectId"].to_numpy(),
            "ra": picked["coord_ra"].to_numpy(),
            "dec": picked["coord_dec"].to_numpy(),
            "tag": ["a", "β", "c", "δ", "e", "φ", "g"],
        }
    )
    return table


def _small_client(demo_dir: Path, **limits: Any) -> TestClient:
    settings = Settings(data_dir=demo_dir, maxrec_limit=5000, query_timeout=60, **limits)
    return TestClient(create_app(settings), raise_server_exceptions=False)


# --- the UPLOAD parameter -------------------------------------------------------------------


def test_upload_parameter_forms() -> None:
    assert parse_upload_param(["a,param:a"]) == [UploadRef("a", "param:a")]
    assert parse_upload_param(["a,param:x;b,http://h/p;q?x=1,2", " c , param:c "]) == [
        UploadRef("a", "param:x"),
        UploadRef("b", "http://h/p;q?x=1,2"),
        UploadRef("c", "param:c"),
    ]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["mine"], "not a name,URI pair"),
        (["mine,"], "not a name,URI pair"),
        ([",param:x"], "not a name,URI pair"),
        ([""], "UPLOAD parameter is empty"),
        (["1st,param:x"], "must start with a letter"),
        (["my-table,param:x"], "must start with a letter"),
        (["_t,param:x"], "must start with a letter"),
        (["select,param:x"], "reserved word"),
        (["Point,param:x"], "reserved word"),
        (["a,param:x", "A,param:y"], "twice (a and A)"),
        (["a,param:x;a,param:y"], "a twice"),
    ],
)
def test_bad_upload_parameters(values: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        parse_upload_param(values)
    assert words in str(caught.value)


# --- inline uploads: joins, formats ---------------------------------------------------------


def _expected_join(some_objects: Table) -> list[tuple[str, int]]:
    return sorted(
        (
            (str(t), int(i))
            for t, i in zip(some_objects["tag"], some_objects["objectId"], strict=True)
        ),
        key=lambda p: p[1],
    )


def test_inline_votable_joins_object(client: TestClient, some_objects: Table) -> None:
    files = {"t1": ("t1.xml", _votable_bytes(some_objects), "application/x-votable+xml")}
    result = _result(_post(client, JOIN, "mine,param:t1", files))
    got = [(str(t), int(i)) for t, i in zip(result["tag"], result["objectId"], strict=True)]
    assert got == _expected_join(some_objects)


@pytest.mark.parametrize("serialization", ["tabledata", "binary", "binary2"])
def test_every_votable_serialization(
    client: TestClient, some_objects: Table, serialization: str
) -> None:
    from astropy.io.votable import from_table

    vot = from_table(some_objects)
    vot.get_first_table().format = serialization
    if serialization == "binary2":
        vot.version = "1.4"
    buf = io.BytesIO()
    vot.to_xml(buf)
    files = {"t": ("t.vot", buf.getvalue(), "application/x-votable+xml")}
    result = _result(_post(client, JOIN, "mine,param:t", files))
    assert [int(i) for i in result["objectId"]] == sorted(int(i) for i in some_objects["objectId"])


def test_inline_csv_and_parquet(client: TestClient, some_objects: Table) -> None:
    csv = io.StringIO()
    some_objects.write(csv, format="ascii.csv")
    parquet = _parquet_bytes(
        pa.table({name: np.asarray(some_objects[name]) for name in some_objects.colnames})
    )
    expected = _expected_join(some_objects)
    for body, kind in ((csv.getvalue().encode(), "text/csv"), (parquet, "application/x-parquet")):
        result = _result(_post(client, JOIN, "mine,param:t", {"t": ("t", body, kind)}))
        assert [
            (str(t), int(i)) for t, i in zip(result["tag"], result["objectId"], strict=True)
        ] == expected


def test_two_uploads_and_case_insensitive_names(client: TestClient, some_objects: Table) -> None:
    query = (
        "SELECT COUNT(*) AS n FROM tap_upload.MINE AS a JOIN TAP_UPLOAD.other AS b "
        "ON a.objectId = b.objectId"
    )
    files = {
        "p1": ("a.xml", _votable_bytes(some_objects), "application/x-votable+xml"),
        "p2": ("b.xml", _votable_bytes(some_objects[:3]), "application/x-votable+xml"),
    }
    response = client.post(
        "/tap/sync",
        data={"LANG": "ADQL", "QUERY": query, "UPLOAD": ["mine,param:p1", "other,param:p2"]},
        files=files,
    )
    assert int(_result(response)["n"][0]) == 3


def test_uploads_stay_out_of_tap_schema(client: TestClient, some_objects: Table) -> None:
    files = {"t": ("t.xml", _votable_bytes(some_objects), "application/x-votable+xml")}
    query = "SELECT table_name FROM TAP_SCHEMA.tables WHERE schema_name = 'TAP_UPLOAD'"
    assert len(_result(_post(client, query, "mine,param:t", files))) == 0


def test_delimited_column_names(client: TestClient) -> None:
    table = Table({"my col": [1, 2], "Größe": [1.5, 2.5], "select": ["x", "y"]})
    files = {"t": ("t.xml", _votable_bytes(table), "application/x-votable+xml")}
    query = 'SELECT "my col", "Größe", "select" FROM TAP_UPLOAD.t WHERE "my col" = 2'
    result = _result(_post(client, query, "t,param:t", files))
    assert list(result["Größe"]) == [2.5] and list(result["select"]) == ["y"]


# --- pyvo against the live server -----------------------------------------------------------


def test_pyvo_upload_join(live_url: str, some_objects: Table) -> None:
    import pyvo

    service = pyvo.dal.TAPService(live_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = service.run_sync(JOIN, uploads={"mine": some_objects}).to_table()
    got = [(str(t), int(i)) for t, i in zip(result["tag"], result["objectId"], strict=True)]
    assert got == _expected_join(some_objects)


# --- cross-match ----------------------------------------------------------------------------


def _targets(objects: pa.Table, n: int = 40, seed: int = 5) -> Table:
    """``n`` positions near Object rows (offsets up to ~6″) plus a few far from any."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(objects.num_rows, n, replace=False)
    ra = objects["coord_ra"].to_numpy()[rows] + rng.normal(0, 2 / 3600, n)
    dec = objects["coord_dec"].to_numpy()[rows] + rng.normal(0, 2 / 3600, n)
    table = Table({"id": np.arange(n, dtype=np.int32), "ra": ra, "dec": dec})
    table.add_row((n, 10.0, 80.0))
    return table


def _brute_force(targets: Table, objects: pa.Table, radius_deg: float) -> set[tuple[int, int]]:
    mine = SkyCoord(targets["ra"] * u.deg, targets["dec"] * u.deg)
    theirs = SkyCoord(
        objects["coord_ra"].to_numpy() * u.deg, objects["coord_dec"].to_numpy() * u.deg
    )
    i, j, _, _ = search_around_sky(mine, theirs, radius_deg * u.deg)
    ids = objects["objectId"].to_numpy()
    return {(int(targets["id"][a]), int(ids[b])) for a, b in zip(i, j, strict=True)}


@pytest.mark.parametrize("radius_arcsec", [1.0, 5.0, 30.0])
def test_crossmatch_matches_astropy(
    client: TestClient, objects: pa.Table, radius_arcsec: float
) -> None:
    targets = _targets(objects)
    radius = radius_arcsec / 3600
    query = (
        "SELECT t.id, o.objectId FROM TAP_UPLOAD.targets AS t JOIN "
        f"{OBJECT} AS o ON DISTANCE(POINT('ICRS', t.ra, t.dec), "
        f"POINT('ICRS', o.coord_ra, o.coord_dec)) < {radius!r}"
    )
    files = {"t": ("t.xml", _votable_bytes(targets), "application/x-votable+xml")}
    result = _result(_post(client, query, "targets,param:t", files, MAXREC="5000"))
    got = {(int(a), int(b)) for a, b in zip(result["id"], result["objectId"], strict=True)}
    expected = _brute_force(targets, objects, radius)
    assert expected, "the test should find matches"
    assert got == expected


def test_positions_found_by_ucd(some_objects: Table) -> None:
    table = Table({"x": [1.0], "alpha": [10.0], "delta": [20.0]})
    table["alpha"].meta = {}
    from astropy.io.votable import from_table

    vot = from_table(table)
    fields = vot.get_first_table().fields
    fields[1].ucd = "pos.eq.ra;meta.main"
    fields[2].ucd = "pos.eq.dec;meta.main"
    buf = io.BytesIO()
    vot.to_xml(buf)
    settings = Settings(data_dir=Path("."))
    [(meta, _)] = parse_uploads({"UPLOAD": ["p,param:p"]}, {"p": buf.getvalue()}, settings)
    assert (meta.ra_column, meta.dec_column) == ("alpha", "delta")
    [(meta, _)] = parse_uploads(
        {"UPLOAD": ["p,param:p"]}, {"p": _votable_bytes(some_objects)}, settings
    )
    assert (meta.ra_column, meta.dec_column, meta.schema) == ("ra", "dec", "TAP_UPLOAD")


# --- every column type round-trips ----------------------------------------------------------


def _typed_table() -> Table:
    def masked(values: list[Any], dtype: str, mask: list[bool]) -> MaskedColumn:
        return MaskedColumn(np.array(values, dtype=dtype), mask=mask)

    n_mask = [False, True, False]
    return Table(
        {
            "i16": masked([1, 2, -32767], "int16", n_mask),
            "i32": masked([1, 2, -(2**31) + 1], "int32", n_mask),
            "i64": masked([1, 2, 2**62], "int64", n_mask),
            "f32": masked([1.5, 2.5, np.float32(3.25)], "float32", n_mask),
            "f64": masked([1.0e-300, 2.0, np.pi], "float64", n_mask),
            "flag": masked([True, False, True], "bool", n_mask),
            "u8": np.array([0, 200, 255], dtype="uint8"),
            "text": MaskedColumn(["plain", "ünïcødé ☃", "日本語"], mask=n_mask),
        }
    )


@pytest.mark.parametrize("fmt", ["votable", "parquet"])
def test_every_column_type_round_trips(client: TestClient, fmt: str) -> None:
    sent = _typed_table()
    if fmt == "votable":
        body = _votable_bytes(sent)
    else:
        body = _parquet_bytes(Table(sent, masked=True).to_pandas().pipe(pa.Table.from_pandas))
    response = _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", body, "")})
    back = _result(response)
    assert back.colnames == sent.colnames
    for name in sent.colnames:
        want, got = sent[name], back[name]
        want_mask = np.ma.getmaskarray(want)
        got_mask = np.ma.getmaskarray(got)
        if name == "text":  # VOTable writes a null string as an empty one; astropy reads ""
            got_mask = got_mask | (np.ma.filled(got, "") == "")
        assert list(got_mask) == list(want_mask), name
        for w, g, m in zip(want, got, want_mask, strict=True):
            if not m:
                assert w == g, (name, w, g)
        if name != "text":
            assert got.dtype.kind == want.dtype.kind, name
            if fmt == "votable" or name not in ("i16", "i32"):
                assert got.dtype.itemsize >= want.dtype.itemsize, name


def test_timestamps_round_trip_from_parquet(client: TestClient) -> None:
    stamps = pa.array(
        [np.datetime64("2024-02-29T12:34:56.789", "ms"), None], type=pa.timestamp("ms")
    )
    body = _parquet_bytes(pa.table({"t": stamps, "k": [1, 2]}))
    response = _post(
        client, "SELECT t, k FROM TAP_UPLOAD.t ORDER BY k", "t,param:t", {"t": ("t", body, "")}
    )
    document = read_votable(response.content)
    field = document.get_first_table().fields[0]
    assert field.xtype == "timestamp"
    back = document.get_first_table().to_table()
    assert str(back["t"][0]).startswith("2024-02-29T12:34:56.789")
    assert np.ma.getmaskarray(back["t"])[1] or back["t"][1] == ""  # a null char cell is empty
    parquet = _post(
        client,
        "SELECT t FROM TAP_UPLOAD.t ORDER BY k",
        "t,param:t",
        {"t": ("t", body, "")},
        RESPONSEFORMAT="parquet",
    )
    assert parquet.status_code == 200
    col = pq.read_table(io.BytesIO(parquet.content)).column("t")
    assert col.null_count == 1


def test_csv_types_and_nulls(client: TestClient) -> None:
    body = "a,b,c,d\n1,2.5,true,x\n,3.5,false,\n3,,,ü\n".encode()
    back = _result(
        _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t.csv", body, "")})
    )
    assert [back[c].dtype.kind for c in "abc"] == ["i", "f", "b"]
    assert list(np.ma.getmaskarray(back["a"])) == [False, True, False]
    assert back["d"][2] == "ü"
    nulls = _result(
        _post(
            client,
            "SELECT COUNT(*) AS n FROM TAP_UPLOAD.t WHERE d IS NULL AND c IS NULL",
            "t,param:t",
            {"t": ("t.csv", body, "")},
        )
    )
    assert int(nulls["n"][0]) == 0
    nulls = _result(
        _post(
            client,
            "SELECT COUNT(*) AS n FROM TAP_UPLOAD.t WHERE d IS NULL OR c IS NULL",
            "t,param:t",
            {"t": ("t.csv", body, "")},
        )
    )
    assert int(nulls["n"][0]) == 2


# --- errors ---------------------------------------------------------------------------------


def test_missing_part(client: TestClient, some_objects: Table) -> None:
    files = {"t1": ("t1.xml", _votable_bytes(some_objects), "application/x-votable+xml")}
    message = _error(_post(client, JOIN, "mine,param:T2", files), 400)
    assert "UPLOAD mine (param:T2)" in message and "'t1'" in message
    message = _error(_post(client, JOIN, "mine,param:T1", files), 400)
    assert "case-sensitive" in message
    message = _error(_post(client, JOIN, "mine,param:t1"), 400)
    assert "multipart/form-data" in message


@pytest.mark.parametrize(
    ("upload", "words"),
    [
        ("mine", "not a name,URI pair"),
        ("1mine,param:x", "must start with a letter"),
        ("mine,file:///etc/passwd", "scheme 'file' is not supported"),
        ("mine,ftp://example.org/x.xml", "scheme 'ftp' is not supported"),
        ("mine,vos://example.org!x/y", "scheme 'vos' is not supported"),
        ("mine,x.xml", "scheme '(none)' is not supported"),
        ("mine,http://127.0.0.1:9/x.xml", "loopback"),
        ("mine,http://localhost:9/x.xml", "loopback"),
        ("mine,http://[::1]:9/x.xml", "loopback"),
        ("mine,http://10.1.2.3/x.xml", "private"),
        ("mine,http://192.168.0.1/x.xml", "private"),
        ("mine,http://[fd00::1]/x.xml", "private"),
        ("mine,http://169.254.169.254/latest/meta-data", "link-local"),
        ("mine,http://0.0.0.0/x", "unspecified"),
        ("mine,http://100.64.0.1/x", "non-public"),
        ("mine,http://no-such-host.invalid/x", "does not resolve"),
    ],
)
def test_refused_uploads(client: TestClient, upload: str, words: str) -> None:
    message = _error(_post(client, JOIN, upload), 400)
    assert words in message
    assert "UPLOAD" in message


def test_duplicate_and_reserved_names_over_http(client: TestClient) -> None:
    response = client.post(
        "/tap/sync", data={"LANG": "ADQL", "QUERY": JOIN, "UPLOAD": ["a,param:x", "A,param:y"]}
    )
    assert "twice" in _error(response, 400)
    assert "reserved word" in _error(_post(client, JOIN, "table,param:x"), 400)


def test_upload_not_given_is_an_unknown_table(client: TestClient, some_objects: Table) -> None:
    message = _error(
        client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": JOIN}),
        400,
    )
    assert 'no schema "TAP_UPLOAD"' in message and "uploaded no tables" in message
    files = {"t": ("t.xml", _votable_bytes(some_objects), "application/x-votable+xml")}
    message = _error(_post(client, JOIN, "other,param:t", files), 400)
    assert 'no table "mine"' in message and "TAP_UPLOAD.other" in message


def test_unreadable_tables(client: TestClient) -> None:
    cases = [
        (b"", "empty or not a table"),
        (b"\x00\x01\x02binary", "empty or not a table"),
        (b"<?xml version='1.0'?><VOTABLE><RESOURCE>", "not a readable VOTable"),
        (b"PAR1 truncated", "UPLOAD t (param:t)"),
        (b"a,b\n1,2\n3\n", "UPLOAD t (param:t)"),
        (b"a,A\n1,2\n", "column names 'a' and 'A'"),
    ]
    for body, words in cases:
        message = _error(
            _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", body, "")}), 400
        )
        assert words in message, (body, message)


# --- limits ---------------------------------------------------------------------------------


def test_inline_too_large_is_413(demo_dir: Path, some_objects: Table) -> None:
    body = _votable_bytes(some_objects)
    with _small_client(demo_dir, max_upload_bytes=len(body) - 1) as small:
        message = _error(_post(small, JOIN, "mine,param:t", {"t": ("t.xml", body, "")}), 413)
    assert "UPLOAD mine (param:t)" in message
    assert f"the upload limit is 1.6 KiB ({len(body) - 1} bytes)" in message
    assert f"at least 1.6 KiB ({len(body)} bytes)" in message


def test_request_body_too_large_is_413(demo_dir: Path) -> None:
    body = b"a\n" + b"1\n" * (1_200_000)
    with _small_client(demo_dir, max_upload_bytes=1000) as small:
        message = _error(
            _post(small, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", body, "")}), 413
        )
    assert "request body" in message and "1000 bytes" in message


def test_too_many_rows_and_tables_are_413(demo_dir: Path, some_objects: Table) -> None:
    body = _votable_bytes(some_objects)
    with _small_client(demo_dir, max_upload_rows=5, max_uploads=1) as small:
        message = _error(_post(small, JOIN, "mine,param:t", {"t": ("t.xml", body, "")}), 413)
        assert f"has {len(some_objects)} rows" in message and "limit is 5 rows" in message
        csv = ("a\n" + "1\n" * 10).encode()
        message = _error(_post(small, JOIN, "mine,param:t", {"t": ("t.csv", csv, "")}), 413)
        assert "more than 5 rows" in message
        response = small.post(
            "/tap/sync",
            data={"LANG": "ADQL", "QUERY": JOIN, "UPLOAD": ["a,param:t", "b,param:t"]},
        )
        assert "uploads 2 tables; the limit is 1" in _error(response, 413)


# --- URL uploads ----------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves tables, redirects and an endless body (no Content-Length)."""

    files: ClassVar[dict[str, bytes]] = {}
    redirects: ClassVar[dict[str, str]] = {}
    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.end_headers()
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                self.wfile.write(b"a\n")
                self.wfile.flush()
                time.sleep(2)
                self.wfile.write(b"1\n" * 49)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            try:
                self.wfile.write(b"a\n")
                for _ in range(100_000):
                    self.wfile.write(b"1\n" * 512)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path in self.files:
            body = self.files[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def table_server(some_objects: Table) -> Iterator[str]:
    """A local HTTP server (loopback: refused unless private URLs are allowed)."""
    _Handler.files = {
        "/mine.xml": _votable_bytes(some_objects),
        "/mine.parquet": _parquet_bytes(
            pa.table({n: np.asarray(some_objects[n]) for n in some_objects.colnames})
        ),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Handler.redirects = {
        "/to-table": "/mine.xml",
        "/to-private": "http://10.0.0.1/x.xml",
        "/to-file": "file:///etc/passwd",
        "/loop": "/loop",
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


def test_url_upload_refused_by_default(client: TestClient, table_server: str) -> None:
    message = _error(_post(client, JOIN, f"mine,{table_server}/mine.xml"), 400)
    assert f"UPLOAD mine ({table_server}/mine.xml)" in message
    assert "loopback" in message and "allow_private_upload_urls" in message


def test_url_upload_when_private_urls_allowed(
    demo_dir: Path, table_server: str, some_objects: Table
) -> None:
    with _small_client(demo_dir, allow_private_upload_urls=True) as local:
        for path in ("/mine.xml", "/mine.parquet", "/to-table"):
            result = _result(_post(local, JOIN, f"mine,{table_server}{path}"))
            got = [(str(t), int(i)) for t, i in zip(result["tag"], result["objectId"], strict=True)]
            assert got == _expected_join(some_objects)
        message = _error(_post(local, JOIN, f"mine,{table_server}/nothing.xml"), 400)
        assert "HTTP 404" in message
        message = _error(_post(local, JOIN, f"mine,{table_server}/to-file"), 400)
        assert "redirects to the URL 'file:///etc/passwd'" in message
        assert "more than 5 redirects" in _error(
            _post(local, JOIN, f"mine,{table_server}/loop"), 400
        )


def test_url_upload_streamed_cap_is_413(demo_dir: Path, table_server: str) -> None:
    with _small_client(demo_dir, allow_private_upload_urls=True, max_upload_bytes=100_000) as c:
        message = _error(_post(c, JOIN, f"mine,{table_server}/endless"), 413)
    assert f"UPLOAD mine ({table_server}/endless) is at least" in message
    assert "upload limit is 97.7 KiB (100000 bytes)" in message


def test_url_upload_declared_length_over_cap_is_413(demo_dir: Path, table_server: str) -> None:
    size = len(_Handler.files["/mine.xml"])
    with _small_client(demo_dir, allow_private_upload_urls=True, max_upload_bytes=100) as c:
        message = _error(_post(c, JOIN, f"mine,{table_server}/mine.xml"), 413)
    assert f"is {size} bytes" in message or f"({size} bytes)" in message


#: 127.0.0.1 taken as a public host that is not the service: exercises the checks.
LOOPBACK = ipaddress.ip_address("127.0.0.1")
LOOPBACK_IS_PUBLIC = AddressPolicy(public=frozenset({LOOPBACK}))


def _fetched(url: str, policy: AddressPolicy) -> pa.Table:
    [(_, table)] = parse_uploads({"UPLOAD": [f"mine,{url}"]}, {}, Settings(), addresses=policy)
    return table


def _refused(url: str, policy: AddressPolicy) -> str:
    with pytest.raises(UsageError) as caught:
        _fetched(url, policy)
    return str(caught.value)


def test_checked_fetch_pins_the_address_and_checks_redirects(
    table_server: str, some_objects: Table
) -> None:
    port = table_server.rsplit(":", 1)[1]
    _Handler.hosts.clear()
    table = _fetched(f"http://localhost:{port}/to-table", LOOPBACK_IS_PUBLIC)
    assert table.num_rows == len(some_objects)
    assert _Handler.hosts == [f"localhost:{port}"] * 2
    message = _refused(f"{table_server}/to-private", LOOPBACK_IS_PUBLIC)
    assert "redirects to 'http://10.0.0.1/x.xml', which points at 10.0.0.1" in message
    assert "private-network address" in message
    # The same URL under the default policy: loopback is refused before any request.
    _Handler.hosts.clear()
    assert "a loopback address" in _refused(f"{table_server}/mine.xml", AddressPolicy())
    assert _Handler.hosts == []


def test_own_host_is_refused(table_server: str) -> None:
    service = AddressPolicy.of(Settings(host="127.0.0.1"))
    policy = dataclasses.replace(service, public=frozenset({LOOPBACK}))
    message = _refused(f"{table_server}/mine.xml", policy)
    assert "points at 127.0.0.1, the service's own host" in message


def test_address_policy_of_the_settings() -> None:
    policy = AddressPolicy.of(Settings(host="0.0.0.0", base_url="https://tap.example.org/x"))
    assert not policy.allow_private and policy.public == frozenset()
    assert {"0.0.0.0", "tap.example.org"} <= policy.own_hosts
    assert AddressPolicy.of(Settings(allow_private_upload_urls=True)).allow_private


def test_parse_uploads_api_limits(demo_dir: Path, some_objects: Table) -> None:
    body = _votable_bytes(some_objects)
    settings = Settings(data_dir=demo_dir, max_upload_bytes=len(body) + 10)
    params = {"UPLOAD": ["a,param:x", "b,param:x"]}
    with pytest.raises(LimitExceeded) as caught:
        parse_uploads(params, {"x": body}, settings)
    assert "UPLOAD a" in str(caught.value) or "UPLOAD b" in str(caught.value)
    assert "already taken by other uploads" in str(caught.value)
    assert parse_uploads({}, {}, settings) == []


def test_capabilities_announce_uploads(client: TestClient, settings: Settings) -> None:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(client.get("/tap/capabilities").content)
    methods = {e.get("ivo-id") for e in root.iter("uploadMethod")}
    assert methods == {
        f"ivo://ivoa.net/std/TAPRegExt#upload-{m}" for m in ("inline", "http", "https")
    }
    [hard] = [e for limit in root.iter("uploadLimit") for e in limit.iter("hard")]
    assert hard.get("unit") == "byte" and int(hard.text or 0) == settings.max_upload_bytes


def test_upload_syntax_is_checked_with_the_other_parameters() -> None:
    from skyvault.service.params import tap_query_params

    params = {"LANG": ["ADQL"], "QUERY": ["SELECT 1"], "UPLOAD": ["no pair"]}
    with pytest.raises(UsageError, match="not a name,URI pair"):
        tap_query_params(params, maxrec_default=10, maxrec_limit=10)


def test_crossmatch_with_an_upload_is_a_cell_join(archive: Archive, objects: pa.Table) -> None:
    targets = _targets(objects, n=10)
    [(meta, table)] = parse_uploads(
        {"UPLOAD": ["targets,param:t"]}, {"t": _votable_bytes(targets)}, Settings()
    )
    query = (
        f"SELECT t.id, o.objectId FROM TAP_UPLOAD.targets AS t JOIN {OBJECT} AS o "
        "ON DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec)) < 0.002"
    )
    plan = archive.plan(query, extra=[(meta, table)])
    roles = {scan.qualified_name: scan.cell.role for scan in plan.scans if scan.cell}
    assert sorted(roles.values()) == ["exploded", "keyed"]
    assert "__sv_cell" in plan.sql
    got = archive.stream(query, extra=[(meta, table)]).to_table()
    pairs = set(zip(got["id"].to_pylist(), got["objectId"].to_pylist(), strict=True))
    assert pairs == _brute_force(targets, objects, 0.002)


def test_chunked_body_is_capped_while_read(demo_dir: Path) -> None:
    part = b"a\n" + b"1\n" * 700_000
    body = (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="t"; filename="t.csv"\r\n\r\n'
        + part
        + b"\r\n--BOUNDARY--\r\n"
    )
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    with _small_client(demo_dir, max_upload_bytes=1000) as small:
        response = small.post(
            "/tap/sync?LANG=ADQL&QUERY=SELECT+*+FROM+TAP_UPLOAD.t&UPLOAD=t,param:t",
            content=chunks,
            headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"},
        )
    message = _error(response, 413)
    assert "the request body is more than" in message and "1000 bytes" in message


def test_malformed_multipart_is_a_dali_error(client: TestClient) -> None:
    response = client.post(
        "/tap/sync?LANG=ADQL&QUERY=SELECT+*+FROM+TAP_UPLOAD.t&UPLOAD=t,param:t",
        content=b"--X\r\nContent-Disposition: form-data\r\n\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=X"},
    )
    assert response.status_code == 400
    assert query_status(read_votable(response.content))[0][0] == "ERROR"


def test_url_fetch_time_limit(demo_dir: Path, table_server: str) -> None:
    settings = {"allow_private_upload_urls": True, "upload_fetch_timeout": 0.5}
    with _small_client(demo_dir, **settings) as c:
        message = _error(_post(c, JOIN, f"mine,{table_server}/slow"), 400)
    assert "longer than the time limit of 0.5 s" in message


def test_null_positions_in_a_crossmatch(client: TestClient, objects: pa.Table) -> None:
    targets = _targets(objects, n=5)
    targets["ra"] = MaskedColumn(targets["ra"], mask=[False, True, False, False, False, False])
    query = (
        "SELECT t.id, o.objectId FROM TAP_UPLOAD.t AS t JOIN "
        f"{OBJECT} AS o ON DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec)) < 0.002"
    )
    files = {"t": ("t.xml", _votable_bytes(targets), "")}
    result = _result(_post(client, query, "t,param:t", files))
    got = {(int(a), int(b)) for a, b in zip(result["id"], result["objectId"], strict=True)}
    expected = _brute_force(targets[[0, 2, 3, 4, 5]], objects, 0.002)
    assert got == expected


# --- malformed tables: clear 400s, no server paths, cheap refusals before astropy ----------


def _votable_doc(fields: str, rows: str = "") -> bytes:
    return (
        '<?xml version="1.0"?>\n<VOTABLE version="1.4" '
        'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>\n'
        f"{fields}\n<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n"
    ).encode()


def _no_server_path(message: str) -> None:
    assert tempfile.gettempdir() not in message and "skyvault-upload" not in message, message


@pytest.mark.parametrize("fmt", ["votable", "csv", "votable/b2"])
def test_non_utf8_csv_is_a_400_naming_row_and_column(client: TestClient, fmt: str) -> None:
    latin1 = "id,name\n1,ok\n2,caf\xe9\n".encode("latin-1")
    response = _post(
        client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t.csv", latin1, "")},
        RESPONSEFORMAT=fmt,
    )  # fmt: skip
    message = _error(response, 400)
    assert "UPLOAD t (param:t), row 2, column 'name'" in message and "not UTF-8" in message
    utf8 = "id,name\n1,ok\n2,caf\xe9\n".encode()
    files = {"t": ("t.csv", utf8, "")}
    table = _result(_post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", files))
    assert list(table["name"]) == ["ok", "café"]


@pytest.mark.parametrize("field", ['<FIELD name="" datatype="int"/>', '<FIELD datatype="int"/>'])
def test_votable_field_without_a_name_is_a_400(client: TestClient, field: str) -> None:
    body = _votable_doc(
        f'<FIELD name="b" datatype="int"/>\n{field}', "<TR><TD>1</TD><TD>2</TD></TR>"
    )
    message = _error(
        _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", body, "")}), 400
    )
    assert "UPLOAD t (param:t): the VOTable FIELD on line 4 has no name" in message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_votable_doc('<FIELD name="a" datatype="int"/>', "<TR><TD>x</TD></TR>"), "'x'"),
        (_votable_doc('<FIELD name="a" datatype="foo"/>'), "Unknown datatype 'foo'"),
        (_votable_doc('<FIELD name="a" datatype="int"/>')[:-20], "not well-formed XML at line"),
        (b"PAR1" + b"x" * 40 + b"PAR1", "not a readable Parquet file"),
        (b"a,b\n1,2\n3\n", "UPLOAD t (param:t)"),
    ],
)
def test_reader_errors_name_the_upload_never_the_server_path(
    client: TestClient, body: bytes, words: str
) -> None:
    message = _error(
        _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", body, "")}), 400
    )
    assert message.startswith("UPLOAD t (param:t)") and words in message, message
    _no_server_path(message)


def test_a_reader_message_with_the_temporary_path_is_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a reader says, the upload's temporary copy does not reach the user."""

    def leaky(path: Path, *args: object, **kwargs: object) -> None:
        raise IngestError(f"cannot parse {path} at byte 3", file=str(path), row=7, column="c")

    monkeypatch.setattr(uploads, "CsvInput", leaky)
    with pytest.raises(UsageError) as caught:
        parse_uploads({"UPLOAD": ["t,param:t"]}, {"t": b"a\n1\n"}, Settings())
    message = str(caught.value)
    assert message.startswith("UPLOAD t (param:t), row 7, column 'c': the content is not a")
    _no_server_path(message)


def test_thousands_of_same_named_fields_are_refused_before_astropy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """3,000 FIELDs named x took astropy 45 s of CPU: the pre-scan refuses them first."""

    def astropy_must_not_run(path: Path) -> None:
        raise AssertionError("astropy parsed a VOTable the pre-scan should have refused")

    monkeypatch.setattr(uploads, "VOTableInput", astropy_must_not_run)
    same = _votable_doc("\n".join('<FIELD name="x" datatype="int"/>' for _ in range(3000)))
    with pytest.raises(
        UsageError, match=r"two FIELDs are named 'x' \(FIELDs 1 and 2 of the table, lines 3 and 4\)"
    ):
        parse_uploads({"UPLOAD": ["t,param:t"]}, {"t": same}, Settings())
    # A document on one line (as programs write them): the FIELDs' positions say which.
    one_line = _votable_doc(
        '<FIELD name="a" datatype="int"/><FIELD name="x" datatype="int"/>'
        '<FIELD name="b" datatype="int"/><FIELD name="x" datatype="int"/>'
    ).replace(b"\n", b" ")
    with pytest.raises(UsageError, match=r"\(FIELDs 2 and 4 of the table, line 1\)"):
        parse_uploads({"UPLOAD": ["t,param:t"]}, {"t": one_line}, Settings())
    cased = _votable_doc('<FIELD name="a" datatype="int"/>\n<FIELD name="A" datatype="int"/>')
    with pytest.raises(UsageError, match="'a' and 'A' are the same"):
        parse_uploads({"UPLOAD": ["t,param:t"]}, {"t": cased}, Settings())
    # The same in a second TABLE of the document (astropy parses every table).
    second = _votable_doc('<FIELD name="x" datatype="int"/>').replace(
        b"</RESOURCE>",
        b'<TABLE><FIELD name="y" datatype="int"/><FIELD name="y" datatype="int"/></TABLE>'
        b"</RESOURCE>",
    )
    with pytest.raises(UsageError, match="two FIELDs are named 'y'"):
        parse_uploads({"UPLOAD": ["t,param:t"]}, {"t": second}, Settings())
    many = _votable_doc("\n".join(f'<FIELD name="c{i}" datatype="int"/>' for i in range(1001)))
    with pytest.raises(LimitExceeded, match="more than 1000 columns"):
        parse_uploads({"UPLOAD": ["t,param:t"]}, {"t": many}, Settings())


def test_column_limit_over_http_for_every_format(demo_dir: Path) -> None:
    names = [f"c{i}" for i in range(6)]
    votable = _votable_doc("".join(f'<FIELD name="{n}" datatype="int"/>' for n in names))
    csv = (",".join(names) + "\n" + ",".join("1" for _ in names) + "\n").encode()
    parquet = _parquet_bytes(pa.table({n: [1] for n in names}))
    with _small_client(demo_dir, max_upload_columns=5) as small:
        for body in (votable, csv, parquet):
            files = {"t": ("t", body, "")}
            message = _error(_post(small, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", files), 413)
            assert "the limit is 5 columns per uploaded table" in message
        with _small_client(demo_dir, max_upload_columns=6) as exact:
            for body in (votable, csv, parquet):
                files = {"t": ("t", body, "")}
                table = _result(_post(exact, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", files))
                assert table.colnames == names


def test_entity_declarations_are_refused(client: TestClient) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE VOTABLE [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<VOTABLE><RESOURCE><TABLE><FIELD name="&b;" datatype="int"/></TABLE></RESOURCE>'
        b"</VOTABLE>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE VOTABLE [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<VOTABLE><RESOURCE><TABLE><FIELD name="a" datatype="char" arraysize="*"/><DATA>'
        b"<TABLEDATA><TR><TD>&e;</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
    )
    for body in (bomb, external):
        files = {"t": ("t", body, "")}
        message = _error(_post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", files), 400)
        assert "declares the XML entity" in message
        assert "root:" not in message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("caf\xe9,b\n1,2\n".encode("latin-1"), "the column names are not UTF-8 text"),
        (b"SIMPLE  =                    T" + b" " * 2850, "is a FITS file"),
        (_votable_doc(""), "the table has no columns"),
        (_parquet_bytes(pa.table({})), "the table has no columns"),
        (_parquet_bytes(pa.table({"l": [["a", "b"]]})), "column 'l' holds arrays of string"),
    ],
)
@pytest.mark.parametrize("fmt", ["votable", "csv"])
def test_tables_the_service_cannot_hold_are_400s(
    client: TestClient, body: bytes, words: str, fmt: str
) -> None:
    files = {"t": ("t", body, "")}
    response = _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", files, RESPONSEFORMAT=fmt)
    message = _error(response, 400)
    assert message.startswith("UPLOAD t (param:t)") and words in message, message


def test_arrays_of_numbers_and_booleans_are_uploaded(client: TestClient) -> None:
    table = pa.table({"f": [[1.5, 2.5]], "b": pa.array([[True, False]]), "i": [[1, 2, 3]]})
    files = {"t": ("t", _parquet_bytes(table), "")}
    got = _result(_post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", files))
    assert list(got["f"][0]) == [1.5, 2.5] and list(got["i"][0]) == [1, 2, 3]
    assert [bool(v) for v in got["b"][0]] == [True, False]


def test_streams_pointing_elsewhere_are_refused_before_astropy_opens_them(
    client: TestClient, table_server: str
) -> None:
    """astropy opens a STREAM's href on the service's host: /etc/passwd came back as rows
    and internal URLs were fetched.  Uploads must hold their data themselves."""
    _Handler.files["/stream"] = b"\x00\x00\x00\x05" * 4
    served = len(_Handler.hosts)
    for href in ("file:///etc/passwd", f"{table_server}/stream"):
        for element in ("BINARY", "BINARY2", "FITS"):
            body = (
                '<?xml version="1.0"?>\n<VOTABLE version="1.4" '
                'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>\n'
                '<FIELD name="a" datatype="char" arraysize="32"/>\n'
                f'<DATA><{element}><STREAM href="{href}"/></{element}></DATA>'
                "</TABLE></RESOURCE></VOTABLE>"
            ).encode()
            response = _post(
                client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", body, "")}
            )
            message = _error(response, 400)
            assert "the VOTable STREAM on line 4 refers to data elsewhere" in message
            assert "root:" not in response.text
    assert len(_Handler.hosts) == served, "the service fetched a STREAM href"
    # An encoded STREAM inside the document is data like any other.
    inline = (
        b'<?xml version="1.0"?>\n<VOTABLE version="1.4" '
        b'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>\n'
        b'<FIELD name="a" datatype="int"/>\n'
        b'<DATA><BINARY><STREAM encoding="base64">AAAABQAAAAc=</STREAM></BINARY></DATA>'
        b"</TABLE></RESOURCE></VOTABLE>"
    )
    table = _result(
        _post(client, "SELECT a FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", inline, "")})
    )
    assert list(table["a"]) == [5, 7]


def test_unknown_xml_encoding_is_a_400(client: TestClient) -> None:
    body = _votable_doc('<FIELD name="a" datatype="int"/>').replace(
        b'version="1.0"?>', b'version="1.0" encoding="u-tf-8"?>', 1
    )
    message = _error(
        _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", {"t": ("t", body, "")}), 400
    )
    assert "not a readable VOTable: unknown encoding: u-tf-8" in message


# --- fuzzing: whatever bytes are uploaded, the answer is a result or a clear 4xx ----------


def _fuzz_seeds() -> list[bytes]:
    table = Table(
        {
            "id": [1, 2, 3],
            "ra": [10.0, 20.5, np.nan],
            "name": ["a", "é", "c"],
            "flag": [True, False, True],
            "arr": [[1, 2], [3, 4], [5, 6]],
        }
    )
    seeds = []
    for serialization in ("tabledata", "binary", "binary2"):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table.write(buffer, format="votable", tabledata_format=serialization)
        seeds.append(buffer.getvalue())
    seeds.append(b"id,ra,name\n1,10.5,a\n2,,b\n")
    seeds.append(_parquet_bytes(pa.table({"id": [1, 2], "ra": [1.0, 2.0], "s": ["x", None]})))
    return seeds


_FUZZ_SEEDS = _fuzz_seeds()
_FUZZ_PIECES = [
    b"<", b">", b"&", b'"', b"\x00", b"\xff", b"\xe9", b",", b"\n", b"-", b"nan", b"1e999",
    b'<FIELD name="x" datatype="int"/>', b"<TD>", b"</TR>", b'datatype="char"',
    b'arraysize="*"', b'xtype="timestamp"', b"9999999999999999999999", b"<![CDATA[", b"]]>",
    b"<!--", b"-->", b"PAR1", b'encoding="latin-1"', b"<STREAM>", b"<FITS>",
]  # fmt: skip


@st.composite
def _mutated_uploads(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(_FUZZ_SEEDS)))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 4))):
        pos = rng.randrange(len(body) + 1)
        action = rng.random()
        if action < 0.4:
            body[pos:pos] = rng.choice(_FUZZ_PIECES)
        elif action < 0.8:
            del body[pos : pos + rng.randint(1, 8)]
        else:
            body[pos:pos] = bytes([rng.randrange(256)])
    return bytes(body)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=_mutated_uploads(),
    fmt=st.sampled_from(["votable", "votable/b2", "votable/td", "csv", "fits", "parquet", "json"]),
)
def test_fuzz_every_upload_is_a_result_or_a_clear_error(
    client: TestClient, body: bytes, fmt: str
) -> None:
    files = {"t": ("t", body, "")}
    response = _post(client, "SELECT * FROM TAP_UPLOAD.t", "t,param:t", files, RESPONSEFORMAT=fmt)
    assert response.status_code in (200, 400, 413), (response.status_code, response.text[:500])
    _no_server_path(response.text)
    assert "Traceback" not in response.text


def test_a_missing_upload_gets_a_hint_on_a_new_error(some_objects: Table) -> None:
    """The hint is added to a copy built from the error's fields (the original is not
    edited); the message and position stay."""
    error = AdqlSemanticError('no table "mine" in TAP_UPLOAD', line=2, column=6)
    hinted = with_upload_hint(error, [])
    assert error.hint is None and hinted is not error
    assert (hinted.detail, hinted.line, hinted.column) == (error.detail, 2, 6)
    assert str(hinted.hint).startswith("this request uploaded no tables: send UPLOAD=name,")
    body = _votable_bytes(some_objects)
    uploads_ = parse_uploads({"UPLOAD": ["other,param:p"]}, {"p": body}, Settings())
    assert with_upload_hint(error, uploads_).hint == "this request uploaded TAP_UPLOAD.other"
    elsewhere = AdqlSemanticError('no table "mine" in dp02', line=1, column=1)
    assert with_upload_hint(elsewhere, []) is elsewhere
