"""Per-user limits and their messages; the JSON-lines audit log; job ids and ownership."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from skyvault.auth.audit import MAX_QUERY_CHARS, AuditLog
from skyvault.auth.identity import Identity
from skyvault.auth.jobs import can_access_job, can_list_job, is_valid_job_id, new_job_id
from skyvault.auth.limits import LimitsPolicy, UserLimits, format_bytes, format_days
from skyvault.auth.storage import AuthStorage, LimitOverrides
from skyvault.errors import AdqlSemanticError, LimitExceeded

from .conftest import FakeClock

ALICE = Identity("alice", frozenset({"dp02"}))
BOB = Identity("bob", frozenset())
ANON = Identity.anonymous()


# --- limits ---------------------------------------------------------------------------------


def test_sync_slot_message_says_retry_or_async_never_delete() -> None:
    """The sync refusal is true for sync: retry later or go async; a sync caller has no
    async job to DELETE."""
    limits = LimitsPolicy(defaults=UserLimits(max_running=2, max_queued=5))
    limits.check_sync_slot(ALICE, 1, retry_after=7)
    with pytest.raises(LimitExceeded) as info:
        limits.check_sync_slot(ALICE, 2, retry_after=7)
    assert str(info.value) == (
        "too many of your queries are running (2, the limit is 2) "
        "(retry in 7 s, or submit the query as an async job (POST /tap/async), which "
        "waits for its turn instead)"
    )
    assert info.value.code == "limit" and info.value.retry_after == 7
    assert info.value.http_status == 429  # the caller's use, not a request too large
    assert "DELETE" not in str(info.value)


def test_queued_limit_message() -> None:
    limits = LimitsPolicy(defaults=UserLimits(max_queued=1), async_url="/svc/tap/async/")
    limits.check_queued(ALICE, 0, retry_after=5, created=True)
    with pytest.raises(LimitExceeded) as info:
        limits.check_queued(ALICE, 1, retry_after=5, created=True)
    assert info.value.message == "you have 1 job queued to run, the limit is 1"
    assert info.value.hint == (
        "retry in 5 s, once some have started; this job stays PENDING: send PHASE=RUN again then"
    )
    assert info.value.retry_after == 5 and info.value.http_status == 429
    with pytest.raises(LimitExceeded, match="no job was created"):
        limits.check_queued(ALICE, 1, retry_after=5, created=False)


def test_pending_limit_message_users_and_anonymous() -> None:
    limits = LimitsPolicy(
        defaults=UserLimits(max_pending=2),
        anonymous=UserLimits(max_pending=1),
        async_url="/svc/tap/async/",
        anonymous_lifetime="12 hours",
    )
    limits.check_pending(ALICE, 1, retry_after=5)
    with pytest.raises(LimitExceeded) as info:
        limits.check_pending(ALICE, 2, retry_after=5)
    assert info.value.message == ("you have 2 jobs created and never run (PENDING), the limit is 2")
    assert info.value.http_status == 429 and info.value.retry_after == 5
    hint = str(info.value.hint)
    assert "DELETE /svc/tap/async/<id>" in hint and "GET /svc/tap/async?PHASE=PENDING" in hint
    with pytest.raises(LimitExceeded) as info:
        limits.check_pending(ANON, 1, retry_after=5)
    # anonymous jobs are never listed: the hint does not send them to the list
    hint = str(info.value.hint)
    assert "GET" not in hint and "destroyed 12 hours after" in hint


def test_storage_limit_message() -> None:
    limits = LimitsPolicy(defaults=UserLimits(max_result_bytes=10 * 1024**2))
    limits.check_result_storage(ALICE, 10 * 1024**2 - 1)
    with pytest.raises(LimitExceeded) as info:
        limits.check_result_storage(ALICE, 12 * 1024**2)
    assert info.value.message == "your stored results take 12 MB, the limit is 10 MB"
    assert "DELETE /tap/async/<id>" in str(info.value.hint)
    assert info.value.http_status == 429 and info.value.retry_after is None
    with pytest.raises(LimitExceeded) as info:  # when waiting frees room, it says when
        limits.check_result_storage(ALICE, 12 * 1024**2, retry_after=60)
    assert info.value.retry_after == 60
    assert limits.result_bytes_left(ALICE, 4 * 1024**2) == 6 * 1024**2
    assert limits.result_bytes_left(ALICE, 20 * 1024**2) == 0


def test_per_user_overrides_and_anonymous(storage: AuthStorage) -> None:
    limits = LimitsPolicy(storage, UserLimits(2, 10, 100), UserLimits(1, 1, 5))
    storage.set_limits("alice", LimitOverrides(max_running=8))
    assert limits.limits_for(ALICE) == UserLimits(8, 10, 100)
    assert limits.limits_for(BOB) == UserLimits(2, 10, 100)
    assert limits.limits_for(ANON) == UserLimits(1, 1, 5)
    limits.check_sync_slot(ALICE, 7, retry_after=1)
    with pytest.raises(LimitExceeded, match=r"running \(1, the limit is 1\)"):
        limits.check_sync_slot(ANON, 1, retry_after=1)
    storage.set_limits("alice", LimitOverrides())
    assert limits.limits_for(ALICE) == UserLimits(2, 10, 100)


def test_format_days() -> None:
    assert [format_days(d) for d in (1, 7, 0.5, 1.5, 1 / 48)] == [
        "1 day",
        "7 days",
        "12 hours",
        "1.5 days",
        "30 minutes",
    ]


def test_format_bytes() -> None:
    sizes = (0, 1023, 1024, 1536, 10 * 1024**3, 1023 * 1024**2 + 900 * 1024, 5 * 1024**5)
    assert [format_bytes(n) for n in sizes] == [
        "0 B",
        "1023 B",
        "1 KB",
        "1.5 KB",
        "10 GB",
        "1023 MB",  # not 1.02e+03 MB
        "5 PB",
    ]


def test_the_storage_refusal_reads_true_sizes() -> None:
    # A limit of 1000 MiB, 1023.9 MiB stored: no exponent notation in the refusal.
    policy = LimitsPolicy(defaults=UserLimits(max_result_bytes=1000 * 1024**2))
    with pytest.raises(LimitExceeded) as info:
        policy.check_result_storage(ALICE, 1023 * 1024**2 + 900 * 1024)
    assert info.value.message == "your stored results take 1023 MB, the limit is 1000 MB"


# --- audit ----------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_lines(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    audit = AuditLog(path, clock)
    audit.record(ALICE, "/tap/sync", query="SELECT 1", rows=1, duration_s=0.5)
    with audit.request(ANON, "/tap/async", "SELECT\n'é'") as event:
        event.rows = 3
    with pytest.raises(AdqlSemanticError), audit.request(BOB, "/tap/sync", "SELECT x"):
        raise AdqlSemanticError("no column x")
    with pytest.raises(RuntimeError), audit.request(BOB, "/tables"):
        raise RuntimeError("boom")
    lines = _lines(path)
    assert len(path.read_text().splitlines()) == 4
    assert lines[0] == {
        "time": "2026-05-01T12:00:00Z",
        "user": "alice",
        "endpoint": "/tap/sync",
        "query": "SELECT 1",
        "rows": 1,
        "duration_s": 0.5,
        "outcome": "ok",
        "error": None,
    }
    assert lines[1]["user"] is None and lines[1]["rows"] == 3 and lines[1]["outcome"] == "ok"
    assert lines[1]["query"] == "SELECT\n'é'"
    assert isinstance(lines[1]["duration_s"], float)
    assert (lines[2]["outcome"], lines[2]["error"]) == ("error", "adql.semantic")
    assert (lines[3]["outcome"], lines[3]["error"], lines[3]["query"]) == (
        "error",
        "internal",
        None,
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_audit_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    query = "SELECT " + "x" * 5000

    def work(n: int) -> None:
        for i in range(50):
            audit.record(Identity(f"u{n}", frozenset()), "/tap/sync", query=query, rows=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _lines(path)
    assert len(lines) == 400
    assert all(line["query"] == query for line in lines)


def test_audit_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    audit = AuditLog(blocker / "audit.jsonl")  # parent is a file: cannot be created
    audit.record(ALICE, "/tap/sync")
    audit.record(ALICE, "/tap/sync")
    assert len([r for r in caplog.records if "audit log" in r.getMessage()]) == 1


def test_audit_truncates_huge_queries(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.jsonl")
    audit.record(ALICE, "/tap/sync", query="x" * (MAX_QUERY_CHARS * 3))
    (line,) = _lines(tmp_path / "a.jsonl")
    assert isinstance(line["query"], str)
    assert line["query"].endswith("[truncated]") and len(line["query"]) < MAX_QUERY_CHARS + 20


# --- jobs -----------------------------------------------------------------------------------


def test_job_ids_are_unguessable() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_valid_job_id(i) and len(i) == 22 for i in ids)
    assert not is_valid_job_id("1")
    assert not is_valid_job_id("../../etc/passwd00000000")
    assert not is_valid_job_id(next(iter(ids)) + "\n")


def test_job_ownership() -> None:
    assert can_access_job(ALICE, "alice")
    assert not can_access_job(BOB, "alice")
    assert not can_access_job(ANON, "alice")
    # Anonymous jobs: reachable by whoever holds the id, listed to nobody.
    assert can_access_job(ANON, None) and can_access_job(BOB, None)
    assert not can_list_job(ANON, None) and not can_list_job(BOB, None)
    assert can_list_job(ALICE, "alice") and not can_list_job(BOB, "alice")


def test_audit_directory_made_again_when_gone(tmp_path: Path) -> None:
    """The directory is made on the first line, and again if it was moved away since."""
    path = tmp_path / "logs" / "audit.jsonl"
    audit = AuditLog(path)
    audit.record(ALICE, "/tap/sync", query="SELECT 1")
    (tmp_path / "logs").rename(tmp_path / "old-logs")
    audit.record(ALICE, "/tap/sync", query="SELECT 2")
    assert [line["query"] for line in _lines(path)] == ["SELECT 2"]
    assert [line["query"] for line in _lines(tmp_path / "old-logs" / "audit.jsonl")] == ["SELECT 1"]
