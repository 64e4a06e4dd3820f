"""The demo tables and their columns: every column of DP0.2, typed from Rubin's Felis schema.

Tables, column names and Arrow types are all read from ``dp02_dc2.yaml`` in
``lsst-sdm-schemas`` (the file the ingest step also takes descriptions, units and UCDs from),
so a demo table carries exactly the columns of its DP0.2 table, with DP0.2's datatypes.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from skyvault.errors import InternalError

__all__ = [
    "BANDS",
    "COLUMNS",
    "NOT_GENERATED",
    "SCHEMA_NAME",
    "TABLES",
    "arrow_schema",
    "felis_columns",
    "felis_path",
    "felis_unit",
]

SCHEMA_NAME = "dp02_dc2_catalogs"
BANDS = ("u", "g", "r", "i", "z", "y")

#: The demo tables in build order (later tables reference earlier ones): every table of
#: DP0.2's ``dp02_dc2_catalogs`` schema but ``ObsCore``, which DP0.2 serves as ``ivoa.ObsCore``.
TABLES = (
    "Visit",
    "CcdVisit",
    "Object",
    "ForcedSource",
    "Source",
    "DiaObject",
    "DiaSource",
    "ForcedSourceOnDiaObject",
    "TruthSummary",
    "MatchesTruth",
    "CoaddPatches",
)

#: Tables of the Felis schema the demo does not generate, with the reason.
NOT_GENERATED = {"ObsCore": "an image-access table, published as ivoa.ObsCore"}


class _Columns(Mapping[str, tuple[str, ...]]):
    """Every column Felis declares for each demo table, in Felis order (read lazily)."""

    def __getitem__(self, table: str) -> tuple[str, ...]:
        if table not in TABLES:
            raise KeyError(table)
        return tuple(felis_columns(table))

    def __iter__(self) -> Iterator[str]:
        return iter(TABLES)

    def __len__(self) -> int:
        return len(TABLES)


#: The columns of each demo table, in order: all of DP0.2's.
COLUMNS: Mapping[str, tuple[str, ...]] = _Columns()

_FELIS_TYPES: Mapping[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "string": pa.string(),
    "unicode": pa.string(),
    "text": pa.string(),
    "timestamp": pa.timestamp("us"),
}


def felis_path() -> Path:
    """The DP0.2 Felis schema shipped in ``lsst-sdm-schemas``."""
    return Path(str(importlib.resources.files("lsst.sdm.schemas") / "dp02_dc2.yaml"))


@functools.cache
def _felis_tables() -> dict[str, dict[str, dict[str, Any]]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(felis_path().read_text(), Loader=loader)
    return {
        table["name"]: {column["name"]: column for column in table["columns"]}
        for table in document["tables"]
    }


def felis_columns(table: str) -> dict[str, dict[str, Any]]:
    """Every column Felis describes for DP0.2 ``table``, by name (the raw YAML mappings)."""
    try:
        return _felis_tables()[table]
    except KeyError:
        raise InternalError(f"DP0.2 schema has no table {table}") from None


@functools.cache
def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of demo ``table``: DP0.2's columns with their DP0.2 datatypes."""
    described = felis_columns(table)
    return pa.schema(
        [pa.field(name, _FELIS_TYPES[column["datatype"]]) for name, column in described.items()]
    )


def felis_unit(table: str, column: str) -> str:
    """The unit DP0.2 declares for ``table.column`` ('' when none)."""
    described = felis_columns(table)[column]
    return str(described.get("ivoa:unit") or described.get("fits:tunit") or "")
