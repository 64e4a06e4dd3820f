"""SIA 2.0 over the demo's image collections (``skyvault demo``: dp02_calexp and
dp02_deepcoadd, granted to PUBLIC as the command does; the session's demo and live server):
pyvo's ``SIA2Service`` finds, at the positions of catalogue objects, exactly the images
whose own WCS (astropy, from the stored FITS files) holds them, and the bands asked for."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skyvault.auth import AuthStorage, grant_access
from skyvault.catalog.layout import image_store
from skyvault.engine.archive import Archive

COLLECTIONS = ("dp02_calexp", "dp02_deepcoadd")


@dataclass(frozen=True)
class DemoImage:
    did: str
    band: str
    t_min: float | None
    wcs: WCS
    nx: int
    ny: int

    def holds(self, ra: float, dec: float) -> bool:
        x, y = self.wcs.wcs_world2pix(np.array([[ra, dec]]), 0)[0]
        return bool(-0.5 <= x <= self.nx - 0.5 and -0.5 <= y <= self.ny - 0.5)


@dataclass(frozen=True)
class Demo:
    data: Path
    images: list[DemoImage]
    objects: list[tuple[float, float]]


@pytest.fixture(scope="module")
def demo(demo_dir: Path) -> Demo:
    """The session's demo build, its image collections granted to PUBLIC as ``skyvault
    demo`` grants them (as ``test_portal_browser`` does)."""
    root = demo_dir
    storage = AuthStorage.for_data_dir(root)
    try:
        for schema in COLLECTIONS:
            grant_access(storage, schema, None)
    finally:
        storage.close()
    images = []
    archive = Archive(root)
    try:
        for collection in COLLECTIONS:
            rows = archive.query(
                "SELECT obs_publisher_did, band, t_min, image_file, image_hdu "
                f"FROM {collection}.obscore"
            ).to_pylist()
            for row in rows:
                path = image_store(root, collection) / row["image_file"]
                with fits.open(path) as hdus, warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    hdu = hdus[row["image_hdu"]]
                    wcs = WCS(hdu.header)
                    ny, nx = hdu.shape
                images.append(DemoImage(row["obs_publisher_did"], row["band"], row["t_min"],
                                        wcs, nx, ny))  # fmt: skip
        centres = archive.query(
            "SELECT s_ra, s_dec FROM dp02_calexp.obscore ORDER BY obs_id"
        ).to_pylist()
        objects = []
        for centre in centres[:8]:
            near = archive.query(
                "SELECT TOP 2 coord_ra, coord_dec FROM dp02_dc2_catalogs.Object WHERE "
                f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({centre['s_ra']!r}, "
                f"{centre['s_dec']!r}, 0.05)) = 1 ORDER BY objectId"
            ).to_pylist()
            objects += [(o["coord_ra"], o["coord_dec"]) for o in near]
    finally:
        archive.close()
    return Demo(root, images, objects)


def _search(url: str, **kwargs: object) -> set[str]:
    from pyvo.dal import SIA2Service

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = SIA2Service(f"{url}/sia").search(**kwargs).to_table()
    return {str(d) for d in table["obs_publisher_did"]}


def test_objects_are_found_in_the_images_that_hold_them(live_url: str, demo: Demo) -> None:
    found = 0
    assert len(demo.objects) > 8
    for ra, dec in demo.objects:
        got = _search(live_url, pos=(ra, dec, 1e-5))
        want = {i.did for i in demo.images if i.holds(ra, dec)}
        assert got == want
        found += len(want)
    assert found > 0


def test_band_and_collection_at_a_position(live_url: str, demo: Demo) -> None:
    ra, dec = demo.objects[0]
    # 700-800 nm lies inside the i filter (691-818 nm) and meets no other LSST band
    got = _search(live_url, pos=(ra, dec, 0.05), band=(700e-9, 800e-9), collection=COLLECTIONS[1])
    want = {i.did for i in demo.images
            if i.band == "i" and i.did.startswith("ivo://skyvault/dp02_deepcoadd?")
            and _near(i, ra, dec, 0.05)}  # fmt: skip
    assert got == want and want


def _near(image: DemoImage, ra: float, dec: float, radius: float) -> bool:
    """The footprint comes within ``radius`` of the position (dense edge samples)."""
    from astropy.coordinates import SkyCoord

    t = np.linspace(0, 1, 400)
    lo_x, lo_y, hi_x, hi_y = -0.5, -0.5, image.nx - 0.5, image.ny - 0.5
    xs = np.concatenate([lo_x + (hi_x - lo_x) * t, np.full(400, hi_x),
                         hi_x - (hi_x - lo_x) * t, np.full(400, lo_x)])  # fmt: skip
    ys = np.concatenate([np.full(400, lo_y), lo_y + (hi_y - lo_y) * t,
                         np.full(400, hi_y), hi_y - (hi_y - lo_y) * t])  # fmt: skip
    world = image.wcs.wcs_pix2world(np.column_stack([xs, ys]), 0)
    edge = SkyCoord(world[:, 0], world[:, 1], unit="deg")
    distance = float(edge.separation(SkyCoord(ra, dec, unit="deg")).deg.min())
    return image.holds(ra, dec) or distance <= radius
