"""``skyvault workspace``: the operator's view of users' tables, and saving a query as one.

* ``workspace list [--user U]`` — every user table: owner, rows, bytes, grants; then each
  user's usage against their quota;
* ``workspace drop USER_SCHEMA.TABLE`` — drop a user's table (no ownership check);
* ``workspace drop-index USER_SCHEMA.TABLE COLUMN`` — drop a column index (and the
  uniqueness later loads are held to), or the sky index (name the RA column: the table is
  written back as plain Parquet); youcat has no request for it;
* ``workspace quota USER [--bytes N] [--rows N] [--tables N]`` — show or change a user's
  quota (``default`` puts a limit back to the default; sizes take K/M/G/T suffixes);
* ``workspace save --user U --dest user_u.TABLE [--mode M] ADQL`` — run ADQL as U (with
  U's access) and save its result as U's table, as an async job with ``DEST`` does.

Each change is a line in the audit log (``workspace.drop``, ``workspace.drop_index``,
``workspace.quota``, ``workspace.save``) with the operator's login as ``operator:NAME``.
"""

from __future__ import annotations

import argparse
import getpass
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from skyvault.errors import UsageError

if TYPE_CHECKING:
    from skyvault.auth.audit import AuditLog
    from skyvault.auth.identity import Identity
    from skyvault.workspace.store import WorkspaceStore

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_subcommands", "parse_size"]

DataArg = Callable[[argparse.ArgumentParser], None]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_size(text: str) -> int | None:
    """A quota value: a whole number with an optional K/M/G/T/P (powers of 1024) suffix;
    ``default`` is None (the default limit)."""
    if text.strip().lower() == "default":
        return None
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 500000, 20G, default)")
    return int(float(match.group(1)) * _FACTORS[match.group(2).upper()])


def _operator() -> Identity:
    from skyvault.auth.identity import Identity

    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Identity(f"operator:{login}")


def _open(data: Path) -> tuple[WorkspaceStore, AuditLog]:
    from skyvault.auth.audit import AuditLog
    from skyvault.auth.config import AuthSettings
    from skyvault.auth.storage import AuthStorage
    from skyvault.catalog.layout import audit_log_file
    from skyvault.workspace.quota import WorkspaceSettings
    from skyvault.workspace.store import WorkspaceStore

    if not data.is_dir():
        raise UsageError(
            f"no data root at {data}",
            hint="pass --data DIR (or set SKYVAULT_DATA_DIR) to the directory holding the tables",
        )
    settings = AuthSettings()
    audit = AuditLog(settings.audit_log or audit_log_file(data))
    storage = AuthStorage.for_data_dir(data, settings.database_url)
    return WorkspaceStore(data, storage, settings=WorkspaceSettings(), audit=audit), audit


def _limit(value: int | None) -> str:
    from skyvault.workspace.quota import format_bytes

    return "unlimited" if value is None else format_bytes(value)


def _grants(store: WorkspaceStore, schema: str, table: str) -> str:
    grants = [
        g for g in store.auth.list_grants() if g.schema == schema and g.table in (None, table)
    ]
    parts = []
    if any(g.group is None for g in grants):
        parts.append("public")
    writers = sorted({g.group for g in grants if g.group and g.level == "write"})
    readers = sorted({g.group for g in grants if g.group and g.level != "write"} - set(writers))
    parts += [f"r-group={g}" for g in readers] + [f"rw-group={g}" for g in writers]
    return ",".join(parts) or "-"


def _list(args: argparse.Namespace) -> int:
    from skyvault.workspace.quota import format_bytes
    from skyvault.workspace.store import _table_usage

    store, _ = _open(args.data)
    infos = [w for w in store.workspaces() if args.user is None or w.owner == args.user]
    if args.user is not None and not infos:
        print(f"{args.user} has no workspace (no table created yet)")
        return 0
    print("table\towner\trows\tbytes\tgrants")
    for info in infos:
        for meta in info.tables:
            usage = _table_usage(store.data_dir / meta.schema / meta.name)
            print(
                f"{meta.schema}.{meta.name}\t{info.owner}\t{meta.nrows}\t{usage.bytes}\t"
                f"{_grants(store, meta.schema, meta.name)}"
            )
    print()
    print("owner\tschema\ttables\trows\tbytes\tquota (tables, rows, bytes)")
    for info in infos:
        quota = info.quota
        print(
            f"{info.owner}\t{info.schema}\t{info.usage.tables}\t{info.usage.rows}\t"
            f"{format_bytes(info.usage.bytes)}\t"
            f"{quota.max_tables if quota.max_tables is not None else 'unlimited'}, "
            f"{quota.max_rows if quota.max_rows is not None else 'unlimited'}, "
            f"{_limit(quota.max_bytes)}"
        )
    return 0


