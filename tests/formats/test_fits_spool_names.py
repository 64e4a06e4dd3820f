"""The FITS spool file's name says which host and process wrote it (what lets a service
starting up remove only the spools of processes that are gone)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pyarrow as pa
import pytest

from skyvault.catalog.metadata import ColumnMeta
from skyvault.formats.fits import SPOOL_PREFIX, spool_host, spool_owner, write_fits


def test_the_spool_is_named_after_its_host_and_process(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([1, 2, 3], pa.int64())})
    fields = [ColumnMeta(name="x", datatype="long")]
    chunks = write_fits(table.to_batches(), fields, schema=table.schema, spool_dir=tmp_path)
    next(chunks)  # the header: the rows are in the spool now
    (spool,) = tmp_path.glob(f"{SPOOL_PREFIX}*")
    assert spool.name.startswith(f"skyvault-fits-{socket.gethostname()}-{os.getpid()}-")
    assert spool.name.endswith(".arrows")
    assert spool_owner(spool.name) == (spool_host(), os.getpid())
    chunks.close()
    assert list(tmp_path.iterdir()) == []


def test_spool_owner_reads_names_from_the_right() -> None:
    assert spool_owner("skyvault-fits-node-7.example.org-4321-x_9k2ab1.arrows") == (
        "node-7.example.org",
        4321,
    )
    assert spool_owner("skyvault-fits-h-1-a.arrows") == ("h", 1)
    for name in (
        "skyvault-fits-q8w_2mzt.arrows",  # the old naming: no host, no process
        "skyvault-fits-host-12x-abc.arrows",  # not a process id
        "skyvault-fits--12-abc.arrows",  # no host
        "skyvault-fits-host-12-.arrows",  # no random part
        "skyvault-fits-host-12-abc.parquet",
        "other-host-12-abc.arrows",
    ):
        assert spool_owner(name) is None, name


def test_the_host_name_is_kept_to_safe_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "odd/host name")
    assert spool_host() == "odd_host_name"
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert spool_host() == "_"
