"""Manifests stored at ingest, checked against the coreutils tools and the Parquet files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from skyvault.bulk import MANIFEST_FILE, compute_manifest, manifest_for, stored_manifest
from skyvault.bulk.manifest import (
    MANIFEST_CSV,
    MANIFEST_JSON,
    MANIFEST_SHA256,
    MD5SUM_FILE,
    clear_cache,
)
from tests.conftest import SKY_ROWS, SkyCatalogue


@pytest.fixture(scope="module")
def table_root(sky_catalogue: SkyCatalogue) -> Path:
    """A small HATS table with several partitions and a margin."""
    return sky_catalogue.path


def _served_files(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if name != MANIFEST_FILE:
                out.append(rel)
    return sorted(out)


def _tool(name: str, root: Path, rel: str) -> str:
    done = subprocess.run([name, rel], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def test_ingest_stores_a_manifest_of_every_file(table_root: Path) -> None:
    manifest = stored_manifest(table_root)
    assert manifest is not None and manifest.stored
    assert manifest.version == table_root.name
    assert [e.path for e in manifest.entries] == _served_files(table_root)
    for entry in manifest.entries:
        assert entry.bytes == (table_root / entry.path).stat().st_size
        assert entry.md5 == _tool("md5sum", table_root, entry.path)
        assert entry.sha256 == _tool("sha256sum", table_root, entry.path)


def test_rows_and_pixels_come_from_the_partition_files(table_root: Path) -> None:
    manifest = stored_manifest(table_root)
    assert manifest is not None
    data = [e for e in manifest.entries if e.path.startswith("dataset/Norder=")]
    partitions = (table_root / "partition_info.csv").read_text().split()[1:]
    assert len(data) == len(partitions) > 3
    assert sorted(f"{e.healpix_order},{e.healpix_pixel}" for e in data) == sorted(partitions)
    for entry in data:
        assert entry.rows == pq.ParquetFile(table_root / entry.path).metadata.num_rows
    assert sum(e.rows or 0 for e in data) == SKY_ROWS
    assert manifest.entry("hats.properties") is not None
    assert manifest.entry("hats.properties").rows is None  # type: ignore[union-attr]
    margin = [e for e in manifest.entries if e.path.startswith("margin/dataset/Norder=")]
    assert margin and all(e.healpix_order is not None for e in margin)


def test_md5sum_files_check_with_md5sum(table_root: Path) -> None:
    manifest = stored_manifest(table_root)
    assert manifest is not None
    for directory in ("", "dataset", "margin", "dataset/Norder=1"):
        text = manifest.render(MD5SUM_FILE, "s.t", directory)
        if not text:
            continue
        done = subprocess.run(
            ["md5sum", "--check", "--strict", "-"],
            cwd=table_root / directory,
            input=text,
            check=False,
            capture_output=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    # Each directory's documents cover the files beneath it, relative to it.
    everything = manifest.render(MD5SUM_FILE, "s.t", "").decode().splitlines()
    dataset = manifest.render(MD5SUM_FILE, "s.t", "dataset").decode().splitlines()
    assert dataset and all(not line.split("  ")[1].startswith("dataset/") for line in dataset)
    assert len(dataset) == sum("  dataset/" in line for line in everything)


def test_json_and_csv_agree_and_sha256_checks(table_root: Path, tmp_path: Path) -> None:
    manifest = stored_manifest(table_root)
    assert manifest is not None
    document = json.loads(manifest.render(MANIFEST_JSON, "s.t", "dataset"))
    assert document["table"] == "s.t" and document["version"] == table_root.name
    text = manifest.render(MANIFEST_CSV, "s.t", "dataset").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["path"] for r in rows] == [f["path"] for f in document["files"]]
    for row, item in zip(rows, document["files"], strict=True):
        assert int(row["bytes"]) == item["bytes"] and row["sha256"] == item["sha256"]
        assert (row["rows"] or None) == (None if item["rows"] is None else str(item["rows"]))
        assert (
            hashlib.md5((table_root / "dataset" / item["path"]).read_bytes()).hexdigest()
            == (item["md5"])
        )
    for name in (MD5SUM_FILE, MANIFEST_JSON, MANIFEST_CSV):
        (tmp_path / name).write_bytes(manifest.render(name, "s.t", ""))
    sums = manifest.render(MANIFEST_SHA256, "s.t", "")
    done = subprocess.run(
        ["sha256sum", "--check", "-"], cwd=tmp_path, input=sums, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_version_without_a_stored_manifest_gets_the_same_one(
    table_root: Path, tmp_path: Path
) -> None:
    copy = tmp_path / table_root.name
    shutil.copytree(table_root, copy)
    # copytree keeps mtimes (copy2), so the documents must be identical.
    (copy / MANIFEST_FILE).unlink()
    clear_cache()
    assert stored_manifest(copy) is None
    computed = manifest_for(copy)
    assert not computed.stored
    stored = stored_manifest(table_root)
    assert stored is not None
    assert computed.entries == stored.entries
    assert manifest_for(copy) is computed  # cached, not recomputed
    assert compute_manifest(table_root).entries == stored.entries


def test_entries_hashed_during_ingest_are_reused_only_while_the_file_is_unchanged(
    table_root: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    copy = tmp_path / "v"
    shutil.copytree(table_root, copy)
    stored = stored_manifest(table_root)
    assert stored is not None
    entry = stored.entry("hats.properties")
    assert entry is not None
    planted = replace(entry, sha256="0" * 64)
    reused = compute_manifest(copy, known={"hats.properties": planted})
    assert reused.entry("hats.properties") == planted
    with (copy / "hats.properties").open("a") as fh:
        fh.write("# changed\n")
    fresh = compute_manifest(copy, known={"hats.properties": planted}).entry("hats.properties")
    assert fresh is not None
    assert fresh.sha256 == hashlib.sha256((copy / "hats.properties").read_bytes()).hexdigest()
