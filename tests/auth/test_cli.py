"""The auth subcommands end to end, through a parser built the way the main CLI builds it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from skyvault.auth.access import AccessPolicy
from skyvault.auth.cli import add_subcommands
from skyvault.auth.identity import BuiltinAuthenticator, Identity
from skyvault.auth.storage import AuthStorage
from skyvault.errors import AuthenticationRequired, UsageError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyvault")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, default=Path("data"), metavar="DIR")

    add_subcommands(sub, data_arg)
    return parser


class Cli:
    def __init__(self, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.data = data
        self.capsys = capsys
        self.parser = _parser()

    def __call__(self, *argv: str) -> str:
        args = self.parser.parse_args([*argv, "--data", str(self.data)])
        assert args.func(args) == 0
        out, _ = self.capsys.readouterr()
        return out

    def err(self, *argv: str) -> str:
        args = self.parser.parse_args([*argv, "--data", str(self.data)])
        args.func(args)
        return self.capsys.readouterr().err


@pytest.fixture
def cli(data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    for var in ("SKYVAULT_AUTH_MODE", "SKYVAULT_AUTH_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return Cli(data_dir, capsys)


def _auth(data: Path, token: str) -> Identity:
    return BuiltinAuthenticator(AuthStorage.for_data_dir(data)).authenticate(
        {"Authorization": f"Bearer {token}"}
    )


def test_operator_story(cli: Cli, data_dir: Path) -> None:
    assert cli("users", "add", "alice") == "added user alice\n"
    cli("users", "add", "bob")
    cli("users", "add", "carol")
    out = cli("groups", "add", "dp02", "--members", "alice,bob")
    assert out == "added group dp02 with members: alice, bob\n"
    cli("groups", "add-members", "dp02", "--members", "carol")
    assert cli("groups", "list") == "dp02\tmembers: alice,bob,carol\n"
    cli("groups", "remove-members", "dp02", "--members", "carol")
    assert cli("users", "list") == ("alice\tgroups: dp02\nbob\tgroups: dp02\ncarol\tgroups: -\n")

    out = cli("tokens", "create", "alice", "--expires", "7")
    token = out.split()[-1]
    assert token.startswith("sv_") and "shown only this once" in out
    assert _auth(data_dir, token) == Identity("alice", frozenset({"dp02"}))

    listed = cli("tokens", "list", "alice")
    key_id = token.split("_")[1]
    assert listed.startswith(f"{key_id}\tactive\t") and token.split("_", 2)[2] not in listed

    assert cli("grant", "dp02_dc2_catalogs", "--group", "dp02") == (
        "granted: dp02_dc2_catalogs readable by dp02\n"
    )
    assert cli("grant", "dp02_dc2_catalogs", "--group", "dp02").startswith("already granted")
    cli("grant", "public_data.stars", "--public")
    assert cli("grants") == "dp02_dc2_catalogs\tdp02\npublic_data.stars\tPUBLIC\n"
    policy = AccessPolicy(AuthStorage.for_data_dir(data_dir))
    assert policy.can_read(_auth(data_dir, token), "dp02_dc2_catalogs", "Object")
    assert policy.can_read(Identity.anonymous(), "public_data", "stars")

    assert cli("revoke", "public_data.stars", "--public") == (
        "revoked: public_data.stars no longer granted to PUBLIC\n"
    )
    assert not policy.can_read(Identity.anonymous(), "public_data", "stars")

    assert cli("tokens", "revoke", token) == f"revoked token {key_id}\n"
    with pytest.raises(AuthenticationRequired):
        _auth(data_dir, token)
    assert "\trevoked\t" in cli("tokens", "list", "alice")

    cli("users", "remove", "bob")
    assert cli("groups", "list") == "dp02\tmembers: alice\n"
    cli("groups", "remove", "dp02")
    assert cli("grants") == "no grants: every table is private\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["groups", "add", "g", "--members", "alice,nobody"], "no user 'nobody'"),
        (["groups", "add-members", "nogroup", "--members", "alice"], "no group 'nogroup'"),
        (["tokens", "create", "nobody"], "no user 'nobody'"),
        (["tokens", "list", "nobody"], "no user 'nobody'"),
        (["users", "remove", "nobody"], "no user 'nobody'"),
        (["users", "add", "alice"], "user 'alice' already exists"),
        (["users", "add", "bad name"], "not valid"),
        (["grant", "dp02", "--group", "nogroup"], "no group 'nogroup'"),
        (["grant", "a.b.c", "--public"], "not SCHEMA or SCHEMA.TABLE"),
        (["revoke", "dp02", "--public"], "no grant on dp02 to PUBLIC"),
        (["tokens", "revoke", "nonsense"], "not a skyvault token"),
        (["groups", "add", "PUBLIC"], "PUBLIC is not a group name"),
    ],
)
def test_usage_errors(cli: Cli, argv: list[str], message: str) -> None:
    cli("users", "add", "alice")
    group = cli.parser.parse_args([*argv, "--data", str(cli.data)])
    with pytest.raises(UsageError, match=message):
        group.func(group)


def test_grant_requires_group_or_public(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["grant", "dp02"], ["grant", "dp02", "--public", "--group", "g"]):
        with pytest.raises(SystemExit):
            cli.parser.parse_args(argv)
    capsys.readouterr()


def test_missing_data_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["users", "list", "--data", str(tmp_path / "nope")])
    with pytest.raises(UsageError, match="no data root"):
        args.func(args)
    assert not (tmp_path / "nope").exists()


def test_grant_notes_case_mismatch(cli: Cli, data_dir: Path) -> None:
    (data_dir / "dp02" / "Object").mkdir(parents=True)
    err = cli.err("grant", "dp02.object", "--public")
    assert "did you mean dp02.Object?" in err
    assert "not published" not in cli.err("grant", "dp02.Object", "--public")
    assert "once it is" in cli.err("grant", "dp03", "--public")
    assert cli.err("grant", "dp02", "--public") == ""


def test_revoke_notes_schema_grant(cli: Cli) -> None:
    cli("grant", "dp02", "--public")
    cli("grant", "dp02.Object", "--public")
    assert "still readable by PUBLIC through a schema grant" in cli.err(
        "revoke", "dp02.Object", "--public"
    )


def test_proxy_mode_accepts_external_groups(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYVAULT_AUTH_MODE", "proxy")
    assert cli("grant", "dp02", "--group", "g-from-proxy") == (
        "granted: dp02 readable by g-from-proxy\n"
    )
    assert "SKYVAULT_AUTH_MODE=proxy" in cli.err("users", "add", "zed")


def test_database_url_setting(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("SKYVAULT_AUTH_DATABASE_URL", url)
    cli("users", "add", "alice")
    assert (tmp_path / "elsewhere.db").is_file()
    assert not (data_dir / ".skyvault" / "auth.sqlite3").exists()


def test_write_grant_commands(cli: Cli) -> None:
    cli("groups", "add", "rubin")
    assert cli("grant", "dia.DiaSource", "--group", "rubin", "--write") == (
        "granted: dia.DiaSource readable and writable by rubin\n"
    )
    assert cli("grants") == "dia.DiaSource\trubin\twrite\n"
    assert cli("revoke", "dia.DiaSource", "--group", "rubin", "--write") == (
        "revoked: dia.DiaSource no longer writable by rubin (still readable)\n"
    )
    assert cli("grants") == "dia.DiaSource\trubin\n"
    args = cli.parser.parse_args(
        ["grant", "dia.DiaSource", "--public", "--write", "--data", str(cli.data)]
    )
    with pytest.raises(UsageError, match="write access cannot be granted to PUBLIC"):
        args.func(args)
