"""Table definitions: the columns of a user table, from a VOSI ``table`` document or a
VOTable, and the Arrow type each is stored as.

A definition names each column with its VOTable ``datatype`` (``vs:VOTableType``; TAP types,
``vs:TAPType``, are accepted too), ``arraysize``, ``xtype``, unit, UCD, utype, description and
flags (``indexed``, ``principal``, ``nullable``, ``std``).  What is stored:

============================ ======================== =================================
datatype                     arraysize                Arrow type
============================ ======================== =================================
boolean                      (none or 1)              bool
unsignedByte/short/int/long  (none or 1)              uint8/int16/int32/int64
float/double                 (none or 1)              float32/float64
any of those                 ``n``                    fixed_size_list<n>
any of those                 ``*``, ``n*``            list
char, unicodeChar            any                      string
char with xtype timestamp    any                      timestamp[us] (DALI timestamp)
============================ ======================== =================================

``bit``, ``floatComplex``, ``doubleComplex`` and multidimensional arrays (``2x3``) are
refused: the query engine has no type for them.  Every refusal is a
:class:`~skyvault.errors.WorkspaceError` naming the column and saying what is accepted.

The XML is parsed by the standard library after refusing any DOCTYPE or entity declaration
(the way to an entity-expansion bomb or an external entity); VOTables then go to astropy.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from skyvault.catalog.metadata import ColumnMeta, normalize_unit
from skyvault.errors import WorkspaceError
from skyvault.workspace.names import HEALPIX_COLUMN, MAX_COLUMNS, check_column_name

__all__ = [
    "VOTABLE_DATATYPES",
    "TableDefinition",
    "arrow_type",
    "column",
    "definition_from_arrow",
    "parse_definition",
    "parse_vosi_table",
    "parse_votable_definition",
    "storage_schema",
]

#: VOTable datatypes a user column may have, and the Arrow type of one value.
VOTABLE_DATATYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "unsignedByte": pa.uint8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "unicodeChar": pa.string(),
}
_REFUSED_DATATYPES = {"bit", "floatComplex", "doubleComplex"}

#: TAP types (VODataService ``vs:TAPType``): the VOTable datatype, arraysize and xtype.
_TAP_TYPES: dict[str, tuple[str, str | None, str | None]] = {
    "BOOLEAN": ("boolean", None, None),
    "SMALLINT": ("short", None, None),
    "INTEGER": ("int", None, None),
    "BIGINT": ("long", None, None),
    "REAL": ("float", None, None),
    "DOUBLE": ("double", None, None),
    "CHAR": ("char", "*", None),
    "VARCHAR": ("char", "*", None),
    "CLOB": ("char", "*", None),
    "TIMESTAMP": ("char", "*", "timestamp"),
}

#: Longest description (of the table or of a column) a definition may give, in characters.
MAX_DESCRIPTION_CHARS = 8192
#: Longest unit, UCD, utype or xtype a definition may give, in characters.
MAX_TERM_CHARS = 512

_ARRAYSIZE = re.compile(r"(\d+)?(\*)?")
_DATATYPE_HINT = "use one of " + ", ".join(VOTABLE_DATATYPES)


@dataclass(frozen=True)
class TableDefinition:
    """What a create request defines: the columns (in order), the table's description, and
    rows to load at once (a VOTable definition that carries data; a query result saved as
    a table), if any: the table is then published with them, in one step."""

    columns: tuple[ColumnMeta, ...]
    description: str | None = None
    rows: pa.Table | pa.RecordBatchReader | None = None


def definition_from_arrow(
    schema: pa.Schema,
    described: Sequence[ColumnMeta] = (),
    *,
    description: str | None = None,
    rows: pa.Table | pa.RecordBatchReader | None = None,
) -> TableDefinition:
    """A definition for rows of Arrow ``schema`` (a query result, a file), keeping the
    unit, UCD, utype, description, xtype and flags of the ``described`` column of the same
    name (a result's metadata).  A column whose type has no stored equivalent, or whose name
    is not a plain identifier, is a :class:`WorkspaceError` naming it."""
    from skyvault.catalog.metadata import votable_type

    known = {c.name: c for c in described}
    columns = []
    for field in schema:
        if field.name == HEALPIX_COLUMN:
            continue
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            raise WorkspaceError(
                f"column {field.name} holds binary values, which a table cannot store",
                hint="leave the column out, or convert it to text",
            )
        try:
            datatype, arraysize, xtype = votable_type(field.type)
        except Exception:
            raise WorkspaceError(
                f"column {field.name}: values of type {field.type} cannot be stored",
                hint="leave the column out, or cast it to a number or text",
            ) from None
        meta = known.get(field.name)
        columns.append(
            column(
                field.name,
                datatype,
                arraysize=arraysize,
                xtype=(meta.xtype if meta else None) or xtype,
                unit=meta.unit if meta else None,
                ucd=meta.ucd if meta else None,
                utype=meta.utype if meta else None,
                description=meta.description if meta else None,
                principal=meta.principal if meta else False,
                indexed=meta.indexed if meta else False,
            )
        )
    return TableDefinition(_check_columns(columns), description, rows)


def arrow_type(col: ColumnMeta) -> pa.DataType:
    """The Arrow type column ``col`` is stored as (the table in the module docstring)."""
    datatype = col.datatype
    if datatype in _REFUSED_DATATYPES:
        raise WorkspaceError(
            f"column {col.name}: datatype {datatype} is not supported", hint=_DATATYPE_HINT
        )
    if datatype not in VOTABLE_DATATYPES:
        raise WorkspaceError(
            f"column {col.name}: {datatype!r} is not a VOTable datatype", hint=_DATATYPE_HINT
        )
    value = VOTABLE_DATATYPES[datatype]
    if datatype in ("char", "unicodeChar"):
        if (col.xtype or "").lower() == "timestamp":
            return pa.timestamp("us")
        return pa.string()
    size = (col.arraysize or "").strip()
    if size in ("", "1"):
        return value
    match = _ARRAYSIZE.fullmatch(size)
    if match is None or size == "":
        raise WorkspaceError(
            f"column {col.name}: arraysize {size!r} is not supported",
            hint="give one dimension: a number (fixed length), * or n* (variable length)",
        )
    number, star = match.groups()
    if datatype == "boolean":
        raise WorkspaceError(
            f"column {col.name}: arrays of boolean are not supported",
            hint="store the flags as an array of unsignedByte",
        )
    if star:
        return pa.list_(value)
    assert number is not None
    if int(number) < 1:
        raise WorkspaceError(f"column {col.name}: arraysize must be at least 1")
    return pa.list_(value, int(number))


def column(
    name: str,
    datatype: str,
    *,
    arraysize: str | None = None,
    xtype: str | None = None,
    unit: str | None = None,
    ucd: str | None = None,
    utype: str | None = None,
    description: str | None = None,
    indexed: bool = False,
    principal: bool = False,
    std: bool = False,
    nullable: bool = True,
) -> ColumnMeta:
    """A checked column definition (name, datatype, arraysize) as stored metadata."""
    check_column_name(name)
    meta = ColumnMeta(
        name=name,
        datatype=datatype,
        arraysize=(arraysize or None)
        if datatype not in ("char", "unicodeChar")
        else (arraysize or "*"),
        xtype=xtype or None,
        unit=normalize_unit(unit, name) or None if unit else None,
        ucd=ucd or None,
        utype=utype or None,
        description=" ".join(description.split()) if description else None,
        principal=principal,
        indexed=indexed,
        std=std,
        nullable=nullable,
    )
    kind = arrow_type(meta)
    return meta.updated(arrow_type=str(kind))


def storage_schema(columns: Sequence[ColumnMeta]) -> pa.Schema:
    """The Arrow schema a table with ``columns`` is stored with."""
    return pa.schema([pa.field(c.name, arrow_type(c), nullable=True) for c in columns])


def _check_columns(columns: Sequence[ColumnMeta]) -> tuple[ColumnMeta, ...]:
    if not columns:
        raise WorkspaceError(
            "the table definition has no columns", hint="define at least one column"
        )
    if len(columns) > MAX_COLUMNS:
        raise WorkspaceError(
            f"the table definition has {len(columns)} columns; at most {MAX_COLUMNS} are allowed"
        )
    seen: dict[str, str] = {}
    for col in columns:
        folded = col.name.lower()
        if folded in seen:
            raise WorkspaceError(
                f"two columns are named {col.name!r}"
                if seen[folded] == col.name
                else f"columns {seen[folded]!r} and {col.name!r} differ only in case",
                hint="give every column its own name (names are compared without case)",
            )
        seen[folded] = col.name
    return tuple(c.updated(column_index=i) for i, c in enumerate(columns))


def _check_lengths(definition: TableDefinition) -> TableDefinition:
    """``definition`` unless a description or a term is longer than the limits (they are
    published in every ``/tables`` document and TAP_SCHEMA row): a WorkspaceError naming it."""
    texts: list[tuple[str, str | None, int]] = [
        ("the table's description", definition.description, MAX_DESCRIPTION_CHARS)
    ]
    for col in definition.columns:
        texts.append(
            (f"the description of column {col.name}", col.description, MAX_DESCRIPTION_CHARS)
        )
        for what in ("unit", "ucd", "utype", "xtype"):
            texts.append((f"the {what} of column {col.name}", getattr(col, what), MAX_TERM_CHARS))
    for what, text, limit in texts:
        if text is not None and len(text) > limit:
            raise WorkspaceError(
                f"{what} is {len(text):,} characters long; at most {limit:,} are accepted",
                hint="shorten it (a description says what the values are, in a few sentences)",
            )
    return definition


def _refuse_declarations(body: bytes, what: str) -> None:
    head = body[:65536].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise WorkspaceError(
            f"the {what} declares a DOCTYPE or XML entities, which are not accepted",
            hint="send the document without a DOCTYPE",
        )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            text = (child.text or "").strip()
            return text or None
    return None


def parse_vosi_table(body: bytes, *, computed: bool = False) -> TableDefinition:
    """The definition in a VOSI ``table`` document (VOSITables 1.x / VODataService 1.x).

    The root is a ``table`` element in any namespace (``vosi:table``, ``vs:table``, none); each
    ``column`` gives ``name``, ``dataType`` (``xsi:type`` ``vs:VOTableType`` or
    ``vs:TAPType``; its ``arraysize``/``extendedType`` attributes), ``unit``, ``ucd``,
    ``utype``, ``xtype``, ``description`` and ``flag`` elements.  The table's own ``name`` is
    ignored (the URL names the table).  ``computed``: a ``_healpix_29`` column (the sky
    index skyvault computes, in the document served for a sky-indexed table) is left out
    instead of refused.
    """
    _refuse_declarations(body, "VOSI table document")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise WorkspaceError(
            f"the VOSI table document is not well-formed XML ({exc})",
            hint="send a vosi:table document (Content-Type text/xml), as GET /tables/NAME "
            "serves them",
        ) from None
    if _local(root.tag) != "table":
        raise WorkspaceError(
            f"the document's root element is <{_local(root.tag)}>, not <table>",
            hint="send one vosi:table element (a tableset is not accepted here)",
        )
    columns = []
    for index, element in enumerate(c for c in root if _local(c.tag) == "column"):
        if computed and (_child_text(element, "name") or "").lower() == HEALPIX_COLUMN:
            continue
        columns.append(_vosi_column(element, index + 1))
    description = _child_text(root, "description")
    if description is not None:
        description = " ".join(description.split())  # writers wrap long descriptions
    return _check_lengths(TableDefinition(_check_columns(columns), description))


def _vosi_column(element: ET.Element, position: int) -> ColumnMeta:
    name = _child_text(element, "name")
    if name is None:
        raise WorkspaceError(f"column {position} of the VOSI document has no <name>")
    datatype_el = next((c for c in element if _local(c.tag) == "dataType"), None)
    if datatype_el is None or not (datatype_el.text or "").strip():
        raise WorkspaceError(
            f"column {name} has no <dataType>",
            hint='write e.g. <dataType xsi:type="vs:VOTableType">double</dataType>',
        )
    value = (datatype_el.text or "").strip()
    attributes = {_local(k): v for k, v in datatype_el.attrib.items()}
    kind = attributes.get("type", "vs:VOTableType").rsplit(":", 1)[-1]
    arraysize = attributes.get("arraysize")
    xtype = _child_text(element, "xtype") or attributes.get("extendedType")
    if kind == "TAPType":
        if value.upper() not in _TAP_TYPES:
            raise WorkspaceError(
                f"column {name}: TAP type {value!r} is not supported",
                hint="use one of " + ", ".join(_TAP_TYPES) + ", or a vs:VOTableType",
            )
        value, size, tap_xtype = _TAP_TYPES[value.upper()]
        arraysize = arraysize or size
        xtype = xtype or tap_xtype
    elif kind != "VOTableType":
        raise WorkspaceError(
            f"column {name}: dataType type {kind!r} is not understood",
            hint='use xsi:type="vs:VOTableType"',
        )
    flags = {(c.text or "").strip().lower() for c in element if _local(c.tag) == "flag"}
    std = element.attrib.get("std", "").lower() == "true" or "std" in flags
    return column(
        name,
        value,
        arraysize=arraysize,
        xtype=xtype,
        unit=_child_text(element, "unit"),
        ucd=_child_text(element, "ucd"),
        utype=_child_text(element, "utype"),
        description=_child_text(element, "description"),
        indexed="indexed" in flags,
        principal="principal" in flags,
        std=std,
    )


def parse_votable_definition(body: bytes, *, computed: bool = False) -> TableDefinition:
    """The definition in a VOTable: the FIELDs of its first TABLE (and its rows, if any);
    ``computed`` as for :func:`parse_vosi_table`."""
    _refuse_declarations(body, "VOTable")
    from astropy.io.votable import parse

    try:
        votable = parse(io.BytesIO(body), verify="ignore")
        tables = list(votable.iter_tables())
    except Exception as exc:  # astropy raises many kinds on bad XML
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "unreadable"
        raise WorkspaceError(
            f"not a readable VOTable ({text})",
            hint="send a VOTable whose TABLE has one FIELD per column",
        ) from None
    if not tables:
        raise WorkspaceError("the VOTable holds no TABLE", hint="define the columns as FIELDs")
    vot = tables[0]
    columns = []
    for field in vot.fields:
        if computed and field.name.lower() == HEALPIX_COLUMN:
            continue
        arraysize = field.arraysize
        columns.append(
            column(
                field.name,
                field.datatype,
                arraysize=None if arraysize in (None, "1") else str(arraysize),
                xtype=field.xtype,
                unit=str(field.unit) if field.unit is not None else None,
                ucd=field.ucd,
                utype=field.utype,
                description=field.description,
            )
        )
    checked = _check_columns(columns)
    rows = None
    if len(vot.array) > 0:
        from skyvault.workspace.readers import votable_rows

        rows = votable_rows(vot)
    description = " ".join((vot.description or "").split()) or None
    return _check_lengths(TableDefinition(checked, description, rows))


def parse_definition(content_type: str, body: bytes, *, computed: bool = False) -> TableDefinition:
    """The definition in a create (or metadata update) request's body, by its Content-Type:
    ``text/xml`` (or ``application/xml``) is a VOSI table document,
    ``application/x-votable+xml`` a VOTable.  ``computed``: leave out ``_healpix_29``
    (an update sends back the document served for a sky-indexed table)."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in ("text/xml", "application/xml"):
        return parse_vosi_table(body, computed=computed)
    if mime in ("application/x-votable+xml", "text/x-votable+xml"):
        return parse_votable_definition(body, computed=computed)
    raise WorkspaceError(
        f"a table definition of type {mime or '(none)'!r} is not understood",
        hint="send a VOSI table document as text/xml or a VOTable as application/x-votable+xml",
    )
