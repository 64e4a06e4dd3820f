"""VOSI documents: availability, capabilities (with TAPRegExt) and tables (VOSI-tables 1.1).

Plain functions from metadata to XML text; the handlers only choose the base URL.
Standard identifiers are written exactly as the standards spell them
(``ivo://ivoa.net/std/TAP``, ``...VOSI#tables-1.1``, ``...TAPRegExt#features-udf``): IVOIDs
compare case-insensitively, but the TAPRegExt schema fixes ``standardID`` of a TableAccess
capability to ``ivo://ivoa.net/std/TAP`` and validators (taplint) match case-sensitively.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby

from skyvault.adql import LanguageFeature
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.catalog.tap_schema import ForeignKey
from skyvault.config import Settings
from skyvault.formats._xml import escape_attribute, escape_text
from skyvault.formats.output import OutputFormat

__all__ = ["availability_document", "capabilities_document", "table_document", "tableset_document"]

_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_VS = "http://www.ivoa.net/xml/VODataService/v1.1"
_TR = "http://www.ivoa.net/xml/TAPRegExt/v1.0"
_TR_ID = "ivo://ivoa.net/std/TAPRegExt"
#: TAP_UPLOAD methods (service/uploads.py): multipart ``param:`` and http(s) URLs.
_UPLOAD_METHODS = ("inline", "http", "https")


# The one XML escaping (formats/_xml): metadata comes from ingested files and may hold
# characters XML 1.0 cannot carry, which html.escape would let through.
_text = escape_text
_attr = escape_attribute


def _element(name: str, value: str | None) -> str:
    return f"<{name}>{_text(value)}</{name}>" if value else ""


def availability_document(available: bool, note: str) -> str:
    """The VOSI-availability document."""
    return (
        f'{_XML}<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
        f"  <vosi:available>{'true' if available else 'false'}</vosi:available>\n"
        f"  <vosi:note>{_text(note)}</vosi:note>\n"
        "</vosi:availability>\n"
    )


def _simple_capability(standard_id: str, url: str, version: str | None = None) -> str:
    version_attr = f' version="{version}"' if version else ""
    return (
        f'  <capability standardID="{_attr(standard_id)}">\n'
        f'    <interface xsi:type="vs:ParamHTTP"{version_attr}>\n'
        f'      <accessURL use="full">{_text(url)}</accessURL>\n'
        "    </interface>\n"
        "  </capability>\n"
    )


def _language(features: Sequence[LanguageFeature]) -> str:
    parts = [
        "    <language>\n      <name>ADQL</name>\n",
        '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>\n',
        '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>\n',
        "      <description>ADQL 2.1 (ADQL 2.0 queries are accepted too)</description>\n",
    ]
    ordered = sorted(features, key=lambda f: f.type)
    for feature_type, group in groupby(ordered, key=lambda f: f.type):
        parts.append(f'      <languageFeatures type="{_attr(feature_type)}">\n')
        for feature in group:
            parts.append("        <feature>")
            parts.append(_element("form", feature.form))
            parts.append(_element("description", feature.description))
            parts.append("</feature>\n")
        parts.append("      </languageFeatures>\n")
    parts.append("    </language>\n")
    return "".join(parts)


def _output_format(fmt: OutputFormat) -> str:
    ivo_id = f' ivo-id="{_attr(fmt.ivo_id)}"' if fmt.ivo_id else ""
    return (
        f"    <outputFormat{ivo_id}>\n"
        f"      <mime>{_text(fmt.mime)}</mime>\n"
        f"      <alias>{_text(fmt.name)}</alias>\n"
        "    </outputFormat>\n"
    )


def capabilities_document(
    base_url: str,
    settings: Settings,
    formats: Iterable[OutputFormat],
    features: Sequence[LanguageFeature],
) -> str:
    """The VOSI-capabilities document of the TAP service at ``base_url``.

    The TAPRegExt limits describe async jobs, the service's jobs in UWS terms:
    ``retentionPeriod`` is the time from a job's creation to its destruction
    (``job_destruction_days``, at most ``job_destruction_max_days``) and
    ``executionDuration`` the run time a job gets (``job_execution_duration``, at most
    ``job_execution_duration_max``), both in seconds.  The sync time-out
    (``query_timeout``) has no place there; it is stated in the error when a query passes it.
    """
    base = base_url.rstrip("/")
    day = 24 * 3600
    return "".join(
        [
            _XML,
            '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"'
            f' xmlns:xsi="{_XSI}" xmlns:vs="{_VS}" xmlns:tr="{_TR}">\n',
            _simple_capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities"),
            _simple_capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability"),
            _simple_capability("ivo://ivoa.net/std/VOSI#tables-1.1", f"{base}/tables", "1.1"),
            _simple_capability("ivo://ivoa.net/std/DALI#examples", f"{base}/examples"),
            '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n',
            '    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">\n',
            f'      <accessURL use="base">{_text(base)}</accessURL>\n',
            "    </interface>\n",
            _language(features),
            *(_output_format(f) for f in formats),
            *(f'    <uploadMethod ivo-id="{_TR_ID}#upload-{m}"/>\n' for m in _UPLOAD_METHODS),
            "    <retentionPeriod>\n",
            f"      <default>{int(settings.job_destruction_days * day)}</default>\n",
            f"      <hard>{int(settings.job_destruction_max_days * day)}</hard>\n",
            "    </retentionPeriod>\n",
            "    <executionDuration>\n",
            f"      <default>{settings.job_execution_duration}</default>\n",
            f"      <hard>{settings.job_execution_duration_max}</hard>\n",
            "    </executionDuration>\n",
            "    <outputLimit>\n",
            f'      <default unit="row">{settings.maxrec_default}</default>\n',
            f'      <hard unit="row">{settings.maxrec_limit}</hard>\n',
            "    </outputLimit>\n",
            "    <uploadLimit>\n",
            f'      <hard unit="byte">{settings.max_upload_bytes}</hard>\n',
            "    </uploadLimit>\n",
            "  </capability>\n",
            "</vosi:capabilities>\n",
        ]
    )


def _column(col: ColumnMeta, primary_key: str | None) -> str:
    arraysize = f' arraysize="{_attr(col.arraysize)}"' if col.arraysize else ""
    xtype = f' extendedType="{_attr(col.xtype)}"' if col.xtype else ""
    flags = []
    if col.indexed:
        flags.append("indexed")
    if primary_key and col.name == primary_key:
        flags.append("primary")
    if col.nullable and not (primary_key and col.name == primary_key):
        flags.append("nullable")
    std = ' std="true"' if col.std else ""
    return "".join(
        [
            f"      <column{std}>",
            _element("name", col.name),
            _element("description", col.description),
            _element("unit", col.unit),
            _element("ucd", col.ucd),
            _element("utype", col.utype),
            f'<dataType xsi:type="vs:VOTableType"{arraysize}{xtype}>',
            f"{_text(col.datatype)}</dataType>",
            *(f"<flag>{f}</flag>" for f in flags),
            "</column>\n",
        ]
    )


def _foreign_key(key: ForeignKey) -> str:
    pairs = "".join(
        f"<fkColumn>{_element('fromColumn', a)}{_element('targetColumn', b)}</fkColumn>"
        for a, b in key.columns
    )
    return (
        f"      <foreignKey>{_element('targetTable', key.target_table)}{pairs}"
        f"{_element('description', key.description)}</foreignKey>\n"
    )


def _table(meta: TableMeta, *, columns: bool, keys: Sequence[ForeignKey] = ()) -> str:
    body = [
        '    <table type="table">\n',
        f"      {_element('name', meta.qualified_name)}\n",
    ]
    if meta.description:
        body.append(f"      {_element('description', meta.description)}\n")
    if columns:
        body.extend(_column(c, meta.primary_key) for c in meta.columns)
        body.extend(_foreign_key(k) for k in keys if k.from_table == meta.qualified_name)
    body.append("    </table>\n")
    return "".join(body)


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
    parts = [
        _XML,
        f'<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" xmlns:xsi="{_XSI}"'
        f' xmlns:vs="{_VS}">\n',
    ]
    descriptions = schema_descriptions or {}
    for schema, group in groupby(tables, key=lambda m: m.schema):
        parts.append(f"  <schema>\n    {_element('name', schema)}\n")
        if descriptions.get(schema):
            parts.append(f"    {_element('description', descriptions[schema])}\n")
        parts.extend(_table(m, columns=columns, keys=keys) for m in group)
        parts.append("  </schema>\n")
    parts.append("</vosi:tableset>\n")
    return "".join(parts)


def table_document(meta: TableMeta, keys: Sequence[ForeignKey] = ()) -> str:
    """The VOSI-tables document of one table (``/tables/{schema.table}``)."""
    inner = _table(meta, columns=True, keys=keys)
    inner = inner.replace('    <table type="table">', "", 1).rsplit("    </table>", 1)[0]
    return (
        f'{_XML}<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"'
        f' xmlns:xsi="{_XSI}" xmlns:vs="{_VS}" type="table">{inner}</vosi:table>\n'
    )
