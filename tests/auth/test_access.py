"""Grants: schema vs table level, PUBLIC, revoke, exact names, anonymous access on and off."""

from __future__ import annotations

import pytest

from skyvault.auth.access import AccessPolicy, grant_access, parse_target, revoke_access
from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage
from skyvault.catalog.metadata import TableMeta
from skyvault.errors import AuthenticationRequired, UsageError


def _table(qualified: str) -> TableMeta:
    schema, name = qualified.split(".")
    return TableMeta(schema=schema, name=name, kind="plain", columns=(), nrows=0)


TABLES = [
    _table(q)
    for q in (
        "dp02.Object",
        "dp02.Source",
        "dp03.SSObject",
        "public_data.stars",
        "secret.plans",
        "TAP_SCHEMA.tables",
    )
]

ANON = Identity.anonymous()
ALICE = Identity("alice", frozenset({"dp02"}))
BOB = Identity("bob", frozenset())
CAROL = Identity("carol", frozenset({"dp03", "other"}))


def _names(policy: AccessPolicy, who: Identity) -> list[str]:
    return [t.qualified_name for t in policy.visible_tables(who, TABLES)]


@pytest.fixture
def policy(storage: AuthStorage, alice: str) -> AccessPolicy:
    storage.add_user("carol", storage.list_users()[0].created)
    storage.add_group("dp03", ["carol"], storage.list_users()[0].created)
    grant_access(storage, "dp02", "dp02")
    grant_access(storage, "dp03.SSObject", "dp03")
    grant_access(storage, "public_data", None)
    return AccessPolicy(storage, anonymous_allowed=True)


def test_nothing_is_visible_without_grants(storage: AuthStorage) -> None:
    policy = AccessPolicy(storage)
    for who in (ANON, ALICE, BOB):
        assert _names(policy, who) == ["TAP_SCHEMA.tables"]


def test_schema_table_and_public_grants(policy: AccessPolicy) -> None:
    assert _names(policy, ANON) == ["public_data.stars", "TAP_SCHEMA.tables"]
    assert _names(policy, BOB) == ["public_data.stars", "TAP_SCHEMA.tables"]
    assert _names(policy, ALICE) == [
        "dp02.Object",
        "dp02.Source",
        "public_data.stars",
        "TAP_SCHEMA.tables",
    ]
    assert _names(policy, CAROL) == ["dp03.SSObject", "public_data.stars", "TAP_SCHEMA.tables"]
    assert policy.can_read(ALICE, "dp02", "AnyFutureTable")
    assert not policy.can_read(CAROL, "dp03", "OtherTable")  # table-level grant only
    assert not policy.can_read(ALICE, "secret", "plans")


def test_groups_claimed_by_name_only(policy: AccessPolicy) -> None:
    """Group membership is what the identity carries; a user name equal to a group is nothing."""
    assert not policy.can_read(Identity("dp02", frozenset()), "dp02", "Object")


def test_names_are_case_sensitive_as_stored(policy: AccessPolicy, storage: AuthStorage) -> None:
    assert not policy.can_read(ALICE, "DP02", "Object")
    assert not policy.can_read(CAROL, "dp03", "ssobject")
    grant_access(storage, "secret.PLANS", None)
    assert not policy.can_read(ANON, "secret", "plans")
    assert policy.can_read(ANON, "secret", "PLANS")


def test_revoke_takes_effect_at_once(policy: AccessPolicy, storage: AuthStorage) -> None:
    revoke_access(storage, "dp02", "dp02")
    assert _names(policy, ALICE) == ["public_data.stars", "TAP_SCHEMA.tables"]
    revoke_access(storage, "public_data", None)
    assert _names(policy, ANON) == ["TAP_SCHEMA.tables"]
    with pytest.raises(UsageError, match=r"no grant on public_data to PUBLIC"):
        revoke_access(storage, "public_data", None)


def test_revoke_hint_names_remaining_grantees(policy: AccessPolicy, storage: AuthStorage) -> None:
    with pytest.raises(UsageError) as info:
        revoke_access(storage, "dp03.SSObject", None)
    assert info.value.hint == "dp03.SSObject is granted to: dp03"


def test_grants_are_idempotent_and_checked(storage: AuthStorage, alice: str) -> None:
    assert grant_access(storage, "dp02", "dp02")[1] is True
    assert grant_access(storage, "dp02", "dp02")[1] is False
    assert grant_access(storage, "dp02", None)[1] is True
    assert len(storage.list_grants()) == 2
    with pytest.raises(UsageError, match="no group 'nope'"):
        grant_access(storage, "dp02", "nope")
    # Behind a proxy, groups live in the proxy: any valid name is accepted.
    assert grant_access(storage, "dp02", "nope", require_known_group=False)[1] is True
    with pytest.raises(UsageError, match="PUBLIC"):
        grant_access(storage, "dp02", "public")


