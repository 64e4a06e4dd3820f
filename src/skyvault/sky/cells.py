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
own exact distance predicate, which stays in the SQL.  In an outer join the exploded side
must be the optional one (the translation says so: ``CellJoin.exploded``).

The keys are plain SQL arithmetic on the RA/Dec columns (no UDF), so DuckDB runs the whole
cross-match in parallel on its threads; this is the same work as a hand-written DuckDB cell
join over the same files.  Why not HEALPix cells: a cell's neighbours are not arithmetic in
SQL, and zone/bin cells are.
"""

from __future__ import annotations

import pyarrow as pa

from skyvault.sky.sql import double_literal
from skyvault.sqltext import quote_identifier

__all__ = [
    "KEY_COLUMN",
    "cell_offsets",
    "exploded_select",
    "keyed_select",
]

KEY_COLUMN = "__sv_cell"
_SAFETY = 1.1  # bins 10% wider than needed: covers the sin/asin non-linearity for large r
_MIN_HEIGHT_DEG = 1e-4  # below 0.36″ cells stop paying for themselves


def _zone_sql(dec: str, h: float) -> str:
    # TRY_CAST: a NaN or infinite declination has no zone (NULL joins nothing, and the
    # distance predicate is not true for it either) instead of a conversion error.
    return f"TRY_CAST(floor(({dec} + 90.0e0) / {double_literal(h)}) AS BIGINT)"


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


def _own_bin_sql(ra: str, bins: str, normalised: bool) -> str:
    """The RA bin of ``ra`` among ``bins``, for any RA (-10 is 350; NaN has none).

    ``normalised``: the RA is known to be finite and in [0, 360) (a stored table's declared
    RA, which ingest checks), so the wrap is skipped; it would not change such a value
    (``ra - 360 * 0``), so both sides of a join agree on every row either way."""
    wrapped = ra if normalised else f"({ra} - 360.0e0 * floor({ra} / 360.0e0))"
    return f"TRY_CAST(floor({wrapped} / 360.0e0 * {bins}) AS BIGINT)"


def _key_sql(zone: str, bin_: str) -> str:
    return f"({zone} * 4294967296 + {bin_})"


def _tagged_key(key: str, tag: str | None) -> str:
    """The cell key, or with a tag column the pair (cell, tag) as one HUGEINT: rows then
    join only rows of the same cell *and* the same tag (see
    :mod:`skyvault.engine.aligned`).  Tags are below 2**32."""
    if tag is None:
        return key
    return f"(CAST({key} AS HUGEINT) * 4294967296 + {tag})"


def _positions_select(base_sql: str, ra: str, dec: str, alias: str | None) -> str:
    """``base_sql`` with its position as ``__sv_ra``/``__sv_dec`` and its zone of a height
    to be filled in: the rows are named ``alias`` so that ``ra``/``dec`` (SQL over the
    row's columns, as the query writes them: ``"s0"."lon"``) can be evaluated here."""
    name = quote_identifier(alias) if alias else "__sv_b"
    return f"SELECT *, {ra} AS __sv_ra, {dec} AS __sv_dec FROM ({base_sql}) AS {name}"


def keyed_select(
    base_sql: str,
    ra: str,
    dec: str,
    radius: float,
    tag: str | None = None,
    alias: str | None = None,
    normalised: bool = False,
) -> str:
    """``base_sql`` with each row's cell key added as :data:`KEY_COLUMN`.

    ``ra`` and ``dec`` are SQL expressions over the rows of ``base_sql``, named ``alias``
    (None: unnamed, so only bare column names); ``tag`` names a column of ``base_sql``
    folded into the key (and dropped); ``normalised``: the RA is in [0, 360) already."""
    h = max(radius, _MIN_HEIGHT_DEG)
    zone = _zone_sql("__sv_dec", h)
    bins = _bins_sql("__sv_z", h, radius)
    bin_ = f"{_own_bin_sql('__sv_ra', bins, normalised)} % {bins}"
    key = _tagged_key(_key_sql("__sv_z", bin_), f'"{tag}"' if tag else None)
    excluded = "__sv_ra, __sv_dec, __sv_z" + (f', "{tag}"' if tag else "")
    return (
        f"SELECT * EXCLUDE ({excluded}), {key} AS {KEY_COLUMN} "
        f"FROM (SELECT *, {zone} AS __sv_z FROM ({_positions_select(base_sql, ra, dec, alias)}))"
    )


def exploded_select(
    base_sql: str,
    ra: str,
    dec: str,
    radius: float,
    tag: str | None = None,
    alias: str | None = None,
    normalised: bool = False,
    offsets: str | None = None,
) -> str:
    """``base_sql`` repeated once per cell of the 3 × 3 block around each row (9 distinct
    cells: see :func:`_bins_sql`); the arguments as for :func:`keyed_select`.

    ``offsets`` names a relation of (zone, bin) offsets to use instead of the nine: with
    the one offset (0, 0) of :func:`cell_offsets` each row gets its own cell's key, the
    same as :func:`keyed_select` gives (its bin is never negative, so the extra modulo
    changes nothing).  The translator writes a derived side of a cross-match this way, so
    its SQL is the same whichever side the engine explodes."""
    h = max(radius, _MIN_HEIGHT_DEG)
    zone = _zone_sql("__sv_dec", h)
    z = "(__sv_z + __sv_o.__sv_dz)"
    bins = _bins_sql(z, h, radius)
    own_bin = _own_bin_sql("__sv_ra", bins, normalised)
    bin_ = f"(({own_bin} + __sv_o.__sv_db) % {bins} + {bins}) % {bins}"
    if offsets is None:
        values = ", ".join(f"({dz}, {db})" for dz, db in _OFFSETS)
        source = f"(VALUES {values})"
    else:
        source = quote_identifier(offsets)
    key = _tagged_key(_key_sql(z, bin_), f'"{tag}"' if tag else None)
    excluded = "__sv_ra, __sv_dec, __sv_z, __sv_dz, __sv_db" + (f', "{tag}"' if tag else "")
    return (
        f"SELECT * EXCLUDE ({excluded}), {key} AS {KEY_COLUMN} "
        f"FROM (SELECT *, {zone} AS __sv_z FROM ({_positions_select(base_sql, ra, dec, alias)})) "
        f"CROSS JOIN {source} AS __sv_o(__sv_dz, __sv_db)"
    )


_OFFSETS = [(dz, db) for dz in (-1, 0, 1) for db in (-1, 0, 1)]


def cell_offsets(exploded: bool) -> pa.Table:
    """The (zone, bin) offsets relation of a side written with ``offsets`` (see
    :func:`exploded_select`): the nine of the 3 × 3 block, or (0, 0) alone for the keyed
    side."""
    pairs = _OFFSETS if exploded else [(0, 0)]
    return pa.table(
        {
            "__sv_dz": pa.array([p[0] for p in pairs], pa.int64()),
            "__sv_db": pa.array([p[1] for p in pairs], pa.int64()),
        }
    )
