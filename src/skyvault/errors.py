"""Every error a user of skyvault can see: one class per kind, each with a stable code.

The core raises these; the edges render them (one line for the CLI, a DALI VOTable error
document for TAP).  Nothing else may reach a user: the query and ingest entry points wrap
any foreign exception (DuckDB, sqlglot, pyarrow, OS) into one of these classes.

Each error carries

* ``code``: a short stable identifier (``adql.syntax``, ``ingest.coordinate`` ...),
* ``message``: what was wrong, in words a person can act on,
* ``hint``: optionally, what to do about it,
* ``http_status``: the status a web edge should answer with.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AdqlError",
    "AdqlSemanticError",
    "AdqlSyntaxError",
    "AuthenticationRequired",
    "CatalogError",
    "CatalogNotFound",
    "DownloadError",
    "IngestError",
    "InputFormatError",
    "InternalError",
    "JobError",
    "JobNotFound",
    "JobPhaseError",
    "JobResourceMissing",
    "LimitExceeded",
    "QueryCancelled",
    "QueryError",
    "QueryFailed",
    "QueryTimeout",
    "QueueFull",
    "SkyvaultError",
    "UnsupportedQuery",
    "UsageError",
    "UserLimitExceeded",
    "internal_error",
]


class SkyvaultError(Exception):
    """Base of every user-visible skyvault error.

    Parameters
    ----------
    message
        What was wrong, phrased for the person who made the request.
    hint
        What to do about it, when there is something useful to say.
    """

    code: str = "error"
    http_status: int = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def to_dict(self) -> dict[str, object]:
        """Machine-readable form (JSON errors, audit log)."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class UsageError(SkyvaultError):
    """A command or request was called with wrong or missing arguments."""

    code = "usage"


class InternalError(SkyvaultError):
    """A fault inside skyvault. The message never carries internals (paths, traces)."""

    code = "internal"
    http_status = 500


def internal_error(
    what: str = "the query failed inside the service", *, logged: str = "it"
) -> InternalError:
    """The error of a fault whose details went to the log: "<what>; <logged> has been logged".

    The one wording of such messages (``the query failed inside the service; it has been
    logged``): the caller logs the fault itself (a trace, the engine's text, a path) and the
    user reads only what failed.
    """
    return InternalError(f"{what}; {logged} has been logged")


# --- catalogues and ingest ------------------------------------------------------------------


class CatalogError(SkyvaultError):
    """A problem with the stored catalogues (layout, metadata)."""

    code = "catalog"


class CatalogNotFound(CatalogError):
    """A schema or table that does not exist (or that the caller may not see)."""

    code = "catalog.not_found"
    http_status = 404


class IngestError(SkyvaultError):
    """Ingest refused its input. Names the file, row and column where they are known.

    The place and the ``reason`` (the message without the place) stay apart as attributes,
    so that an edge which must not show the file (a TAP upload's temporary copy) can say
    the same thing about what the user knows.
    """

    code = "ingest"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, hint=hint)
        self.reason = message
        self.file = file
        self.row = row
        self.column = column


class InputFormatError(IngestError):
    """An input file is not what its name (or the requested format) says."""

    code = "ingest.format"


class DownloadError(SkyvaultError):
    """The download could not start (no manifest, refused, not a bulk directory)."""


# --- ADQL -----------------------------------------------------------------------------------


class AdqlError(SkyvaultError):
    """Base of ADQL errors; ``line`` and ``column`` are 1-based where known."""

    code = "adql"

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.line = line
        self.column = column
        located = f"line {line}, column {column}: {message}" if line is not None else message
        super().__init__(located, hint=hint)
        self.detail = message

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        return out


class AdqlSyntaxError(AdqlError):
    """The text is not ADQL 2.1 (grammar, reserved word, unknown function)."""

    code = "adql.syntax"


class AdqlSemanticError(AdqlError):
    """Valid ADQL that does not fit the catalogues: unknown or ambiguous name, type error."""

    code = "adql.semantic"


class UnsupportedQuery(AdqlError):
    """Valid ADQL that skyvault does not run (say which part, and what to write instead)."""

    code = "adql.unsupported"


# --- query execution ------------------------------------------------------------------------


class QueryError(SkyvaultError):
    """The query failed while running (e.g. a value error in the data)."""

    code = "query"


class QueryFailed(QueryError):
    """The engine refused or could not compute a query that passed every check.

    The message says only "the query failed while running: <category>", in ADQL's words;
    the engine's own text (its types, functions, the translated SQL) is logged, never shown.
    """

    code = "query.failed"


class QueryTimeout(QueryError):
    """The query ran longer than its time limit."""

    code = "query.timeout"


class QueryCancelled(QueryError):
    """The query was cancelled (job aborted, client gone)."""

    code = "query.cancelled"


