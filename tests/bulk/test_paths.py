"""Path resolution inside a version directory: only ordinary names, never out of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skyvault.bulk import MANIFEST_FILE, compute_manifest, list_directory, resolve


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A version-like tree, with things that must never be served next to it."""
    version = tmp_path / "data" / "s" / ".skyvault" / "versions" / "t" / "v1"
    (version / "dataset" / "Norder=0" / "Dir=0").mkdir(parents=True)
    (version / "hats.properties").write_text("obs_collection=t\n")
    (version / "dataset" / "_metadata").write_bytes(b"PAR1")
    (version / "dataset" / "Norder=0" / "Dir=0" / "Npix=4.parquet").write_bytes(b"x" * 10)
    (version / MANIFEST_FILE).write_text("{}")
    (version / ".building").write_text("")
    (tmp_path / "secret.txt").write_text("secret")
    (version / "data" / "s").mkdir(parents=True)
    os.symlink(tmp_path / "secret.txt", version / "link.txt")
    os.symlink(tmp_path, version / "linkdir")
    os.symlink("hats.properties", version / "inside.txt")  # a link, even to inside: refused
    return version


@pytest.mark.parametrize(
    "path",
    [
        "dataset/Norder=0/Dir=0/Npix=4.parquet",
        "hats.properties",
        "dataset/_metadata",
    ],
)
def test_files_resolve(root: Path, path: str) -> None:
    target = resolve(root, path)
    assert target is not None and target.kind == "file"
    assert target.path == root / path and target.relative == path


@pytest.mark.parametrize("path", ["", "dataset", "dataset/", "dataset/Norder=0/"])
def test_directories_resolve(root: Path, path: str) -> None:
    target = resolve(root, path)
    assert target is not None and target.kind == "directory"
    assert target.relative == path.rstrip("/")


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../",
        "../../../../secret.txt",
        "dataset/../hats.properties",
        "dataset/./_metadata",
        "./hats.properties",
        "/etc/passwd",
        "//etc/passwd",
        "dataset//_metadata",
        ".skyvault",
        ".building",
        MANIFEST_FILE,
        "link.txt",
        "linkdir/secret.txt",
        "linkdir/",
        "inside.txt",
        "dataset\\_metadata",
        "hats.properties\x00.txt",
        "hats.properties/",
        "hats.properties/x",
        "missing",
        "dataset/missing/_MD5SUM.txt",
        "hats.properties/_MD5SUM.txt",
        "linkdir/_MD5SUM.txt",
        "../_MD5SUM.txt",
    ],
)
def test_everything_else_is_none(root: Path, path: str) -> None:
    assert resolve(root, path) is None


def test_manifest_documents_resolve_in_every_directory(root: Path) -> None:
    for directory in ("", "dataset", "dataset/Norder=0/Dir=0"):
        for name in ("_MD5SUM.txt", "manifest.json", "manifest.csv", "manifest.sha256"):
            path = f"{directory}/{name}" if directory else name
            target = resolve(root, path)
            assert target is not None and target.kind == "manifest"
            assert target.relative == directory and target.name == name


def test_listing_hides_links_internals_and_adds_documents(root: Path) -> None:
    target = resolve(root, "")
    assert target is not None
    manifest = compute_manifest(root)
    assert {e.path for e in manifest.entries} == {
        "hats.properties",
        "dataset/_metadata",
        "dataset/Norder=0/Dir=0/Npix=4.parquet",
    }
    names = [e.name for e in list_directory(target, manifest, "s.t")]
    assert names == [
        "data",
        "dataset",
        "hats.properties",
        "_MD5SUM.txt",
        "manifest.csv",
        "manifest.json",
        "manifest.sha256",
    ]
    sizes = {e.name: e.size for e in list_directory(target, manifest, "s.t")}
    assert sizes["_MD5SUM.txt"] == len(manifest.render("_MD5SUM.txt", "s.t", ""))
