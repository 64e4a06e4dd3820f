"""A small fixture catalogue (TableMeta objects) and matching Arrow tables for ADQL tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from skyvault.adql import FUNCTIONS, duckdb_macro_sql
from skyvault.adql.functions import DuckDbMacro
from skyvault.catalog.metadata import ColumnMeta, TableMeta

_ARROW = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "int16": pa.int16(),
    "double": pa.float64(),
    "float": pa.float32(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp[us]": pa.timestamp("us"),
}


def _col(
    name: str,
    arrow: str,
    unit: str | None = None,
    ucd: str | None = None,
    description: str | None = None,
) -> ColumnMeta:
    field = pa.field(name, _ARROW[arrow])
    return ColumnMeta.from_arrow(field).updated(unit=unit, ucd=ucd, description=description)


def _table(
    schema: str,
    name: str,
    columns: Sequence[ColumnMeta],
    *,
    kind: str = "hats",
    ra: str | None = None,
    dec: str | None = None,
) -> TableMeta:
    return TableMeta(
        schema=schema,
        name=name,
        kind=kind,
        columns=tuple(columns),
        nrows=0,
        ra_column=ra,
        dec_column=dec,
    )


OBJECT = _table(
    "dp02_dc2_catalogs",
    "Object",
    [
        _col("objectId", "int64", ucd="meta.id;meta.main", description="Unique object id"),
        _col("coord_ra", "double", "deg", "pos.eq.ra;meta.main", "Right ascension"),
        _col("coord_dec", "double", "deg", "pos.eq.dec;meta.main", "Declination"),
        _col("detect_isPrimary", "bool", ucd="meta.code", description="Primary detection"),
        _col("r_cModelFlux", "double", "nJy", "phot.flux;em.opt.R", "r-band cModel flux"),
        _col("g_cModelFlux", "double", "nJy", "phot.flux;em.opt.B", "g-band cModel flux"),
        _col("r_mag", "float", "mag", "phot.mag;em.opt.R", "r magnitude"),
        _col("i_mag", "float", "mag", "phot.mag;em.opt.I", "i magnitude"),
        _col("tract", "int32", ucd="meta.id", description="Tract"),
        _col("patch", "int16", ucd="meta.id", description="Patch"),
        _col("_healpix_29", "int64"),
    ],
    ra="coord_ra",
    dec="coord_dec",
)
FORCED = _table(
    "dp02_dc2_catalogs",
    "ForcedSource",
    [
        _col("forcedSourceId", "int64", ucd="meta.id"),
        _col("objectId", "int64", ucd="meta.id"),
        _col("ccdVisitId", "int64", ucd="meta.id"),
        _col("coord_ra", "double", "deg", "pos.eq.ra"),
        _col("coord_dec", "double", "deg", "pos.eq.dec"),
        _col("band", "string", ucd="instr.filter"),
        _col("psfFlux", "double", "nJy", "phot.flux"),
        _col("psfFluxErr", "double", "nJy", "stat.error;phot.flux"),
        _col("_healpix_29", "int64"),
    ],
    ra="coord_ra",
    dec="coord_dec",
)
VISIT = _table(
    "dp02_dc2_catalogs",
    "Visit",
    [
        _col("ccdVisitId", "int64", ucd="meta.id"),
        _col("band", "string", ucd="instr.filter"),
        _col("expMidpt", "timestamp[us]", ucd="time.epoch"),
        _col("expMidptMJD", "double", "d", "time.epoch"),
        _col("seeing", "float", "arcsec", "instr.obsty.seeing"),
    ],
    kind="plain",
)
TYCHO = _table(
    "tycho2",
    "main",
    [
        _col("id", "int64", ucd="meta.id;meta.main"),
        _col("ra", "double", "deg", "pos.eq.ra;meta.main"),
        _col("dec", "double", "deg", "pos.eq.dec;meta.main"),
        _col("mag_vt", "float", "mag", "phot.mag;em.opt.V"),
        _col("name", "string", ucd="meta.id"),
        _col("_healpix_29", "int64"),
    ],
    ra="ra",
    dec="dec",
)
SECRET = _table(
    "private",
    "Hidden",
    [_col("id", "int64"), _col("ra", "double", "deg"), _col("dec", "double", "deg")],
    ra="ra",
    dec="dec",
)

#: What a typical caller may see.
CATALOG: tuple[TableMeta, ...] = (OBJECT, FORCED, VISIT, TYCHO)


def empty_table(meta: TableMeta) -> pa.Table:
    """An empty Arrow table with the table's stored schema."""
    return pa.table({c.name: pa.array([], type=_ARROW[c.arrow_type]) for c in meta.columns})


def random_table(meta: TableMeta, n: int, seed: int = 0) -> pa.Table:
    """``n`` random rows for a table (positions uniform on the sphere)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    for c in meta.columns:
        t = _ARROW[c.arrow_type]
        if c.name == meta.ra_column:
            data[c.name] = pa.array(ra, type=t)
        elif c.name == meta.dec_column:
            data[c.name] = pa.array(dec, type=t)
        elif pa.types.is_integer(t):
            data[c.name] = pa.array(rng.integers(0, 50, n), type=t)
        elif pa.types.is_floating(t):
            data[c.name] = pa.array(rng.uniform(1, 30, n), type=t)
        elif pa.types.is_boolean(t):
            data[c.name] = pa.array(rng.integers(0, 2, n).astype(bool))
        elif pa.types.is_string(t):
            data[c.name] = pa.array([f"{'ugrizy'[i % 6]}" for i in range(n)])
        else:
            data[c.name] = pa.array(
                np.datetime64("2022-01-01") + rng.integers(0, 10**6, n).astype("timedelta64[s]"),
                type=t,
            )
    return pa.table(data)


def connect(
    tables: Mapping[str, pa.Table] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the UDF macros defined and ``tables`` registered."""
    con = duckdb.connect()
    for spec in FUNCTIONS.values():
        if isinstance(spec.duckdb, DuckDbMacro):
            con.execute(duckdb_macro_sql(spec))
    for name, table in (tables or {}).items():
        con.register(name, table)
    return con