class LimitExceeded(SkyvaultError):
    """A configured limit (upload size, jobs per user, storage) refused the request.

    ``retry_after``: seconds after which the same request may succeed, when that is known
    (the web edge sends it as ``Retry-After``).
    """

    code = "limit"
    http_status = 413

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class UserLimitExceeded(LimitExceeded):
    """A per-user limit refused the request: queries running, jobs queued or pending, stored
    results, downloads at once (:mod:`skyvault.auth.limits`, the bulk transfer limit).

    429 Too Many Requests: the refusal is about this caller's use, not the service's load
    (:class:`QueueFull`, :class:`ServerBusy`: 503) nor a request that is too large
    (:class:`LimitExceeded`: 413).  The message names the limit and the caller's use, the
    hint how to make room; ``retry_after`` when waiting helps.
    """

    http_status = 429


# --- service, jobs, auth --------------------------------------------------------------------


class JobError(SkyvaultError):
    """A UWS job request that cannot be honoured (unknown job, wrong phase...)."""

    code = "job"


class JobResourceMissing(JobError):
    """A job that exists but has not (yet) the resource asked for: the error of a job that
    did not fail, the result of a job that has not completed (UWS: a missing resource is
    a 404)."""

    code = "job.no_resource"
    http_status = 404


class JobNotFound(JobError):
    """No such job — or one the caller may not see (reported identically)."""

    code = "job.not_found"
    http_status = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"there is no job {job_id!r}",
            hint="it may have been deleted or destroyed; the job list is at /async",
        )


class JobPhaseError(JobError):
    """An action the job's phase does not allow (RUN a finished job, change a running one)."""

    code = "job.phase"
    http_status = 409


class QueueFull(JobError):
    """Too many jobs are waiting to run."""

    code = "job.queue_full"
    http_status = 503


class AuthenticationRequired(SkyvaultError):
    """No, invalid, expired or revoked credentials where credentials are needed."""

    code = "auth.required"
    http_status = 401


class AccessDenied(SkyvaultError):
    """An authenticated caller without access to what they asked for."""

    code = "auth.denied"
    http_status = 403


# --- sky geometry ---------------------------------------------------------------------------


class GeometryError(SkyvaultError):
    """An invalid sky position or region.

    Declination beyond ±90°, a negative or too large radius, a polygon with fewer than three
    vertices or a degenerate edge, a non-finite coordinate.
    """

    code = "sky.geometry"


__all__ += ["GeometryError"]


class AuthServiceUnavailable(SkyvaultError):
    """The identity service behind an authenticating proxy (user-info URL) did not answer.

    Never turned into anonymous access: the request fails until the service is back.
    """

    code = "auth.unavailable"
    http_status = 503


__all__ += ["AuthServiceUnavailable"]


class ServerBusy(LimitExceeded):
    """The service's memory budget is taken by running queries, and this one could not get
    its share before its deadline (``engine.budget``).  Nothing was wrong with the request:
    the same request later may succeed (``retry_after`` seconds, as a hint)."""

    code = "limit.busy"
    http_status = 503

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 30) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


__all__ += ["ServerBusy"]


class StorageError(SkyvaultError):
    """skyvault could not write its files: a read-only file system, no permission, a full disk.

    Not the caller's mistake: on the web a 503 (the service cannot store now; try later)
    whose message names no server path; on the command line the message names the
    directory and the remedy.  :mod:`skyvault.storage_faults` recognises these faults.
    """

    code = "storage"
    http_status = 503


__all__ += ["StorageError"]


# --- images: SODA cutouts -------------------------------------------------------------------


class MultiValuedParamNotSupported(UsageError):
    """A parameter was given more values than this request accepts (SODA 1.0 §5.2's label).

    SODA lets a service take one value of a parameter where several could be combined (a
    {sync} request answers one cutout); the message names the parameter and the count.
    """

    code = "usage.multivalued"


class CutoutNoOverlap(SkyvaultError):
    """A cutout whose constraints select nothing of the image: its region lies outside
    every image HDU, or its BAND, TIME or POL misses the image's.

    SODA 1.0 §5.1 has a {sync} request that includes no pixels answer 204 No Content;
    an {async} job records this message as the combination's result.
    """

    code = "cutout.no_overlap"


__all__ += ["CutoutNoOverlap", "MultiValuedParamNotSupported"]


# --- the user workspace (user tables) -------------------------------------------------------


class WorkspaceError(UsageError):
    """A user-table request that cannot be done as asked: a name that is not a plain
    identifier or points outside the caller's schema, a table definition that is not valid
    VOSI/VOTable, an unknown datatype, a data file whose columns or values do not fit the
    table, a body that is not the format its Content-Type says.  Nothing was stored; the
    message says what to fix."""

    code = "workspace"


class TableExists(WorkspaceError):
    """A table is created under a name the caller's schema already holds (409 Conflict)."""

    code = "workspace.exists"
    http_status = 409


class QuotaExceeded(LimitExceeded):
    """A user-table load or create would take the owner past a workspace quota (bytes,
    rows or tables).  The message states the usage, what the request adds and the limit;
    nothing was stored.  413, like the other size limits of a request."""

    code = "workspace.quota"


__all__ += ["QuotaExceeded", "TableExists", "WorkspaceError"]
