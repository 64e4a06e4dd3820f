"""The job database: one table of UWS jobs, SQLAlchemy 2 Core, SQLite (WAL) or PostgreSQL.

Every change of phase is one conditional ``UPDATE ... WHERE phase IN (...)``: whoever's
update matches the row wins, the others see ``rowcount == 0``.  That is what lets several
service replicas share one PostgreSQL database without ever running a job twice, and what
keeps a late worker from overwriting an ABORT.

SQLite is opened in WAL mode with a busy time-out, and write transactions start with
``BEGIN IMMEDIATE`` so that concurrent writers (threads, processes) wait for each other
instead of failing.  Times are timezone-aware UTC datetimes on both sides of this module.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from skyvault import dbstore
from skyvault.dbstore import UTCDateTime
from skyvault.service.uws.models import (
    Account,
    ExecutionPhase,
    Job,
    JobFailure,
    JobFilter,
    JobResult,
)

__all__ = ["JobStore"]

#: Accounts with QUEUED jobs looked at per claim (the ones whose jobs waited longest).
_CLAIM_ACCOUNTS = 200

#: Accounts whose job counts are kept between two changes of the database.
_MAX_CACHED_ACCOUNTS = 4096


_metadata = sa.MetaData()

_jobs = sa.Table(
    "uws_jobs",
    _metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(256), nullable=True),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("run_id", sa.Text, nullable=True),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("creation_time", UTCDateTime, nullable=False),
    sa.Column("queued_time", UTCDateTime, nullable=True),
    sa.Column("start_time", UTCDateTime, nullable=True),
    sa.Column("end_time", UTCDateTime, nullable=True),
    sa.Column("quote", UTCDateTime, nullable=True),
    sa.Column("execution_duration", sa.Integer, nullable=False),
    sa.Column("destruction", UTCDateTime, nullable=False),
    sa.Column("result_key", sa.Text, nullable=True),
    sa.Column("result_mime", sa.Text, nullable=True),
    sa.Column("result_size", sa.BigInteger, nullable=True),
    sa.Column("result_rows", sa.BigInteger, nullable=True),
    sa.Column("result_overflow", sa.Boolean, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("error_fatal", sa.Boolean, nullable=True),
    sa.Column("runner", sa.String(128), nullable=True),
    sa.Column("heartbeat", UTCDateTime, nullable=True),
    sa.Column("owner_groups", sa.Text, nullable=True),
    sa.Column("client", sa.String(64), nullable=True),
    # The job type (models.JobKind); NULL in rows older than job types: "tap".
    sa.Column("kind", sa.String(32), nullable=True),
    sa.Index("ix_uws_jobs_owner_created", "owner", "creation_time"),
    sa.Index("ix_uws_jobs_phase_queued", "phase", "queued_time"),
    sa.Index("ix_uws_jobs_destruction", "destruction"),
    # Anonymous jobs are counted per client (owner NULL): the owner index does not narrow.
    sa.Index("ix_uws_jobs_client_phase", "client", "phase"),
)

_ANY_ACTIVE = (ExecutionPhase.PENDING, ExecutionPhase.HELD, ExecutionPhase.QUEUED,
               ExecutionPhase.EXECUTING)  # fmt: skip


def _of_account(account: Account) -> sa.ColumnElement[bool]:
    """The jobs of ``account``: a user's, or one anonymous client's."""
    if account.owner is not None:
        return _jobs.c.owner == account.owner
    if account.client is None:
        return sa.and_(_jobs.c.owner.is_(None), _jobs.c.client.is_(None))
    return sa.and_(_jobs.c.owner.is_(None), _jobs.c.client == account.client)


def _account_of(owner: str | None, client: str | None) -> Account:
    return Account(owner, client if owner is None else None)


def _row_to_job(row: sa.Row[Any]) -> Job:
    m = row._mapping
    result = None
    if m["result_key"] is not None:
        result = JobResult(
            key=m["result_key"],
            mime=m["result_mime"] or "application/octet-stream",
            size=int(m["result_size"] or 0),
            rows=int(m["result_rows"] or 0),
            overflow=bool(m["result_overflow"]),
        )
    failure = None
    if m["error_message"] is not None:
        failure = JobFailure(
            code=m["error_code"] or "job",
            message=m["error_message"],
            fatal=bool(m["error_fatal"]) if m["error_fatal"] is not None else True,
        )
    return Job(
        job_id=m["job_id"],
        owner=m["owner"],
        phase=ExecutionPhase(m["phase"]),
        parameters=[(str(n), str(v)) for n, v in json.loads(m["parameters"])],
        creation_time=m["creation_time"],
        execution_duration=int(m["execution_duration"]),
        destruction=m["destruction"],
        run_id=m["run_id"],
        start_time=m["start_time"],
        end_time=m["end_time"],
        quote=m["quote"],
        result=result,
        failure=failure,
        runner=m["runner"],
        heartbeat=m["heartbeat"],
        owner_groups=tuple(json.loads(m["owner_groups"])) if m["owner_groups"] else (),
        client=m["client"],
        kind=m["kind"] or "tap",
    )


#: Columns added after the first release, with their SQL type: added to older databases.
_LATER_COLUMNS = {"owner_groups": "TEXT", "client": "VARCHAR(64)", "kind": "VARCHAR(32)"}


def _add_missing_columns(conn: Connection) -> None:
    """``ALTER TABLE ... ADD COLUMN`` the :data:`_LATER_COLUMNS` an older database lacks,
    and create the indexes it lacks."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(_jobs.name)}
    for name, sql_type in _LATER_COLUMNS.items():
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE {_jobs.name} ADD COLUMN {name} {sql_type}")
    for index in _jobs.indexes:  # indexes of those columns (create_all skips existing tables)
        index.create(conn, checkfirst=True)


