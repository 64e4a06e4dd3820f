"""The function registry: built-ins, UDF signatures for TAPRegExt, DuckDB implementations."""

from __future__ import annotations

import math

import duckdb
import pytest

from skyvault.adql import (
    FUNCTIONS,
    FunctionKind,
    FunctionSpec,
    duckdb_macro_sql,
    language_features,
    parse,
    register_udf,
)
from skyvault.adql.functions import (
    FEATURE_ADQL_GEO,
    FEATURE_UDF,
    DuckDbMacro,
    DuckDbPythonUdf,
    Param,
    Signature,
)

REQUIRED_UDFS = [
    "ivo_healpix_index",
    "ivo_healpix_center",
    "ivo_hasword",
    "ivo_nocasematch",
    "ivo_string_agg",
    "ivo_interval_overlaps",
    "ivo_epoch_prop_pos",
    "scisql_nanojanskyToAbMag",
    "scisql_nanojanskyToAbMagSigma",
]


@pytest.mark.parametrize("name", REQUIRED_UDFS)
def test_required_udfs_are_registered_with_docs_and_implementation(name: str) -> None:
    spec = FUNCTIONS[name.upper()]
    assert spec.name == name
    assert spec.is_udf
    assert spec.description
    assert spec.duckdb is not None
    for form in spec.signature_forms():
        assert form.startswith(f"{name}(")
        assert " -> " in form


def test_signature_form_is_tapregext_style() -> None:
    spec = FUNCTIONS["IVO_HASWORD"]
    assert spec.signature_forms() == ["ivo_hasword(haystack TEXT, needle TEXT) -> INTEGER"]
    assert FUNCTIONS["DISTANCE"].min_args == 2
    assert FUNCTIONS["DISTANCE"].max_args == 4
    assert not FUNCTIONS["DISTANCE"].accepts(3)
    assert FUNCTIONS["COALESCE"].max_args is None
    assert FUNCTIONS["SCISQL_NANOJANSKYTOABMAG"].unit == "mag"


def test_language_features_cover_optional_adql_and_udfs() -> None:
    features = language_features()
    forms = {(f.type, f.form) for f in features}
    assert (FEATURE_ADQL_GEO, "CONTAINS") in forms
    assert any(t.endswith("#features-adql-sets") and f == "UNION" for t, f in forms)
    assert any(t.endswith("#features-adql-offset") for t, _ in forms)
    udf_forms = [f.form for f in features if f.type == FEATURE_UDF]
    assert "ivo_hasword(haystack TEXT, needle TEXT) -> INTEGER" in udf_forms
    assert len(udf_forms) >= len(REQUIRED_UDFS)


def test_register_udf_is_one_call_and_makes_the_function_parse() -> None:
    spec = FunctionSpec(
        "test_twice",
        FunctionKind.UDF,
        (Signature((Param("x", "DOUBLE"),), "DOUBLE"),),
        "Twice x.",
        duckdb=DuckDbMacro(((("x",), "2 * x"),)),
    )
    with pytest.raises(Exception, match="unknown function"):
        parse("SELECT test_twice(a) FROM t")
    register_udf(spec)
    try:
        assert parse("SELECT TEST_TWICE(a) FROM t").sql() == "SELECT test_twice(a) FROM t"
        with pytest.raises(ValueError, match="already registered"):
            register_udf(spec)
    finally:
        del FUNCTIONS["TEST_TWICE"]


@pytest.mark.parametrize("bad", ["select", "1abc", "has space"])
def test_register_udf_refuses_bad_names(bad: str) -> None:
    spec = FunctionSpec(bad, FunctionKind.UDF, (Signature((), "DOUBLE"),), "x")
    with pytest.raises(ValueError, match="identifier"):
        register_udf(spec)


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    for spec in FUNCTIONS.values():
        if isinstance(spec.duckdb, DuckDbMacro):
            connection.execute(duckdb_macro_sql(spec))
    return connection


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(f"SELECT {sql}").fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        # Examples of the IVOA UDF catalogue.
        ("ivo_hasword('Miller and Urey have', 'miller')", 1),
        ("ivo_hasword('shown that a primordial', 'soup')", 0),
        ("ivo_hasword('shown that a primordial', 'shown primordial')", 1),
        ("ivo_hasword('shown that a primordial', 'shown soup')", 0),
        ("ivo_nocasematch('abcabc', 'ab%')", 1),
        ("ivo_nocasematch('ABcabc', 'ab__bc')", 1),
        ("ivo_nocasematch('abcabc', '%BC')", 1),
        ("ivo_nocasematch('abcabc', 'abcab')", 0),
        ("ivo_hashlist_has('red#green#blue', 'red')", 1),
        ("ivo_hashlist_has('Red#green#blue', 'red')", 1),
        ("ivo_hashlist_has('red#green#blue', 're')", 0),
        ("ivo_hashlist_has('red#green#blue', 'red#green')", 0),
        ("ivo_interval_overlaps(-2, -3, 2, 3)", 0),
        ("ivo_interval_overlaps(-2, 55.3, 2, 3)", 1),
        ("ivo_interval_overlaps(2, 3, -2, 55.3)", 1),
        ("ivo_interval_overlaps(-2, 55.3, 3, 2)", 0),
        ("ivo_interval_overlaps(-2, 2, 2, 3)", 1),
        ("scisql_nanojanskyToAbMag(-1.0)", None),
    ],
)
def test_duckdb_macros_follow_the_udf_catalogue(
    con: duckdb.DuckDBPyConnection, call: str, expected: object
) -> None:
    assert _one(con, call) == expected


def test_ab_magnitudes(con: duckdb.DuckDBPyConnection) -> None:
    # 3631 Jy is AB magnitude 0; 1 nJy is 31.4 (rounded) by definition of the nJy zero point.
    assert _one(con, "scisql_nanojanskyToAbMag(3631e9)") == pytest.approx(0.0, abs=1e-9)
    assert _one(con, "scisql_nanojanskyToAbMag(1.0)") == pytest.approx(31.4, abs=1e-3)
    sigma = _one(con, "scisql_nanojanskyToAbMagSigma(100.0, 10.0)")
    assert sigma == pytest.approx(2.5 / math.log(10) * 0.1)


def test_string_agg_macro_aggregates(con: duckdb.DuckDBPyConnection) -> None:
    result = con.execute(
        "SELECT ivo_string_agg(x, '|') FROM (VALUES ('a'), (NULL), ('b')) AS v(x)"
    ).fetchone()
    assert result is not None
    assert sorted(str(result[0]).split("|")) == ["a", "b"]


def test_python_udfs_declare_their_duckdb_types() -> None:
    for name in ("IVO_HEALPIX_INDEX", "IVO_HEALPIX_CENTER", "IVO_EPOCH_PROP_POS"):
        impl = FUNCTIONS[name].duckdb
        assert isinstance(impl, DuckDbPythonUdf)
        assert callable(impl.function)
        assert impl.arg_types
