"""DALI examples of the TAP service: real queries over the demo catalogues and images, as
XHTML+RDFa.

:data:`EXAMPLES` holds each example's id, name, ADQL and the tables it reads;
:func:`examples_document` renders them as DALI specifies (a ``vocab`` element holding
``typeof="example"`` elements with ``name``, ``capability``, ``query`` and ``table``
properties).  A test runs every query against a small demo build.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from skyvault.catalog.tap_schema import TAP_SCHEMA
from skyvault.formats._xml import Element, xml_document

__all__ = ["EXAMPLES", "Example", "examples_document", "visible_examples"]

_DEMO = "dp02_dc2_catalogs"


@dataclass(frozen=True)
class Example:
    """One example: fragment id, short name, explanation, ADQL text, tables read, and
    tables its text names without reading them (shown only to callers who see those too).

    ``needs``, when given, replaces those two as the stored tables a caller must be able to
    read for the example to be shown: for a query of a view (``ivoa.ObsCore``), the members
    whose rows it finds (the view itself is there for everyone, empty for some)."""

    id: str
    name: str
    description: str
    query: str
    tables: tuple[str, ...]
    mentions: tuple[str, ...] = ()
    needs: tuple[str, ...] | None = None


EXAMPLES: tuple[Example, ...] = (
    Example(
        "cone-search",
        "Cone search around a position",
        "Objects within 0.1° of (RA, Dec) = (62.0°, -37.0°), nearest first. CONTAINS with a "
        "CIRCLE is pruned to the HEALPix partitions the circle touches.",
        "SELECT objectId, coord_ra, coord_dec,\n"
        "       DISTANCE(POINT('ICRS', coord_ra, coord_dec), POINT('ICRS', 62.0, -37.0)) AS dist\n"
        f"FROM {_DEMO}.Object\n"
        "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.1)) = 1\n"
        "ORDER BY dist",
        (f"{_DEMO}.Object",),
    ),
    Example(
        "polygon-count",
        "Count objects in a polygon",
        "How many objects fall inside a quadrilateral on the sky (vertices in degrees).",
        f"SELECT COUNT(*) AS n\nFROM {_DEMO}.Object\n"
        "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec),\n"
        "               POLYGON('ICRS', 60.0, -38.0, 62.0, -38.0, 62.0, -36.0, 60.0, -36.0)) = 1",
        (f"{_DEMO}.Object",),
    ),
    Example(
        "object-by-id",
        "One object by its identifier",
        "Look an object up by objectId (here: the smallest identifier in the table; put the "
        "id of an object from a cone search instead).",
        f"SELECT *\nFROM {_DEMO}.Object\n"
        f"WHERE objectId IN (SELECT TOP 1 objectId FROM {_DEMO}.Object ORDER BY objectId)",
        (f"{_DEMO}.Object",),
    ),
    Example(
        "magnitudes",
        "AB magnitudes of bright objects",
        "Convert cModel fluxes (nJy) to AB magnitudes with scisql_nanojanskyToAbMag and "
        "compute a colour.",
        "SELECT TOP 100 objectId,\n"
        "       scisql_nanojanskyToAbMag(g_cModelFlux) AS g_mag,\n"
        "       scisql_nanojanskyToAbMag(r_cModelFlux) AS r_mag,\n"
        "       scisql_nanojanskyToAbMag(g_cModelFlux) - scisql_nanojanskyToAbMag(r_cModelFlux)"
        " AS g_r\n"
        f"FROM {_DEMO}.Object\n"
        "WHERE detect_isPrimary = 1 AND g_cModelFlux > 0 AND r_cModelFlux > 10000\n"
        "ORDER BY r_mag",
        (f"{_DEMO}.Object",),
    ),
    Example(
        "light-curve",
        "Light curve of objects in a small cone",
        "Forced photometry of every object within 3′ of a position, joined with the CCD "
        "visits to get the epoch of each measurement (Object ⋈ ForcedSource ⋈ CcdVisit).",
        "SELECT o.objectId AS object_id, fs.band, cv.expMidptMJD AS mjd, fs.psfFlux,"
        " fs.psfFluxErr\n"
        f"FROM {_DEMO}.Object AS o\n"
        f"JOIN {_DEMO}.ForcedSource AS fs ON fs.objectId = o.objectId\n"
        f"JOIN {_DEMO}.CcdVisit AS cv ON cv.ccdVisitId = fs.ccdVisitId\n"
        "WHERE CONTAINS(POINT('ICRS', o.coord_ra, o.coord_dec),"
        " CIRCLE('ICRS', 62.0, -37.0, 0.05)) = 1\n"
        "ORDER BY object_id, mjd",
        (f"{_DEMO}.Object", f"{_DEMO}.ForcedSource", f"{_DEMO}.CcdVisit"),
    ),
    Example(
        "source-detections",
        "Single-epoch detections in a cone",
        "Detections on single visit images near a position, with their visit and band.",
        "SELECT sourceId, coord_ra, coord_dec, visit, band, psfFlux\n"
        f"FROM {_DEMO}.Source\n"
        "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.2)) = 1",
        (f"{_DEMO}.Source",),
    ),
    Example(
        "visits-per-band",
        "Visits per band",
        "Aggregate over the Visit table (a table without positions).",
        f"SELECT band, COUNT(*) AS n_visits, AVG(airmass) AS mean_airmass\n"
        f"FROM {_DEMO}.Visit\nGROUP BY band\nORDER BY band",
        (f"{_DEMO}.Visit",),
    ),
    Example(
        "ccd-seeing",
        "Best-seeing CCD images",
        "The CCD visits with the best seeing, with their visit's pointing.",
        "SELECT TOP 20 cv.ccdVisitId, cv.band, cv.seeing, v.ra, v.decl\n"
        f"FROM {_DEMO}.CcdVisit AS cv JOIN {_DEMO}.Visit AS v ON v.visit = cv.visitId\n"
        "ORDER BY seeing",
        (f"{_DEMO}.CcdVisit", f"{_DEMO}.Visit"),
    ),
    Example(
        "obscore-images-at-position",
        "Images covering a position in a band (ObsTAP)",
        "The calexp and deepCoadd images of the demo's image collections whose footprint "
        "(s_region) holds (RA, Dec) = (62.0°, -37.0°), in the band holding 750 nm (LSST i), "
        "oldest first. access_url is each image's DataLink document: the file, a SODA "
        "cutout, a preview and the header.",
        "SELECT obs_id, obs_collection, dataproduct_subtype, t_min, em_min, em_max,\n"
        "       s_ra, s_dec, s_fov, access_url, access_format\n"
        "FROM ivoa.ObsCore\n"
        "WHERE dataproduct_type = 'image'\n"
        "  AND CONTAINS(POINT('ICRS', 62.0, -37.0), s_region) = 1\n"
        "  AND em_min < 7.5e-7 AND em_max > 7.5e-7\n"
        "ORDER BY t_min",
        ("ivoa.ObsCore",),
        needs=("dp02_calexp.obscore", "dp02_deepcoadd.obscore"),
    ),
    Example(
        "tap-schema-columns",
        "Columns of a table (TAP_SCHEMA)",
        "What TAP_SCHEMA says about the columns of the Object table.",
        "SELECT column_name, datatype, unit, ucd, description\n"
        "FROM TAP_SCHEMA.columns\n"
        f"WHERE table_name = '{_DEMO}.Object'\n"
        "ORDER BY column_index",
        ("TAP_SCHEMA.columns",),
        (f"{_DEMO}.Object",),
    ),
    Example(
        "tap-schema-tables",
        "Tables of the service (TAP_SCHEMA)",
        "Every table this service publishes, with its description.",
        "SELECT schema_name, table_name, description\nFROM TAP_SCHEMA.tables\nORDER BY table_index",
        ("TAP_SCHEMA.tables",),
    ),
)


_XHTML = "http://www.w3.org/1999/xhtml"
_DOCTYPE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML+RDFa 1.1//EN"'
    ' "http://www.w3.org/MarkUp/DTD/xhtml-rdfa-2.dtd">'
)


def _example(example: Example) -> Element:
    tables: list[Element | str] = []
    for i, table in enumerate(example.tables):
        tables += [", "] if i else []
        tables.append(Element("span", table, attrs={"property": "table"}))
    return Element(
        "div",
        Element("h2", example.name, attrs={"property": "name"}),
        Element("p", example.description),
        Element("pre", example.query, attrs={"property": "query"}),
        Element("p", "Tables: ", tables),
        Element(
            "p",
            "Capability: ",
            Element("span", "ivo://ivoa.net/std/TAP", attrs={"property": "capability"}),
        ),
        attrs={"typeof": "example", "id": example.id, "resource": f"#{example.id}"},
    )


def visible_examples(visible: Collection[str]) -> list[Example]:
    """The examples whose every table (or every table it :attr:`~Example.needs`) is in
    ``visible`` (``schema.table`` names the caller may read) or is a TAP_SCHEMA table: an
    example must not name a table the caller cannot see, nor be shown to find nothing."""
    names = set(visible)

    def readable(table: str) -> bool:
        return table in names or table.startswith(f"{TAP_SCHEMA}.")

    def shown(example: Example) -> bool:
        needs = example.needs
        if needs is None:
            needs = (*example.tables, *example.mentions)
        return all(readable(t) for t in needs)

    return [e for e in EXAMPLES if shown(e)]


def examples_document(
    title: str = "skyvault TAP examples", *, visible: Collection[str] | None = None
) -> str:
    """The DALI-examples XHTML document; with ``visible``, only :func:`visible_examples`."""
    shown = EXAMPLES if visible is None else visible_examples(visible)
    root = Element(
        "html",
        Element("head", Element("title", title)),
        Element(
            "body",
            Element("h1", title),
            Element(
                "div",
                (_example(e) for e in shown),
                attrs={"vocab": "http://www.ivoa.net/rdf/examples#"},
            ),
        ),
        attrs={"version": "XHTML+RDFa 1.1"},
    )
    return xml_document(root, {"": _XHTML}, doctype=_DOCTYPE)