class JobStore:
    """UWS jobs in a SQL database.

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:////path/jobs.sqlite3`` (the file and its directory are
        created) or ``postgresql+psycopg://user@host/db``.  The schema is created on first use.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine = dbstore.create_engine(url)
        with self._write() as conn:
            _metadata.create_all(conn, checkfirst=True)
            _add_missing_columns(conn)
        #: Tells whether the database may have changed (every process's commits).
        self.changes = dbstore.ChangeWatch(self._engine)
        self._counts_lock = threading.Lock()
        self._counts: tuple[int | None, dict[Account, dict[ExecutionPhase, int]]] = (None, {})

    def close(self) -> None:
        """Release pooled connections."""
        self.changes.close()
        self._engine.dispose()

    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        return dbstore.write(self._engine)

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return dbstore.read(self._engine)

    def _update(
        self, job_id: str, phases: Collection[ExecutionPhase] | None, **values: Any
    ) -> bool:
        """``UPDATE`` job ``job_id`` if its phase is one of ``phases``; whether it matched."""
        statement = sa.update(_jobs).where(_jobs.c.job_id == job_id)
        if phases is not None:
            statement = statement.where(_jobs.c.phase.in_([p.value for p in phases]))
        with self._write() as conn:
            return conn.execute(statement.values(**values)).rowcount == 1

    # --- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """Job ``job_id``, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id)).first()
        return None if row is None else _row_to_job(row)

    def phase(self, job_id: str) -> ExecutionPhase | None:
        """Only the phase of job ``job_id`` (cheap: what WAIT polls)."""
        with self._read() as conn:
            value = conn.execute(
                sa.select(_jobs.c.phase).where(_jobs.c.job_id == job_id)
            ).scalar_one_or_none()
        return None if value is None else ExecutionPhase(value)

    def phases(self, job_ids: Collection[str]) -> dict[str, ExecutionPhase]:
        """The phases of the jobs in ``job_ids`` that still exist."""
        if not job_ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_jobs.c.job_id, _jobs.c.phase).where(_jobs.c.job_id.in_(list(job_ids)))
            ).all()
        return {job_id: ExecutionPhase(phase) for job_id, phase in rows}

    def list_jobs(self, owner: str, filters: JobFilter, kind: str = "tap") -> list[Job]:
        """The jobs of ``owner`` of type ``kind`` that pass ``filters``.

        Ordered oldest first, or newest first when ``filters.last`` is given (UWS 1.1).
        """
        statement = sa.select(_jobs).where(
            _jobs.c.owner == owner, sa.func.coalesce(_jobs.c.kind, "tap") == kind
        )
        if filters.phases:
            statement = statement.where(_jobs.c.phase.in_(sorted(p.value for p in filters.phases)))
        else:
            statement = statement.where(_jobs.c.phase != ExecutionPhase.ARCHIVED.value)
        if filters.after is not None:
            statement = statement.where(_jobs.c.creation_time > filters.after)
        if filters.last is not None:
            statement = statement.order_by(
                _jobs.c.creation_time.desc(), _jobs.c.job_id.desc()
            ).limit(filters.last)
        else:
            statement = statement.order_by(_jobs.c.creation_time, _jobs.c.job_id)
        with self._read() as conn:
            return [_row_to_job(row) for row in conn.execute(statement)]

    def count(self, phase: ExecutionPhase) -> int:
        """How many jobs are in ``phase``."""
        with self._read() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_jobs)
                    .where(_jobs.c.phase == phase.value)
                ).scalar_one()
            )

    def account_phase_counts(self, account: Account) -> dict[ExecutionPhase, int]:
        """How many jobs of ``account`` are in each phase.

        Every sync query asks (its running slot counts the account's EXECUTING jobs), so
        the answer is kept while the database is unchanged (:class:`~skyvault.dbstore.
        ChangeWatch`: any commit, by any process, is seen at once); without a watch
        (PostgreSQL) the database is read every time.
        """
        version = self.changes.version()
        if version is not None:
            with self._counts_lock:
                cached_version, cached = self._counts
                if cached_version == version and account in cached:
                    return dict(cached[account])
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_jobs.c.phase, sa.func.count())
                .where(_of_account(account))
                .group_by(_jobs.c.phase)
            ).all()
        counts = {ExecutionPhase(phase): int(n) for phase, n in rows}
        if version is not None:
            with self._counts_lock:
                cached_version, cached = self._counts
                if cached_version != version or len(cached) >= _MAX_CACHED_ACCOUNTS:
                    cached = {}
                    self._counts = (version, cached)
                cached[account] = counts
        return dict(counts)

    def result_bytes(self, account: Account) -> int:
        """Bytes of stored results of ``account``'s jobs."""
        with self._read() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(_jobs.c.result_size), 0)).where(
                    _of_account(account)
                )
            ).scalar_one()
        return int(total)

    def next_result_destruction(self, account: Account) -> datetime | None:
        """When the first of ``account``'s stored results is destroyed (None: it has none)."""
        with self._read() as conn:
            when: datetime | None = conn.execute(
                sa.select(sa.func.min(_jobs.c.destruction)).where(
                    _of_account(account), _jobs.c.result_size > 0
                )
            ).scalar_one()
        return when

    def next_destruction_in(
        self, account: Account, phases: tuple[ExecutionPhase, ...]
    ) -> datetime | None:
        """When the first of ``account``'s jobs in ``phases`` is destroyed (None: none)."""
        with self._read() as conn:
            when: datetime | None = conn.execute(
                sa.select(sa.func.min(_jobs.c.destruction)).where(
                    _of_account(account), _jobs.c.phase.in_([p.value for p in phases])
                )
            ).scalar_one()
        return when

    def oldest_in(
        self, account: Account, phases: tuple[ExecutionPhase, ...], limit: int
    ) -> list[str]:
        """The ids of ``account``'s ``limit`` oldest jobs in ``phases``, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_jobs.c.job_id)
                .where(_of_account(account), _jobs.c.phase.in_([p.value for p in phases]))
                .order_by(_jobs.c.creation_time, _jobs.c.job_id)
                .limit(limit)
            ).all()
        return [str(row[0]) for row in rows]

    def executing(self) -> list[Job]:
        """Every job in EXECUTING (for the recovery of jobs whose runner died)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_jobs).where(_jobs.c.phase == ExecutionPhase.EXECUTING.value)
            ).all()
        return [_row_to_job(row) for row in rows]

    def expired(self, now: datetime, limit: int = 500) -> list[Job]:
        """Jobs whose DESTRUCTION time has come, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_jobs)
                .where(_jobs.c.destruction <= now)
                .order_by(_jobs.c.destruction)
                .limit(limit)
            ).all()
        return [_row_to_job(row) for row in rows]

    # --- writing --------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Store the new job ``job``."""
        with self._write() as conn:
            conn.execute(
                sa.insert(_jobs).values(
                    job_id=job.job_id,
                    owner=job.owner,
                    phase=job.phase.value,
                    run_id=job.run_id,
                    parameters=json.dumps(job.parameters),
                    creation_time=job.creation_time,
                    execution_duration=job.execution_duration,
                    destruction=job.destruction,
                    quote=job.quote,
                    owner_groups=json.dumps(sorted(job.owner_groups)),
                    client=job.client if job.owner is None else None,
                    kind=job.kind,
                )
            )

    def set_parameters(
        self, job_id: str, parameters: list[tuple[str, str]], run_id: str | None
    ) -> bool:
        """Replace the parameters of a PENDING job; False when it is not PENDING."""
        return self._update(
            job_id,
            (ExecutionPhase.PENDING,),
            parameters=json.dumps(parameters),
            run_id=run_id,
        )

    def set_owner_groups(self, job_id: str, groups: Collection[str]) -> bool:
        """Record the owner's current groups (what the job will read with in proxy mode)."""
        return self._update(job_id, None, owner_groups=json.dumps(sorted(groups)))

    def set_execution_duration(self, job_id: str, seconds: int) -> bool:
        """Change EXECUTIONDURATION of a PENDING job; False when it is not PENDING."""
        return self._update(job_id, (ExecutionPhase.PENDING,), execution_duration=seconds)

    def set_destruction(self, job_id: str, when: datetime) -> bool:
        """Change DESTRUCTION (any phase); False when the job is gone."""
        return self._update(job_id, None, destruction=when)

    def queue(self, job_id: str, now: datetime) -> bool:
        """PENDING (or HELD) → QUEUED; False when the job was in another phase."""
        return self._update(
            job_id,
            (ExecutionPhase.PENDING, ExecutionPhase.HELD),
            phase=ExecutionPhase.QUEUED.value,
            queued_time=now,
        )

    def claim_next(
        self,
        runner: str,
        now: datetime,
        max_running: Callable[[str | None], int] | None = None,
        *,
        claiming: Callable[[str], None] | None = None,
        settled: Callable[[str, bool], None] | None = None,
    ) -> Job | None:
        """Take the next QUEUED job for ``runner`` (→ EXECUTING); None when none may start.

        Fair between accounts (users, and each anonymous client): of the accounts with
        QUEUED jobs, the one with the fewest jobs EXECUTING goes first; among equals, the
        one that started a job least recently (never, first); then the one whose job has
        waited longest.  Within an account, jobs run oldest first.  So one account's long
        queue takes at most its turn: a second account's job starts at the next free
        worker, whatever the first account queued before it.

        With ``max_running`` (the running-job limit of an owner, None for anonymous ones),
        an account that already has that many jobs EXECUTING is passed over: its jobs stay
        QUEUED.  (Replicas deciding at the same instant can let an account exceed the
        limit by one.)

        A job another runner takes between the look and the update is skipped: the
        update only matches a row still in QUEUED.

        ``claiming(job_id)`` is called just before the update that may take a job, and
        ``settled(job_id, taken)`` as soon as it is over (``taken`` False when the update
        did not match or failed): a runner lists the job as its own from before anyone can
        see it EXECUTING (see :class:`~skyvault.service.uws.runner.JobRunner`).
        """
        limits: dict[str | None, int] = {}
        while True:
            job_id = self._next_queued(max_running, limits)
            if job_id is None:
                return None
            if claiming is not None:
                claiming(job_id)
            claimed = False
            try:
                claimed = self._update(
                    job_id,
                    (ExecutionPhase.QUEUED,),
                    phase=ExecutionPhase.EXECUTING.value,
                    start_time=now,
                    runner=runner,
                    heartbeat=now,
                )
            finally:
                if settled is not None:
                    settled(job_id, claimed)
            if claimed:
                return self.get(job_id)

    def _next_queued(
        self, max_running: Callable[[str | None], int] | None, limits: dict[str | None, int]
    ) -> str | None:
        """The id of the QUEUED job whose turn it is (see :meth:`claim_next`), or None."""
        queued_phase = _jobs.c.phase == ExecutionPhase.QUEUED.value
        waiting = (
            sa.select(
                _jobs.c.owner,
                _jobs.c.client,
                sa.func.min(_jobs.c.queued_time).label("oldest"),
            )
            .where(queued_phase)
            .group_by(_jobs.c.owner, _jobs.c.client)
            .order_by(sa.func.min(_jobs.c.queued_time))
            .limit(_CLAIM_ACCOUNTS)
        )
        with self._read() as conn:
            accounts = {
                _account_of(owner, client): oldest
                for owner, client, oldest in conn.execute(waiting).all()
            }
            if not accounts:
                return None
            # Jobs EXECUTING and the latest start of each of those accounts (jobs that
            # ran and still exist: their turn was taken recently).
            users = sorted({a.owner for a in accounts if a.owner is not None})
            executing = sa.case((_jobs.c.phase == ExecutionPhase.EXECUTING.value, 1), else_=0)
            running: dict[Account, int] = {}
            last_start: dict[Account, datetime] = {}
            for owner, client, n, started in conn.execute(
                sa.select(
                    _jobs.c.owner,
                    _jobs.c.client,
                    sa.func.sum(executing),
                    sa.func.max(_jobs.c.start_time),
                )
                .where(
                    _jobs.c.start_time.is_not(None),
                    sa.or_(_jobs.c.owner.in_(users), _jobs.c.owner.is_(None)),
                )
                .group_by(_jobs.c.owner, _jobs.c.client)
            ).all():
                account = _account_of(owner, client)
                if account in accounts:
                    running[account] = running.get(account, 0) + int(n)
                    if started is not None and (
                        account not in last_start or started > last_start[account]
                    ):
                        last_start[account] = started
            order = []
            for account, oldest in accounts.items():
                busy = running.get(account, 0)
                if max_running is not None:
                    if account.owner not in limits:
                        limits[account.owner] = max_running(account.owner)
                    if busy >= limits[account.owner]:
                        continue
                started = last_start.get(account)
                order.append((busy, started is not None, started or oldest, oldest, account))
            if not order:
                return None
            account = min(order, key=lambda o: o[:4])[4]
            job_id: str | None = conn.execute(
                sa.select(_jobs.c.job_id)
                .where(queued_phase, _of_account(account))
                .order_by(_jobs.c.queued_time, _jobs.c.creation_time, _jobs.c.job_id)
                .limit(1)
            ).scalar_one_or_none()
        return job_id

    def complete(self, job_id: str, runner: str, result: JobResult | None, now: datetime) -> bool:
        """EXECUTING (by ``runner``) → COMPLETED with ``result`` (None: a job whose work
        leaves no result, such as a table update); False if no longer so."""
        values = (
            {}
            if result is None
            else {
                "result_key": result.key,
                "result_mime": result.mime,
                "result_size": result.size,
                "result_rows": result.rows,
                "result_overflow": result.overflow,
            }
        )
        statement = (
            sa.update(_jobs)
            .where(_jobs.c.job_id == job_id)
            .where(_jobs.c.phase == ExecutionPhase.EXECUTING.value)
            .where(_jobs.c.runner == runner)
            .values(phase=ExecutionPhase.COMPLETED.value, end_time=now, **values)
        )
        with self._write() as conn:
            return conn.execute(statement).rowcount == 1

    def fail(
        self,
        job_id: str,
        failure: JobFailure,
        now: datetime,
        *,
        runner: str | None = None,
        phases: Collection[ExecutionPhase] = (ExecutionPhase.EXECUTING,),
    ) -> bool:
        """→ ERROR with ``failure`` if the job is in one of ``phases`` (and run by ``runner``)."""
        statement = (
            sa.update(_jobs)
            .where(_jobs.c.job_id == job_id)
            .where(_jobs.c.phase.in_([p.value for p in phases]))
            .values(
                phase=ExecutionPhase.ERROR.value,
                end_time=now,
                error_code=failure.code,
                error_message=failure.message,
                error_fatal=failure.fatal,
            )
        )
        if runner is not None:
            statement = statement.where(_jobs.c.runner == runner)
        with self._write() as conn:
            return conn.execute(statement).rowcount == 1

    def abort(self, job_id: str, now: datetime) -> bool:
        """PENDING/HELD/QUEUED/EXECUTING → ABORTED; False when the job had already ended."""
        return self._update(job_id, _ANY_ACTIVE, phase=ExecutionPhase.ABORTED.value, end_time=now)

    def heartbeat(self, runner: str, now: datetime) -> None:
        """Mark every job ``runner`` is executing as alive at ``now``."""
        with self._write() as conn:
            conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.runner == runner)
                .where(_jobs.c.phase == ExecutionPhase.EXECUTING.value)
                .values(heartbeat=now)
            )

    def delete(self, job_id: str) -> Job | None:
        """Remove job ``job_id``; the job as it was, or None when it did not exist."""
        with self._write() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id)).first()
            if row is None:
                return None
            conn.execute(sa.delete(_jobs).where(_jobs.c.job_id == job_id))
        return _row_to_job(row)
