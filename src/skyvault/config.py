"""Service settings: data root, network address, limits; read from ``SKYVAULT_*`` variables."""

from __future__ import annotations

import functools
import ipaddress
import os
from pathlib import Path
from typing import Self

from pydantic import ByteSize, Field, TypeAdapter, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from skyvault.auth.config import AuthSettings
from skyvault.catalog.layout import data_dir_from_environment, jobs_database_file, results_dir
from skyvault.workspace.quota import WorkspaceSettings

__all__ = ["IPNetwork", "Settings", "trusted_networks"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def trusted_networks(text: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated list of addresses and CIDR networks.

    A bad entry is a :class:`ValueError` naming it (the settings refuse to load).
    """
    networks = []
    for item in text.split(","):
        entry = item.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies: {entry!r} is not an IP address or CIDR network "
                "(write e.g. 10.0.0.0/8 or 127.0.0.1)"
            ) from None
    return tuple(networks)


#: (default, most a client may ask for) pairs of settings: the default may not pass the most.
_DEFAULT_AND_MOST = (
    ("maxrec_default", "maxrec_limit"),
    ("job_execution_duration", "job_execution_duration_max"),
    ("job_destruction_days", "job_destruction_max_days"),
)


class Settings(BaseSettings):
    """Configuration of a skyvault service.

    Every field can be set from the environment with the ``SKYVAULT_`` prefix
    (``SKYVAULT_DATA_DIR``, ``SKYVAULT_MAXREC_LIMIT`` ...) or passed to the constructor.

    Identity and access settings are nested in ``auth`` (an
    :class:`~skyvault.auth.config.AuthSettings`, read from its own ``SKYVAULT_AUTH_*``
    variables when not passed): ``Settings(auth=AuthSettings(anonymous=False))`` in code,
    ``SKYVAULT_AUTH_ANONYMOUS=false`` in the environment.

    A default may not be greater than the most a client may ask for (``maxrec_default`` and
    ``maxrec_limit``, ``job_execution_duration`` and ``job_execution_duration_max``,
    ``job_destruction_days`` and ``job_destruction_max_days``): when both are set, that is
    refused; when only the most is set, below the built-in default, the default becomes it.
    """

    model_config = SettingsConfigDict(env_prefix="SKYVAULT_", frozen=True)

    data_dir: Path = Field(
        default_factory=data_dir_from_environment,
        description="data root the catalogues live in (SKYVAULT_DATA_DIR; default ./data)",
    )
    host: str = Field(default="127.0.0.1", description="address the server listens on")
    port: int = Field(default=8000, ge=0, le=65535, description="port the server listens on")
    base_url: str | None = Field(
        default=None,
        description=(
            "public URL of the TAP service (e.g. https://data.example.org/tap); when unset, "
            "links in VOSI documents are made from each request's own URL"
        ),
    )
    path_prefix: str = Field(default="/tap", description="path the TAP service is mounted at")
    auth: AuthSettings = Field(
        default_factory=AuthSettings,
        description="identity, access and per-user limits (SKYVAULT_AUTH_* variables)",
    )
    workspace: WorkspaceSettings = Field(
        default_factory=WorkspaceSettings,
        description="user tables: default quotas and request limits (SKYVAULT_WORKSPACE_*)",
    )
    required_groups: str = Field(
        default="",
        description=(
            "comma-separated groups; when set, only members of one of them may use the "
            "service at all (others get 403, anonymous callers 401); empty: everyone allowed in"
        ),
    )
    maxrec_default: int = Field(default=100_000, ge=0, description="rows returned without MAXREC")
    maxrec_limit: int = Field(default=10_000_000, ge=0, description="most rows MAXREC may ask for")
    query_timeout: float = Field(default=600.0, gt=0, description="time limit of a sync query, s")
    memory_limit: str = Field(
        default="2GB",
        description=(
            "DuckDB memory limit of a server process, shared by its queries' sorts, joins "
            "and aggregates (default: half the process's share of memory_budget, 2GB at most)"
        ),
    )
    query_threads: int = Field(default=2, ge=1, description="DuckDB threads per query")
    dask_scheduler: str | None = Field(
        default=None,
        description=(
            "address of a Dask distributed scheduler (tcp://host:8786) to run queries on, "
            "split by partition and merged here; unset: queries run in the server process. "
            "The workers must see the data root at the same path"
        ),
    )
    spool_dir: Path | None = Field(
        default=None,
        description=(
            "directory for results written to disk before they are sent (FITS, whose header "
            "needs the row count); default: the system temporary directory"
        ),
    )
    fits_max_spool_bytes: int = Field(
        default=16 * 1024**3,
        ge=1,
        description=(
            "most bytes one FITS result may occupy in spool_dir while it is prepared and "
            "sent (memory does not depend on the result's size; this disk space does)"
        ),
    )

    # --- memory (engine/budget.py) ---------------------------------------------------------
    memory_budget: ByteSize | None = Field(
        default=None,
        description=(
            "memory the whole server may use for queries (e.g. 4GB): split evenly between "
            "its worker processes, each gives DuckDB's memory_limit its share and the rest "
            "to the results being streamed; a query waits for its share (up to its time "
            "limit, then 503) instead of pushing the machine out of memory. Default: half "
            "the machine's (or container's) memory"
        ),
    )
    workers: int = Field(
        default=1, ge=1, description="server processes sharing memory_budget (serve --workers)"
    )

    def process_memory_budget(self) -> int:
        """Bytes of :attr:`memory_budget` for one server process."""
        total = self.memory_budget if self.memory_budget is not None else machine_memory() // 2
        return int(total) // self.workers

    def stream_memory_budget(self) -> int:
        """Bytes a process's queries may hold outside DuckDB for streaming their results:
        its share of :attr:`memory_budget` less DuckDB's :attr:`memory_limit`."""
        return self.process_memory_budget() - parse_bytes(self.memory_limit)

    @model_validator(mode="after")
    def _memory_within_budget(self) -> Self:
        """DuckDB's limit defaults to half a process's budget (2 GB at most); an explicit
        one must leave room for streaming."""
        share = self.process_memory_budget()
        if "memory_limit" not in self.model_fields_set:
            # Set in place: the settings are frozen (as in _defaults_within_limits).
            self.__dict__["memory_limit"] = f"{min(2 * 1000**3, share // 2) // 1024**2}MiB"
            return self
        if parse_bytes(self.memory_limit) >= share:
            raise ValueError(
                f"memory_limit ({self.memory_limit}) leaves nothing of the memory budget of a "
                f"server process ({share / 1024**2:.0f} MiB: memory_budget / workers) for "
                "streaming results; lower memory_limit or raise memory_budget"
            )
        return self

    # --- async (UWS) jobs -----------------------------------------------------------------
    jobs_database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the job database; default sqlite:///DATA/.skyvault/jobs.sqlite3 "
            "(postgresql+psycopg://... lets several service replicas share jobs)"
        ),
    )
    results_url: str | None = Field(
        default=None,
        description=(
            "where async results are stored: a directory or any fsspec URL (s3://bucket/path); "
            "default DATA/.skyvault/results"
        ),
    )
    job_workers: int = Field(default=2, ge=1, description="async jobs run at once per service")
    job_max_queued: int = Field(
        default=100, ge=1, description="most jobs waiting in QUEUED before RUN is refused"
    )
    job_execution_duration: int = Field(
        default=3600, ge=1, description="EXECUTIONDURATION of a new async job, s"
    )
    job_execution_duration_max: int = Field(
        default=4 * 3600, ge=1, description="most EXECUTIONDURATION a job may ask for, s"
    )
    job_destruction_days: float = Field(
        default=7.0, gt=0, description="a new job (and its result) is destroyed after this, days"
    )
    job_destruction_max_days: float = Field(
        default=30.0, gt=0, description="latest DESTRUCTION a job may ask for, days from now"
    )
    anonymous_job_destruction_days: float = Field(
        default=1.0,
        gt=0,
        description=(
            "an anonymous caller's job (and its result) is destroyed after this, days; "
            "anonymous jobs may not ask for a later DESTRUCTION"
        ),
    )
    job_wait_max: int = Field(
        default=60, ge=1, description="longest a blocking WAIT request holds, s"
    )
    job_reaper_interval: float = Field(
        default=60.0, gt=0, description="how often expired jobs are looked for and destroyed, s"
    )

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> Self:
        """Refuse a default above its limit (or lower the built-in one to a lower limit)."""
        problems = []
        for default, most in _DEFAULT_AND_MOST:
            value, limit = getattr(self, default), getattr(self, most)
            if value <= limit:
                continue
            if default in self.model_fields_set:
                problems.append(f"{default} ({value}) is greater than {most} ({limit})")
            else:
                # The built-in default, above a limit the operator lowered: the limit it is
                # (a request without MAXREC got no more anyway; a job without
                # EXECUTIONDURATION got more than its maximum).  Set in place: the settings
                # are frozen, and a validator may not return another instance.
                self.__dict__[default] = limit
        if problems:
            raise ValueError(
                "; ".join(problems) + ": a default may not pass the most a client may ask for"
            )
        return self

    def required_group_set(self) -> frozenset[str]:
        """The groups of :attr:`required_groups` (empty: no requirement)."""
        return frozenset(g.strip() for g in self.required_groups.split(",") if g.strip())

    def jobs_database(self) -> str:
        """The job database URL (the configured one or the SQLite file under the data root)."""
        if self.jobs_database_url:
            return self.jobs_database_url
        return f"sqlite:///{jobs_database_file(self.data_dir).absolute()}"

    def results_location(self) -> str:
        """The result store URL (the configured one or the directory under the data root)."""
        if self.results_url:
            return self.results_url
        return str(results_dir(self.data_dir).absolute())

    # --- who is calling, and how long they wait (service/security.py, handlers/tap.py) -----
    trusted_proxies: str = Field(
        default="",
        description=(
            "comma-separated addresses or CIDR networks of reverse proxies in front of the "
            "service (e.g. 10.0.0.0/8,127.0.0.1); only when a request comes from one of them "
            "are its X-Forwarded-For / Forwarded headers used to find the client address that "
            "anonymous limits count by; empty: the connection's own address"
        ),
    )
    sync_slot_wait: float = Field(
        default=10.0,
        ge=0,
        description=(
            "how long a sync query waits for one of its caller's running slots before it is "
            "refused with 429, s"
        ),
    )
    retry_after: int = Field(
        default=10,
        ge=1,
        description="the Retry-After of a 429 (a per-caller limit), s",
    )

    @model_validator(mode="after")
    def _proxies_parse(self) -> Self:
        """Refuse a trusted_proxies entry that is not an address or network."""
        trusted_networks(self.trusted_proxies)
        return self

    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """The networks of :attr:`trusted_proxies`."""
        return trusted_networks(self.trusted_proxies)

    # --- TAP_UPLOAD (service/uploads.py) ----------------------------------------------------
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="most bytes the uploaded tables of one request may hold together",
    )
    max_upload_rows: int = Field(
        default=1_000_000, ge=0, description="most rows of one uploaded table"
    )
    max_uploads: int = Field(default=16, ge=0, description="most tables one request may upload")
    max_upload_columns: int = Field(
        default=1000,
        ge=1,
        description="most columns of one uploaded table (VOTable FIELDs are counted before "
        "the table is parsed)",
    )
    upload_fetch_timeout: float = Field(
        default=30.0, gt=0, description="time limit to fetch one UPLOAD URL, s"
    )
    allow_private_upload_urls: bool = Field(
        default=False,
        description=(
            "let UPLOAD URLs reach loopback, link-local and private addresses and the "
            "service's own host (off: only public http(s) hosts)"
        ),
    )

    # --- bulk download (service/handlers/bulk.py) -------------------------------------------
    bulk_max_downloads: int = Field(
        default=8,
        ge=0,
        description=(
            "most /bulk file transfers one caller (a user; an anonymous client address) may "
            "have running at once in one server process; more are refused with 429 and "
            "Retry-After; 0: no limit"
        ),
    )
    bulk_bandwidth: int = Field(
        default=200_000_000,
        ge=0,
        description=(
            "bytes per second of /bulk file transfers one caller (a user; an anonymous "
            "client address) gets in one server process, all their transfers together (a "
            "token bucket: faster transfers are slowed, never refused); 0: no limit"
        ),
    )
    bulk_job_file_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description=(
            "about the most bytes of one file of a bulk job (/bulk/jobs; a job may ask for "
            "less with MAXFILESIZE)"
        ),
    )

    # --- rapid ingest (service/handlers/append.py, catalog/compact.py) ----------------------
    append_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="most bytes of one appended batch (HTTP)"
    )
    append_max_rows: int = Field(
        default=10_000_000, ge=1, description="most rows of one appended batch (HTTP)"
    )
    background_compaction: bool = Field(
        default=True,
        description="compact tables with appended rows in the background (off: only "
        "`skyvault compact` folds them)",
    )
    compact_after_batches: int = Field(
        default=200,
        ge=0,
        description="compact a table in the background once this many batches are "
        "appended since its last compaction; 0: not by count",
    )
    compact_after_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="... or once its appended files hold this many bytes; 0: not by size",
    )
    compact_check_interval: float = Field(
        default=10.0, gt=0, description="how often the thresholds are checked, s"
    )
    compact_keep_replaced: float = Field(
        default=3600.0,
        ge=0,
        description="how long a version replaced by a compaction is kept for the queries "
        "still reading it, s (set it above the longest query)",
    )


def parse_bytes(size: str | int) -> int:
    """Bytes in ``size`` (``"2GB"``, ``"512MiB"``, ``1000``), as DuckDB reads its limits."""
    return int(TypeAdapter(ByteSize).validate_python(size))


def machine_memory() -> int:
    """Physical memory of this machine, or the container's memory limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total
