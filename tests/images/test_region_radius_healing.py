"""Collections ingested before ``region_radius`` was recorded: the registry computes it when
their metadata lacks it (half the largest ``s_fov``, from the files' Parquet statistics),
so ``s_region`` predicates prune them as they prune new collections — same answers, fewer
files read — without writing anything into the data root."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyvault.catalog.metadata import METADATA_FILE
from skyvault.catalog.registry import _largest_value
from skyvault.engine.archive import Archive
from skyvault.images.ingest import ImageIngestOptions, ingest_images
from skyvault.images.obstap import obscore_views
from tests.images._files import tan_header, write_image

FIELDS = {"north": (150.0, 2.0), "south": (10.0, -45.0)}


@dataclass(frozen=True)
class World:
    data: Path
    radii: dict[str, float]
    """The region_radius each collection's ingest recorded."""
    answers: dict[str, set[str]]
    """The answers of :data:`QUERIES` before the metadata lost its radius."""


def _query(ra: float, dec: float) -> str:
    return (
        "SELECT obs_id FROM ivoa.ObsCore "
        f"WHERE INTERSECTS(s_region, CIRCLE('ICRS', {ra}, {dec}, 0.02)) = 1"
    )


QUERIES = {name: _query(*centre) for name, centre in FIELDS.items()}
QUERIES["point"] = (
    "SELECT obs_id FROM ivoa.ObsCore WHERE "
    f"CONTAINS(POINT('ICRS', {FIELDS['north'][0]}, {FIELDS['north'][1]}), s_region) = 1"
)


def _run(archive: Archive, adql: str) -> tuple[set[str], int, int]:
    """The query's obs_ids, and the files its plan reads out of all."""
    tables = archive.tables()
    views = obscore_views(tables, None)
    (scan,) = archive.plan(adql, tables, views=views).scans
    rows = archive.stream(adql, tables=tables, views=views).to_table()
    return set(rows.column("obs_id").to_pylist()), len(scan.files), scan.total_files


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("region-radius")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    for collection, (ra0, dec0) in FIELDS.items():
        paths = []
        for k in range(6):
            ra = ra0 + rng.uniform(-0.03, 0.03) / np.cos(np.radians(dec0))
            dec = dec0 + rng.uniform(-0.03, 0.03)
            header = tan_header(ra, dec, nx=80, ny=60, scale_arcsec=float(rng.uniform(3.0, 5.0)))
            paths.append(write_image(root / f"{collection}-{k}.fits", header, shape=(60, 80)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ingest_images(paths, collection, data, options=ImageIngestOptions())
    archive = Archive(data)
    radii = {}
    for collection in FIELDS:
        radius = archive.registry.get(collection, "obscore").meta.region_radius
        assert radius is not None and radius > 0
        radii[collection] = radius
    answers = {name: _run(archive, adql)[0] for name, adql in QUERIES.items()}
    assert all(answers.values())
    archive.close()
    # The collections become what an older ingest left: metadata without region_radius.
    for collection in FIELDS:
        path = (data / collection / "obscore").resolve() / METADATA_FILE
        meta = json.loads(path.read_text())
        del meta["region_radius"]
        path.write_text(json.dumps(meta))
    return World(data, radii, answers)


def test_the_registry_computes_the_radius_the_ingest_would_have_recorded(world: World) -> None:
    archive = Archive(world.data)
    for collection, radius in world.radii.items():
        assert archive.registry.get(collection, "obscore").meta.region_radius == radius
        # nothing written: the stored metadata still lacks it
        stored = (world.data / collection / "obscore").resolve() / METADATA_FILE
        assert "region_radius" not in json.loads(stored.read_text())


@pytest.mark.parametrize("name", list(QUERIES))
def test_region_predicates_prune_old_collections_with_the_same_answers(
    world: World, name: str
) -> None:
    rows, files, total = _run(Archive(world.data), QUERIES[name])
    assert rows == world.answers[name]
    assert files < total


def _write(path: Path, values: list[float | None]) -> str:
    pq.write_table(pa.table({"s_fov": pa.array(values, pa.float64())}), path, row_group_size=2)
    return str(path)


def test_the_largest_value_is_unknown_with_a_null_or_unreadable_file(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.parquet", [0.1, 0.4, 0.2])
    two = _write(tmp_path / "two.parquet", [0.3, 0.5])
    assert _largest_value((one, two), "s_fov") == 0.5
    assert _largest_value((), "s_fov") == -np.inf
    assert _largest_value((one, _write(tmp_path / "null.parquet", [0.1, None])), "s_fov") is None
    assert _largest_value((one,), "nosuch") is None
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    assert _largest_value((one, str(tmp_path / "bad.parquet")), "s_fov") is None
