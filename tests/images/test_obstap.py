"""ObsTAP over the archive: ``ivoa.ObsCore`` as a view of collections, region predicates on
``s_region`` against astropy's WCS as the oracle, pruning, typical ObsTAP queries.

Two collections of small TAN images scattered (random centres, sizes, rotations, bands,
dates) around two fields; the oracle of a footprint is the image's own WCS: a position is
in the footprint when astropy puts it inside the pixel edges, and the footprint's distance
to a position is taken along its edges (TAN maps great circles to straight lines, so the
pixel rectangle's edges are the footprint's great-circle edges).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from skyvault.catalog.layout import TableName
from skyvault.engine.archive import Archive
from skyvault.errors import AdqlSemanticError, UnsupportedQuery
from skyvault.images.ingest import ImageIngestOptions, ingest_images
from skyvault.images.obstap import obscore_views
from skyvault.sky.stcs import parse_stcs, region_relation
from tests.images._files import tan_header, write_image

FIELDS = {"alpha": (150.0, 2.0), "beta": (10.0, -45.0)}
BANDS = "ugrizy"


@dataclass(frozen=True)
class Image:
    collection: str
    obs_id: str
    wcs: WCS
    shape: tuple[int, int]  # ny, nx
    band: str
    mjd: float

    def contains(self, ra: float, dec: float) -> bool:
        x, y = self.wcs.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg))
        ny, nx = self.shape
        return bool(-0.5 <= float(x) <= nx - 0.5 and -0.5 <= float(y) <= ny - 0.5)

    def edge_distance(self, ra: float, dec: float) -> float:
        """The smallest distance (deg) from the position to the footprint's edges."""
        ny, nx = self.shape
        t = np.linspace(-0.5, 0.5, 2001)
        xs = np.concatenate([t * nx + (nx - 1) / 2, np.full_like(t, nx - 0.5),
                             t * nx + (nx - 1) / 2, np.full_like(t, -0.5)])  # fmt: skip
        ys = np.concatenate([np.full_like(t, -0.5), t * ny + (ny - 1) / 2,
                             np.full_like(t, ny - 0.5), t * ny + (ny - 1) / 2])  # fmt: skip
        edge = self.wcs.pixel_to_world(xs, ys)
        return float(edge.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg.min())

    def corners(self) -> np.ndarray:
        return self.wcs.calc_footprint(center=False)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class World:
    data: Path
    archive: Archive
    images: list[Image]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("obstap")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(13)
    images: list[Image] = []
    for collection, (ra0, dec0) in FIELDS.items():
        paths = []
        for k in range(24):
            ra = ra0 + rng.uniform(-0.05, 0.05) / np.cos(np.radians(dec0))
            dec = dec0 + rng.uniform(-0.05, 0.05)
            nx, ny = int(rng.integers(40, 120)), int(rng.integers(40, 120))
            band = BANDS[k % 6]
            header = tan_header(ra, dec, nx=nx, ny=ny, scale_arcsec=float(rng.uniform(0.5, 2.0)),
                                rotation_deg=float(rng.uniform(0, 360)), band=band)  # fmt: skip
            mjd = float(Time("2022-06-01").mjd + rng.uniform(0, 730))
            header["DATE-OBS"] = Time(mjd, format="mjd", scale="tai").isot
            path = write_image(root / f"{collection}-{k}.fits", header, shape=(ny, nx))
            paths.append(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wcs = WCS(fits.getheader(path))
            images.append(Image(collection, path.name.removesuffix(".fits"), wcs, (ny, nx),
                                band, mjd))  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ingest_images(paths, collection, data, options=ImageIngestOptions())
    return World(data, Archive(data), images)


def _ids(world: World, adql: str, collections: tuple[str, ...] = tuple(FIELDS)) -> set[str]:
    tables = [m for m in world.archive.tables() if m.schema in collections]
    views = obscore_views(tables, "https://example.org/tap")
    table = world.archive.stream(adql, tables=tables, views=views).to_table()
    return set(table.column("obs_id").to_pylist())


def _plan_files(world: World, adql: str) -> tuple[int, int]:
    tables = world.archive.tables()
    plan = world.archive.plan(adql, tables, views=obscore_views(tables, None))
    (scan,) = plan.scans
    return len(scan.files), scan.total_files


def test_the_view_is_the_union_of_the_collections_given(world: World) -> None:
    assert _ids(world, "SELECT obs_id FROM ivoa.ObsCore") == {i.obs_id for i in world.images}
    alpha = {i.obs_id for i in world.images if i.collection == "alpha"}
    assert _ids(world, "SELECT obs_id FROM ivoa.ObsCore", ("alpha",)) == alpha
    assert _ids(world, "SELECT obs_id FROM ivoa.ObsCore", ()) == set()


def test_the_union_reads_each_members_own_partitions(world: World) -> None:
    tables = world.archive.tables()
    plan = world.archive.plan(
        "SELECT * FROM ivoa.ObsCore", tables, views=obscore_views(tables, None)
    )
    (scan,) = plan.scans
    members = [world.archive.registry.get(c, "obscore") for c in FIELDS]
    assert set(scan.files) == {f for m in members for f in m.all_files}


@pytest.mark.parametrize("radius", [0.001, 0.01, 0.03, 0.2])
def test_intersects_a_circle_equals_the_wcs_oracle(world: World, radius: float) -> None:
    rng = np.random.default_rng(int(radius * 1e4))
    checked = 0
    for _ in range(12):
        ra0, dec0 = FIELDS[str(rng.choice(list(FIELDS)))]
        ra = float(ra0 + rng.uniform(-0.08, 0.08) / np.cos(np.radians(dec0)))
        dec = float(dec0 + rng.uniform(-0.08, 0.08))
        expected, unsure = set(), False
        for image in world.images:
            if image.contains(ra, dec):
                expected.add(image.obs_id)
                continue
            d = image.edge_distance(ra, dec)
            if abs(d - radius) < 2e-5:  # too close to the edge for the sampled oracle
                unsure = True
            elif d < radius:
                expected.add(image.obs_id)
        if unsure:
            continue
        for adql in (
            f"SELECT obs_id FROM ivoa.ObsCore WHERE "
            f"INTERSECTS(s_region, CIRCLE('ICRS', {ra!r}, {dec!r}, {radius})) = 1",
            f"SELECT obs_id FROM ivoa.ObsCore WHERE "
            f"1 = INTERSECTS(CIRCLE({ra!r}, {dec!r}, {radius}), s_region)",
        ):
            assert _ids(world, adql) == expected
        checked += 1
    assert checked >= 8


def test_contains_a_point_equals_the_wcs_oracle(world: World) -> None:
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(40):
        ra0, dec0 = FIELDS[str(rng.choice(list(FIELDS)))]
        ra = float(ra0 + rng.uniform(-0.06, 0.06) / np.cos(np.radians(dec0)))
        dec = float(dec0 + rng.uniform(-0.06, 0.06))
        expected = {i.obs_id for i in world.images if i.contains(ra, dec)}
        hits += len(expected)
        # the DP0.2 tutorial's form
        adql = (
            "SELECT obs_id FROM ivoa.ObsCore WHERE "
            f"CONTAINS(POINT('ICRS', {ra!r}, {dec!r}), s_region) = 1"
        )
        assert _ids(world, adql) == expected
    assert hits > 5


def _tangent(points: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """Gnomonic projection about ``centre``: great circles become straight lines."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(centre)
    w.wcs.cdelt = [1.0, 1.0]
    return np.array(w.wcs_world2pix(points, 0))


def _convex_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex planar polygons overlap (separating axis theorem)."""
    for poly in (a, b):
        for i in range(len(poly)):
            edge = poly[(i + 1) % len(poly)] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa_, pb = a @ axis, b @ axis
            if pa_.max() < pb.min() or pb.max() < pa_.min():
                return False
    return True


def test_intersects_a_polygon_equals_the_tangent_plane_oracle(world: World) -> None:
    rng = np.random.default_rng(7)
    for _ in range(15):
        name = str(rng.choice(list(FIELDS)))
        ra0, dec0 = FIELDS[name]
        cra = ra0 + rng.uniform(-0.05, 0.05)
        cdec = dec0 + rng.uniform(-0.05, 0.05)
        size = rng.uniform(0.002, 0.04)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 5))
        vertices = np.array([(cra + size * np.cos(t) / np.cos(np.radians(cdec)),
                              cdec + size * np.sin(t)) for t in angles])  # fmt: skip
        query = _tangent(vertices, (ra0, dec0))
        from scipy.spatial import ConvexHull

        if len(ConvexHull(query).vertices) != len(query):
            continue  # the oracle wants a convex polygon
        expected = {
            i.obs_id
            for i in world.images
            if i.collection == name and _convex_overlap(_tangent(i.corners(), (ra0, dec0)), query)
        }
        flat = ", ".join(repr(float(v)) for v in vertices.ravel())
        adql = (
            "SELECT obs_id FROM ivoa.ObsCore "
            f"WHERE INTERSECTS(s_region, POLYGON('ICRS', {flat})) = 1"
        )
        assert _ids(world, adql) == expected


