"""Positional cross-match as a hash join on sky cells, never a cartesian product.

A join of two positional tables on ``DISTANCE(...) < r`` is, to DuckDB, a join on an
inequality: a nested loop over every pair.  This module adds an equality that every matching
pair satisfies, so DuckDB can hash-join and only then apply the exact distance predicate:

* the sky is cut into declination **zones** of height ``h >= r`` and each zone into RA
  **bins** at least ``r / cos(dec)`` wide for every declination the zone and its neighbours
  span (one bin per zone near the poles);
* one side (the *keyed* side) gets the key of its own cell;
* the other side (the *exploded* side, the smaller one) is repeated once per distinct cell of
  the 3 × 3 block around it, computed in each neighbouring zone's own binning.

If two points are within ``r``, their declinations differ by at most ``r`` (so the zones are
neighbours) and their RA difference is at most ``r / cos(dec_max)`` (so the bins are
neighbours, RA wrapping at 360°), hence the exploded side carries the keyed side's cell:
no pair is lost.  Pairs that share a cell but are further apart are removed by the query's
own exact distance predicate, which stays in the SQL.

The keys are plain SQL arithmetic on the RA/Dec columns (no UDF), so DuckDB runs the whole
cross-match in parallel on its threads; this is the same work as a hand-written DuckDB cell
join over the same files.  Why not HEALPix cells: a cell's neighbours are not arithmetic in
SQL, and zone/bin cells are.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from skyvault.sky.sql import double_literal

__all__ = ["KEY_COLUMN", "CellJoin", "plan_cell_join"]

KEY_COLUMN = "__sv_cell"
_SAFETY = 1.1  # bins 10% wider than needed: covers the sin/asin non-linearity for large r
_MIN_HEIGHT_DEG = 1e-4  # below 0.36″ cells stop paying for themselves


@dataclass(frozen=True)
class CellJoin:
    """SQL rewritten for a cell join, and the key column each side's view must add."""

    sql: str
    keyed_view: str
    exploded_view: str


def _zone_sql(dec: str, h: float) -> str:
    return f"CAST(floor(({dec} + 90.0e0) / {double_literal(h)}) AS BIGINT)"


def _bins_sql(zone: str, h: float, radius: float) -> str:
    """Number of RA bins in ``zone``: bins at least r / cos(dec) wide over zones z-1..z+1,
    and never fewer than 3.  With 3 bins every bin neighbours every other, so near a pole
    (where no width suffices) each row meets the whole zone; and with at least 3 bins the
    3 × 3 block of a row holds 9 distinct cells, so exploding never duplicates a row."""
    low = f"(-90.0e0 + ({zone} - 1) * {double_literal(h)})"
    high = f"(-90.0e0 + ({zone} + 2) * {double_literal(h)})"
    dmax = f"least(90.0e0, greatest(abs({low}), abs({high})))"
    width = radius * _SAFETY
    return (
        f"CAST(greatest(3, floor(360.0e0 * cos(radians({dmax})) / {double_literal(width)})) "
        "AS BIGINT)"
    )


def _key_sql(zone: str, bin_: str) -> str:
    return f"({zone} * 4294967296 + {bin_})"


def keyed_select(base_sql: str, ra: str, dec: str, radius: float) -> str:
    """``base_sql`` with each row's cell key added as :data:`KEY_COLUMN`."""
    h = max(radius, _MIN_HEIGHT_DEG)
    zone = _zone_sql(f'"{dec}"', h)
    bins = _bins_sql("__sv_z", h, radius)
    bin_ = f'CAST(floor("{ra}" / 360.0e0 * {bins}) AS BIGINT) % {bins}'
    return (
        f"SELECT * EXCLUDE (__sv_z), {_key_sql('__sv_z', bin_)} AS {KEY_COLUMN} "
        f"FROM (SELECT *, {zone} AS __sv_z FROM ({base_sql}))"
    )


def exploded_select(base_sql: str, ra: str, dec: str, radius: float) -> str:
    """``base_sql`` repeated once per cell of the 3 × 3 block around each row (9 distinct
    cells: see :func:`_bins_sql`)."""
    h = max(radius, _MIN_HEIGHT_DEG)
    zone = _zone_sql(f'"{dec}"', h)
    z = "(__sv_z + __sv_o.__sv_dz)"
    bins = _bins_sql(z, h, radius)
    own_bin = f'CAST(floor("{ra}" / 360.0e0 * {bins}) AS BIGINT)'
    bin_ = f"(({own_bin} + __sv_o.__sv_db) % {bins} + {bins}) % {bins}"
    offsets = ", ".join(f"({dz}, {db})" for dz in (-1, 0, 1) for db in (-1, 0, 1))
    return (
        f"SELECT * EXCLUDE (__sv_z, __sv_dz, __sv_db), {_key_sql(z, bin_)} AS {KEY_COLUMN} "
        f"FROM (SELECT *, {zone} AS __sv_z FROM ({base_sql})) "
        f"CROSS JOIN (VALUES {offsets}) AS __sv_o(__sv_dz, __sv_db)"
    )


def plan_cell_join(sql: str, keyed: str, exploded: str) -> str | None:
    """Add ``keyed.__sv_cell = exploded.__sv_cell`` to the join of the two placeholders.

    The condition goes into the ON clause of the join that brings in either placeholder,
    or into the WHERE of the SELECT whose FROM holds both (comma joins).  Returns None when
    the two relations are not joined in one SELECT (then no rewrite is safe).
    """
    try:
        tree = sqlglot.parse_one(sql, dialect="duckdb")
    except sqlglot.errors.SqlglotError:
        return None
    for select in tree.find_all(exp.Select):
        tables = {
            t.name: t.alias_or_name for t in _own_tables(select) if t.name in (keyed, exploded)
        }
        if set(tables) != {keyed, exploded}:
            continue
        condition = exp.EQ(
            this=exp.column(KEY_COLUMN, table=exp.to_identifier(tables[keyed], quoted=True)),
            expression=exp.column(
                KEY_COLUMN, table=exp.to_identifier(tables[exploded], quoted=True)
            ),
        )
        for join in select.args.get("joins") or []:
            target = join.this
            if (
                isinstance(target, exp.Table)
                and target.name in (keyed, exploded)
                and join.args.get("on")
            ):
                join.set("on", exp.and_(join.args["on"], condition))
                return tree.sql(dialect="duckdb")
        select.where(condition, copy=False)
        return tree.sql(dialect="duckdb")
    return None


def _own_tables(select: exp.Select) -> list[exp.Table]:
    """Tables in this SELECT's FROM and JOINs (not those of nested subqueries)."""
    out: list[exp.Table] = []
    from_ = select.args.get("from_") or select.args.get("from")
    sources = [from_.this] if from_ is not None else []
    sources += [j.this for j in select.args.get("joins") or []]
    for source in sources:
        if isinstance(source, exp.Table):
            out.append(source)
    return out
