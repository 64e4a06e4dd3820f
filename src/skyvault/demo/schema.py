"""Which real DP0.2 columns the demo tables carry, typed from Rubin's own Felis schema.

The column *names* are chosen here; their Arrow *types* are read from ``dp02_dc2.yaml`` in
``lsst-sdm-schemas`` (the file the ingest step also takes descriptions, units and UCDs from),
so a demo table can only carry columns that exist in DP0.2, with DP0.2's datatypes.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from skyvault.errors import InternalError

__all__ = [
    "BANDS",
    "COLUMNS",
    "SCHEMA_NAME",
    "TABLES",
    "arrow_schema",
    "felis_columns",
    "felis_path",
]

SCHEMA_NAME = "dp02_dc2_catalogs"
BANDS = ("u", "g", "r", "i", "z", "y")

#: The demo tables in build order (later tables reference earlier ones).
TABLES = ("Visit", "CcdVisit", "Object", "ForcedSource", "Source")

_OBJECT = [
    "objectId",
    "coord_ra",
    "coord_dec",
    "parentObjectId",
    "tract",
    "patch",
    "detect_isPrimary",
    "sky_object",
    "deblend_nChild",
    "refBand",
    "refExtendedness",
    *(f"{b}_{m}" for b in BANDS for m in ("cModelFlux", "cModelFluxErr")),
    *(f"{b}_{m}" for b in BANDS for m in ("psfFlux", "psfFluxErr")),
    "i_ixx",
    "i_iyy",
    "i_ixy",
    "i_cModel_flag",
    "i_pixelFlags_saturatedCenter",
]

_FORCED_SOURCE = [
    "forcedSourceId",
    "objectId",
    "parentObjectId",
    "coord_ra",
    "coord_dec",
    "tract",
    "patch",
    "band",
    "ccdVisitId",
    "detect_isPrimary",
    "psfFlux",
    "psfFluxErr",
    "psfFlux_flag",
    "psfDiffFlux",
    "psfDiffFluxErr",
    "pixelFlags_saturated",
]

_SOURCE = [
    "sourceId",
    "coord_ra",
    "coord_dec",
    "ccdVisitId",
    "visit",
    "detector",
    "band",
    "parentSourceId",
    "x",
    "y",
    "psfFlux",
    "psfFluxErr",
    "calibFlux",
    "calibFluxErr",
    "ixx",
    "iyy",
    "ixy",
    "extendedness",
    "detect_isPrimary",
    "sky_source",
    "pixelFlags_saturated",
]

_VISIT = [
    "visit",
    "physical_filter",
    "band",
    "ra",
    "decl",
    "skyRotation",
    "azimuth",
    "altitude",
    "zenithDistance",
    "airmass",
    "expTime",
    "expMidpt",
    "expMidptMJD",
    "obsStart",
    "obsStartMJD",
]

_CCD_VISIT = [
    "ccdVisitId",
    "visitId",
    "physical_filter",
    "band",
    "ra",
    "decl",
    "detector",
    "zenithDistance",
    "zeroPoint",
    "psfSigma",
    "skyBg",
    "skyNoise",
    "seeing",
    "skyRotation",
    "expMidpt",
    "expMidptMJD",
    "expTime",
    "obsStart",
    "obsStartMJD",
    "darkTime",
    "xSize",
    "ySize",
    "llcra",
    "llcdec",
    "ulcra",
    "ulcdec",
    "urcra",
    "urcdec",
    "lrcra",
    "lrcdec",
]

#: The columns of each demo table, in order.
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "Object": tuple(_OBJECT),
    "ForcedSource": tuple(_FORCED_SOURCE),
    "Source": tuple(_SOURCE),
    "Visit": tuple(_VISIT),
    "CcdVisit": tuple(_CCD_VISIT),
}

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


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of demo ``table``: the chosen columns with their DP0.2 datatypes."""
    described = felis_columns(table)
    fields = []
    for name in COLUMNS[table]:
        if name not in described:
            raise InternalError(f"demo column {table}.{name} is not in the DP0.2 schema")
        fields.append(pa.field(name, _FELIS_TYPES[described[name]["datatype"]]))
    return pa.schema(fields)
