"""The decomposition of a plan from the translator's description of its SELECT.

``engine/split.py`` writes the partial and merge queries from ``QueryPlan.top_select`` by
putting SQL fragments together.  Here: what it writes for each shape, which plans run whole
and why, and — the oracle — that every shape, split, gives the local executor's answer on the
same data (``tests/engine/test_distributed.py`` has the executor's own tests).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyvault.adql.partials import AggregateCall, Item, OrderKey, Ref, TopSelect
from skyvault.catalog.registry import StoredTable
from skyvault.engine.archive import Archive, open_archive
from skyvault.engine.distributed import DaskExecutor
from skyvault.engine.plan import QueryPlan, ScanSpec, plan_query
from skyvault.engine.split import split_plan
from tests.engine.test_distributed import STARS, assert_same, data, local, stored

__all__ = ["data", "local", "stored"]  # fixtures shared with test_distributed

XM = "DISTANCE(POINT('ICRS', a.ra, a.dec), POINT('ICRS', b.ra, b.dec)) < 30.0/3600"

# (id, ADQL, kind, ordered result?)
SHAPES = [
    ("concat_filter", f"SELECT id, mag FROM {STARS} WHERE mag < 9", "concat", False),
    ("concat_scalar_subquery", f"SELECT id, (SELECT MAX(wl) FROM s.bands) AS w FROM {STARS} "
     "WHERE mag < 8.5", "concat", False),
    ("rows_top_order", f"SELECT TOP 6 id, mag FROM {STARS} ORDER BY mag DESC, id", "rows", True),
    ("rows_order_expression", f"SELECT TOP 6 id FROM {STARS} ORDER BY mag * 2 DESC, id", "rows",
     True),
    ("rows_order_parenthesised", f"SELECT TOP 4 id, mag FROM {STARS} ORDER BY (mag), id", "rows",
     True),
    ("rows_top_no_order", f"SELECT TOP 5 id FROM {STARS} OFFSET 3", "rows", None),
    ("rows_offset_only", f"SELECT id FROM {STARS} ORDER BY id OFFSET 19995", "rows", True),
    ("rows_distinct", f"SELECT DISTINCT band, cls FROM {STARS}", "rows", False),
    ("rows_distinct_ordinals", f"SELECT DISTINCT band, cls FROM {STARS} ORDER BY 2 DESC, 1", "rows",
     True),
    ("rows_star", f"SELECT TOP 4 * FROM {STARS} ORDER BY mag", "rows", True),
    ("rows_geometry", f"SELECT TOP 3 POINT('ICRS', ra, dec) AS p, id FROM {STARS} ORDER BY id",
     "rows", True),
    ("rows_natural_join", f"SELECT TOP 5 s.id, wl FROM {STARS} AS s NATURAL JOIN s.bands "
     "ORDER BY s.id", "rows", True),
    ("rows_mod_of_doubles", f"SELECT TOP 4 MOD(mag, 1.5) AS m, id FROM {STARS} ORDER BY m, id",
     "rows", True),
    ("aggregate_plain", f"SELECT COUNT(*) AS n, AVG(mag) AS m, SUM(cls) AS s, MIN(name) AS a, "
     f"MAX(flux) AS f FROM {STARS}", "aggregate", False),
    ("aggregate_group_having_order", "SELECT band, COUNT(*) AS n, AVG(mag) - AVG(flux) AS d "
     f"FROM {STARS} GROUP BY band HAVING COUNT(*) > 10 ORDER BY AVG(mag) DESC", "aggregate",
     True),
    ("aggregate_group_alias", f"SELECT cls / 2 AS h, COUNT(*) AS n FROM {STARS} GROUP BY h "
     "ORDER BY h", "aggregate", True),
    ("aggregate_group_parenthesised", f"SELECT (cls / 2) AS h, COUNT(*) AS n FROM {STARS} "
     "GROUP BY (cls / 2)", "aggregate", False),
    ("aggregate_two_terms", f"SELECT cls, cls / 2 AS h, COUNT(*) AS n FROM {STARS} "
     "GROUP BY cls, cls / 2 ORDER BY n DESC, cls", "aggregate", True),
    ("aggregate_case", "SELECT CASE WHEN cls > 3 THEN 'hi' ELSE 'lo' END AS c, COUNT(*) AS n "
     f"FROM {STARS} GROUP BY CASE WHEN cls > 3 THEN 'hi' ELSE 'lo' END", "aggregate", False),
    ("aggregate_distinct_count", f"SELECT band, COUNT(DISTINCT cls) AS k, SUM(DISTINCT cls) AS s, "
     f"COUNT(*) AS n FROM {STARS} GROUP BY band", "aggregate", False),
    ("aggregate_top_groups", f"SELECT TOP 2 band, COUNT(*) AS n FROM {STARS} GROUP BY band "
     "ORDER BY COUNT(*) DESC, band", "aggregate", True),
    ("aggregate_having_only", f"SELECT 1 AS one FROM {STARS} HAVING COUNT(*) > 5", "aggregate",
     False),
    ("aggregate_using_join", f"SELECT band, COUNT(*) AS n FROM {STARS} JOIN s.bands USING (band) "
     "GROUP BY band", "aggregate", False),
    ("aggregate_cte_broadcast", "WITH c AS (SELECT band FROM s.bands WHERE wl > 500) "
     f"SELECT s.band, COUNT(*) AS n FROM {STARS} AS s JOIN c ON c.band = s.band GROUP BY s.band",
     "aggregate", False),
    ("aggregate_udf_group", f"SELECT ivo_healpix_index(1, ra, dec) AS h, COUNT(*) AS n "
     f"FROM {STARS} GROUP BY ivo_healpix_index(1, ra, dec)", "aggregate", False),
    ("crossmatch_rows", f"SELECT TOP 10 a.id, b.id AS bid FROM {STARS} AS a JOIN {STARS} AS b "
     f"ON {XM} WHERE a.id < b.id ORDER BY a.id, b.id", "rows", True),
    ("crossmatch_comma_join", f"SELECT COUNT(*) AS n FROM {STARS} AS a, {STARS} AS b WHERE {XM}",
     "aggregate", False),
    ("crossmatch_subquery_side", f"SELECT COUNT(*) AS n FROM {STARS} AS a JOIN (SELECT ra, dec "
     f"FROM {STARS} WHERE id < 300) AS b ON {XM}", "aggregate", False),
    ("crossmatch_cte_side", f"WITH b AS (SELECT ra, dec FROM {STARS} WHERE mag < 9) "
     f"SELECT COUNT(*) AS n FROM {STARS} AS a JOIN b ON {XM}", "aggregate", False),
    ("whole_set_operation", f"SELECT id FROM {STARS} WHERE mag < 8.1 UNION "
     f"SELECT id FROM {STARS} WHERE mag > 19.9", "whole", False),
    ("whole_subquery", f"SELECT q.band, COUNT(*) AS n FROM (SELECT band FROM {STARS}) AS q "
     "GROUP BY q.band", "whole", False),
    ("whole_distinct_aggregates", f"SELECT COUNT(DISTINCT band) AS a, COUNT(DISTINCT cls) AS b "
     f"FROM {STARS}", "whole", False),
]  # fmt: skip


@pytest.fixture(scope="module")
def threaded(data: Path) -> Iterator[Archive]:
    archive = open_archive(data, executor=DaskExecutor(max_tasks=4))
    yield archive
    archive.close()


@pytest.mark.parametrize(
    ("adql", "kind", "ordered"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_each_shape_gives_the_local_answer(
    local: Archive, threaded: Archive, adql: str, kind: str, ordered: bool | None
) -> None:
    split = split_plan(threaded.plan(adql))
    assert split.kind == kind, split.reason
    result = threaded.stream(adql)
    got = result.to_table()
    assert (result.stats["tasks"] > 1) == (kind != "whole")
    want = local.stream(adql).to_table()
    if ordered is None:  # TOP without ORDER BY: any rows, the right number
        assert got.num_rows == want.num_rows and got.schema == want.schema
    else:
        assert_same(want, got, ordered=ordered)


# --- what is written ------------------------------------------------------------------------


def _plan(stored: StoredTable, top: TopSelect) -> QueryPlan:
    plan = plan_query(top.sql, [ScanSpec(placeholder="__sv_t0", table=stored)], [])
    return dataclasses.replace(plan, top_select=top)


ROWS = TopSelect(
    items=(Item('"id"', "id"), Item('"mag" * 2', "m2")),
    source='"__sv_t0" WHERE "mag" < 12',
    order=(OrderKey('"mag" * 2', 1, descending=True), OrderKey('"ra"', None)),
    limit=5,
    offset=3,
    tables=(("__sv_t0", ""),),
)


def test_rows_partial_and_merge(stored: StoredTable) -> None:
    split = split_plan(_plan(stored, ROWS))
    assert split.kind == "rows" and split.split == "__sv_t0"
    assert split.partial_sql == (
        'SELECT "id" AS "__sv_c0", "mag" * 2 AS "__sv_c1", "ra" AS "__sv_o0" FROM "__sv_t0" '
        'WHERE "mag" < 12 ORDER BY "__sv_c1" DESC, "__sv_o0" ASC LIMIT 8'
    )
    assert split.merge is not None
    assert split.merge.order == ("2 DESC", '"__sv_o0" ASC')
    assert (split.merge.limit, split.merge.offset, split.merge.distinct) == (5, 3, False)
    # MAXREC + 1 caps what a task returns; without a limit the tasks do not sort.
    assert split_plan(_plan(stored, ROWS), maxrec=1).partial_sql.endswith(" LIMIT 5")
    unlimited = dataclasses.replace(ROWS, limit=None, offset=None)
    assert split_plan(_plan(stored, unlimited)).partial_sql.endswith('WHERE "mag" < 12')


def test_distinct_cannot_sort_on_a_hidden_term(stored: StoredTable) -> None:
    top = dataclasses.replace(ROWS, distinct=True)
    split = split_plan(_plan(stored, top))
    assert split.kind == "whole"
    assert split.reason == "ORDER BY a term outside the SELECT DISTINCT list"


GROUPED = TopSelect(
    items=(
        Item('"band"', "band", merged=(Ref("g", 0),)),
        Item("count(*)", "n", merged=(Ref("a", 0),)),
        Item('avg("mag") - avg("flux")', "d", merged=(Ref("a", 1), " - ", Ref("a", 2))),
    ),
    source='"__sv_t0"',
    group=('"band"',),
    group_outputs=(None,),
    having="count(*) > 1",
    having_merged=(Ref("a", 0), " > 1"),
    order=(OrderKey('max("mag")', None, merged=(Ref("a", 3),)),),
    aggregated=True,
    aggregates=(
        AggregateCall("count"),
        AggregateCall("avg", '"mag"'),
        AggregateCall("avg", '"flux"'),
        AggregateCall("max", '"mag"'),
    ),
    tables=(("__sv_t0", ""),),
)


def test_aggregate_partial_and_merge(stored: StoredTable) -> None:
    split = split_plan(_plan(stored, GROUPED))
    assert split.kind == "aggregate"
    assert split.partial_sql == (
        'SELECT "band" AS "__sv_g0", count(*) AS "__sv_a0", count("mag") AS "__sv_a1", '
        'sum("mag") AS "__sv_a2", count("flux") AS "__sv_a3", sum("flux") AS "__sv_a4", '
        'max("mag") AS "__sv_a5" FROM "__sv_t0" GROUP BY "band"'
    )
    merge = split.merge
    assert merge is not None
    count = '(COALESCE(CAST(sum("__sv_a0") AS BIGINT), 0))'
    assert merge.outputs[:2] == ('"__sv_g0"', count)
    assert merge.outputs[2].startswith('(CASE WHEN sum("__sv_a1") > 0 THEN')
    assert merge.having == f"{count} > 1"
    assert merge.order == ('(max("__sv_a5")) ASC',)
    assert merge.group == ('"__sv_g0"',)


def test_count_distinct_groups_the_tasks_on_its_value(stored: StoredTable) -> None:
    top = dataclasses.replace(
        GROUPED,
        items=(GROUPED.items[0], Item('count(DISTINCT "cls")', "k", merged=(Ref("a", 0),))),
        having=None,
        having_merged=(),
        order=(),
        aggregates=(AggregateCall("count", '"cls"', distinct=True),),
    )
    split = split_plan(_plan(stored, top))
    assert split.partial_sql == (
        'SELECT "band" AS "__sv_g0", "cls" AS "__sv_d" FROM "__sv_t0" GROUP BY "band", "cls"'
    )
    assert split.merge is not None and split.merge.outputs[1] == '(count(DISTINCT "__sv_d"))'


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"reason": "not a single SELECT (a set operation)"}, "set operation"),
        ({"tables": ()}, "the split table is inside a subquery, CTE or nested join"),
        ({"tables": (("__sv_t0", "a RIGHT join"),)}, "a RIGHT join"),
        ({"functions": ("ivo_string_agg",)}, "the function ivo_string_agg"),
        ({"aggregates": (AggregateCall("median", '"mag"'),) * 4}, "the aggregate median"),
        (
            {"items": (Item('"id"', "__sv_x", merged=(Ref("g", 0),)),)},
            "a result column named like the executor's own",
        ),
        (
            {"items": (Item('"id"', "id", merge_reason='the column "id" is neither grouped'),)},
            "neither grouped",
        ),
        ({"having_reason": "a subquery outside an aggregate"}, "a subquery outside an aggregate"),
        (
            {
                "aggregates": (
                    AggregateCall("count"),
                    AggregateCall("count", '"a"', distinct=True),
                    AggregateCall("count", '"b"', distinct=True),
                    AggregateCall("max", '"mag"'),
                )
            },
            "DISTINCT aggregates of different values",
        ),
    ],
)
def test_what_runs_whole(stored: StoredTable, change: dict[str, object], reason: str) -> None:
    plan = _plan(stored, GROUPED)
    top = dataclasses.replace(GROUPED, **change)  # type: ignore[arg-type]
    split = split_plan(dataclasses.replace(plan, top_select=top))
    assert split.kind == "whole" and not split.splits
    assert reason in split.reason
    assert split.partial_sql == plan.sql


def test_a_plan_whose_sql_is_not_its_description_runs_whole(stored: StoredTable) -> None:
    """The SQL changed after translation in a way the split cannot follow: never guess."""
    plan = _plan(stored, ROWS)
    changed = dataclasses.replace(plan, sql=plan.sql.replace("< 12", "< 13"))
    split = split_plan(changed)
    assert split.kind == "whole"
    assert split.reason == "the plan's SQL is not the one its SELECT describes"
