"""The auth subcommands of ``skyvault``: users, groups, tokens, grant, revoke, grants.

:func:`add_subcommands` adds them to the main parser.  Like every subcommand they take
``--data DIR``; the auth database is ``DIR/.skyvault/auth.sqlite3`` unless
``SKYVAULT_AUTH_DATABASE_URL`` names another.  Each command sets ``func``, which takes the
parsed arguments, prints its result and returns the exit status, raising skyvault errors
(:class:`~skyvault.errors.UsageError` for an unknown user or group) for the caller to print.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from skyvault.auth.access import AccessPolicy, grant_access, parse_target, revoke_access
from skyvault.auth.config import AuthSettings
from skyvault.auth.identity import Identity
from skyvault.auth.storage import AuthStorage, GrantLevel, utc_now
from skyvault.auth.tokens import DEFAULT_EXPIRES_DAYS, TokenService
from skyvault.catalog.layout import auth_database_file
from skyvault.errors import UsageError
from skyvault.storage_faults import Fault, storage_errors

__all__ = ["add_subcommands", "auth_storage_errors"]

DataArg = Callable[[argparse.ArgumentParser], None]
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected NAME[,NAME...]")
    return names


def _storage(args: argparse.Namespace) -> AuthStorage:
    data: Path = args.data
    if not data.is_dir():
        raise UsageError(
            f"no data root at {data}",
            hint="pass --data DIR (or set SKYVAULT_DATA_DIR) to the directory holding the tables",
        )
    return AuthStorage.for_data_dir(data, AuthSettings().database_url)


#: What to do when the auth database cannot be written.
_AUTH_REMEDIES = {
    Fault.READ_ONLY: "make its directory writable, or set SKYVAULT_AUTH_DATABASE_URL to a "
    "database on a writable file system",
    Fault.NO_PERMISSION: "run as the user who owns it, or set SKYVAULT_AUTH_DATABASE_URL to "
    "a database you may write",
    Fault.FULL: "free space there and run the command again; nothing was changed",
}


@contextlib.contextmanager
def auth_storage_errors(command: str, data: Path) -> Iterator[None]:
    """A read-only or full auth database said as such in ``command``'s error, naming it."""
    if AuthSettings().database_url is None:
        place = f"the auth database {auth_database_file(data)}"
    else:
        place = "the auth database (SKYVAULT_AUTH_DATABASE_URL)"
    with storage_errors(f"{command} failed", place, remedy=_AUTH_REMEDIES):
        yield