def _drop(args: argparse.Namespace) -> int:
    store, _ = _open(args.data)
    store.drop_any(args.table, operator=_operator().user)
    print(f"dropped {args.table}")
    return 0


def _drop_index(args: argparse.Namespace) -> int:
    store, _ = _open(args.data)
    meta = store.drop_index(args.table, args.column, operator=_operator().user)
    print(
        f"dropped the index on {args.column} of {args.table} (now {meta.kind}, {meta.nrows} rows)"
    )
    return 0


def _quota(args: argparse.Namespace) -> int:
    from skyvault.auth.storage import validate_name
    from skyvault.workspace.quota import Quota

    store, audit = _open(args.data)
    user = validate_name("user", args.user)
    given = {"bytes": args.bytes, "rows": args.rows, "tables": args.tables}
    if any(v is not ... for v in given.values()):
        record = store.auth.get_workspace_quota(user)
        current = Quota(record.max_bytes, record.max_rows, record.max_tables)
        new = Quota(
            current.max_bytes if args.bytes is ... else args.bytes,
            current.max_rows if args.rows is ... else args.rows,
            current.max_tables if args.tables is ... else args.tables,
        )
        store.set_quota(user, new)
        changes = ", ".join(
            f"{k}={'default' if v is None else v}" for k, v in given.items() if v is not ...
        )
        audit.record(_operator(), "workspace.quota", query=f"{user}: {changes}")
    quota, usage = store.quota(user), store.usage(user)
    print(f"{user}: tables {usage.tables} of {quota.max_tables}")
    print(f"{user}: rows {usage.rows} of {quota.max_rows}")
    print(f"{user}: bytes {usage.bytes} of {quota.max_bytes} ({_limit(quota.max_bytes)})")
    return 0


def _save(args: argparse.Namespace) -> int:
    from skyvault.auth.access import AccessPolicy
    from skyvault.auth.identity import Identity
    from skyvault.engine.archive import open_archive
    from skyvault.workspace.save import save_table

    store, audit = _open(args.data)
    identity = Identity(args.user, store.auth.groups_of(args.user))
    archive = open_archive(args.data)
    try:
        tables = AccessPolicy(store.auth).visible_tables(identity, archive.tables())
        with audit.request(identity, "workspace.save", query=args.query) as event:
            result = archive.stream(args.query, tables=tables).to_table()
            meta = save_table(store, identity, args.dest, result, args.mode)
            event.rows = result.num_rows
    finally:
        archive.close()
    print(f"saved {result.num_rows} rows as {meta.schema}.{meta.name}")
    return 0


def add_subcommands(subparsers: Subparsers, data_arg: DataArg) -> None:
    """Add ``workspace list|drop|drop-index|quota|save`` to the main parser."""
    top = subparsers.add_parser(
        "workspace", help="users' own tables: list, drop, quotas, save a query's result"
    )
    sub = top.add_subparsers(dest="workspace_command", required=True, metavar="ACTION")

    p = sub.add_parser("list", help="user tables with owner, rows, bytes and grants; usage")
    data_arg(p)
    p.add_argument("--user", metavar="U", help="only this user's tables")
    p.set_defaults(func=_list)

    p = sub.add_parser("drop", help="drop a user's table (as the operator)")
    data_arg(p)
    p.add_argument("table", metavar="USER_SCHEMA.TABLE")
    p.set_defaults(func=_drop)

    p = sub.add_parser(
        "drop-index",
        help="drop the index on a column of a user's table (as the operator)",
        description="Drop a column index (and its uniqueness), or the sky index by naming "
        "the table's RA column (the table is written back as plain Parquet).",
    )
    data_arg(p)
    p.add_argument("table", metavar="USER_SCHEMA.TABLE")
    p.add_argument("column", metavar="COLUMN")
    p.set_defaults(func=_drop_index)

    p = sub.add_parser(
        "quota",
        help="show or change a user's quota",
        description="Show a user's workspace quota and usage; with --bytes/--rows/--tables, "
        "change it first ('default' restores the default limit).",
    )
    data_arg(p)
    p.add_argument("user", metavar="USER")
    for name, what in (
        ("bytes", "bytes (K/M/G/T suffixes)"),
        ("rows", "rows"),
        ("tables", "tables"),
    ):
        p.add_argument(f"--{name}", type=parse_size, default=..., metavar="N", help=f"most {what}")
    p.set_defaults(func=_quota)

    p = sub.add_parser("save", help="run ADQL as a user and save the result as their table")
    data_arg(p)
    p.add_argument("query", metavar="ADQL")
    p.add_argument("--user", required=True, metavar="U", help="whose access and schema")
    p.add_argument("--dest", required=True, metavar="user_U.TABLE", help="the table")
    p.add_argument(
        "--mode",
        choices=("create", "append", "replace"),
        default="create",
        help="when the table exists: refuse (create), add rows (append), replace it",
    )
    p.set_defaults(func=_save)
