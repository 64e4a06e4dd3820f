"""SODA ``{async}`` as a UWS job type: cutouts made by a worker, kept as the job's results.

* **check** (at creation): the SODA parameters parse (:func:`skyvault.images.soda.parse_soda`),
  name at most :data:`MAX_CUTOUTS` cutouts, and every ID is an image the creator may see: a
  bad value, too many combinations or an unknown or hidden ID is a 400 or 404 and no job
  is created;
* **run** (in a UWS worker): each image is found again with the owner's access *then* (a
  revoked grant applies), each cutout written (:func:`skyvault.images.cutout.write_cutout`)
  to a spooled file and stored in the job's results, counted against the owner's result
  storage.

One value of each parameter is one cutout, the job's ``result`` (``application/fits``); a
region that misses the image ends the job in ERROR with ``CutoutNoOverlap``.  Several
values (SODA 1.0 §3.1, §6) are one cutout per combination of ID, region (CIRCLE, POLYGON
and POS together), BAND and TIME, in that order (:meth:`SodaRequest.cutouts`): the results
list names them ``cutout-1``, ``cutout-2``, … at ``results/cutout-N``, each a FITS file, or,
for a combination that made no cutout (its region misses the image, the image became
hidden), SODA's ``text/plain`` error document (:func:`~skyvault.images.soda.error_text`).
Such a job ends in ERROR only when no combination made a cutout.  Its ``results/result`` is
the JSON index of its results (:data:`INDEX`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from skyvault.auth.identity import Identity
from skyvault.catalog.metadata import TableMeta
from skyvault.config import Settings
from skyvault.engine.executor import CancelToken
from skyvault.errors import (
    CatalogNotFound,
    JobResourceMissing,
    MultiValuedParamNotSupported,
    QueryCancelled,
    SkyvaultError,
)
from skyvault.images.archive import ImageArchive, StoredImage, chunks, spool_cutout
from skyvault.images.soda import CutoutSpec, SodaRequest, describe_region, error_text, parse_soda
from skyvault.service.uws.models import Job, JobKind, JobResult, ResultLink
from skyvault.service.uws.results import ResultStore
from skyvault.service.uws.service import JobService

__all__ = ["INDEX", "MAX_CUTOUTS", "SODA_ASYNC_ID", "soda_job_kind", "soda_result"]

SODA_ASYNC_ID = "ivo://ivoa.net/std/SODA#async-1.0"

#: The most cutouts one job makes (combinations of ID, region, BAND and TIME).
MAX_CUTOUTS = 100

#: The file, among a job of several cutouts' results, that lists them (its ``result``).
INDEX = "cutouts.json"

_FITS = "application/fits"
_ERROR = "text/plain; charset=utf-8"


def _combinations(request: SodaRequest) -> list[CutoutSpec]:
    """The cutouts ``request`` asks for, refused by name when more than :data:`MAX_CUTOUTS`."""
    count = len(request.ids)
    for values in (request.regions, request.bands, request.times):
        count *= max(1, len(values))
    if count > MAX_CUTOUTS:
        raise MultiValuedParamNotSupported(
            f"this request asks for {count} cutouts (every combination of its "
            f"{len(request.ids)} ID, {len(request.regions)} CIRCLE/POLYGON/POS, "
            f"{len(request.bands)} BAND and {len(request.times)} TIME values); a job makes at "
            f"most {MAX_CUTOUTS}",
            hint="split the request into several jobs",
        )
    return list(request.cutouts())


def _describe(spec: CutoutSpec) -> dict[str, Any]:
    return {
        "ID": spec.id,
        "POS": None if spec.region is None else describe_region(spec.region),
        "BAND": None if spec.band is None else spec.band.to_text(),
        "TIME": None if spec.time is None else spec.time.to_text(),
    }


def _index(results: ResultStore, job: Job) -> list[dict[str, Any]] | None:
    """The results of a job of several cutouts (None: a job of one)."""
    if job.result is None or not job.result.key.endswith(f"/{INDEX}"):
        return None
    text = b"".join(results.read(job.result.key))
    entries: list[dict[str, Any]] = json.loads(text)["results"]
    return entries


def soda_job_kind(
    data_dir: Path,
    settings: Settings,
    visible_tables: Callable[[Identity], list[TableMeta]],
) -> JobKind:
    """The ``soda`` job type over the image collections of ``data_dir``."""
    images = ImageArchive(data_dir)
    results_store = ResultStore(settings.results_location())

    def image_of(did: str, identity: Identity) -> StoredImage:
        visible = frozenset(m.qualified_name for m in visible_tables(identity))
        image = images.find(did, visible)
        if image is None or not image.path.is_file():
            raise CatalogNotFound(
                f"no image has the ID {did}",
                hint="find images and their ids in the collections' ObsCore tables",
            )
        return image

    def check(caller: Identity, params: dict[str, list[str]], uploads: Mapping[str, bytes]) -> None:
        request = parse_soda(params)
        _combinations(request)
        for did in dict.fromkeys(request.ids):
            image_of(did, caller)

    def run(
        job: Job,
        cancel: CancelToken,
        identity: Identity,
        results: ResultStore,
        check_size: Callable[[int], None],
    ) -> JobResult:
        specs = _combinations(parse_soda(job.parameter_map()))
        if len(specs) == 1:
            spool, _ = spool_cutout(image_of(specs[0].id, identity), specs[0], settings.spool_dir)
            with spool:
                if cancel.cancelled:
                    raise QueryCancelled("the job was aborted")
                key = results.key(job.job_id, "fits")
                size = results.write(key, chunks(spool))
            return JobResult(key=key, mime=_FITS, size=size, rows=0, overflow=False)
        entries: list[dict[str, Any]] = []
        failures: list[SkyvaultError] = []
        total = 0
        for n, spec in enumerate(specs, 1):
            if cancel.cancelled:
                raise QueryCancelled("the job was aborted")
            name = f"cutout-{n}"
            try:
                spool, _ = spool_cutout(image_of(spec.id, identity), spec, settings.spool_dir)
            except SkyvaultError as exc:
                if exc.http_status >= 500:  # the service's fault: the job fails
                    raise
                failures.append(exc)
                key, mime = f"{job.job_id}/{name}.txt", _ERROR
                size = results.write(key, [(error_text(exc) + "\n").encode()])
            else:
                with spool:
                    key, mime = f"{job.job_id}/{name}.fits", _FITS
                    size = results.write(key, chunks(spool))
            total += size
            check_size(total)
            entries.append({"id": name, "key": key, "mime": mime, "size": size, **_describe(spec)})
        if len(failures) == len(specs):
            raise failures[0]
        index = f"{job.job_id}/{INDEX}"
        total += results.write(index, [json.dumps({"results": entries}, indent=1).encode()])
        made = len(specs) - len(failures)
        return JobResult(key=index, mime="application/json", size=total, rows=made,
                         overflow=False)  # fmt: skip

    def listed(job: Job, job_url: str) -> list[ResultLink]:
        assert job.result is not None
        entries = _index(results_store, job)
        if entries is None:
            result = job.result
            return [ResultLink("result", f"{job_url}/results/result", result.mime, result.size)]
        return [
            ResultLink(e["id"], f"{job_url}/results/{e['id']}", e["mime"], e["size"])
            for e in entries
        ]

    return JobKind("soda", check=check, run=run, results=listed)


def soda_result(
    jobs: JobService, job_id: str, owner: str | None, name: str
) -> tuple[str, int, Iterator[bytes]]:
    """The media type, size and bytes of result ``name`` (``cutout-N``) of SODA job
    ``job_id``, for its owner (anyone else: no such job)."""
    job = jobs.get(job_id, owner)
    entries = _index(jobs.results, job) if job.result is not None else None
    found = next((e for e in entries or () if e["id"] == name), None)
    if found is None:
        raise JobResourceMissing(
            f"job {job_id} has no result {name!r}",
            hint=f"its results are listed at /soda/async/{job_id}/results",
        )
    return str(found["mime"]), int(found["size"]), jobs.results.read(str(found["key"]))
