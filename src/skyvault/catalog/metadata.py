"""Column and table metadata: what TAP_SCHEMA and VOTable FIELDs publish about a table.

Metadata is kept beside each catalogue in ``skyvault_table.json``.  It merges three sources,
later ones winning field by field: the Arrow type of the stored column, what the input file
carried (VOTable FIELD, FITS TUNIT/TCOMM/TUCD, ECSV or astropy-Parquet meta), and a Felis
YAML schema.  Every unit, whatever its source, is written in one VOUnit spelling
(:func:`normalize_unit`: ``mas/yr``, never ``mas / yr`` or ``mas yr-1``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from astropy import units as u

from skyvault.errors import CatalogError

__all__ = [
    "METADATA_FILE",
    "ColumnMeta",
    "TableMeta",
    "fov_region_radius",
    "normalize_unit",
    "votable_type",
]

METADATA_FILE = "skyvault_table.json"
FORMAT_VERSION = 1


def fov_region_radius(largest_fov: float) -> float:
    """:attr:`TableMeta.region_radius` of an ObsCore table whose largest ``s_fov`` (the
    diameter of the circle about ``s_ra``/``s_dec`` holding ``s_region``) is
    ``largest_fov`` degrees: half of it, with a margin for rounding."""
    return largest_fov / 2 * (1 + 1e-6) + 1e-6


def votable_type(arrow_type: pa.DataType) -> tuple[str, str | None, str | None]:
    """VOTable ``(datatype, arraysize, xtype)`` for an Arrow type.

    Unsigned integers widen to the next signed type (VOTable has no unsigned types except
    ``unsignedByte``); timestamps become ISO-8601 strings with DALI xtype ``timestamp``.
    """
    t = arrow_type
    if pa.types.is_boolean(t):
        return "boolean", None, None
    if pa.types.is_uint8(t):
        return "unsignedByte", None, None
    if pa.types.is_int8(t) or pa.types.is_int16(t):
        return "short", None, None
    if pa.types.is_uint16(t) or pa.types.is_int32(t):
        return "int", None, None
    if pa.types.is_uint32(t) or pa.types.is_int64(t) or pa.types.is_uint64(t):
        return "long", None, None
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float", None, None
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "double", None, None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "char", "*", None
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "char", "*", "timestamp"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "unsignedByte", "*", None
    if pa.types.is_fixed_size_list(t):
        inner, _, _ = votable_type(t.value_type)
        return inner, str(t.list_size), None
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner, _, _ = votable_type(t.value_type)
        return inner, "*", None
    raise CatalogError(f"column type {t} has no VOTable equivalent")


#: Where unit warnings go: the service's log, or standard error for a command with no
#: logging set up (Python's last-resort handler prints the bare message).
log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)
def _vounit(unit: str) -> str | None:
    """``unit`` in astropy's VOUnit spelling with fractions, or None if it has none."""
    with warnings.catch_warnings():
        # Deprecated-but-valid VOUnits (Angstrom, erg) and multiple slashes only warn.
        warnings.simplefilter("ignore")
        for fmt in (None, "vounit", "cds", "fits"):
            try:
                parsed = u.Unit(unit, format=fmt, parse_strict="raise")
            except (ValueError, TypeError):
                continue
            try:
                return str(parsed.to_string("vounit", fraction=True))
            except TypeError:  # an astropy without fractions in VOUnit output
                try:
                    return str(parsed.to_string("vounit"))
                except (ValueError, u.UnitsError):
                    return None
            except (ValueError, u.UnitsError):
                return None
    return None


def normalize_unit(unit: str, column: str | None = None) -> str:
    """``unit`` in one VOUnit spelling: ``mas/yr`` for ``mas / yr``, ``mas yr-1``, ``mas.yr**-1``.

    Any spelling astropy parses (its generic, VOUnit, CDS and FITS grammars) is accepted.  A
    unit that has no VOUnit form (``electron``, ``dex``, ``%``, a typo) is kept as written,
    with a warning naming ``column`` logged: an unusual unit must not fail an ingest.
    """
    text = unit.strip()
    if not text:
        return text
    normal = _vounit(text)
    if normal is None:
        where = f" of column {column!r}" if column else ""
        log.warning("unit %r%s is not a VOUnit; it is published as written", text, where)
        return text
    return normal


