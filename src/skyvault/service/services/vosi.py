"""VOSI documents: availability, capabilities (with TAPRegExt) and tables (VOSI-tables 1.1).

Plain functions from metadata to XML text, built with the one XML writer
(:mod:`skyvault.formats._xml`: metadata comes from ingested files and may hold anything);
the handlers only choose the base URL.
Standard identifiers are written exactly as the standards spell them
(``ivo://ivoa.net/std/TAP``, ``...VOSI#tables-1.1``, ``...TAPRegExt#features-udf``): IVOIDs
compare case-insensitively, but the TAPRegExt schema fixes ``standardID`` of a TableAccess
capability to ``ivo://ivoa.net/std/TAP`` and validators (taplint) match case-sensitively.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import groupby

from skyvault.adql import LanguageFeature
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.catalog.tap_schema import ForeignKey
from skyvault.config import Settings
from skyvault.formats._xml import Element, xml_document
from skyvault.formats.output import OutputFormat
from skyvault.service.services.sia import sia_capability

__all__ = [
    "TablesetCache",
    "availability_document",
    "capabilities_document",
    "table_document",
    "tableset_document",
]

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_VS = "http://www.ivoa.net/xml/VODataService/v1.1"
_TR = "http://www.ivoa.net/xml/TAPRegExt/v1.0"
_AVAILABILITY = {"vosi": "http://www.ivoa.net/xml/VOSIAvailability/v1.0"}
_CAPABILITIES = {
    "vosi": "http://www.ivoa.net/xml/VOSICapabilities/v1.0",
    "xsi": _XSI,
    "vs": _VS,
    "tr": _TR,
}
_TABLES = {"vosi": "http://www.ivoa.net/xml/VOSITables/v1.0", "xsi": _XSI, "vs": _VS}
_TR_ID = "ivo://ivoa.net/std/TAPRegExt"
#: TAP_UPLOAD methods (service/uploads.py): multipart ``param:`` and http(s) URLs.
_UPLOAD_METHODS = ("inline", "http", "https")


def _optional(tag: str, value: str | None) -> Element | None:
    """``<tag>value</tag>``, or nothing for a missing or empty value."""
    return Element(tag, value) if value else None


def availability_document(available: bool, note: str) -> str:
    """The VOSI-availability document."""
    root = Element(
        "vosi:availability",
        Element("vosi:available", "true" if available else "false"),
        Element("vosi:note", note),
    )
    return xml_document(root, _AVAILABILITY)


def _simple_capability(standard_id: str, url: str, version: str | None = None) -> Element:
    return Element(
        "capability",
        Element(
            "interface",
            Element("accessURL", url, attrs={"use": "full"}),
            attrs={"xsi:type": "vs:ParamHTTP", "version": version},
        ),
        attrs={"standardID": standard_id},
    )


_VOSI_ID = "ivo://ivoa.net/std/VOSI"
#: youcat's prototype capabilities: (standardID fragment, path under the TAP base URL).
_YOUCAT = (
    ("table-update-async-1.x", "table-update"),
    ("table-load-sync-1.x", "load"),
    ("table-permissions-1.x", "permissions"),
)


def _user_table_capability(standard_id: str, url: str) -> Element:
    """A capability of the user-table API: its base URL.

    youcat also names a security method (SSO 2's ``ivo://ivoa.net/sso#token``); none is
    named here, as for every other interface of this service (``docs/auth.md``: tokens as
    Bearer or Basic, both on every endpoint), and STILTS 3.4.7's taplint warns about that
    identifier (W-CAP-CPSM).  pyvo finds the endpoints by their standardID alone."""
    return Element(
        "capability",
        Element(
            "interface",
            Element("accessURL", url, attrs={"use": "base"}),
            attrs={"xsi:type": "vs:ParamHTTP", "role": "std"},
        ),
        attrs={"standardID": standard_id},
    )


def _language(features: Sequence[LanguageFeature]) -> Element:
    ordered = sorted(features, key=lambda f: f.type)
    return Element(
        "language",
        Element("name", "ADQL"),
        Element("version", "2.1", attrs={"ivo-id": "ivo://ivoa.net/std/ADQL#v2.1"}),
        Element("version", "2.0", attrs={"ivo-id": "ivo://ivoa.net/std/ADQL#v2.0"}),
        Element("description", "ADQL 2.1 (ADQL 2.0 queries are accepted too)"),
        (
            Element(
                "languageFeatures",
                (
                    Element(
                        "feature",
                        _optional("form", f.form),
                        _optional("description", f.description),
                    )
                    for f in group
                ),
                attrs={"type": feature_type},
            )
            for feature_type, group in groupby(ordered, key=lambda f: f.type)
        ),
    )


def _output_format(fmt: OutputFormat) -> Element:
    return Element(
        "outputFormat",
        Element("mime", fmt.mime),
        Element("alias", fmt.name),
        attrs={"ivo-id": fmt.ivo_id or None},
    )


def _limits(tag: str, default: int, hard: int, unit: str | None = None) -> Element:
    return Element(
        tag,
        Element("default", str(default), attrs={"unit": unit}),
        Element("hard", str(hard), attrs={"unit": unit}),
    )


def capabilities_document(
    base_url: str,
    settings: Settings,
    formats: Iterable[OutputFormat],
    features: Sequence[LanguageFeature],
    data_models: Sequence[tuple[str, str]] = (),
) -> str:
    """The VOSI-capabilities document of the TAP service at ``base_url``.

    ``data_models`` are the ``(ivo-id, name)`` of the data models its tables follow
    (TAPRegExt ``dataModel``: ObsCore when the archive holds images).

    The TAPRegExt limits describe async jobs, the service's jobs in UWS terms:
    ``retentionPeriod`` is the time from a job's creation to its destruction
    (``job_destruction_days``, at most ``job_destruction_max_days``) and
    ``executionDuration`` the run time a job gets (``job_execution_duration``, at most
    ``job_execution_duration_max``), both in seconds.  The sync time-out
    (``query_timeout``) has no place there; it is stated in the error when a query passes it.
    """
    base = base_url.rstrip("/")
    day = 24 * 3600
    tap = Element(
        "capability",
        Element(
            "interface",
            Element("accessURL", base, attrs={"use": "base"}),
            attrs={"xsi:type": "vs:ParamHTTP", "role": "std", "version": "1.1"},
        ),
        (Element("dataModel", name, attrs={"ivo-id": ivo_id}) for ivo_id, name in data_models),
        _language(features),
        (_output_format(f) for f in formats),
        (
            Element("uploadMethod", attrs={"ivo-id": f"{_TR_ID}#upload-{m}"})
            for m in _UPLOAD_METHODS
        ),
        _limits(
            "retentionPeriod",
            int(settings.job_destruction_days * day),
            int(settings.job_destruction_max_days * day),
        ),
        _limits(
            "executionDuration",
            settings.job_execution_duration,
            settings.job_execution_duration_max,
        ),
        _limits("outputLimit", settings.maxrec_default, settings.maxrec_limit, "row"),
        Element(
            "uploadLimit", Element("hard", str(settings.max_upload_bytes), attrs={"unit": "byte"})
        ),
        attrs={"standardID": "ivo://ivoa.net/std/TAP", "xsi:type": "tr:TableAccess"},
    )
    root = Element(
        "vosi:capabilities",
        _simple_capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities"),
        _simple_capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability"),
        _simple_capability("ivo://ivoa.net/std/VOSI#tables-1.1", f"{base}/tables", "1.1"),
        _simple_capability("ivo://ivoa.net/std/DALI#examples", f"{base}/examples"),
        tap,
        # image access (service/handlers/images.py)
        _simple_capability("ivo://ivoa.net/std/DataLink#links-1.1", f"{base}/datalink/links"),
        _simple_capability("ivo://ivoa.net/std/SODA#sync-1.0", f"{base}/soda/sync"),
        _simple_capability("ivo://ivoa.net/std/SODA#async-1.0", f"{base}/soda/async"),
        sia_capability(f"{base}/sia/query"),  # service/handlers/sia.py
        # user tables, as CADC youcat advertises them (service/handlers/workspace.py)
        *(_user_table_capability(f"{_VOSI_ID}#{name}", f"{base}/{path}") for name, path in _YOUCAT),
    )
    return xml_document(root, _CAPABILITIES)


def _column(col: ColumnMeta, primary_key: str | None) -> Element:
    primary = bool(primary_key) and col.name == primary_key
    flags = [
        *(["indexed"] if col.indexed else []),
        *(["primary"] if primary else []),
        *(["nullable"] if col.nullable and not primary else []),
    ]
    return Element(
        "column",
        _optional("name", col.name),
        _optional("description", col.description),
        _optional("unit", col.unit),
        _optional("ucd", col.ucd),
        _optional("utype", col.utype),
        Element(
            "dataType",
            col.datatype,
            attrs={
                "xsi:type": "vs:VOTableType",
                "arraysize": col.arraysize or None,
                "extendedType": col.xtype or None,
            },
        ),
        (Element("flag", f) for f in flags),
        attrs={"std": True if col.std else None},
    )


def _foreign_key(key: ForeignKey) -> Element:
    return Element(
        "foreignKey",
        _optional("targetTable", key.target_table),
        (
            Element("fkColumn", _optional("fromColumn", a), _optional("targetColumn", b))
            for a, b in key.columns
        ),
        _optional("description", key.description),
    )


def _table_content(
    meta: TableMeta, *, columns: bool, keys: Sequence[ForeignKey]
) -> list[Element | None]:
    """What a ``table`` element holds: name, description, columns and foreign keys."""
    content = [_optional("name", meta.qualified_name), _optional("description", meta.description)]
    if columns:
        content.extend(_column(c, meta.primary_key) for c in meta.columns)
        content.extend(_foreign_key(k) for k in keys if k.from_table == meta.qualified_name)
    return content


def tableset_document(
    tables: Sequence[TableMeta],
    *,
    columns: bool = True,
    keys: Sequence[ForeignKey] = (),
    schema_descriptions: dict[str, str] | None = None,
) -> str:
    """The VOSI-tables ``tableset`` of the published ``tables`` and their foreign ``keys``.

    ``columns=False`` leaves columns and keys out (``detail=min``).
    """
    descriptions = schema_descriptions or {}
    root = Element(
        "vosi:tableset",
        (
            Element(
                "schema",
                Element("name", schema),
                _optional("description", descriptions.get(schema)),
                (
                    Element(
                        "table",
                        _table_content(m, columns=columns, keys=keys),
                        attrs={"type": "table"},
                    )
                    for m in group
                ),
            )
            for schema, group in groupby(tables, key=lambda m: m.schema)
        ),
    )
    return xml_document(root, _TABLES)


def table_document(meta: TableMeta, keys: Sequence[ForeignKey] = ()) -> str:
    """The VOSI-tables document of one table (``/tables/{schema.table}``)."""
    root = Element(
        "vosi:table", _table_content(meta, columns=True, keys=keys), attrs={"type": "table"}
    )
    return xml_document(root, _TABLES)


class TablesetCache:
    """``/tables`` documents per list of visible tables, thread-safe.

    The document is a function of the caller's visible tables alone (their metadata, the
    TAP_SCHEMA tables describing them, the foreign keys between them) and of ``detail``.
    An entry is found by the identities of those metadata objects — the registry hands out
    the same objects until a table changes, and a caller's list changes with their access —
    and holds them, so an identity cannot be reused by other metadata while cached.  Callers
    sharing access share a document; one with other access never meets it.  At most
    ``max_entries`` documents are kept, least recently used dropped first.
    """

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._documents: OrderedDict[
            tuple[tuple[int, ...], bool], tuple[tuple[TableMeta, ...], tuple[str, int]]
        ] = OrderedDict()
        self.builds = 0

    def get(self, tables: Sequence[TableMeta], columns: bool) -> tuple[str, int] | None:
        """The document of ``tables`` (``columns``: not ``detail=min``) and how many tables
        it describes, if cached."""
        key = (tuple(map(id, tables)), columns)
        with self._lock:
            found = self._documents.get(key)
            if found is None or not all(a is b for a, b in zip(found[0], tables, strict=True)):
                return None
            self._documents.move_to_end(key)
            return found[1]

    def put(self, tables: Sequence[TableMeta], columns: bool, document: tuple[str, int]) -> None:
        """Keep ``document`` (as :meth:`get` returns it) for ``tables``."""
        key = (tuple(map(id, tables)), columns)
        with self._lock:
            self._documents[key] = (tuple(tables), document)
            self._documents.move_to_end(key)
            self.builds += 1
            while len(self._documents) > self.max_entries:
                self._documents.popitem(last=False)
