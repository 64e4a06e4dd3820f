"""Answering cone and polygon searches over a few rows without DuckDB.

The commonest archive query is a cone (or polygon) search: some columns of one table, the
rows inside a small region, maybe TOP n.  The index path (:mod:`skyvault.engine.smallscan`)
already reads just the few rows such a query can touch; handing them to DuckDB would then
cost more than everything else together — registering the Arrow table, binding and planning
the exact spherical predicate, and starting the pipeline take about 2.5 ms for a few hundred
rows, where PostgreSQL + q3c answers the whole cone in about 4.  So when the translation
says the query has that shape (:class:`~skyvault.adql.shape.DirectSelect`), the
executor evaluates it here instead, with numpy:

* every sky cut is the same formula the SQL uses (:mod:`skyvault.sky.sql` mirrors
  :mod:`skyvault.sky.geometry`): the chord test for circles, half-space tests for polygons
  and boxes, the ``atan2`` distance for DISTANCE comparisons (agreeing with DuckDB's to
  rounding, as :mod:`skyvault.sky.sql` says);
* NULL or NaN positions never match (SQL: NULL is not true; NaN compares false here and in
  DuckDB's predicate);
* comparisons of a column with a constant use Arrow's kernels, with DuckDB's rules where
  they differ from IEEE: NULL is never true, and NaN equals NaN and sorts above every number
  (so ``flux > 3`` holds for NaN, ``flux < 3`` does not);
* TOP n keeps the first n matching rows (without ORDER BY any n rows are a right answer);
* the result has the schema DuckDB would give (nullable fields, ``string`` not
  ``large_string``, no Parquet metadata); columns of any other type make this path decline,
  and the query goes to DuckDB as usual.

``tests/engine/test_direct.py`` runs queries both ways and compares the tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from skyvault.adql.shape import ColumnTest, DirectSelect, SkyCut
from skyvault.sky.geometry import angular_distance, contains_points

__all__ = ["evaluate"]


def _plain_type(t: pa.DataType) -> bool:
    """Types whose Arrow form DuckDB returns unchanged (or, for strings, as ``string``)."""
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_float32(t)
        or pa.types.is_float64(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
    )


def evaluate(query: DirectSelect, rows: pa.Table) -> pa.Table | None:
    """The answer to ``query`` over ``rows`` (the scan's rows), or None to use DuckDB.

    ``rows`` must hold every row of the table that can match (what the index path read).
    """
    names = rows.schema.names
    needed = {*query.columns, *(c.ra for c in query.cuts), *(c.dec for c in query.cuts)}
    needed |= {t.column for t in query.tests}
    if not needed <= set(names):
        return None
    for test in query.tests:
        if not _testable(rows.schema.field(test.column).type, test):
            return None
    for cut in query.cuts:
        for column in (cut.ra, cut.dec):
            t = rows.schema.field(column).type
            if not (pa.types.is_float32(t) or pa.types.is_float64(t)):
                return None
    fields = []
    for column, name in zip(query.columns, query.names, strict=True):
        t = rows.schema.field(column).type
        if not _plain_type(t):
            return None
        fields.append(pa.field(name, pa.string() if pa.types.is_large_string(t) else t))
    keep = np.ones(rows.num_rows, dtype=bool)
    for cut in query.cuts:
        keep &= _cut(cut, _floats(rows, cut.ra), _floats(rows, cut.dec))
    for test in query.tests:
        keep &= _test(test, rows.column(test.column))
    index = np.flatnonzero(keep)
    if query.limit is not None:
        index = index[: query.limit]
    whole = len(index) == rows.num_rows
    picked = rows if whole else rows.take(pa.array(index, type=pa.int64()))
    schema = pa.schema(fields)
    arrays = [
        picked.column(column).cast(field.type)
        for column, field in zip(query.columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _testable(t: pa.DataType, test: ColumnTest) -> bool:
    """Whether Arrow compares a column of type ``t`` with ``test.value`` as DuckDB does."""
    if test.op in ("null", "not null"):
        return True
    if isinstance(test.value, str):
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))
    if isinstance(test.value, int) and not -(2**63) <= test.value < 2**63:
        return False  # beyond BIGINT: DuckDB widens, Arrow would refuse
    if isinstance(test.value, int) and pa.types.is_unsigned_integer(t) and test.value < 0:
        return False  # Arrow would refuse to cast the scalar
    return bool(pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t))


_COMPARE = {
    "=": pc.equal,
    "<>": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


def _test(test: ColumnTest, values: pa.ChunkedArray) -> NDArray[np.bool_]:
    if test.op == "null":
        return np.asarray(values.is_null(), dtype=bool)
    if test.op == "not null":
        return np.asarray(values.is_valid(), dtype=bool)
    t = values.type
    scalar = pa.scalar(test.value)
    if isinstance(test.value, float) and pa.types.is_integer(t):
        values = values.cast(pa.float64())  # DuckDB compares an integer with a DOUBLE as DOUBLE
    elif isinstance(test.value, int) and pa.types.is_floating(t):
        scalar = pa.scalar(float(test.value), type=t)
    elif isinstance(test.value, int):
        scalar = pa.scalar(test.value, type=pa.int64())
    out = np.asarray(_COMPARE[test.op](values, scalar).fill_null(False), dtype=bool)
    if pa.types.is_floating(t):
        # DuckDB: NaN = NaN, and NaN is greater than every number.
        nan = np.asarray(pc.is_nan(values).fill_null(False), dtype=bool)
        out[nan] = test.op in ("<>", ">", ">=")
    return out


def _floats(rows: pa.Table, column: str) -> NDArray[np.float64]:
    """A position column as float64, NULL as NaN (which no cut accepts)."""
    values = rows.column(column)
    out: NDArray[np.float64] = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    return out


def _cut(cut: SkyCut, ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.bool_]:
    if cut.region is not None:
        with np.errstate(invalid="ignore"):
            inside: NDArray[np.bool_] = contains_points(cut.region, ra, dec)
        return inside
    cra, cdec = cut.centre
    with np.errstate(invalid="ignore"):
        if cut.column_first:
            distance = angular_distance(ra, dec, cra, cdec)
        else:
            distance = angular_distance(cra, cdec, ra, dec)
        compare = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
        out: NDArray[np.bool_] = compare[cut.op](distance, cut.radius)
    return out