@dataclasses.dataclass(frozen=True)
class ColumnMeta:
    """What is published about one column (TAP_SCHEMA.columns, VOTable FIELD)."""

    name: str
    datatype: str
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str | None = None
    principal: bool = False
    indexed: bool = False
    std: bool = False
    column_index: int | None = None
    arrow_type: str = ""
    nullable: bool = True

    @classmethod
    def from_arrow(cls, field: pa.Field) -> ColumnMeta:
        """Metadata implied by an Arrow field's type alone."""
        datatype, arraysize, xtype = votable_type(field.type)
        return cls(
            name=field.name,
            datatype=datatype,
            arraysize=arraysize,
            xtype=xtype,
            arrow_type=str(field.type),
            nullable=field.nullable,
        )

    def updated(self, **changes: Any) -> ColumnMeta:
        """A copy with the non-None ``changes`` applied."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ColumnMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclasses.dataclass(frozen=True)
class TableMeta:
    """What is stored about one table: identity, kind, layout facts and its columns.

    ``kind`` is ``"hats"`` for a HEALPix-partitioned catalogue with positions, ``"plain"``
    for a table without sky coordinates stored as ordinary Parquet files.
    """

    schema: str
    name: str
    kind: str
    columns: tuple[ColumnMeta, ...]
    nrows: int
    description: str | None = None
    ra_column: str | None = None
    dec_column: str | None = None
    primary_key: str | None = None
    margin_arcsec: float | None = None
    max_rows_per_partition: int | None = None
    n_partitions: int = 0
    created: str = ""
    sources: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    region_radius: float | None = None
    """For a table with a region column (xtype ``adql:REGION``, ObsCore's ``s_region``):
    no point of a row's region is farther than this (degrees) from the row's declared
    position, so a CONTAINS/INTERSECTS on the regions prunes by position."""

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> ColumnMeta:
        """The column called ``name`` (exact match)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise CatalogError(f"no column {name!r} in {self.qualified_name}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["columns"] = [c.to_json() for c in self.columns]
        data["sources"] = list(self.sources)
        data["groups"] = list(self.groups)
        data["format_version"] = FORMAT_VERSION
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TableMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["columns"] = tuple(ColumnMeta.from_json(c) for c in data["columns"])
        values["sources"] = tuple(data.get("sources", ()))
        values["groups"] = tuple(data.get("groups", ()))
        return cls(**values)

    def write(self, table_dir: Path) -> None:
        path = table_dir / METADATA_FILE
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n")

    @classmethod
    def read(cls, table_dir: Path) -> TableMeta:
        path = table_dir / METADATA_FILE
        try:
            return cls.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise CatalogError(f"{table_dir.name} has no {METADATA_FILE}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CatalogError(f"unreadable table metadata in {table_dir.name}: {exc}") from None


def merge_columns(
    schema: pa.Schema,
    *overrides: Mapping[str, Mapping[str, Any]],
) -> tuple[ColumnMeta, ...]:
    """Column metadata for ``schema``, with each mapping of overrides applied in order.

    Each override maps a column name to metadata fields (``unit``, ``ucd``, ``description``,
    ``principal``, ...).  Names not in the schema are ignored: a Felis file usually describes
    more columns than a given input carries.
    """
    out: list[ColumnMeta] = []
    for index, field in enumerate(schema):
        meta = ColumnMeta.from_arrow(field).updated(column_index=index)
        for layer in overrides:
            extra = layer.get(field.name)
            if extra:
                meta = meta.updated(**_allowed(extra, field.name))
        out.append(meta)
    return tuple(out)


_OVERRIDABLE = {"unit", "ucd", "utype", "description", "principal", "indexed", "std", "xtype"}


def _allowed(extra: Mapping[str, Any], column: str) -> dict[str, Any]:
    out = {k: v for k, v in extra.items() if k in _OVERRIDABLE and v not in ("", None)}
    if "unit" in out:
        out["unit"] = normalize_unit(str(out["unit"]), column) or None
    return out


def principal_defaults(
    columns: Iterable[ColumnMeta], ra: str | None, dec: str | None, primary_key: str | None
) -> tuple[ColumnMeta, ...]:
    """Mark the positional and key columns principal when no source said otherwise."""
    cols = list(columns)
    if any(c.principal for c in cols):
        return tuple(cols)
    wanted = {n for n in (ra, dec, primary_key) if n}
    return tuple(c.updated(principal=True) if c.name in wanted else c for c in cols)