def test_region_predicates_prune_and_keep_the_answer(world: World) -> None:
    ra, dec = FIELDS["alpha"]
    cut = f"INTERSECTS(s_region, CIRCLE('ICRS', {ra}, {dec}, 0.02)) = 1"
    pruned = f"SELECT obs_id FROM ivoa.ObsCore WHERE {cut}"
    files, total = _plan_files(world, pruned)
    assert files < total
    # the same condition in a form that does not prune reads everything, with the same rows
    whole = f"SELECT obs_id FROM ivoa.ObsCore WHERE ({cut} OR obs_id = 'none')"
    assert _plan_files(world, whole) == (total, total)
    assert _ids(world, pruned) == _ids(world, whole) != set()
    point = (
        f"SELECT obs_id FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', {ra}, {dec}), s_region) = 1"
    )
    assert _plan_files(world, point)[0] < total
    position = (
        f"SELECT obs_id FROM ivoa.ObsCore WHERE s_ra BETWEEN {ra - 0.01} AND {ra + 0.01} "
        f"AND s_dec BETWEEN {dec - 0.01} AND {dec + 0.01}"
    )
    assert _plan_files(world, position)[0] < total


def test_a_typical_obstap_query(world: World) -> None:
    """All i-band images covering a position taken in 2023."""
    ra, dec = FIELDS["beta"]
    start, end = Time("2023-01-01", scale="tai").mjd, Time("2024-01-01", scale="tai").mjd
    wavelength = 750e-9  # inside LSST i
    adql = (
        "SELECT obs_id, access_url FROM ivoa.ObsCore "
        "WHERE dataproduct_type = 'image' AND calib_level >= 1 "
        f"AND em_min < {wavelength} AND em_max > {wavelength} "
        f"AND t_min >= {start} AND t_min < {end} "
        f"AND INTERSECTS(s_region, CIRCLE('ICRS', {ra}, {dec}, 0.08)) = 1"
    )
    got = _ids(world, adql)
    expected = {
        i.obs_id
        for i in world.images
        if i.band == "i"
        and start <= i.mjd < end
        and (i.contains(ra, dec) or i.edge_distance(ra, dec) < 0.08)
    }
    assert got == expected and got


