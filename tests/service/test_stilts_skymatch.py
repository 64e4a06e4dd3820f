"""STILTS ``tapskymatch`` against a live server: its upload (``lon``/``lat``) is a cell join.

``tapskymatch`` uploads the input positions as ``TAP_UPLOAD.up(tapupload_id, lon, lat)``
and asks ``... JOIN TAP_UPLOAD.up AS u ON 1=CONTAINS(POINT('ICRS', r.ra, r.dec),
CIRCLE('ICRS', u.lon, u.lat, r))``.  The pairs it gets back must be astropy's, and the
query it sent (read from its log) must plan as a cell join.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.engine.archive import open_archive
from skyvault.sky.cells import KEY_COLUMN

STILTS = shutil.which("stilts")
OBJECT = "dp02_dc2_catalogs.Object"
RADIUS_ARCSEC = 1.5


@pytest.mark.slow
@pytest.mark.skipif(STILTS is None, reason="stilts is not installed")
def test_tapskymatch_pairs_equal_astropy_and_plan_as_a_cell_join(
    live_url: str, demo_dir: Path, tmp_path: Path
) -> None:
    archive = open_archive(demo_dir)
    try:
        objects = archive.query(f"SELECT objectId, coord_ra, coord_dec FROM {OBJECT}")
        ids = objects["objectId"].to_numpy()
        ra, dec = objects["coord_ra"].to_numpy(), objects["coord_dec"].to_numpy()
        # 300 targets: near copies (up to 2″ off, so some fall outside 1.5″) of objects.
        rng = np.random.default_rng(5)
        pick = rng.choice(len(ids), 300, replace=False)
        targets = SkyCoord(ra[pick], dec[pick], unit="deg").directional_offset_by(
            rng.uniform(0, 360, 300) * u.deg, rng.uniform(0, 2, 300) * u.arcsec
        )
        path = tmp_path / "targets.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["src", "ra", "dec"])
            for i, (a, d) in enumerate(zip(targets.ra.deg, targets.dec.deg, strict=True)):
                writer.writerow([i, repr(float(a)), repr(float(d))])
        out = tmp_path / "matched.csv"
        run = subprocess.run(
            [
                str(STILTS), "-verbose", "tapskymatch", f"in={path}", "ifmt=csv",
                "inlon=ra", "inlat=dec", f"tapurl={live_url}", f"taptable={OBJECT}",
                "taplon=coord_ra", "taplat=coord_dec", "tapcols=objectId",
                f"sr={RADIUS_ARCSEC / 3600!r}", "find=all", f"out={out}", "ofmt=csv",
            ],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        with out.open() as fh:
            got = [(int(row["src"]), int(row["objectId"])) for row in csv.DictReader(fh)]
        # The oracle: astropy over every object.
        catalogue = SkyCoord(ra, dec, unit="deg")
        io, it, _, _ = targets.search_around_sky(catalogue, RADIUS_ARCSEC * u.arcsec)
        want = set(zip(it.tolist(), ids[io].tolist(), strict=True))
        assert 150 < len(want) < 300
        assert len(got) == len(want) and set(got) == want

        # The query STILTS sent, planned here with an upload of the same shape.
        found = re.search(r"ADQL query:\s*\n(.*?)\nINFO: Preparing upload", run.stderr, re.S)
        assert found is not None, run.stderr[-2000:]
        adql = found.group(1)
        assert "TAP_UPLOAD.up" in adql and "u.lon" in adql
        up = pa.table(
            {"tapupload_id": np.arange(300), "lon": targets.ra.deg, "lat": targets.dec.deg}
        )
        meta = TableMeta(
            "TAP_UPLOAD", "up", "plain", tuple(ColumnMeta.from_arrow(f) for f in up.schema), 300
        )
        plan = archive.plan(adql, extra=[(meta, up)])
        assert KEY_COLUMN in plan.sql
        assert sorted(s.cell.role for s in plan.scans if s.cell) == ["exploded", "keyed"]
    finally:
        archive.close()
