"""Column metadata from a Felis YAML schema (the format of Rubin's own data-model schemas).

Parsing and validation are lsst-felis's; this module only maps a Felis table onto the
metadata fields skyvault publishes (unit, UCD, description, principal flag, ...).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skyvault.errors import UsageError

__all__ = ["FelisTable", "dp02_schema_path", "read_felis_table"]


@dataclass(frozen=True)
class FelisTable:
    """What a Felis schema says about one table."""

    name: str
    description: str | None
    primary_key: str | None
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)


def dp02_schema_path() -> Path:
    """Rubin's DP0.2 schema, as shipped in the ``lsst-sdm-schemas`` package."""
    from importlib.resources import files

    return Path(str(files("lsst.sdm.schemas") / "dp02_dc2.yaml"))


@functools.lru_cache(maxsize=4)
def _validated_schema(path: str, mtime_ns: int, size: int) -> Any:
    """The Felis schema in ``path``, parsed and validated by lsst-felis (cached per version)."""
    from felis.datamodel import Schema
    from pydantic import ValidationError

    try:
        raw = yaml.load(
            Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    except FileNotFoundError:
        raise UsageError(f"Felis schema {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"Felis schema {path} is not valid YAML: {exc}") from None
    try:
        return Schema.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise UsageError(
            f"Felis schema {path} is not valid: {where}: {first.get('msg')}",
            hint="check it with `felis validate`",
        ) from None


def read_felis_table(path: Path, table: str) -> FelisTable:
    """Metadata for ``table`` (matched exactly, else case-insensitively) from a Felis file."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise UsageError(f"Felis schema {path} does not exist") from None
    # One parse per file version: a multi-table ingest (the demo) reads one schema often.
    schema = _validated_schema(str(path), stat.st_mtime_ns, stat.st_size)

    tables = {t.name: t for t in schema.tables}
    chosen = tables.get(table)
    if chosen is None:
        folded = {name.lower(): t for name, t in tables.items()}
        chosen = folded.get(table.lower())
    if chosen is None:
        raise UsageError(
            f"Felis schema {path.name} has no table {table!r}",
            hint=f"it describes: {', '.join(sorted(tables))}",
        )

    columns: dict[str, dict[str, Any]] = {}
    for col in chosen.columns:
        info: dict[str, Any] = {
            "description": col.description,
            "unit": col.ivoa_unit or col.fits_tunit,
            "ucd": col.ivoa_ucd,
            "utype": col.votable_utype,
            "xtype": col.votable_xtype,
        }
        if col.tap_principal is not None:
            info["principal"] = bool(col.tap_principal)
        if col.tap_std is not None:
            info["std"] = bool(col.tap_std)
        columns[col.name] = {k: v for k, v in info.items() if v not in (None, "")}

    primary = chosen.primary_key
    primary_name: str | None = None
    if isinstance(primary, str):
        primary_name = primary.rsplit(".", 1)[-1]
    return FelisTable(
        name=chosen.name,
        description=chosen.description,
        primary_key=primary_name,
        columns=columns,
    )
