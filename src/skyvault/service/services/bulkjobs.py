"""Bulk jobs as a UWS job type: the glue between the job machinery and :mod:`skyvault.bulk.jobs`.

* **check** (at creation): the parameters parse and compile against the creator's visible
  tables — an unknown or hidden table, a bad region, MOC, filter, column list or format is a
  400 and no job is created;
* **run** (in a UWS worker): compiled again with the owner's access *then* (a revoked grant
  applies), written into ``files/`` of the job's directory in the result store (which must
  be a local directory: the files are served with Range and sendfile); the result recorded
  is the file set (its key ``JOB/files/``, total bytes and rows): the bytes count against
  the owner's result storage;
* **results**: the UWS results list holds the DataLink ``links`` document, the scripts,
  the manifests, and every file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from skyvault.auth.identity import Identity
from skyvault.bulk.jobs import BulkOutput, compile_request, parse_request, run_request
from skyvault.bulk.manifest import (
    MANIFEST_CSV,
    MANIFEST_JSON,
    MANIFEST_SHA256,
    MD5SUM_FILE,
    Manifest,
    stored_manifest,
)
from skyvault.catalog.metadata import TableMeta
from skyvault.catalog.views import View
from skyvault.config import Settings
from skyvault.engine.archive import Archive
from skyvault.engine.budget import MemoryBudget
from skyvault.engine.executor import CancelToken
from skyvault.errors import StorageError
from skyvault.images.datalink import DATALINK_TYPE
from skyvault.service.uws.models import Job, JobKind, JobResult, ResultLink
from skyvault.service.uws.results import ResultStore

__all__ = ["FILES_DIR", "bulk_job_kind", "job_files", "media_type"]

#: The directory of a bulk job's files inside its result directory.
FILES_DIR = "files"

_MEDIA = {
    "parquet": "application/vnd.apache.parquet",
    "vot": "application/x-votable+xml",
    "fits": "application/fits",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "sha256": "text/plain; charset=utf-8",
    "properties": "text/plain; charset=utf-8",
}

#: The results every completed bulk job has besides its files: (id, path below the job,
#: media type).
_DOCUMENTS = (
    ("links", "results/links", DATALINK_TYPE),
    ("wget", "results/wget", "text/x-shellscript"),
    ("curl", "results/curl", "text/x-shellscript"),
    ("aria2", "results/aria2", "text/plain"),
    ("manifest.json", f"{FILES_DIR}/{MANIFEST_JSON}", "application/json"),
    ("manifest.csv", f"{FILES_DIR}/{MANIFEST_CSV}", "text/csv"),
    ("_MD5SUM.txt", f"{FILES_DIR}/{MD5SUM_FILE}", "text/plain"),
    ("manifest.sha256", f"{FILES_DIR}/{MANIFEST_SHA256}", "text/plain"),
)


def media_type(name: str) -> str:
    """The media type a bulk file is served with."""
    return _MEDIA.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def job_files(results: ResultStore, job_id: str) -> tuple[Path, Manifest] | None:
    """The directory of a completed bulk job's files and their manifest (None: none)."""
    base = results.local_dir(job_id)
    if base is None:
        return None
    root = base / FILES_DIR
    manifest = stored_manifest(root) if root.is_dir() else None
    return None if manifest is None else (root, manifest)


def bulk_job_kind(
    archive: Archive,
    settings: Settings,
    visible_tables: Callable[[Identity], list[TableMeta]],
    budget: MemoryBudget | None = None,
    views: Callable[[Sequence[TableMeta]], Sequence[View]] = lambda tables: (),
) -> JobKind:
    """The ``bulk`` job type over ``archive``; ``visible_tables`` gives an identity's tables,
    ``budget`` is the memory the service's queries share (a job reserves its stream),
    ``views`` the views a caller who may read some tables queries besides them
    (``ivoa.ObsCore``): a job's TABLE may be one."""
    limit = settings.bulk_job_file_bytes

    def check(caller: Identity, params: dict[str, list[str]], uploads: Mapping[str, bytes]) -> None:
        request = parse_request(params, uploads.get("MOC"), max_file_bytes=limit)
        tables = visible_tables(caller)
        compile_request(request, archive, tables, views(tables))

    def run(
        job: Job,
        cancel: CancelToken,
        identity: Identity,
        results: ResultStore,
        check_size: Callable[[int], None],
    ) -> JobResult:
        base = results.local_dir(job.job_id)
        if base is None:
            raise StorageError(
                "bulk jobs need a local result store",
                hint="the operator sets SKYVAULT_RESULTS_URL to a directory",
            )
        parameters = job.parameter_map()
        moc = results.read_uploads(job.job_id).get("MOC") if "MOC" not in parameters else None
        request = parse_request(parameters, moc, max_file_bytes=limit)
        tables = visible_tables(identity)  # the owner's access now: a revoked grant applies
        query = compile_request(request, archive, tables, views(tables))
        output: BulkOutput = run_request(
            query,
            archive,
            base / FILES_DIR,
            max_file_bytes=limit,
            cancel=cancel,
            timeout=float(job.execution_duration) + 60.0,
            spool_dir=settings.spool_dir,
            job_id=job.job_id,
            budget=budget,
            check_size=check_size,
        )
        return JobResult(
            key=f"{job.job_id}/{FILES_DIR}/",
            mime=DATALINK_TYPE,
            size=output.bytes,
            rows=output.rows,
            overflow=False,
        )

    def listed(job: Job, job_url: str) -> list[ResultLink]:
        found = job_files(results_store, job.job_id)
        links = [ResultLink(i, f"{job_url}/{path}", mime) for i, path, mime in _DOCUMENTS]
        if found is None:
            return links
        for entry in found[1].entries:
            href = f"{job_url}/{FILES_DIR}/{quote(entry.path)}"
            links.append(ResultLink(entry.path, href, media_type(entry.path), entry.bytes))
        return links

    results_store = ResultStore(settings.results_location())
    return JobKind("bulk", check=check, run=run, results=listed, endpoint="/bulk/jobs")
