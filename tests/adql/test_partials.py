"""The translator's description of the top-level SELECT (``Translation.top_select``).

Its parts must put back together into the translation's SQL exactly, for every query the
translator writes; and each shape — rows (TOP/ORDER BY/OFFSET, DISTINCT), aggregates with
GROUP BY and HAVING, queries that cannot be split — must be described as the distributed
executor needs (``tests/engine/test_split.py`` runs what it writes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skyvault.adql.partials import AggregateCall, Item, OrderKey, Ref, TopSelect
from skyvault.adql.translate import Translation, compile_adql
from skyvault.errors import AdqlError
from tests.adql._catalog import CATALOG
from tests.adql.test_translate import AGGREGATES, EXPRESSIONS

GOLDEN = Path(__file__).parent / "golden"
OBJ = "dp02_dc2_catalogs.Object"
FS = "dp02_dc2_catalogs.ForcedSource"
VISIT = "dp02_dc2_catalogs.Visit"
T0 = '"__sv_t0"'

QUERIES = [
    *(p.read_text() for p in sorted((GOLDEN / "translate").glob("*.adql"))),
    *(p.read_text() for p in sorted((GOLDEN / "valid").glob("*.adql"))),
    *(f"SELECT {e} AS x FROM {OBJ}" for e in EXPRESSIONS + AGGREGATES),
    *(f"SELECT tract, {e} AS x FROM {OBJ} GROUP BY tract ORDER BY 2 DESC" for e in AGGREGATES),
    f"SELECT TOP 5 objectId, r_mag FROM {OBJ} ORDER BY r_mag DESC, (objectId) OFFSET 2",
    f"SELECT DISTINCT tract, patch FROM {OBJ} ORDER BY patch",
    f"SELECT tract AS t, COUNT(*) AS n FROM {OBJ} GROUP BY t HAVING COUNT(*) > 1 ORDER BY n",
    f"SELECT o.tract, f.band, AVG(f.psfFlux) AS m FROM {OBJ} AS o JOIN {FS} AS f "
    "ON o.objectId = f.objectId GROUP BY o.tract, f.band",
    f"SELECT TOP 3 * FROM {OBJ} NATURAL JOIN {FS} ORDER BY 1",
    f"SELECT f.band, v.seeing FROM {FS} AS f LEFT JOIN {VISIT} AS v USING (ccdVisitId)",
]


def _compile(text: str) -> Translation | None:
    try:
        return compile_adql(text, CATALOG)
    except AdqlError:
        return None


def _top(text: str) -> TopSelect:
    top = compile_adql(text, CATALOG).top_select
    assert top is not None
    return top


def test_the_corpus_compiles() -> None:
    compiled = [t for t in map(_compile, QUERIES) if t is not None]
    assert len(compiled) >= 100


@pytest.mark.parametrize("text", QUERIES)
def test_the_parts_are_the_translation(text: str) -> None:
    """Put back together, the parts are the SQL the translator wrote, to the byte."""
    translation = _compile(text)
    if translation is None:
        return  # refused by the checker: nothing to describe
    top = translation.top_select
    assert top is not None
    if top.reason:
        assert top.reason == "not a single SELECT (a set operation)", top.reason
        return
    assert top.sql == (translation.keyed_sql or translation.sql)  # the SQL the plan runs
    assert top.crossmatches == translation.crossmatches


R2 = '(CAST("s0"."r_mag" AS DOUBLE) * CAST(2 AS DOUBLE))'


def test_rows_shape() -> None:
    top = _top(
        f"SELECT TOP 5 objectId AS id, r_mag * 2 AS r2 FROM {OBJ} WHERE tract = 3 "
        "ORDER BY r_mag * 2 DESC, i_mag, id OFFSET 2"
    )
    assert top.reason == "" and not top.aggregated and not top.distinct
    assert top.items == (
        Item('"s0"."objectId"', "id"),
        Item(R2, "r2"),
    )
    assert top.source == f'{T0} AS "s0" WHERE ("s0"."tract" = 3)'
    # The same expression as an output, another expression, an output's name.
    assert top.order == (
        OrderKey(R2, 1, descending=True),
        OrderKey('"s0"."i_mag"', None),
        OrderKey(None, 0),
    )
    assert (top.limit, top.offset) == (5, 2)
    assert top.tables == (("__sv_t0", ""),)
    assert top.split_reason("__sv_t0") == ""


def test_distinct_shape() -> None:
    top = _top(f"SELECT DISTINCT tract, patch FROM {OBJ} ORDER BY 2 DESC")
    assert top.distinct and not top.aggregated
    assert top.order == (OrderKey(None, 1, descending=True),)
    assert top.limit is None and top.offset is None


def test_aggregate_shape_with_group_by_and_having() -> None:
    top = _top(
        f"SELECT tract, COUNT(*) AS n, AVG(r_mag) - AVG(i_mag) AS d, SUM(patch) AS s "
        f"FROM {OBJ} GROUP BY tract HAVING COUNT(DISTINCT patch) > 1 ORDER BY MAX(r_mag)"
    )
    assert top.aggregated and top.group == ('"s0"."tract"',) and top.group_outputs == (None,)
    assert top.aggregates == (
        AggregateCall("count"),
        AggregateCall("avg", '"s0"."r_mag"'),
        AggregateCall("avg", '"s0"."i_mag"'),
        AggregateCall("sum", '"s0"."patch"'),
        AggregateCall("count", '"s0"."patch"', distinct=True),
        AggregateCall("max", '"s0"."r_mag"'),
    )
    merged = [i.merged for i in top.items]
    assert merged == [
        (Ref("g", 0),),
        (Ref("a", 0),),
        ("(", Ref("a", 1), " - ", Ref("a", 2), ")"),
        ("CAST(", Ref("a", 3), " AS BIGINT)"),  # the translator's cast stays around the merge
    ]
    assert top.having_merged == ("(", Ref("a", 4), " > 1)")
    assert top.order[0].output is None and top.order[0].merged == (Ref("a", 5),)
    assert all(not i.merge_reason for i in top.items)


def test_group_by_alias_and_expression() -> None:
    top = _top(f"SELECT tract / 2 AS h, COUNT(*) AS n FROM {OBJ} GROUP BY h")
    assert top.group == ('(CAST("s0"."tract" AS BIGINT) // CAST(2 AS BIGINT))',)
    assert top.group_outputs == (0,)
    assert top.items[0].merged == (Ref("g", 0),)
    assert " GROUP BY 1" in top.sql
    top = _top(f"SELECT (tract / 2) AS h, COUNT(*) AS n FROM {OBJ} GROUP BY (tract / 2)")
    assert top.items[0].merged == (Ref("g", 0),)  # the same term, in parentheses or not


@pytest.mark.parametrize(
    ("text", "placeholder", "reason"),
    [
        (f"SELECT objectId FROM {OBJ} UNION SELECT objectId FROM {FS}", "__sv_t0", "set operation"),
        (
            f"SELECT v.band FROM {VISIT} AS v LEFT JOIN {FS} AS f ON v.ccdVisitId = f.ccdVisitId",
            "__sv_t1",
            "the split table is the optional side of a LEFT join",
        ),
        (
            f"SELECT f.band FROM {FS} AS f RIGHT JOIN {VISIT} AS v ON v.ccdVisitId = f.ccdVisitId",
            "__sv_t0",
            "a RIGHT join",
        ),
        (
            f"SELECT q.tract FROM (SELECT tract FROM {OBJ}) AS q",
            "__sv_t0",
            "the split table is inside a subquery, CTE or nested join",
        ),
        (
            f"SELECT objectId FROM {FS} WHERE objectId IN (SELECT objectId FROM {OBJ})",
            "__sv_t1",
            "the split table is inside a subquery, CTE or nested join",
        ),
    ],
)
def test_why_a_table_cannot_be_split_on(text: str, placeholder: str, reason: str) -> None:
    assert reason in _top(text).split_reason(placeholder)


def test_the_preserved_side_and_the_outer_query_can_be_split_on() -> None:
    top = _top(
        f"SELECT objectId FROM {FS} AS f LEFT JOIN {VISIT} AS v ON v.ccdVisitId = f.ccdVisitId "
        f"WHERE objectId IN (SELECT objectId FROM {OBJ})"
    )
    assert top.split_reason("__sv_t0") == ""
    assert top.split_reason("__sv_t1") == "the split table is the optional side of a LEFT join"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            f"SELECT COUNT(*) - (SELECT COUNT(*) FROM {VISIT}) AS d FROM {OBJ}",
            "a subquery outside an aggregate",
        ),
        (
            f"SELECT tract, COUNT(*) AS n FROM {OBJ} GROUP BY tract "
            f"HAVING tract IN (SELECT tract FROM {OBJ})",
            "a subquery outside an aggregate",
        ),
    ],
)
def test_what_cannot_be_written_over_aggregates(text: str, reason: str) -> None:
    top = _top(text)
    assert reason in [top.items[-1].merge_reason, top.having_reason]


def test_functions_are_listed() -> None:
    top = _top(
        f"SELECT tract, ivo_string_agg(CAST(patch AS VARCHAR), ',') AS s FROM {OBJ} GROUP BY tract"
    )
    assert top.functions == ("ivo_string_agg",)
    top = _top(f"SELECT scisql_nanojanskyToAbMag(r_cModelFlux) AS m FROM {OBJ}")
    assert top.functions == ("scisql_nanojanskyToAbMag",)


def test_a_query_holding_the_reference_marks_is_not_described() -> None:
    top = _top(f"SELECT COUNT(*) AS n FROM {OBJ} WHERE 'x\ue000a1\ue001' <> 'y'")
    assert top.reason == "a text the distributed executor uses for itself"
    assert _top(f"SELECT COUNT(*) AS n FROM {OBJ} WHERE 'x\ue000' <> 'y'").reason == ""


def test_hooks_are_left_unset() -> None:
    """Describing the SELECT leaves the translation as it was (same SQL as a fresh run)."""
    text = f"SELECT tract, COUNT(*) AS n FROM {OBJ} GROUP BY tract ORDER BY COUNT(*)"
    first = compile_adql(text, CATALOG)
    assert first.top_select is not None and first.top_select.sql == first.sql
    assert "\ue000" not in first.sql and "__sv_g" not in first.sql