def test_region_column_misuse_is_a_clear_error(world: World) -> None:
    tables = world.archive.tables()
    views = obscore_views(tables, None)
    with pytest.raises(UnsupportedQuery, match="two region columns"):
        world.archive.plan(
            "SELECT a.obs_id FROM ivoa.ObsCore AS a, alpha.obscore AS b "
            "WHERE INTERSECTS(a.s_region, b.s_region) = 1",
            tables,
            views=views,
        )
    with pytest.raises(AdqlSemanticError, match="needs a geometry"):
        world.archive.plan("SELECT AREA(s_region) FROM ivoa.ObsCore", tables, views=views)
    # everywhere else s_region is the text it is
    text = world.archive.stream(
        "SELECT s_region FROM ivoa.ObsCore WHERE s_region LIKE 'POLYGON ICRS %'",
        tables=tables,
        views=views,
    ).to_table()
    assert text.num_rows == len(world.images)


def test_parse_stcs_shapes_and_refusals() -> None:
    assert parse_stcs("POLYGON ICRS 1 2 3 2 3 4").to_dali() == [1, 2, 3, 2, 3, 4]  # type: ignore[union-attr]
    assert parse_stcs("Circle ICRS TOPOCENTER 10 20 0.5").to_dali() == [10, 20, 0.5]  # type: ignore[union-attr]
    assert parse_stcs("POSITION 10 20").to_dali() == [10, 20]  # type: ignore[union-attr]
    import pyarrow as pa

    # unreadable regions, NULLs and NaN parameters match nothing (NULL)
    out = region_relation(
        pa.array(["POLYGON ICRS 1 2 3", None, "FROG 1 2", "POLYGON FK5 1 2 3 2 3 4",
                  "CIRCLE ICRS 10 20 1", "CIRCLE ICRS 10 20 1"]),
        pa.array(["intersects"] * 6),
        pa.array(["point"] * 6),
        pa.array([[1.0, 2.0]] * 5 + [[10.0, float("nan")]], type=pa.list_(pa.float64())),
    )  # fmt: skip
    assert out.to_pylist() == [None, None, None, None, False, None]