def _naming_storage_faults(
    command: str, func: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """``func`` with a read-only or full auth database said as such, naming the file."""

    def run(args: argparse.Namespace) -> int:
        with auth_storage_errors(command, args.data):
            return func(args)

    return run


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _proxy_note() -> None:
    if AuthSettings().mode == "proxy":
        _note(
            "SKYVAULT_AUTH_MODE=proxy: callers are identified by the proxy; built-in users, "
            "groups and tokens are not consulted"
        )


def _day(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M UTC")


# --- users ----------------------------------------------------------------------------------


def _users_add(args: argparse.Namespace) -> int:
    storage = _storage(args)
    storage.add_user(args.name, utc_now())
    print(f"added user {args.name}")
    _proxy_note()
    return 0


def _users_list(args: argparse.Namespace) -> int:
    for user in _storage(args).list_users():
        print(f"{user.name}\tgroups: {','.join(user.groups) or '-'}")
    return 0


def _users_remove(args: argparse.Namespace) -> int:
    _storage(args).remove_user(args.name)
    print(f"removed user {args.name} with its tokens and group memberships")
    return 0


# --- groups ---------------------------------------------------------------------------------


def _groups_add(args: argparse.Namespace) -> int:
    members = args.members or []
    _storage(args).add_group(args.group, members, utc_now())
    print(f"added group {args.group} with members: {', '.join(members) or '(none)'}")
    _proxy_note()
    return 0


def _groups_add_members(args: argparse.Namespace) -> int:
    _storage(args).add_members(args.group, args.members)
    print(f"added to group {args.group}: {', '.join(args.members)}")
    return 0


def _groups_remove_members(args: argparse.Namespace) -> int:
    _storage(args).remove_members(args.group, args.members)
    print(f"removed from group {args.group}: {', '.join(args.members)}")
    return 0


def _groups_remove(args: argparse.Namespace) -> int:
    _storage(args).remove_group(args.group)
    print(f"removed group {args.group} with its memberships and grants")
    return 0


def _groups_list(args: argparse.Namespace) -> int:
    for group in _storage(args).list_groups():
        print(f"{group.name}\tmembers: {','.join(group.members) or '-'}")
    return 0


# --- tokens ---------------------------------------------------------------------------------


def _tokens_create(args: argparse.Namespace) -> int:
    service = TokenService(_storage(args))
    token = service.create_token(args.name, args.expires)
    info = next(t for t in service.list_tokens(args.name) if token.startswith(f"sv_{t.key_id}_"))
    _proxy_note()
    print(
        f"created token {info.key_id} for {args.name}, expires {_day(info.expires)}; "
        f"it is shown only this once:\n{token}"
    )
    return 0


def _tokens_revoke(args: argparse.Namespace) -> int:
    key_id = TokenService(_storage(args)).revoke(args.token)
    print(f"revoked token {key_id}")
    return 0


def _tokens_list(args: argparse.Namespace) -> int:
    tokens = TokenService(_storage(args)).list_tokens(args.name)
    if not tokens:
        print(f"{args.name} has no tokens")
    for t in tokens:
        print(
            f"{t.key_id}\t{t.state}\tcreated {_day(t.created)}\texpires {_day(t.expires)}"
            f"\tlast used {_day(t.last_used)}"
        )
    return 0


# --- grants ---------------------------------------------------------------------------------


def _check_target_exists(data: Path, target: str) -> None:
    """Warn when ``target`` names no published table (likely a typo or a case mismatch)."""
    from skyvault.catalog.layout import list_tables

    schema, table = parse_target(target)
    names = [(n.schema, n.table) for n, _ in list_tables(data)]
    if table is None:
        if any(s == schema for s, _ in names):
            return
        close = sorted({s for s, _ in names if s.lower() == schema.lower()})
    else:
        if (schema, table) in names:
            return
        wanted = (schema.lower(), table.lower())
        close = sorted(f"{s}.{t}" for s, t in names if (s.lower(), t.lower()) == wanted)
    if close:
        _note(
            f"nothing is published as {target}; names are case-sensitive: did you mean {close[0]}?"
        )
    else:
        _note(f"nothing is published as {target} yet; the grant applies once it is")


def _grant(args: argparse.Namespace) -> int:
    storage = _storage(args)
    group = None if args.public else args.group
    grant, new = grant_access(
        storage,
        args.target,
        group,
        require_known_group=AuthSettings().mode == "builtin",
        level="write" if args.write else "read",
    )
    what = "granted" if new else "already granted"
    able = "readable and writable" if grant.level == "write" else "readable"
    print(f"{what}: {grant.target} {able} by {grant.grantee}")
    _check_target_exists(args.data, args.target)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    storage = _storage(args)
    level: GrantLevel = "write" if args.write else "read"
    grant = revoke_access(storage, args.target, None if args.public else args.group, level=level)
    if level == "write":
        print(f"revoked: {grant.target} no longer writable by {grant.grantee} (still readable)")
        return 0
    print(f"revoked: {grant.target} no longer granted to {grant.grantee}")
    if grant.table is not None:
        # A schema-level grant may still cover the table.
        grantee = (
            Identity.anonymous()
            if grant.group is None
            else Identity("(grant check)", frozenset({grant.group}))
        )
        if AccessPolicy(storage).can_read(grantee, grant.schema, grant.table):
            _note(f"{grant.target} is still readable by {grant.grantee} through a schema grant")
    return 0


def _grants_list(args: argparse.Namespace) -> int:
    grants = _storage(args).list_grants()
    if not grants:
        print("no grants: every table is private")
    for g in grants:
        print(f"{g.target}\t{g.grantee}" + ("\twrite" if g.level == "write" else ""))
    return 0


def add_subcommands(subparsers: Subparsers, data_arg: DataArg) -> None:
    """Add ``users``, ``groups``, ``tokens``, ``grant``, ``revoke`` and ``grants``.

    Parameters
    ----------
    subparsers
        The main parser's sub-parser collection.
    data_arg
        Adds the common ``--data DIR`` option to a parser.
    """

    def leaf(
        parent: Subparsers, name: str, help_text: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        data_arg(p)
        command = p.prog.split(maxsplit=1)[-1]  # "tokens create" of "skyvault tokens create"
        p.set_defaults(func=_naming_storage_faults(command, func))
        return p

    def group_of(name: str, help_text: str) -> Subparsers:
        p = subparsers.add_parser(name, help=help_text, description=help_text)
        return p.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")

    users = group_of("users", "manage built-in users")
    p = leaf(users, "add", "create a user", _users_add)
    p.add_argument("name", metavar="NAME")
    leaf(users, "list", "list users and their groups", _users_list)
    p = leaf(users, "remove", "delete a user, its tokens and memberships", _users_remove)
    p.add_argument("name", metavar="NAME")

    groups = group_of("groups", "manage built-in groups")
    p = leaf(groups, "add", "create a group", _groups_add)
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--members", type=_names, metavar="A,B", help="initial members (users)")
    p = leaf(groups, "add-members", "add users to a group", _groups_add_members)
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--members", type=_names, metavar="A,B", required=True, help="users to add")
    p = leaf(groups, "remove-members", "remove users from a group", _groups_remove_members)
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--members", type=_names, metavar="A,B", required=True, help="users to remove")
    p = leaf(groups, "remove", "delete a group, its memberships and grants", _groups_remove)
    p.add_argument("group", metavar="GROUP")
    leaf(groups, "list", "list groups and their members", _groups_list)

    tokens = group_of("tokens", "manage access tokens of built-in users")
    p = leaf(tokens, "create", "create a token (printed once, as the last word)", _tokens_create)
    p.add_argument("name", metavar="NAME", help="the user the token identifies")
    p.add_argument(
        "--expires",
        type=float,
        default=DEFAULT_EXPIRES_DAYS,
        metavar="DAYS",
        help=f"lifetime in days (default {DEFAULT_EXPIRES_DAYS})",
    )
    p = leaf(tokens, "revoke", "revoke a token (effective on the next request)", _tokens_revoke)
    p.add_argument("token", metavar="TOKEN", help="the token, or its key id")
    p = leaf(tokens, "list", "list a user's tokens (key ids, never secrets)", _tokens_list)
    p.add_argument("name", metavar="NAME")

    for name, func, help_text, write_help in (
        (
            "grant",
            _grant,
            "let a group (or everyone) read a schema or table",
            "let the group append to it too (write access; groups only)",
        ),
        ("revoke", _revoke, "withdraw a grant", "withdraw write access only (keep read)"),
    ):
        p = leaf(subparsers, name, help_text, func)
        p.add_argument("target", metavar="SCHEMA[.TABLE]")
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--group", metavar="G", help="a group")
        who.add_argument("--public", action="store_true", help="everyone, anonymous included")
        p.add_argument("--write", action="store_true", help=write_help)
    leaf(subparsers, "grants", "list the grants (tables without one are private)", _grants_list)
