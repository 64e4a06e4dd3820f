"""The function table is the one place a function is described: every stage reads it.

A function added as one entry (a throwaway built-in with its own node type, a throwaway
Python UDF) parses, is typed, translates and runs; and every entry of the table is known to
the dialect's parser, the validator, the checker (its typing rule is called) and the
translator (its DuckDB form is what the SQL calls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlglot import exp

from skyvault.adql import (
    FUNCTIONS,
    FunctionKind,
    FunctionSpec,
    check,
    nodes,
    parse,
    translate,
    typing_rules,
)
from skyvault.adql import functions as ft
from skyvault.adql.annotate import ValueInfo
from skyvault.adql.dialect import Adql
from skyvault.adql.functions import (
    DuckDbFunction,
    DuckDbPythonUdf,
    Param,
    Signature,
    register_builtin,
    register_udf,
)
from skyvault.adql.translate import Translation, compile_adql
from skyvault.engine.connection import Sandbox, _udf_definitions
from skyvault.errors import UnsupportedQuery
from tests.adql._catalog import CATALOG, TYCHO, random_table


class _CubeRoot(exp.Expression, exp.Func):
    """A node type no ADQL function has: the throwaway built-in ``CUBE_ROOT(x)``."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True}
    _sql_names: ClassVar[list[str]] = ["CUBE_ROOT"]


def _triple(x: pa.Array) -> pa.Array:
    """The throwaway Python UDF: 3 x (Arrow in, Arrow out, as DuckDB calls it)."""
    return pc.multiply(pc.cast(x, pa.float64()), 3.0)


CUBE_ROOT = FunctionSpec(
    "CUBE_ROOT",
    FunctionKind.MATH,
    (Signature((Param("x", "DOUBLE"),), "DOUBLE"),),
    "Cube root of x.",
    ucd="arith.root",
    node=_CubeRoot,
    parse=ft.one_argument(_CubeRoot),
    node_args=frozenset({"this"}),
    typing=typing_rules.same_quantity,
    duckdb=DuckDbFunction("cbrt"),
)
TRIPLE = FunctionSpec(
    "test_triple",
    FunctionKind.UDF,
    (Signature((Param("x", "DOUBLE"),), "DOUBLE"),),
    "Three times x.",
    unit="mag",
    ucd="phot.mag",
    duckdb=DuckDbPythonUdf(_triple, ("DOUBLE",), "DOUBLE"),
)


@pytest.fixture
def throwaway() -> Iterator[None]:
    """``CUBE_ROOT`` and ``test_triple`` registered for one test (one entry each)."""
    register_builtin(CUBE_ROOT)
    register_udf(TRIPLE)
    try:
        yield
    finally:
        del FUNCTIONS["CUBE_ROOT"]
        FUNCTIONS.pop("TEST_TRIPLE")


def _run(translation: Translation, tables: dict[str, pa.Table], tmp_path: Path) -> pa.Table:
    """Run the SQL in a sandbox with every registered UDF, as the engine does."""
    macros, udfs = _udf_definitions()
    cursor = Sandbox([tmp_path], macros=macros, python_udfs=udfs).cursor()
    for ref in translation.tables:
        cursor.register(ref.placeholder, tables[ref.meta.qualified_name])
    return cursor.sql(translation.sql).to_arrow_table()