def test_access_url_in_the_python_api_is_the_stored_value(world: World) -> None:
    tables = world.archive.tables()
    got = world.archive.stream(
        "SELECT access_url, access_format FROM ivoa.ObsCore",
        tables=tables,
        views=obscore_views(tables, None),
    ).to_table()
    assert set(got.column("access_url").to_pylist()) == {None}
    assert set(got.column("access_format").to_pylist()) == {"image/fits"}
    assert TableName("alpha", "obscore") in obscore_views(tables, None)[0].members


# --- Rubin's ObsCore extension columns: the DP0.2 tutorial query, unchanged ---------------------

#: The tutorial's query (DP0.2 image queries: deepCoadd images in a band covering a position),
#: as Rubin's notebooks and the scripts built on them send it (``'...'AND`` included).
TUTORIAL = (
    "SELECT TOP %d dataproduct_type,dataproduct_subtype,calib_level,lsst_band,em_min,em_max,"
    "lsst_tract,lsst_patch, lsst_filter,lsst_visit,lsst_detector,lsst_ccdvisitid,t_exptime,"
    "t_min,t_max,s_ra,s_dec,s_fov, obs_id,obs_collection,o_ucd,facility_name,instrument_name,"
    "obs_title,s_region,access_url, access_format FROM ivoa.ObsCore WHERE calib_level = 3 AND "
    "dataproduct_type = 'image' AND lsst_band='%s' AND dataproduct_subtype = "
    "'lsst.deepCoadd_calexp'AND CONTAINS(POINT('ICRS', %f, %f), s_region)=1"
)


def test_the_dp02_tutorial_query_runs_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    coadds, calexps = [], []
    for k, band in enumerate("gri"):
        header = tan_header(55.75, -32.27, nx=80, ny=80, scale_arcsec=2.0, band=band)
        header["TRACT"], header["PATCH"] = 4431, 17 + k
        coadds.append(write_image(tmp_path / f"coadd-{band}.fits", header, shape=(80, 80)))
        visit = tan_header(55.75, -32.27, band=band)
        visit["VISIT"], visit["DETECTOR"], visit["CCDVISIT"] = 1000 + k, 42, (1000 + k) * 200 + 42
        calexps.append(write_image(tmp_path / f"calexp-{band}.fits", visit))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ingest_images(coadds, "coadd", data, options=ImageIngestOptions(
            calib_level=3, subtype="lsst.deepCoadd_calexp"))  # fmt: skip
        ingest_images(calexps, "calexp", data, options=ImageIngestOptions(
            calib_level=2, subtype="lsst.calexp"))  # fmt: skip
    archive = Archive(data)
    tables = archive.tables()
    views = obscore_views(tables, "https://example.org/tap")
    got = archive.stream(TUTORIAL % (5, "i", 55.75, -32.27), tables=tables, views=views)
    rows = got.to_table().to_pylist()
    assert [(r["obs_id"], r["lsst_band"], r["lsst_tract"], r["lsst_patch"]) for r in rows] == [
        ("coadd-i", "i", 4431, 19)
    ]
    assert rows[0]["lsst_filter"] == "i_sim_1.4" and rows[0]["lsst_visit"] is None
    assert rows[0]["access_url"].startswith("https://example.org/tap/datalink/links?ID=")
    calexp = archive.stream(
        "SELECT lsst_visit, lsst_detector, lsst_ccdvisitid FROM ivoa.ObsCore "
        "WHERE dataproduct_subtype = 'lsst.calexp' AND lsst_band = 'r'",
        tables=tables,
        views=views,
    ).to_table()
    assert calexp.to_pylist() == [
        {"lsst_visit": 1001, "lsst_detector": 42, "lsst_ccdvisitid": 1001 * 200 + 42}
    ]


