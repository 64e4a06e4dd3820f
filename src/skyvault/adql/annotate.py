"""Result metadata: DuckDB type, VOTable datatype, unit, UCD and description of expressions.

The checker (:mod:`skyvault.adql.check`) gives every expression a :class:`ValueInfo`: the
DuckDB type the translated SQL will produce, plus unit, UCD, description and xtype.  This
module holds the type model and the rules that derive metadata for expressions:

* a column reference passes its :class:`~skyvault.catalog.metadata.ColumnMeta` on unchanged;
* ``+`` and ``-`` keep a unit both operands share (or that of the non-constant operand when
  the other is a constant); the UCD survives only ``x ± constant``, except that the
  difference of two ``phot.mag`` values is a colour (``phot.color``, unit ``mag``) and a sum
  of magnitudes has none;
* ``*`` and ``/`` of two values with units multiply their units (astropy); a constant factor
  makes the unit unknown (``coord_ra * 3600`` is not in degrees), so it is dropped;
* aggregates: ``COUNT`` is ``meta.number``; ``MIN``/``MAX``/``AVG`` keep unit and add
  ``stat.min``/``stat.max``/``stat.mean`` to the UCD; ``SUM`` keeps the unit, drops the UCD;
* functions with a fixed unit or UCD (``DISTANCE``: deg, ``pos.angDistance`` ...) have it
  in their entry of the function table (:mod:`skyvault.adql.functions`).

The DuckDB types are not guesses: the translator inserts casts wherever DuckDB's own rules
would be hard to predict (integer arithmetic is BIGINT, other arithmetic DOUBLE, integer
sums are cast to BIGINT, branches of CASE and COALESCE to their common type), and the tests
compare these predictions with the Arrow types DuckDB returns.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import astropy.units as u

from skyvault.catalog.metadata import ColumnMeta
from skyvault.sky.stcs import REGION_XTYPE

if TYPE_CHECKING:
    from skyvault.adql.functions import FunctionSpec

__all__ = [
    "FLOATING",
    "GEOMETRY_TYPES",
    "INTEGRAL",
    "ValueInfo",
    "column_info",
    "common_type",
    "convert_factor",
    "result_column",
    "unit_product",
]

#: DuckDB integer types (BOOLEAN counts as an integer in arithmetic: 1 or 0).
INTEGRAL = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    }
)
#: DuckDB floating-point types (DECIMAL is turned into DOUBLE whenever it is computed with).
FLOATING = frozenset({"FLOAT", "DOUBLE", "DECIMAL"})
#: Compile-time geometry types: values that exist only inside the translator until they are
#: emitted as DALI arrays (``DOUBLE[]``) in a select list.
GEOMETRY_TYPES = frozenset({"POINT", "CIRCLE", "POLYGON", "BOX"})

_VOTABLE = {
    "BOOLEAN": "boolean",
    "TINYINT": "short",
    "SMALLINT": "short",
    "INTEGER": "int",
    "BIGINT": "long",
    "UTINYINT": "unsignedByte",
    "USMALLINT": "int",
    "UINTEGER": "long",
    "UBIGINT": "long",
    "FLOAT": "float",
    "DOUBLE": "double",
    "DECIMAL": "double",
    "VARCHAR": "char",
    "TIMESTAMP": "char",
    "NULL": "char",
}

_ARROW_TO_DUCK = {
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "halffloat": "FLOAT",
    "float": "FLOAT",
    "float16": "FLOAT",
    "float32": "FLOAT",
    "double": "DOUBLE",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "utf8": "VARCHAR",
    "large_utf8": "VARCHAR",
}

_VOTABLE_TO_DUCK = {
    "boolean": "BOOLEAN",
    "unsignedByte": "UTINYINT",
    "short": "SMALLINT",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "char": "VARCHAR",
    "unicodeChar": "VARCHAR",
}


@dataclasses.dataclass(frozen=True)
class ValueInfo:
    """What the checker knows about one expression.

    Attributes
    ----------
    duck
        DuckDB type of the translated expression (``BIGINT``, ``DOUBLE``, ``VARCHAR``,
        ``DOUBLE[]`` ...), ``NULL`` for the literal NULL, or a compile-time geometry type
        (``POINT``, ``CIRCLE``, ``POLYGON``, ``BOX``).
    unit, ucd, description
        Metadata for VOTable FIELDs.
    xtype
        DALI xtype (``timestamp``, ``point``, ``circle``, ``polygon``).
    arraysize
        VOTable arraysize where the type does not imply it (``CHAR(8)`` gives ``"8"``).
    source
        The stored column when the expression is a plain column reference.
    constant
        The value of a numeric constant expression, folded at check time.
    aggregate
        Whether the expression contains an aggregate of the current query level.
    """

    duck: str
    unit: str | None = None
    ucd: str | None = None
    description: str | None = None
    xtype: str | None = None
    arraysize: str | None = None
    source: ColumnMeta | None = None
    constant: float | None = None
    aggregate: bool = False

    @property
    def geometry(self) -> str | None:
        """``point``, ``circle``, ``polygon`` or ``box`` for geometry values, else ``None``."""
        if self.duck in GEOMETRY_TYPES:
            return self.duck.lower()
        if self.duck == "DOUBLE[]" and self.xtype in ("point", "circle", "polygon"):
            return self.xtype
        return None

    @property
    def region(self) -> bool:
        """Whether the value is a column of STC-S regions (xtype ``adql:REGION``, ObsCore's
        ``s_region``): text everywhere but as an argument of CONTAINS and INTERSECTS."""
        return self.duck == "VARCHAR" and self.xtype == REGION_XTYPE

    @property
    def kind(self) -> str:
        """Coarse ADQL type: numeric, boolean, string, timestamp, geometry, null or other."""
        if self.geometry is not None:
            return "geometry"
        if self.duck in INTEGRAL or self.duck in FLOATING:
            return "numeric"
        if self.duck == "BOOLEAN":
            return "boolean"
        if self.duck == "VARCHAR":
            return "string"
        if self.duck == "TIMESTAMP":
            return "timestamp"
        if self.duck == "NULL":
            return "null"
        return "other"

    @property
    def integral(self) -> bool:
        """Whether the value is an integer (or boolean) in arithmetic."""
        return self.duck in INTEGRAL or self.duck == "BOOLEAN"

    @property
    def numeric_like(self) -> bool:
        """Whether arithmetic and numeric comparison accept the value."""
        return self.kind in ("numeric", "boolean", "null")

    def plain(self, duck: str | None = None, **changes: object) -> ValueInfo:
        """A derived value: no source column, no constant, ``changes`` applied."""
        base = dataclasses.replace(
            self, source=None, constant=None, duck=duck or self.duck, arraysize=None
        )
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _duck_from_arrow(arrow_type: str) -> str | None:
    text = arrow_type.strip()
    if text in _ARROW_TO_DUCK:
        return _ARROW_TO_DUCK[text]
    if text.startswith("timestamp"):
        return "TIMESTAMP" if "tz=" not in text else "TIMESTAMPTZ"
    if text.startswith("date"):
        return "DATE"
    if text.startswith("decimal"):
        return "DECIMAL"
    if text.startswith(("list", "large_list", "fixed_size_list")):
        return "DOUBLE[]" if "double" in text else "LIST"
    return None


def column_info(column: ColumnMeta) -> ValueInfo:
    """The :class:`ValueInfo` of a stored column."""
    duck = _duck_from_arrow(column.arrow_type) if column.arrow_type else None
    if duck is None:
        if column.xtype == "timestamp":
            duck = "TIMESTAMP"
        elif column.arraysize and column.datatype not in ("char", "unicodeChar"):
            duck = "DOUBLE[]" if column.datatype in ("double", "float") else "LIST"
        else:
            duck = _VOTABLE_TO_DUCK.get(column.datatype, "OTHER")
    return ValueInfo(
        duck=duck,
        unit=column.unit,
        ucd=column.ucd,
        description=column.description,
        xtype=column.xtype,
        arraysize=column.arraysize,
        source=column,
    )


def common_type(types: list[str]) -> str | None:
    """The DuckDB type that CASE branches, COALESCE arguments or UNION columns share.

    NULL fits anything; integers widen to BIGINT, numbers to DOUBLE; other types must be
    equal.  ``None`` when there is none.
    """
    real = [t for t in types if t != "NULL"]
    if not real:
        return "NULL"
    if all(t == real[0] for t in real):
        return real[0]
    if all(t in INTEGRAL or t == "BOOLEAN" for t in real):
        return "BIGINT"
    if all(t in INTEGRAL or t in FLOATING or t == "BOOLEAN" for t in real):
        return "DOUBLE"
    return None


@functools.lru_cache(maxsize=512)
def _parse_unit(text: str) -> u.UnitBase | None:
    for fmt in ("vounit", "generic"):
        try:
            unit = u.Unit(text, format=fmt)
        except (ValueError, TypeError):
            continue
        if isinstance(unit, u.UnitBase):
            return unit
    return None


def _unit_text(unit: u.UnitBase) -> str | None:
    if unit == u.dimensionless_unscaled:
        return None
    for fmt in ("vounit", "generic"):
        try:
            return str(unit.to_string(format=fmt))
        except (ValueError, TypeError):
            continue
    return None


def unit_product(first: str | None, second: str | None, *, divide: bool) -> str | None:
    """Unit of ``a * b`` (or ``a / b``) from the operands' units, ``None`` if unknown."""
    if first is None and second is None:
        return None
    a = _parse_unit(first) if first else u.dimensionless_unscaled
    b = _parse_unit(second) if second else u.dimensionless_unscaled
    if a is None or b is None:
        return None
    try:
        return _unit_text(a / b if divide else a * b)
    except (ValueError, TypeError):
        return None


