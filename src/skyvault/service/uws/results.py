"""The result store: async job results as files in a directory or any fsspec location.

A job's result lives at ``JOB_ID/result.EXT`` under the store's root, the inline tables it
uploaded (TAP_UPLOAD multipart parts) under ``JOB_ID/uploads/``.  It is written while
the query streams (never held in memory), and a job only becomes COMPLETED after the write
finished, so a result file of a job that is not COMPLETED is a leftover that
:meth:`ResultStore.delete` removes with the job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import fsspec

__all__ = ["ResultStore"]

_READ_BLOCK = 1 << 20


class ResultStore:
    """Results under ``url``: a local directory (created when missing) or an fsspec URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        self._fs = fs
        self._root = str(root).rstrip("/")
        self._local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        if self._local:
            fs.makedirs(self._root, exist_ok=True)

    def key(self, job_id: str, extension: str) -> str:
        """The name of job ``job_id``'s result with file name ``extension``."""
        return f"{job_id}/result.{extension}"

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store ``chunks`` as ``key``; the number of bytes written."""
        path = self._path(key)
        if self._local:
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        size = 0
        with self._fs.open(path, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
        return size

    def read(self, key: str) -> Iterator[bytes]:
        """The bytes of ``key`` in blocks (opened now: a missing result raises here)."""
        handle = self._fs.open(self._path(key), "rb")

        def blocks() -> Iterator[bytes]:
            with handle:
                while block := handle.read(_READ_BLOCK):
                    yield block

        return blocks()

    def local_dir(self, job_id: str) -> Path | None:
        """The directory of job ``job_id``'s results on this machine (created), or None
        when the store is not a local directory (job types that serve files need one)."""
        if not self._local:
            return None
        path = Path(self._path(job_id))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        return bool(self._fs.exists(self._path(key)))

    def write_upload(self, job_id: str, part: str, data: bytes) -> None:
        """Keep the inline upload ``part`` (a multipart file part) of job ``job_id``."""
        self.write(f"{job_id}/uploads/{part.encode().hex()}", [data])

    def read_uploads(self, job_id: str) -> dict[str, bytes]:
        """The inline upload parts of job ``job_id``, by part name."""
        folder = self._path(f"{job_id}/uploads")
        try:
            paths = self._fs.ls(folder, detail=False)
        except FileNotFoundError:
            return {}
        parts: dict[str, bytes] = {}
        for path in paths:
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            try:
                part = bytes.fromhex(name).decode()
            except ValueError:
                continue
            with self._fs.open(path, "rb") as handle:
                parts[part] = handle.read()
        return parts

    def delete(self, job_id: str) -> None:
        """Remove everything stored for job ``job_id`` (nothing if there is nothing)."""
        path = self._path(job_id)
        try:
            if self._fs.exists(path):
                self._fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