def test_extension_columns_only_when_every_member_has_them(world: World) -> None:
    import dataclasses

    alpha, beta = (world.archive.registry.get(c, "obscore").meta for c in FIELDS)
    older = dataclasses.replace(
        beta, columns=tuple(c for c in beta.columns if not c.name.startswith("lsst_"))
    )
    (full,) = [v for v in obscore_views([alpha, beta], None) if v.meta.schema == "ivoa"]
    (mixed,) = [v for v in obscore_views([alpha, older], None) if v.meta.schema == "ivoa"]
    assert "lsst_band" in full.meta.column_names
    assert not [n for n in mixed.meta.column_names if n.startswith("lsst_")]
    assert mixed.schema.names == mixed.meta.column_names
    (empty,) = obscore_views([], None)
    assert empty.schema.names == empty.meta.column_names and "lsst_band" in empty.schema.names


def test_the_view_on_dask_answers_as_locally(world: World) -> None:
    from skyvault.engine.distributed import DaskExecutor

    dask = Archive(world.data, executor=DaskExecutor())
    tables = world.archive.tables()
    views = obscore_views(tables, "https://example.org/tap")
    ra, dec = FIELDS["beta"]
    for adql in (
        "SELECT obs_id, access_url FROM ivoa.ObsCore ORDER BY obs_id",
        "SELECT obs_collection, COUNT(*) AS n, MAX(s_fov) AS f FROM ivoa.ObsCore "
        "GROUP BY obs_collection ORDER BY obs_collection",
        "SELECT obs_id FROM ivoa.ObsCore "
        f"WHERE INTERSECTS(s_region, CIRCLE({ra}, {dec}, 0.03)) = 1 ORDER BY obs_id",
    ):
        local = world.archive.stream(adql, tables=tables, views=views).to_table()
        split = dask.stream(adql, tables=dask.tables(), views=views).to_table()
        assert split.to_pylist() == local.to_pylist() != []


def test_the_bounding_circle_prefilter_keeps_circles_touching_a_vertex() -> None:
    """A circle that touches a polygon at its vertex farthest from the bounding circle's
    centre (the worst case for the prefilter) still meets it, as the exact predicate says."""
    import pyarrow as pa

    from skyvault.sky import geometry
    from skyvault.sky._vector import radec_to_xyz, unit
    from skyvault.sky.regions import Circle

    rng = np.random.default_rng(13)
    texts, others, expected = [], [], []
    for _ in range(200):
        ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-80, 80))
        d = float(rng.uniform(0.01, 2.0))
        text = f"POLYGON ICRS {ra} {dec} {ra + d} {dec} {ra + d} {dec + d} {ra} {dec + 0.7 * d}"
        polygon = parse_stcs(text)
        prepared = polygon.prepared  # type: ignore[union-attr]
        far = prepared.xyz[int(np.argmin(prepared.xyz @ prepared.centre))]
        r = float(rng.uniform(0.05, 1.0))
        # the point r degrees beyond the vertex, on the great circle from the centre
        axis = unit(far - (far @ prepared.centre) * prepared.centre)
        beyond = unit(far * np.cos(np.radians(r)) + axis * np.sin(np.radians(r)))
        c_ra = float(np.degrees(np.arctan2(beyond[1], beyond[0])) % 360.0)
        c_dec = float(np.degrees(np.arcsin(np.clip(beyond[2], -1, 1))))
        assert np.allclose(radec_to_xyz(c_ra, c_dec), beyond)
        texts.append(text)
        others.append([c_ra, c_dec, r])
        expected.append(geometry.intersects(polygon, Circle(c_ra, c_dec, r)))
    got = region_relation(
        pa.array(texts),
        pa.array(["intersects"] * len(texts)),
        pa.array(["circle"] * len(texts)),
        pa.array(others, type=pa.list_(pa.float64())),
    ).to_pylist()
    assert got == expected
    assert sum(expected) > 100  # most touch (the rest miss by a rounding)


