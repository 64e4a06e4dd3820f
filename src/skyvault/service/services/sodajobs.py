"""SODA ``{async}`` as a UWS job type: a cutout made by a worker, kept as the job's result.

* **check** (at creation): the SODA parameters parse (:func:`skyvault.images.soda.parse_soda`)
  and name one cutout (one value of each parameter, as ``{sync}``), of an image the creator
  may see: a bad value, several values or an unknown or hidden ID is a 400 or 404 and no job
  is created;
* **run** (in a UWS worker): the image is found again with the owner's access *then* (a
  revoked grant applies), the cutout written (:func:`skyvault.images.cutout.write_cutout`)
  to a spooled file and stored as the job's ``result`` (``application/fits``), counted
  against the owner's result storage; a region that misses the image ends the job in ERROR
  with ``CutoutNoOverlap``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from skyvault.auth.identity import Identity
from skyvault.catalog.metadata import TableMeta
from skyvault.config import Settings
from skyvault.engine.executor import CancelToken
from skyvault.errors import CatalogNotFound, QueryCancelled
from skyvault.images.archive import ImageArchive, StoredImage, chunks, spool_cutout
from skyvault.images.soda import CutoutSpec, parse_soda
from skyvault.service.uws.models import Job, JobKind, JobResult
from skyvault.service.uws.results import ResultStore

__all__ = ["SODA_ASYNC_ID", "soda_job_kind"]

SODA_ASYNC_ID = "ivo://ivoa.net/std/SODA#async-1.0"


def soda_job_kind(
    data_dir: Path,
    settings: Settings,
    visible_tables: Callable[[Identity], list[TableMeta]],
) -> JobKind:
    """The ``soda`` job type over the image collections of ``data_dir``."""
    images = ImageArchive(data_dir)

    def image_of(spec: CutoutSpec, identity: Identity) -> StoredImage:
        visible = frozenset(m.qualified_name for m in visible_tables(identity))
        image = images.find(spec.id, visible)
        if image is None or not image.path.is_file():
            raise CatalogNotFound(
                f"no image has the ID {spec.id}",
                hint="find images and their ids in the collections' ObsCore tables",
            )
        return image

    def check(caller: Identity, params: dict[str, list[str]], uploads: Mapping[str, bytes]) -> None:
        image_of(parse_soda(params).single(), caller)

    def run(
        job: Job,
        cancel: CancelToken,
        identity: Identity,
        results: ResultStore,
        progress: Callable[[int], None],
    ) -> JobResult:
        spec = parse_soda(job.parameter_map()).single()
        image = image_of(spec, identity)
        spool, _ = spool_cutout(image, spec, settings.spool_dir)
        with spool:
            if cancel.cancelled:
                raise QueryCancelled("the job was aborted")
            key = results.key(job.job_id, "fits")
            size = results.write(key, chunks(spool))
        return JobResult(key=key, mime="application/fits", size=size, rows=0,
                         overflow=False)  # fmt: skip

    return JobKind("soda", check=check, run=run)