@pytest.mark.parametrize("target", ["", "a.b.c", "a..b", "1abc", "dp02.Obj ect", "dp02.*", "é"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(UsageError):
        parse_target(target)


def test_parse_target() -> None:
    assert parse_target("dp02_dc2_catalogs") == ("dp02_dc2_catalogs", None)
    assert parse_target("dp02.Object") == ("dp02", "Object")


def test_removing_a_group_removes_its_grants(policy: AccessPolicy, storage: AuthStorage) -> None:
    storage.remove_group("dp02")
    assert not any(g.group == "dp02" for g in storage.list_grants())
    assert not policy.can_read(ALICE, "dp02", "Object")


def test_anonymous_off(storage: AuthStorage, policy: AccessPolicy) -> None:
    closed = AccessPolicy(storage, anonymous_allowed=False)
    assert closed.visible_tables(ANON, TABLES) == []
    assert not closed.can_read(ANON, "public_data", "stars")
    with pytest.raises(AuthenticationRequired) as info:
        closed.require_anonymous_allowed(ANON)
    assert info.value.http_status == 401
    closed.require_anonymous_allowed(BOB)
    policy.require_anonymous_allowed(ANON)
    assert _names(closed, BOB) == ["public_data.stars", "TAP_SCHEMA.tables"]


def test_snapshot_reused_within_a_request(policy: AccessPolicy) -> None:
    snap = policy.snapshot()
    assert policy.visible_tables(ALICE, TABLES, snap) == policy.visible_tables(ALICE, TABLES)
    assert policy.can_read(ALICE, "dp02", "Object", snap)


def test_filtered_list_makes_hidden_tables_nonexistent_to_adql(policy: AccessPolicy) -> None:
    """The ADQL checker given the filtered list reports a hidden table like a missing one."""
    check = pytest.importorskip("skyvault.adql.check")
    parsing = pytest.importorskip("skyvault.adql.parsing")
    from skyvault.errors import AdqlError

    tables = [*TABLES, _table("dp03.Hidden")]

    def error_of(who: Identity, sql: str, name: str) -> str:
        visible = policy.visible_tables(who, tables)
        with pytest.raises(AdqlError) as info:
            check.check(parsing.parse(sql), visible)
        return str(info.value).replace(name, "NAME")

    # A hidden schema, and a hidden table in a schema the caller partly sees.
    cases = [
        (BOB, "secret", "nosuch", "SELECT * FROM {}.plans"),
        (CAROL, "Hidden", "Missing", "SELECT * FROM dp03.{}"),
        (CAROL, "Hidden", "Missing", 'SELECT * FROM dp03."{}"'),
        (CAROL, "Hidden", "Missing", "SELECT s.* FROM dp03.SSObject AS s JOIN dp03.{} AS h ON 1=1"),
        (BOB, "secret", "nosuch", "WITH c AS (SELECT * FROM {}.plans) SELECT * FROM c"),
    ]
    for who, hidden, missing, sql in cases:
        assert error_of(who, sql.format(hidden), hidden) == error_of(
            who, sql.format(missing), missing
        ), sql


def test_write_grants(policy: AccessPolicy, storage: AuthStorage) -> None:
    """A write grant lets a group append (and read); read grants, PUBLIC and anonymous never."""
    assert not policy.can_write(ALICE, "dp02", "Object")  # read grant only
    assert grant_access(storage, "dp02.Object", "dp02", level="write")[1] is True
    assert policy.can_write(ALICE, "dp02", "Object")
    assert not policy.can_write(ALICE, "dp02", "Source")  # table-level write grant
    assert not policy.can_write(CAROL, "dp02", "Object")
    assert not policy.can_write(ANON, "dp02", "Object")
    # A schema-level write grant covers every table of the schema; write implies read.
    grant_access(storage, "dp03", "dp03", level="write")
    assert policy.can_write(CAROL, "dp03", "Other") and policy.can_read(CAROL, "dp03", "Other")
    assert not policy.can_write(CAROL, "TAP_SCHEMA", "tables")
    with pytest.raises(UsageError, match="PUBLIC"):
        grant_access(storage, "public_data", None, level="write")


def test_write_grant_levels_raise_and_lower(storage: AuthStorage, alice: str) -> None:
    """One grant per target and group: write raises a read grant, revoking write lowers it."""
    policy = AccessPolicy(storage)
    assert grant_access(storage, "dp02.Object", "dp02")[1] is True
    assert grant_access(storage, "dp02.Object", "dp02", level="write")[1] is True
    assert grant_access(storage, "dp02.Object", "dp02", level="write")[1] is False
    assert grant_access(storage, "dp02.Object", "dp02")[1] is False  # write covers read
    assert [(g.target, g.level) for g in storage.list_grants()] == [("dp02.Object", "write")]
    revoke_access(storage, "dp02.Object", "dp02", level="write")
    assert not policy.can_write(ALICE, "dp02", "Object")
    assert policy.can_read(ALICE, "dp02", "Object")
    with pytest.raises(UsageError, match=r"no write grant on dp02\.Object to dp02"):
        revoke_access(storage, "dp02.Object", "dp02", level="write")
    grant_access(storage, "dp02.Object", "dp02", level="write")
    revoke_access(storage, "dp02.Object", "dp02")  # revoking the grant removes it whole
    assert storage.list_grants() == []


def test_grants_are_kept_until_the_database_changes(
    policy: AccessPolicy, storage: AuthStorage
) -> None:
    """The grant snapshot and the visible lists are kept between requests while the auth
    database is unchanged; a grant or revoke written through another connection (as the
    ``skyvault grant`` CLI does, from another process) applies to the very next call."""
    crew = Identity("bob", frozenset({"crew"}))
    first = policy.snapshot()
    assert policy.snapshot() is first  # not read again
    assert _names(policy, crew) == ["public_data.stars", "TAP_SCHEMA.tables"]
    cli = AuthStorage(storage.url)  # another connection to the same file
    try:
        cli.add_group("crew", ["bob"], cli.list_users()[0].created)
        grant_access(cli, "secret", "crew")
        assert policy.snapshot() is not first
        assert _names(policy, crew) == ["public_data.stars", "secret.plans", "TAP_SCHEMA.tables"]
        assert _names(policy, BOB) == ["public_data.stars", "TAP_SCHEMA.tables"]
        revoke_access(cli, "secret", "crew")
        assert _names(policy, crew) == ["public_data.stars", "TAP_SCHEMA.tables"]
    finally:
        cli.close()


def test_kept_lists_are_per_access(policy: AccessPolicy) -> None:
    """Callers asked alternately, over one snapshot, each get their own list: a kept list
    is shared only by callers with the same groups (and the same anonymity)."""
    expected = {who: _names(policy, who) for who in (ANON, ALICE, BOB, CAROL)}
    alice_twin = Identity("alice2", frozenset({"dp02"}))
    nobody = Identity("nobody", frozenset())
    for _ in range(3):
        for who in (ALICE, ANON, CAROL, BOB):
            assert _names(policy, who) == expected[who]
        assert _names(policy, alice_twin) == expected[ALICE]
        assert _names(policy, nobody) == expected[BOB]
    closed = AccessPolicy(policy._storage, anonymous_allowed=False)
    assert _names(closed, ANON) == []
    # A list handed out is the caller's own: changing it changes no one else's.
    mine = policy.visible_tables(ALICE, TABLES)
    mine.clear()
    assert _names(policy, ALICE) == expected[ALICE]
    # New table metadata (a table published or re-ingested) is filtered afresh.
    renamed = [_table("secret.plans2") if t.name == "plans" else t for t in TABLES]
    assert "secret.plans2" not in [t.qualified_name for t in policy.visible_tables(ALICE, renamed)]
    extra = [*TABLES, _table("dp02.Forced")]
    assert "dp02.Forced" in [t.qualified_name for t in policy.visible_tables(ALICE, extra)]


def test_kept_lists_keep_a_workspace_owner_apart(
    policy: AccessPolicy, storage: AuthStorage
) -> None:
    """Two callers with the same groups share a kept list, unless one owns a workspace
    schema: then their tables are theirs alone, whichever of the two asks first."""
    now = storage.list_users()[0].created
    storage.add_user("dave", now)
    schema = storage.claim_workspace_schema("bob", ["user_bob"], now)
    tables = [*TABLES, _table(f"{schema}.targets")]
    dave = Identity("dave", frozenset())
    for first, second in ((dave, BOB), (BOB, dave), (dave, BOB)):
        names = {
            who.user: [t.qualified_name for t in policy.visible_tables(who, tables)]
            for who in (first, second)
        }
        assert f"{schema}.targets" in names["bob"]
        assert f"{schema}.targets" not in names["dave"]