def test_the_bounding_circle_prefilter_keeps_every_true_answer() -> None:
    """Rows far apart are rejected by their bounding circles; big regions (beyond a
    hemisphere) and touching ones still get the exact predicate (sky/geometry.py)."""
    import pyarrow as pa

    from skyvault.sky import geometry
    from skyvault.sky.regions import Circle

    rng = np.random.default_rng(3)
    texts, others = [], []
    for _ in range(300):
        ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-80, 80))
        d = float(rng.uniform(0.01, 2.0))
        texts.append(f"POLYGON ICRS {ra} {dec} {ra + d} {dec} {ra + d} {dec + d}")
        others.append([float(rng.uniform(0, 360)), float(rng.uniform(-89, 89)),
                       float(rng.choice([0.5, 5.0, 60.0, 120.0, 179.0]))])  # fmt: skip
    for relation in ("intersects", "contains", "within"):
        got = region_relation(
            pa.array(texts),
            pa.array([relation] * len(texts)),
            pa.array(["circle"] * len(texts)),
            pa.array(others, type=pa.list_(pa.float64())),
        ).to_pylist()
        expected = []
        for text, (ra, dec, r) in zip(texts, others, strict=True):
            region, circle = parse_stcs(text), Circle(ra, dec, r)
            expected.append(
                geometry.intersects(region, circle)
                if relation == "intersects"
                else geometry.contains(circle, region)
                if relation == "contains"
                else geometry.contains(region, circle)
            )
        assert got == expected
        assert relation == "contains" or any(expected)  # small polygons hold no such circle


def test_vectorised_polygon_circle_test_answers_as_the_exact_predicate() -> None:
    """stcs decides INTERSECTS(polygon, circle) for all rows at once (numpy); on random
    convex and concave polygons and circles near, across and touching their edges, it
    answers as geometry.intersects row by row, and leaves only the borderline rows to it."""
    import pyarrow as pa

    from skyvault.sky import geometry, stcs
    from skyvault.sky.regions import Circle

    rng = np.random.default_rng(21)
    texts, others = [], []
    for n in range(600):
        ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-85, 85))
        d = float(rng.uniform(0.001, 3.0))
        if n % 3 == 0:  # concave: an arrowhead
            corners = [(ra, dec), (ra + d, dec + d / 2), (ra, dec + d), (ra + d / 3, dec + d / 2)]
        else:
            corners = [(ra, dec), (ra + d, dec), (ra + d, dec + d), (ra, dec + 0.8 * d)]
        texts.append("POLYGON ICRS " + " ".join(f"{x!r} {y!r}" for x, y in corners))
        r = float(rng.choice([0.0001, 0.01, 0.3, 2.0, 30.0]))
        off = float(rng.uniform(-2, 2)) * (d + r)
        c_ra = (ra + d / 2 + off * float(rng.uniform(-1, 1))) % 360.0
        others.append([c_ra, float(np.clip(dec + d / 2 + off, -89.9, 89.9)), r])
    for k in range(0, 600, 4):  # touching the first vertex from below (or nearly)
        ra, dec = (float(v) for v in texts[k].split()[2:4])
        r = min(others[k][2], 2.0)
        others[k] = [ra % 360.0, dec - r * (1.0000001 if k % 8 else 1.0), r]
    expected = [
        geometry.intersects(stcs.parse_stcs(t), Circle(*o))
        for t, o in zip(texts, others, strict=True)
    ]
    got = region_relation(
        pa.array(texts),
        pa.array(["intersects"] * len(texts)),
        pa.array(["circle"] * len(texts)),
        pa.array(others, type=pa.list_(pa.float64())),
    ).to_pylist()
    assert got == expected
    assert 100 < sum(expected) < 500
    mine = [stcs._parsed(t) for t in texts]
    theirs = [stcs._other_bound("circle", tuple(o)) for o in others]
    decided = stcs._polygons_meet_circles(
        list(range(len(texts))), mine, theirs, ["intersects"] * len(texts),  # type: ignore[arg-type]
        np.ones(len(texts), dtype=bool),
    )  # fmt: skip
    assert len(decided) > 0.9 * len(texts)
    assert all(decided[k] == expected[k] for k in decided)