def test_one_entry_makes_a_function_parse_type_translate_and_run(
    throwaway: None, tmp_path: Path
) -> None:
    adql = "SELECT id, cube_root(mag_vt) AS c, TEST_TRIPLE(mag_vt) AS t FROM tycho2.main"
    query = parse(adql)
    assert query.tree.find(_CubeRoot) is not None
    assert query.tree.find(nodes.UdfCall).name == "test_triple"  # type: ignore[union-attr]
    checked = check(query, CATALOG)
    cube, triple = checked.columns[1], checked.columns[2]
    # CUBE_ROOT keeps its argument's unit (same_quantity); its entry has no say in that.
    assert (cube.datatype, cube.unit, cube.ucd) == ("double", "mag", "phot.mag;em.opt.V")
    assert (triple.datatype, triple.unit, triple.ucd) == ("double", "mag", "phot.mag")
    translation = translate(checked)
    assert "cbrt(" in translation.sql
    assert "test_triple(CAST(" in translation.sql
    table = random_table(TYCHO, 50, seed=3)
    result = _run(translation, {"tycho2.main": table}, tmp_path)
    mag = table.column("mag_vt").to_numpy().astype(float)
    assert result.column("c").to_numpy() == pytest.approx(mag ** (1 / 3))
    assert result.column("t").to_numpy() == pytest.approx(3 * mag)


def test_removing_the_entry_removes_the_function(throwaway: None) -> None:
    del FUNCTIONS["CUBE_ROOT"]
    try:
        assert "CUBE_ROOT" not in Adql.Parser.FUNCTIONS
        with pytest.raises(Exception, match="unknown function"):
            parse("SELECT CUBE_ROOT(ra) FROM t")
    finally:
        register_builtin(CUBE_ROOT)


def test_a_builtin_needs_node_parse_form_and_rule() -> None:
    with pytest.raises(ValueError, match="node type"):
        register_builtin(dataclasses.replace(CUBE_ROOT, typing=None))
    with pytest.raises(ValueError, match="already registered"):
        register_builtin(dataclasses.replace(FUNCTIONS["SQRT"], name="SQRT2"))


# --- every entry is known to each stage ------------------------------------------------------

#: A valid call of each function over tycho2.main (id BIGINT, ra/dec deg, mag_vt, name).
_SAMPLE_ARGUMENT = {
    "DOUBLE": "ra",
    "REAL": "ra",
    "NUMERIC": "mag_vt",
    "ANY": "ra",
    "INTEGER": "3",
    "BIGINT": "id",
    "TEXT": "name",
    "POINT": "POINT(ra, dec)",
    "GEOMETRY": "CIRCLE(10, 20, 1)",
}
_SPECIAL_CALLS = {
    "CAST": "CAST(ra AS INTEGER)",
    "IN_UNIT": "IN_UNIT(ra, 'arcsec')",
    "ROUND": "ROUND(ra, 2)",
    "TRUNCATE": "TRUNCATE(ra, 2)",
    "RAND": "RAND()",
    "CONTAINS": "CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 1))",
    "REGION": "REGION('CIRCLE ICRS 10 20 1')",
    "CENTROID": "CENTROID(CIRCLE(10, 20, 1))",
    "AREA": "AREA(CIRCLE(10, 20, 1))",
    "COORDSYS": "COORDSYS(POINT(ra, dec))",
    # Not the table's own position, which becomes a shift of _healpix_29.
    "IVO_HEALPIX_INDEX": "ivo_healpix_index(3, ra + 0, dec)",
}


def _sample_call(spec: FunctionSpec) -> str:
    if spec.name.upper() in _SPECIAL_CALLS:
        return _SPECIAL_CALLS[spec.name.upper()]
    signature = min(spec.signatures, key=lambda s: (s.params[:1] != (), len(s.params)))
    if signature.params and signature.params[0].name == "coordsys":
        signature = next(s for s in spec.signatures if s.params[0].name != "coordsys")
    args = [_SAMPLE_ARGUMENT[p.type] for p in signature.params]
    return f"{spec.name}({', '.join(args)})"


def _sample_query(spec: FunctionSpec) -> str:
    return f"SELECT {_sample_call(spec)} AS v FROM tycho2.main"


ENTRIES = sorted(FUNCTIONS)


