"""The DataLink 1.1 ``{links}`` document of images: a VOTable of links per ID, with the SODA
service descriptor that ``#cutout`` rows point to.

Per image (:class:`LinkSet`): ``#this`` (the FITS file, its size, ``application/fits``),
``#preview`` (a PNG), ``#detached-header`` (the header as text: the header service) and
``#cutout`` (``service_def`` naming the SODA {sync} descriptor, a ``RESOURCE type="meta"
utype="adhoc:service"`` whose ``ID`` input parameter takes its value from the row's ID).
An ID that names no image the caller may see gets one ``#this`` row with
``error_message`` ``NotFoundFault: ...`` (DataLink §3.2.5): not an HTTP error.  Rows are in
the order of the IDs.  Written with the one XML writer (:mod:`skyvault.formats._xml`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skyvault.formats._xml import Element, xml_document
from skyvault.formats.votable import VOTABLE_NAMESPACE
from skyvault.images.soda import INPUT_PARAMS, POL_STATES

__all__ = [
    "DATALINK_STANDARD_ID",
    "DATALINK_TYPE",
    "SODA_SYNC_STANDARD_ID",
    "Link",
    "links_document",
]

DATALINK_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.1"
SODA_SYNC_STANDARD_ID = "ivo://ivoa.net/std/SODA#sync-1.0"
#: The media type of a {links} response.
DATALINK_TYPE = "application/x-votable+xml;content=datalink"

_ID_FIELD = "dl_id"
_SODA_SERVICE = "soda_sync"

#: (name, datatype, ucd, unit) of DataLink 1.1's columns (§3.2), in order.
_FIELDS = (
    ("ID", "char", "meta.id;meta.main", None),
    ("access_url", "char", "meta.ref.url", None),
    ("service_def", "char", "meta.ref", None),
    ("error_message", "char", "meta.code.error", None),
    ("semantics", "char", "meta.code", None),
    ("description", "char", "meta.note", None),
    ("content_type", "char", "meta.code.mime", None),
    ("content_length", "long", "phys.size;meta.file", "byte"),
)


@dataclass(frozen=True)
class Link:
    """One row: exactly one of ``access_url``, ``service_def``, ``error_message``."""

    id: str
    semantics: str
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None


def image_links(did: str, file_url: str, size: int, obs_id: str) -> list[Link]:
    """The links of one image whose file is served at ``file_url`` (``.../preview.png``
    and ``.../header.txt`` beside it)."""
    return [
        Link(did, "#this", access_url=file_url, description=f"The FITS image {obs_id}",
             content_type="application/fits", content_length=size),
        Link(did, "#preview", access_url=f"{file_url}/preview.png",
             description=f"A PNG preview of {obs_id} (zscale, linear)",
             content_type="image/png"),
        Link(did, "#detached-header", access_url=f"{file_url}/header.txt",
             description=f"The FITS header of {obs_id} as text, one card a line",
             content_type="text/plain"),
        Link(did, "#cutout", service_def=_SODA_SERVICE,
             description=f"A cutout of {obs_id} (SODA: CIRCLE, POLYGON, POS, BAND, TIME)",
             content_type="application/fits"),
    ]  # fmt: skip


def not_found(did: str) -> Link:
    """The error row of an ID that names no image the caller may see."""
    return Link(
        did,
        "#this",
        error_message=f"NotFoundFault: no image has the ID {did}",
    )


def _cell(value: str | int | None) -> Element:
    return Element("TD", None if value is None else str(value))


def _soda_descriptor(soda_url: str) -> Element:
    params = []
    for p in INPUT_PARAMS:
        options = None
        if p.name == "POL":
            options = Element("VALUES", (Element("OPTION", attrs={"value": s}) for s in POL_STATES))
        params.append(
            Element(
                "PARAM",
                Element("DESCRIPTION", p.description),
                options,
                attrs={
                    "name": p.name,
                    "datatype": p.datatype,
                    "arraysize": p.arraysize,
                    "ucd": p.ucd,
                    "unit": p.unit,
                    "xtype": p.xtype,
                    "ref": _ID_FIELD if p.name == "ID" else None,
                    "value": "",
                },
            )
        )
    return Element(
        "RESOURCE",
        Element("DESCRIPTION", "SODA synchronous cutouts of the images"),
        Element(
            "PARAM",
            attrs={"name": "standardID", "datatype": "char", "arraysize": "*",
                   "value": SODA_SYNC_STANDARD_ID},
        ),
        Element(
            "PARAM",
            attrs={"name": "accessURL", "datatype": "char", "arraysize": "*",
                   "ucd": "meta.ref.url", "value": soda_url},
        ),
        Element("GROUP", params, attrs={"name": "inputParams"}),
        attrs={"type": "meta", "utype": "adhoc:service", "ID": _SODA_SERVICE},
    )  # fmt: skip


def links_document(links: Sequence[Link], soda_url: str) -> str:
    """The {links} VOTable of ``links`` (one row each, in order)."""
    fields = [
        Element(
            "FIELD",
            attrs={
                "name": name,
                "datatype": datatype,
                "arraysize": "*" if datatype == "char" else None,
                "ucd": ucd,
                "unit": unit,
                "ID": _ID_FIELD if name == "ID" else None,
            },
        )
        for name, datatype, ucd, unit in _FIELDS
    ]
    rows = [
        Element(
            "TR",
            _cell(link.id),
            _cell(link.access_url),
            _cell(link.service_def),
            _cell(link.error_message),
            _cell(link.semantics),
            _cell(link.description),
            _cell(link.content_type),
            _cell(link.content_length),
        )
        for link in links
    ]
    results = Element(
        "RESOURCE",
        Element("INFO", attrs={"name": "QUERY_STATUS", "value": "OK"}),
        Element("INFO", attrs={"name": "standardID", "value": DATALINK_STANDARD_ID}),
        Element("TABLE", fields, Element("DATA", Element("TABLEDATA", rows))),
        attrs={"type": "results"},
    )
    cutouts = any(link.service_def == _SODA_SERVICE for link in links)
    root = Element(
        "VOTABLE",
        results,
        _soda_descriptor(soda_url) if cutouts else None,
        attrs={"version": "1.4"},
    )
    return xml_document(root, {"": VOTABLE_NAMESPACE})
