"""The DuckDB database a query runs in, locked down so SQL can reach only the catalogues.

ADQL is whitelisted by the parser before any SQL exists; this is the second wall.  One
in-memory DuckDB database is shared by all queries of an archive (so Parquet footers are
cached across queries), configured once and then locked:

* no extension is ever installed or loaded from the network,
* file access is limited to the data root (``allowed_directories``) with every other
  external access disabled, which also removes COPY, ATTACH, EXPORT and ``read_*`` on other
  paths,
* a memory limit and a thread count,
* ``lock_configuration`` so no statement can change any of this.

Each query runs on its own cursor (a DuckDB connection to the shared database), whose
temporary views name the pruned files of each table the query reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import duckdb.func

__all__ = ["Sandbox", "SandboxSettings"]

LATE_MATERIALISATION_ROWS = 1_000_000
"""DuckDB's own limit for rewriting large plain LIMITs (see :class:`Sandbox`)."""


class Sandbox:
    """A locked-down DuckDB database over the files under ``roots``.

    Parameters
    ----------
    roots
        Directories queries may read (the data root; upload areas).
    memory_limit
        DuckDB memory limit, e.g. ``"2GB"``.
    threads
        Worker threads DuckDB uses per query.
    macros
        ``CREATE MACRO`` statements (ADQL UDFs implemented in SQL), run before locking.
    """

    def __init__(
        self,
        roots: Iterable[Path],
        *,
        memory_limit: str = "2GB",
        threads: int = 2,
        macros: Iterable[str] = (),
        python_udfs: Iterable[tuple[str, Any, list[Any], Any]] = (),
    ) -> None:
        self._db = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "threads": threads,
                "memory_limit": memory_limit,
            },
        )
        allowed = [str(Path(r).resolve()) + "/" for r in roots]
        # GLOBAL: a plain SET is this connection's own, and queries run on cursors (other
        # connections), which would then read every Parquet footer again, every query.
        self._db.execute("SET GLOBAL parquet_metadata_cache = true")
        # DuckDB rewrites a plain LIMIT of up to 1M rows over a scan ("late
        # materialisation") into a semi-join on row numbers and a sort of the whole result:
        # a 1M-row TOP then holds its result in memory instead of streaming it.  With the
        # threshold at that 1M, no plain LIMIT without OFFSET qualifies; TOP-N with ORDER BY
        # (which holds its N rows anyway) and LIMIT with OFFSET still may.
        self._db.execute(f"SET GLOBAL late_materialization_max_rows = {LATE_MATERIALISATION_ROWS}")
        self._db.execute("SET allowed_directories = $dirs", {"dirs": allowed})
        for statement in macros:
            self._db.execute(statement)
        for name, function, params, returns in python_udfs:
            self._db.create_function(
                name,
                function,
                params,
                returns,
                type=duckdb.func.ARROW,
                null_handling=duckdb.func.SPECIAL,
                side_effects=False,
            )
        self._db.execute("SET enable_external_access = false")
        self._db.execute("SET lock_configuration = true")
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the shared database, for one query."""
        with self._lock:
            return self._db.cursor()

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class SandboxSettings:
    """How to build a :class:`Sandbox` like an archive's, anywhere (picklable)."""

    roots: tuple[str, ...]
    memory_limit: str = "2GB"
    threads: int = 2
    udfs: bool = True
    """Register the ADQL UDFs (SQL macros and Python functions)."""

    def build(self) -> Sandbox:
        macros: list[str] = []
        udfs: list[tuple[str, Any, list[Any], Any]] = []
        if self.udfs:
            macros, udfs = _udf_definitions()
        return Sandbox(
            [Path(r) for r in self.roots],
            memory_limit=self.memory_limit,
            threads=self.threads,
            macros=macros,
            python_udfs=udfs,
        )


def _udf_definitions() -> tuple[list[str], list[tuple[str, Any, list[Any], Any]]]:
    """The SQL macros and Python scalar functions of every registered UDF (the function
    table holds the Python function objects themselves)."""
    from skyvault.adql.functions import FUNCTIONS, DuckDbMacro, DuckDbPythonUdf, duckdb_macro_sql
    from skyvault.sky.stcs import internal_udfs

    macros: list[str] = []
    udfs: list[tuple[str, Any, list[Any], Any]] = []
    for spec in FUNCTIONS.values():
        impl = spec.duckdb
        if isinstance(impl, DuckDbMacro):
            macros.append(duckdb_macro_sql(spec))
        elif isinstance(impl, DuckDbPythonUdf):
            udfs.append((spec.name, impl.function, list(impl.arg_types), impl.return_type))
    udfs += internal_udfs()  # the engine's own (region columns), not callable from ADQL
    return macros, udfs