@pytest.mark.parametrize("key", ENTRIES)
def test_every_entry_is_the_parsers_and_the_validators(key: str) -> None:
    spec = FUNCTIONS[key]
    tree = parse(_sample_query(spec)).tree
    value = tree.expressions[0].this
    if spec.is_udf:
        assert spec.node is None and spec.parse is None
        assert isinstance(value, nodes.UdfCall) and value.name == spec.name
        return
    assert spec.node is not None and isinstance(value, spec.node)
    assert ft.spec_of(value) is spec
    if spec.parse is not None:
        assert Adql.Parser.FUNCTIONS[key] is spec.parse
    else:  # CAST: grammar
        assert key in Adql.Parser.FUNCTION_PARSERS
    assert {k for k, v in value.args.items() if v not in (None, False, [])} <= spec.node_args


@pytest.mark.parametrize("key", ENTRIES)
def test_every_entry_is_typed_by_its_rule(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = FUNCTIONS[key]
    calls: list[str] = []

    def spy(rule: Callable[..., ValueInfo]) -> Callable[..., ValueInfo]:
        def typed(ctx: Any, entry: FunctionSpec, node: exp.Expr, scope: Any) -> ValueInfo:
            calls.append(entry.name)
            return rule(ctx, entry, node, scope)

        return typed

    monkeypatch.setitem(FUNCTIONS, key, dataclasses.replace(spec, typing=spy(spec.typing_rule)))
    try:
        checked = check(parse(_sample_query(spec)), CATALOG)
    except UnsupportedQuery:
        assert spec.name == "REGION"  # refused by its own rule
    else:
        column = checked.columns[0]
        if spec.ucd is not None and not spec.is_aggregate:
            assert column.ucd == spec.ucd
    assert calls and calls[0] == spec.name


@pytest.mark.parametrize("key", [k for k in ENTRIES if FUNCTIONS[k].duckdb is not None])
def test_every_duckdb_form_is_the_translators(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = FUNCTIONS[key]
    query = _sample_query(spec)
    if isinstance(spec.duckdb, DuckDbFunction):
        renamed = dataclasses.replace(spec, duckdb=DuckDbFunction("renamed_fn"))
        monkeypatch.setitem(FUNCTIONS, key, renamed)
        assert "renamed_fn(" in compile_adql(query, CATALOG).sql
    else:
        assert f"{spec.name}(" in compile_adql(query, CATALOG).sql


def test_python_udfs_are_registered_as_the_tables_function_objects() -> None:
    _, udfs = _udf_definitions()
    registered = {name: function for name, function, _, _ in udfs}
    for spec in FUNCTIONS.values():
        if isinstance(spec.duckdb, DuckDbPythonUdf):
            assert registered[spec.name] is spec.duckdb.function


def test_the_distributed_executors_scalar_list_is_the_tables(throwaway: None) -> None:
    from skyvault.engine.split import _scalar_udfs

    scalar = _scalar_udfs()
    assert "test_triple" in scalar and "ivo_hasword" in scalar
    assert "ivo_string_agg" not in scalar  # an aggregate UDF, by its entry's ``aggregate``
    FUNCTIONS.pop("TEST_TRIPLE")
    try:
        assert "test_triple" not in _scalar_udfs()
    finally:
        register_udf(TRIPLE)


def test_the_derived_tables_follow_every_way_of_changing_the_table() -> None:
    saved = dict(FUNCTIONS)
    try:
        FUNCTIONS.update({"CUBE_ROOT": CUBE_ROOT})
        assert Adql.Parser.FUNCTIONS["CUBE_ROOT"] is CUBE_ROOT.parse
        assert ft.spec_for(_CubeRoot) is CUBE_ROOT
        FUNCTIONS.clear()
        assert not Adql.Parser.FUNCTIONS and ft.spec_for(exp.Ceil) is None
        table = FUNCTIONS
        table |= saved
        assert table is FUNCTIONS
        assert Adql.Parser.FUNCTIONS.keys() == {k for k, s in saved.items() if s.parse}
        assert ft.spec_for(exp.Ceil) is saved["CEILING"]
    finally:
        FUNCTIONS.clear()
        FUNCTIONS.update(saved)
    assert dict(FUNCTIONS) == saved