def convert_factor(source: str | None, target: str) -> float | str:
    """The factor that converts values in unit ``source`` to ``target`` (for ``IN_UNIT``).

    Returns
    -------
    float or str
        The factor, or a message saying why there is none.
    """
    to = _parse_unit(target)
    if to is None:
        return f"'{target}' is not a unit (write a VOUnit such as 'deg', 'arcsec', 'nJy')"
    if source is None:
        return "the value has no unit, so it cannot be converted"
    frm = _parse_unit(source)
    if frm is None:
        return f"the value's unit '{source}' is not a known unit"
    try:
        factor = float(frm.to(to))
    except u.UnitConversionError:
        return f"'{source}' cannot be converted to '{target}' (not the same physical quantity)"
    except (ValueError, TypeError):
        return f"'{source}' cannot be converted to '{target}'"
    return factor


def _add_ucd_word(ucd: str | None, word: str) -> str | None:
    if not ucd:
        return None
    words = ucd.split(";")
    return ucd if word in words else f"{ucd};{word}"


def aggregate_info(spec: FunctionSpec, arg: ValueInfo | None, duck: str) -> ValueInfo:
    """Metadata of ``COUNT``/``SUM``/``AVG``/``MIN``/``MAX`` applied to ``arg``.

    The UCD comes from the function table: ``COUNT``'s is the result's (``meta.number``);
    the others' (``stat.mean`` ...) is the word added to the argument's UCD; none (``SUM``)
    drops it.
    """
    name = spec.name
    what = None
    if arg is not None:
        what = arg.source.name if arg.source is not None else arg.description
    if name == "COUNT":
        desc = f"number of {what} values" if what else "number of rows"
        return ValueInfo(duck="BIGINT", ucd=spec.ucd, description=desc, aggregate=True)
    assert arg is not None
    prose = {"AVG": "mean", "MIN": "minimum", "MAX": "maximum", "SUM": "sum"}[name]
    ucd = _add_ucd_word(arg.ucd, spec.ucd) if spec.ucd else None
    return ValueInfo(
        duck=duck,
        unit=arg.unit,
        ucd=ucd,
        description=f"{prose} of {what}" if what else None,
        xtype=arg.xtype if name in ("MIN", "MAX") and arg.kind == "timestamp" else None,
        aggregate=True,
    )


def _votable(info: ValueInfo) -> tuple[str, str | None, str | None]:
    geometry = info.geometry
    if geometry is not None:
        size = {"point": "2", "circle": "3"}.get(geometry, "*")
        return "double", size, "polygon" if geometry == "box" else geometry
    if info.duck == "TIMESTAMP":
        return "char", "*", "timestamp"
    if info.duck in ("VARCHAR", "NULL"):
        return "char", info.arraysize or "*", None
    if info.duck == "DOUBLE[]":
        return "double", "*", None
    return _VOTABLE.get(info.duck, "char"), None, info.xtype if info.duck == "DATE" else None


def result_column(name: str, info: ValueInfo) -> ColumnMeta:
    """The VOTable FIELD metadata of a result column called ``name``."""
    if info.source is not None:
        return dataclasses.replace(info.source, name=name, column_index=None)
    datatype, arraysize, xtype = _votable(info)
    return ColumnMeta(
        name=name,
        datatype=datatype,
        arraysize=arraysize,
        xtype=xtype,
        unit=info.unit,
        ucd=info.ucd,
        description=info.description,
        arrow_type=info.duck.lower(),
    )


__all__ += ["aggregate_info"]
