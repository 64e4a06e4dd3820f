"""The ``skyvault`` command: a thin edge that parses arguments and calls the core.

Every subcommand takes ``--data DIR`` (default: ``$SKYVAULT_DATA_DIR`` or ``./data``).  Errors
are skyvault's own classes, printed as one line on stderr with a non-zero exit status;
an interrupt exits with status 130 and, for ingest, leaves the catalogue as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from skyvault import __version__
from skyvault.errors import SkyvaultError, UsageError

if TYPE_CHECKING:
    from skyvault.auth.storage import AuthStorage
    from skyvault.config import Settings

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The settings models (``SKYVAULT_*`` variables) whose validation errors are usage errors.
_SETTINGS_MODELS = ("Settings", "AuthSettings")


def _default_data() -> Path:
    from skyvault.catalog.layout import data_dir_from_environment

    return data_dir_from_environment()


class RichProgress:
    """Ingest progress as a rich bar per stage: rows, rows/s and time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def stage(self, label: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(label, total=total, rate="")

    def advance(self, rows: int) -> None:
        if self._task is None:
            return
        self._progress.advance(self._task, rows)
        task = self._progress.tasks[-1]
        speed = task.speed
        if speed:
            self._progress.update(self._task, rate=f"{speed / 1e6:.2f}M rows/s")


@contextlib.contextmanager
def _progress(wanted: bool) -> Iterator[RichProgress | None]:
    """A progress bar on a terminal (None when not wanted or not a terminal)."""
    if not (wanted and sys.stderr.isatty()):
        yield None
        return
    with RichProgress() as bar:
        yield bar


def _cmd_ingest(args: argparse.Namespace) -> int:
    from skyvault.auth.cli import auth_storage_errors
    from skyvault.catalog.ingest import IngestOptions, ingest
    from skyvault.catalog.layout import TableName

    options = IngestOptions(
        max_rows_per_partition=args.max_rows,
        margin_arcsec=args.margin,
        workers=args.workers,
        primary_key=args.primary_key,
        description=args.description,
    )
    TableName.parse(args.table)  # a bad name is refused before anything else
    if args.group is not None:
        with auth_storage_errors("ingest --group", args.data):
            _check_group(args.data, args.group)  # before the work, not after it
    with _progress(not args.quiet) as bar:
        meta = ingest(
            args.inputs,
            args.table,
            args.data,
            ra=args.ra,
            dec=args.dec,
            felis=args.felis,
            options=options,
            progress=bar,
        )
    layout = f"{meta.n_partitions} HEALPix partitions" if meta.kind == "hats" else "plain Parquet"
    print(f"ingested {meta.nrows:,} rows into {meta.qualified_name} ({layout}) under {args.data}")
    with auth_storage_errors("the grant after ingest", args.data):
        if args.public or args.group is not None:
            _grant_read(args.data, meta.qualified_name, args.group)
        else:
            _say_who_reads(args.data, meta.schema, meta.name)
    return 0


def _auth_storage(data: Path) -> AuthStorage:
    from skyvault.auth.config import AuthSettings
    from skyvault.auth.storage import AuthStorage

    return AuthStorage.for_data_dir(data, AuthSettings().database_url)


def _check_group(data: Path, group: str) -> None:
    """Refuse ``--group G`` for a group the grant would refuse (built-in mode)."""
    from skyvault.auth.config import AuthSettings

    if group.upper() == "PUBLIC":
        raise UsageError("PUBLIC is not a group", hint="use --public")
    if AuthSettings().mode != "builtin":
        return  # behind a proxy, groups exist only in its headers
    if not (data.is_dir() and _auth_storage(data).group_exists(group)):
        raise UsageError(
            f"no group {group!r}",
            hint=f"create it first with `skyvault groups add {group} --members USER,...`",
        )


def _access_command(verb: str, target: str, data: Path) -> str:
    """The exact ``skyvault grant|revoke TARGET --public --data DIR`` to type."""
    return shlex.join(["skyvault", verb, target, "--public", "--data", str(data)])


def _grant_read(data: Path, target: str, group: str | None) -> None:
    """Grant read access on ``target`` to ``group`` (None: everyone) and say so."""
    from skyvault.auth.access import grant_access
    from skyvault.auth.config import AuthSettings

    grant, new = grant_access(
        _auth_storage(data), target, group, require_known_group=AuthSettings().mode == "builtin"
    )
    readers = "everyone (anonymous callers included)" if group is None else f"group {group}"
    print(f"{grant.target} is readable by {readers}{'' if new else ' (already granted)'}")


def _say_who_reads(data: Path, schema: str, table: str) -> None:
    """Tell the operator who may query ``schema.table`` now: a private table is no secret."""
    from skyvault.auth.access import AccessPolicy

    grantees = AccessPolicy(_auth_storage(data)).snapshot().grantees(schema, table)
    target = f"{schema}.{table}"
    if not grantees:
        print(
            f"{target} is private: no one can query it until it is granted; to publish it: "
            f"{_access_command('grant', target, data)} (or --group G for one group)"
        )
        return
    names = sorted("everyone" if g is None else f"group {g}" for g in grantees)
    print(f"{target} is readable by {', '.join(names)} (grants made earlier)")


def _cmd_append(args: argparse.Namespace) -> int:
    from skyvault.catalog.append import append
    from skyvault.storage_faults import storage_errors

    with storage_errors(
        f"cannot append to {args.table}", f"the data directory {args.data}", under=args.data
    ):
        result = append(args.data, args.table, args.inputs, args.batch_id)
    if result.written:
        print(
            f"appended {result.rows:,} rows to {args.table} as snapshot {result.snapshot} "
            f"(batch {args.batch_id})"
        )
    else:
        print(f"batch {args.batch_id} was already committed: nothing appended")
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    from skyvault.catalog.compact import compact
    from skyvault.storage_faults import storage_errors

    with storage_errors(
        f"cannot compact {args.table}", f"the data directory {args.data}", under=args.data
    ):
        result = compact(args.data, args.table)
    if not result.batches:
        print(f"{args.table} has no appended rows to compact (snapshot {result.snapshot})")
    else:
        print(
            f"compacted {result.batches} batches of {args.table} into version {result.version}: "
            f"{result.rows:,} rows, {result.partitions} partitions "
            f"({result.rewritten} rewritten), snapshot {result.snapshot}"
        )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from skyvault.auth.cli import auth_storage_errors
    from skyvault.demo import build_demo
    from skyvault.storage_faults import Fault, storage_errors

    faults = storage_errors(
        "cannot build the demo",
        f"the data directory {args.data}",
        remedy={
            Fault.READ_ONLY: "the demo is written there: remount it read-write, or pass --data "
            "a writable directory",
            Fault.NO_PERMISSION: "run as a user who may write there, or pass --data a "
            "directory you may write",
        },
        under=args.data,
    )
    with faults, _progress(True) as bar:
        metas = build_demo(
            args.data, scale=args.scale, seed=args.seed, force=args.force, progress=bar or False
        )
    for meta in metas:
        print(f"{meta.qualified_name}: {meta.nrows:,} rows")
    # Demo data is for showing: public, or the first query would find nothing.
    for schema in sorted({meta.schema for meta in metas}):
        with auth_storage_errors("the grant of the demo", args.data):
            _grant_read(args.data, schema, None)
        print(f"(to make it private: {_access_command('revoke', schema, args.data)})")
    if args.stream:
        _stream_demo(args)
    return 0


def _stream_demo(args: argparse.Namespace) -> None:
    """Replay DiaSources into the demo, a CCD visit per batch, until Ctrl-C (or --visits)."""
    from skyvault.demo.stream import DIA_SOURCE, StreamedVisit, stream_visits

    serve = shlex.join(["skyvault", "serve", "--data", str(args.data)])
    print(
        f"streaming DiaSources into {DIA_SOURCE}, a CCD visit every {args.interval:g} s "
        f"(serve it meanwhile: {serve}; Ctrl-C stops)",
        flush=True,
    )

    def say(visit: StreamedVisit) -> None:
        print(
            f"{visit.batch_id}: {visit.rows} rows, snapshot {visit.snapshot}",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        stream_visits(args.data, interval=args.interval, visits=args.visits, on_visit=say)


def _cmd_images_ingest(args: argparse.Namespace) -> int:
    from skyvault.auth.cli import auth_storage_errors
    from skyvault.images.cli import run_images_ingest

    if args.group is not None:
        with auth_storage_errors("images ingest --group", args.data):
            _check_group(args.data, args.group)  # before the work, not after it
    with _progress(not args.quiet) as bar:
        status, collection = run_images_ingest(args, bar)
    with auth_storage_errors("the grant after ingest", args.data):
        if args.public or args.group is not None:
            _grant_read(args.data, collection, args.group)
        else:
            _say_who_reads(args.data, collection, "obscore")
            print(
                f"(grant the whole collection: {_access_command('grant', collection, args.data)})"
            )
    return status


def _cmd_tables(args: argparse.Namespace) -> int:
    from skyvault.catalog.layout import list_tables
    from skyvault.catalog.metadata import TableMeta
    from skyvault.catalog.tap_schema import published_table

    for name, path in list_tables(args.data):
        try:
            meta = TableMeta.read(path)
        except SkyvaultError as exc:
            print(f"{name}\t(unreadable: {exc})")
            continue
        # The columns as queries see them (not the engine's own _healpix_29).
        columns = len(published_table(meta).columns)
        print(f"{name}\t{meta.kind}\t{meta.nrows} rows\t{columns} columns")
    return 0


def _cmd_hips_build(args: argparse.Namespace) -> int:
    from skyvault.hips import TileLimits, build_catalog_hips

    if args.images or args.red or args.green or args.blue or args.collection:
        return _hips_build_images(args)
    if not args.table or not args.order_by:
        raise UsageError(
            "hips build needs --table SCHEMA.TABLE --order-by COLUMN (a catalogue HiPS) "
            "or --images FILE… with --name NAME or --out DIR (an image HiPS)"
        )
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    result = build_catalog_hips(
        args.data,
        args.table,
        args.order_by,
        ascending=not args.descending,
        columns=columns,
        limits=TileLimits(tile=args.max_per_tile),
        creator_did=args.creator_did,
        title=args.title,
    )
    print(
        f"{args.table}: catalogue HiPS of {result.nrows:,} rows in {result.tiles:,} tiles, "
        f"orders 1-{result.order}, {result.seconds:.1f} s ({result.path})"
    )
    return 0


def _hips_build_images(args: argparse.Namespace) -> int:
    """``hips build --images``: an image HiPS of FITS files.  The ``--collection NAME``
    form (from the image archive) comes when that archive is on main."""
    from skyvault.hips.image import build_image_hips
    from skyvault.hips.store import image_hips_dir

    if args.table:
        raise UsageError("give either --table (a catalogue HiPS) or --images, not both")
    stored = _collection_inputs(args) if args.collection else None
    if stored is not None and args.name is None and args.out is None:
        args.name = args.collection + (f"-{args.band}" if args.band else "")
        args.name += "-color" if args.color else ""
    if (args.out is None) == (args.name is None):
        raise UsageError(
            "an image HiPS needs --name NAME (served at /hips/images/NAME/) or --out DIR"
        )
    out = args.out if args.out is not None else image_hips_dir(args.data, args.name)
    label = args.name or out.name
    hdu: int | str = int(args.hdu) if args.hdu.isdigit() else args.hdu
    show = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show:
            print(f"\r{label}: {done:,}/{total:,} tiles", end="", file=sys.stderr, flush=True)

    bands = (args.red, args.green, args.blue)

    def spec(files: list[str]) -> list[tuple[str | os.PathLike[str], int | str]]:
        return [(Path(f), hdu) for f in files]

    if any(bands) and (args.images or not all(bands)):
        raise UsageError("a colour HiPS needs --red, --green and --blue files (and no --images)")
    grey = spec(args.images or [])
    colour = (spec(args.red), spec(args.green), spec(args.blue)) if all(bands) else None
    if stored is not None:  # the collection's own (file, HDU)
        grey = list(stored[0]) if len(stored) == 1 else []
        colour = (list(stored[0]), list(stored[1]), list(stored[2])) if len(stored) == 3 else None
    formats = args.format or ("png" if colour else "fits,png")
    result = build_image_hips(
        grey,
        out,
        title=args.title or label,
        creator_did=args.creator_did or f"ivo://skyvault/P/{label}",
        tile_format=[f.strip() for f in formats.split(",") if f.strip()],
        order=args.order,
        combine=args.combine,
        color=colour,
        collection=args.collection,
        workers=args.workers,
        progress=progress,
    )
    if show:
        print(file=sys.stderr)
    how = "updated" if result.incremental else "built"
    print(
        f"{label}: image HiPS {how}, {result.inputs} images, {result.tiles:,} tiles at order "
        f"{result.order} ({result.computed:,} tiles computed), {result.seconds:.1f} s ({out})"
    )
    return 0


def _collection_inputs(args: argparse.Namespace) -> list[list[tuple[Path, int]]]:
    """``--collection C [--band B | --color r,g,i]``: the collection's images, one list
    (grey) or three (red, green, blue)."""
    from skyvault.hips.image import collection_images

    if args.images or args.red or args.green or args.blue:
        raise UsageError("give --collection or image files, not both")
    if not args.color:
        return [collection_images(args.data, args.collection, args.band)]
    bands = [b.strip() for b in args.color.split(",")]
    if len(bands) != 3 or args.band:
        raise UsageError("--color takes three bands, red to blue (e.g. i,r,g), and no --band")
    return [collection_images(args.data, args.collection, b) for b in bands]


def _cmd_serve(args: argparse.Namespace) -> int:
    from skyvault.config import Settings

    if not args.data.is_dir():
        raise UsageError(f"no data directory at {args.data}; build one with `skyvault demo`")
    if args.workers < 1:
        raise UsageError(f"--workers must be 1 or more, not {args.workers}")
    _refuse_busy_port(args.host, args.port)
    settings = Settings(data_dir=args.data, host=args.host, port=args.port)
    url = f"http://{args.host}:{args.port}{settings.path_prefix}"
    _check_service_storage(settings)
    if args.workers > 1:
        # Each worker process builds its own app from the environment (a replica sharing
        # the job database, as several machines would): set what the command line said.
        os.environ["SKYVAULT_DATA_DIR"] = str(args.data.resolve())
        os.environ["SKYVAULT_HOST"] = args.host
        os.environ["SKYVAULT_PORT"] = str(args.port)
        os.environ["SKYVAULT_WORKERS"] = str(args.workers)  # they share the memory budget
        with _hold_port(args.host, args.port):
            with _service_storage_errors(settings):
                _check_app()  # fail now if it cannot start
            print(f"skyvault TAP service at {url} ({args.workers} worker processes)")
            _serve_workers(args.host, args.port, args.workers, args.log_level)
        return 0
    import uvicorn

    from skyvault.service.app import create_app

    with _service_storage_errors(settings):
        app = create_app(settings, freeze_gc=True)
    print(f"skyvault TAP service at {url}")
    # proxy_headers=False: the client address comes from SKYVAULT_TRUSTED_PROXIES alone
    # (service/security.py), never from uvicorn's own trust of 127.0.0.1.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False)
    return 0


def _build_and_close_app() -> None:
    from skyvault.service.app import create_app

    create_app().state.context.archive.close()


def _check_app() -> None:
    """Build the app from the environment once, in a child process, and raise what that
    raises.  The supervisor itself never imports the service (hundreds of MiB it would
    hold, doing nothing, for the life of the server)."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        pool.submit(_build_and_close_app).result()


def _service_storage_variables(settings: Settings) -> list[str]:
    """The settings left to their default place under the data root (which must be writable)."""
    defaults = (
        ("SKYVAULT_JOBS_DATABASE_URL", settings.jobs_database_url),
        ("SKYVAULT_RESULTS_URL", settings.results_url),
        ("SKYVAULT_AUTH_DATABASE_URL", settings.auth.database_url),
    )
    return [variable for variable, value in defaults if value is None]


def _service_storage_errors(
    settings: Settings, place: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """A read-only or full directory at start-up said as such, naming it and the remedy."""
    from skyvault.storage_faults import Fault, storage_errors

    variables = _service_storage_variables(settings) or ["the SKYVAULT_*_URL settings"]
    elsewhere = f"or set {', '.join(variables)} to writable places"
    return storage_errors(
        "cannot start the service",
        place or f"the data directory {settings.data_dir} or a place its SKYVAULT_* settings name",
        remedy={
            Fault.READ_ONLY: f"the service writes its jobs, results and users there: make it "
            f"writable, {elsewhere}",
            Fault.NO_PERMISSION: f"run the service as a user who may write there, {elsewhere}",
            Fault.FULL: "free space there and start the service again",
        },
    )


def _check_service_storage(settings: Settings) -> None:
    """Refuse to start on a data root the service must write but cannot, naming it.

    By default the job database, the async results and the auth database live under
    ``DATA/.skyvault``.  SQLite says only "unable to open database file" when that is
    read-only; a trial file says why.
    """
    import tempfile

    from skyvault.catalog.layout import internal_dir

    if not _service_storage_variables(settings):
        return
    internal = internal_dir(settings.data_dir)
    with _service_storage_errors(settings, f"the data directory {settings.data_dir}"):
        internal.mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=internal):
            pass


def _serve_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """Run ``workers`` server processes, each listening on ``host:port`` (SO_REUSEPORT).

    Why not uvicorn's ``workers=``: it shares one listening socket, and an asyncio server
    accepts every pending connection in a burst, so a client opening 16 connections at once
    gets them all served by one process while the others idle.  With a socket per process
    the kernel spreads connections over them.  (Its socket also lacks the TCP protocol
    number, so asyncio leaves Nagle on and keep-alive answers wait ~40 ms for delayed ACKs.)
    The workers end with this process, however it ends (:func:`_end_with_supervisor`).
    """
    import multiprocessing
    import multiprocessing.connection
    import signal

    context = multiprocessing.get_context("spawn")
    supervisor = os.getpid()
    processes = [
        context.Process(
            target=_serve_one, args=(host, port, log_level, supervisor), name=f"skyvault-{i}"
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # One worker ending (a crash, or a signal) ends the service: a supervisor restarts it.
    multiprocessing.connection.wait([p.sentinel for p in processes])
    stop(signal.SIGTERM, None)
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise SkyvaultError(f"a server process ended with status {failed[0]}")


def _tcp_socket(host: str, *, reuseaddr: bool, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if reuseaddr:  # connections of an earlier run still in TIME_WAIT do not hold the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _bind(sock: socket.socket, host: str, port: int) -> None:
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = None
        if exc.errno == errno.EADDRINUSE:
            hint = "another `skyvault serve` or another program holds it: stop it or use --port"
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}", hint=hint) from None


def _refuse_busy_port(host: str, port: int) -> None:
    """Refuse ``host:port`` when anything listens there, SO_REUSEPORT servers included.

    The workers bind with SO_REUSEPORT, which would let them join the listening sockets
    of another server (an earlier ``skyvault serve``, say) and share its connections
    without an error.  A socket without SO_REUSEPORT cannot share a port with a
    listening socket, with the option or without, so this bind fails in that case.
    """
    trial = _tcp_socket(host, reuseaddr=True, reuseport=False)
    _bind(trial, host, port)
    trial.close()


@contextlib.contextmanager
def _hold_port(host: str, port: int) -> Iterator[None]:
    """Keep ``host:port`` for this supervisor while its workers start and serve.

    A bound, never listening socket with SO_REUSEPORT but without SO_REUSEADDR: another
    ``serve``'s :func:`_refuse_busy_port` fails on it, while our workers' sockets (both
    options, same user) join it.  It closes with this process, however that ends.
    """
    sock = _tcp_socket(host, reuseaddr=False, reuseport=True)
    _bind(sock, host, port)
    with sock:
        yield


def _reuseport_socket(host: str, port: int) -> socket.socket:
    sock = _tcp_socket(host, reuseaddr=True, reuseport=True)
    _bind(sock, host, port)
    return sock


#: How long a worker whose supervisor died may take to finish its requests, s.
ORPHAN_GRACE_SECONDS = 10.0

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
_PR_SET_PDEATHSIG = 1


def _end_with_supervisor(server: Any, supervisor: int) -> None:
    """Make this worker stop serving when its supervisor process ends, even by ``kill -9``.

    Two mechanisms: on Linux the kernel sends SIGTERM when the parent dies
    (``prctl(PR_SET_PDEATHSIG)``, which uvicorn takes as a graceful shutdown); everywhere,
    a thread watches multiprocessing's parent sentinel (a pipe the parent holds open) and,
    when it closes, asks the server to stop.  After :data:`ORPHAN_GRACE_SECONDS` the
    process exits regardless, so an orphan never keeps the port.
    """
    import multiprocessing
    import multiprocessing.connection
    import signal
    import threading
    import time

    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the line above
        os._exit(EXIT_ERROR)
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch(sentinel: int) -> None:
        multiprocessing.connection.wait([sentinel])
        server.should_exit = True
        time.sleep(ORPHAN_GRACE_SECONDS)
        os._exit(EXIT_ERROR)

    threading.Thread(
        target=watch, args=(parent.sentinel,), name="skyvault-supervisor-watch", daemon=True
    ).start()


def _serve_one(host: str, port: int, log_level: str, supervisor: int) -> None:
    """One worker process: its own listening socket, its own app (from the environment)."""
    import uvicorn

    config = uvicorn.Config(
        "skyvault.service.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,  # client addresses: SKYVAULT_TRUSTED_PROXIES alone
    )
    server = uvicorn.Server(config)
    _end_with_supervisor(server, supervisor)
    server.run(sockets=[_reuseport_socket(host, port)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skyvault",
        description="Data-access service for astronomy archives: HATS catalogues, ADQL, TAP.",
    )
    parser.add_argument("--version", action="version", version=f"skyvault {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data",
            type=Path,
            default=_default_data(),
            metavar="DIR",
            help="data root (default: $SKYVAULT_DATA_DIR or ./data)",
        )

    p = sub.add_parser("ingest", help="ingest Parquet/CSV/ECSV/FITS/VOTable files as a table")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="input files or globs")
    p.add_argument(
        "--table", required=True, metavar="SCHEMA.TABLE", help="the table to create or replace"
    )
    p.add_argument("--ra", metavar="COL", help="right ascension column (degrees, ICRS)")
    p.add_argument("--dec", metavar="COL", help="declination column (degrees, ICRS)")
    p.add_argument("--felis", type=Path, metavar="FILE", help="Felis YAML schema with metadata")
    p.add_argument("--primary-key", metavar="COL", help="the column identifying a row")
    p.add_argument("--description", metavar="TEXT", help="what the table holds (shown by TAP)")
    p.add_argument(
        "--max-rows", type=int, default=1_000_000, help="max rows per partition (1000000)"
    )
    p.add_argument("--margin", type=float, default=5.0, help="margin width in arcsec (5)")
    p.add_argument("--workers", type=int, default=2, help="partitions written in parallel (2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--public",
        action="store_true",
        help="let everyone (anonymous callers included) read the table; without this or "
        "--group the table is private until `skyvault grant`",
    )
    who.add_argument("--group", metavar="G", help="let group G read the table")
    data_arg(p)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("append", help="add a batch of rows to a table, atomically")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="files holding the batch's rows")
    p.add_argument("--table", required=True, metavar="SCHEMA.TABLE", help="the table to add to")
    p.add_argument(
        "--batch-id",
        required=True,
        metavar="ID",
        help="the batch's id (e.g. a visit): re-sending a committed id does nothing",
    )
    data_arg(p)
    p.set_defaults(func=_cmd_append)

    p = sub.add_parser("compact", help="fold a table's appended rows into its HATS partitions")
    p.add_argument("--table", required=True, metavar="SCHEMA.TABLE", help="the table to compact")
    data_arg(p)
    p.set_defaults(func=_cmd_compact)

    p = sub.add_parser(
        "demo", help="build the DP0.2-style demo data set (public: everyone may query it)"
    )
    p.add_argument(
        "--scale",
        choices=("small", "medium"),
        default="medium",
        help="size of the data set (default: medium; small builds in seconds)",
    )
    p.add_argument("--seed", type=int, default=20260501, help="random seed: one seed, one data set")
    p.add_argument("--force", action="store_true", help="rebuild even if present")
    p.add_argument(
        "--stream",
        action="store_true",
        help="then append DiaSources to dp02_dc2_catalogs.DiaSource, a CCD visit per batch, "
        "until Ctrl-C (run skyvault serve meanwhile to see them arrive)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="S",
        help="with --stream: seconds between visits (default 5)",
    )
    p.add_argument(
        "--visits",
        type=int,
        default=0,
        metavar="N",
        help="with --stream: stop after N visits (default 0: until Ctrl-C)",
    )
    data_arg(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("serve", help="serve the tables over TAP (http://HOST:PORT/tap)")
    p.add_argument(
        "--host",
        default=os.environ.get("SKYVAULT_HOST", "127.0.0.1"),
        help="address to listen on (default: $SKYVAULT_HOST or 127.0.0.1, this machine only; "
        "0.0.0.0 for every interface)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SKYVAULT_PORT", "8000")),
        help="TCP port (default: $SKYVAULT_PORT or 8000); refused if anything listens there",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log detail (default: info)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("SKYVAULT_WORKERS", "1")),
        help="server processes (default: $SKYVAULT_WORKERS or 1). More serve more sync "
        "queries per second on several cores; they share the job database like replicas, so "
        "a blocking WAIT on a job another process runs sees its end by polling (within "
        "0.5 s). They end with the command, even when it is killed",
    )
    data_arg(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("hips", help="build HiPS (Hierarchical Progressive Surveys) for Aladin")
    hips_sub = p.add_subparsers(dest="hips_command", required=True, metavar="ACTION")
    p = hips_sub.add_parser(
        "build",
        help="build the catalogue HiPS of a table (served at /hips/SCHEMA.TABLE/), or an "
        "image HiPS of FITS images (--images; served at /hips/images/NAME/)",
    )
    p.add_argument("--table", metavar="SCHEMA.TABLE", help="the HATS table to build it from")
    p.add_argument("--order-by", metavar="COLUMN", help="brightness column (magnitude, flux)")
    # Image HiPS of files, or of a collection of the image archive.
    p.add_argument("--images", nargs="+", metavar="FILE", help="FITS images (an image HiPS)")
    p.add_argument(
        "--collection", help="the images of an image collection (skyvault images ingest)"
    )
    p.add_argument("--band", help="with --collection: the images of this band only")
    p.add_argument("--color", metavar="R,G,B", help="with --collection: a colour HiPS of 3 bands")
    for band in ("red", "green", "blue"):
        p.add_argument(
            f"--{band}", nargs="+", metavar="FILE", help=f"{band} band of a colour HiPS (png/jpeg)"
        )
    p.add_argument("--name", help="image HiPS name under the data root (/hips/images/NAME/)")
    p.add_argument("--out", type=Path, metavar="DIR", help="image HiPS directory (not served)")
    p.add_argument("--hdu", default="0", help="image HDU of every file, number or name (0)")
    p.add_argument("--format", help="tile formats: fits,png,jpeg (fits,png; a colour HiPS: png)")
    p.add_argument("--order", type=int, help="deepest order (default: from the pixel scale)")
    p.add_argument("--combine", choices=["mean", "median"], default="mean", help="overlaps")
    p.add_argument("--workers", type=int, default=2, help="processes (2)")
    way = p.add_mutually_exclusive_group()
    way.add_argument(
        "--ascending", action="store_true", help="smallest first: magnitudes (the default)"
    )
    way.add_argument("--descending", action="store_true", help="largest first: fluxes")
    p.add_argument(
        "--columns",
        metavar="A,B,C",
        help="columns of the tiles after RA and Dec (default: the principal columns and "
        "the --order-by column)",
    )
    p.add_argument(
        "--max-per-tile", type=int, default=500, help="sources per tile from order 3 (500)"
    )
    p.add_argument(
        "--creator-did", metavar="IVOID", help="default ivo://skyvault/SCHEMA/TABLE or /P/NAME"
    )
    p.add_argument(
        "--title", metavar="TEXT", help="obs_title (default: the table's description, or NAME)"
    )
    data_arg(p)
    p.set_defaults(func=_cmd_hips_build)

    p = sub.add_parser("images", help="the image archive: ingest FITS images into a collection")
    images_sub = p.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    p = images_sub.add_parser(
        "ingest", help="record FITS images (ObsCore rows and every header card) in a collection"
    )
    from skyvault.images.cli import add_ingest_arguments

    add_ingest_arguments(p)
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--public", action="store_true", help="let everyone read the collection's tables"
    )
    who.add_argument("--group", metavar="G", help="let group G read the collection")
    data_arg(p)
    p.set_defaults(func=_cmd_images_ingest)

    p = sub.add_parser("tables", help="list the tables under the data root")
    data_arg(p)
    p.set_defaults(func=_cmd_tables)

    p = sub.add_parser(
        "download",
        help="fetch a table (or a sky region of it) from a server's bulk edge, verified",
        description="Fetch every file of a bulk directory (e.g. http://host/bulk/SCHEMA/TABLE/) "
        "in parallel into DEST, resuming partial files and checking each against the "
        "directory's manifest.json.  Exit status 1 names the files that failed.",
    )
    p.add_argument("url", help="a bulk directory URL (a signed URL works too)")
    p.add_argument("dest", type=Path, help="local directory (created when missing)")
    p.add_argument("--token", help="access token (default: $SKYVAULT_TOKEN)")
    p.add_argument("--workers", type=int, default=4, help="files fetched at once (4)")
    region = p.add_mutually_exclusive_group()
    region.add_argument(
        "--circle",
        nargs=3,
        type=float,
        metavar=("RA", "DEC", "RADIUS"),
        help="only partitions touching this cone (degrees)",
    )
    region.add_argument(
        "--polygon",
        nargs="+",
        type=float,
        metavar="RA_DEC",
        help="only partitions touching this polygon: RA1 DEC1 RA2 DEC2 ... (degrees)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_download)
    from skyvault.auth.cli import add_subcommands as add_auth_subcommands
    from skyvault.workspace.cli import add_subcommands as add_workspace_subcommands

    add_auth_subcommands(sub, data_arg)
    add_workspace_subcommands(sub, data_arg)
    return parser


def _cmd_download(args: argparse.Namespace) -> int:
    from skyvault.bulk.download import download
    from skyvault.sky.regions import Circle, Polygon

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    region: Circle | Polygon | None = None
    if args.circle is not None:
        region = Circle(*args.circle)
    elif args.polygon is not None:
        region = Polygon.from_flat(args.polygon)
    token = args.token or os.environ.get("SKYVAULT_TOKEN") or None
    with _byte_progress(not args.quiet) as (on_start, on_bytes):
        report = download(
            args.url,
            args.dest,
            token=token,
            workers=args.workers,
            region=region,
            on_start=on_start,
            on_bytes=on_bytes,
        )
    print(
        f"{len(report.fetched)} fetched ({report.bytes_fetched:,} bytes), "
        f"{len(report.present)} already present, {len(report.failed)} failed; into {args.dest}",
        file=sys.stderr,
    )
    for path, reason in sorted(report.failed.items()):
        print(f"skyvault: failed: {path}: {reason}", file=sys.stderr)
    return 0 if report.ok else EXIT_ERROR


@contextlib.contextmanager
def _byte_progress(
    wanted: bool,
) -> Iterator[tuple[Callable[[int, int], None] | None, Callable[[int], None] | None]]:
    """A bytes progress bar on a terminal: (on_start, on_bytes), or (None, None)."""
    if not (wanted and sys.stderr.isatty()):
        yield None, None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    lock = threading.Lock()
    task = progress.add_task("download", total=None)

    def on_start(files: int, total: int) -> None:
        progress.update(task, total=total, description=f"{files} files")

    def on_bytes(n: int) -> None:
        with lock:
            progress.advance(task, n)

    with progress:
        yield on_start, on_bytes


def _settings_error(exc: Exception) -> str | None:
    """One line saying what is wrong with the settings, when ``exc`` is about them."""
    from pydantic import ValidationError  # imported already when it was raised

    if not isinstance(exc, ValidationError) or exc.title not in _SETTINGS_MODELS:
        return None
    prefix = "SKYVAULT_AUTH_" if exc.title == "AuthSettings" else "SKYVAULT_"
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:  # a field: named by its variable (auth.x is SKYVAULT_AUTH_X)
            variable = prefix + "_".join(str(part) for part in error["loc"]).upper()
            message = f"{variable}: {message}"
        problems.append(message)
    return " ".join(f"invalid settings: {'; '.join(problems)}".split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except UsageError as exc:
        print(f"skyvault: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SkyvaultError as exc:
        print(f"skyvault: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("skyvault: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        message = _settings_error(exc)
        if message is None:
            raise
        print(f"skyvault: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
