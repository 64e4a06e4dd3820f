"""``skyvault serve``: one server per port, and workers that never outlive their supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skyvault.cli import _hold_port, _refuse_busy_port, _reuseport_socket, main
from skyvault.errors import UsageError
from tests.service.conftest import _free_port, wait_until_serving


def _reuseport_listener(port: int = 0) -> socket.socket:
    """A listening socket as another ``serve --workers N`` process has: SO_REUSEPORT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_port_other_reuseport_workers_listen_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    with _reuseport_listener() as other:
        port = other.getsockname()[1]
        argv = ["serve", "--data", str(tmp_path), "--port", str(port), "--workers", workers]
        assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in captured.err
    assert "another `skyvault serve` or another program holds it" in captured.err
    assert "TAP service at" not in captured.out


def test_a_starting_supervisor_holds_its_port_for_its_own_workers_only() -> None:
    port = _free_port()
    with _hold_port("127.0.0.1", port):
        # Another serve is refused while this one's workers are not listening yet ...
        with pytest.raises(UsageError, match="Address already in use"):
            _refuse_busy_port("127.0.0.1", port)
        # ... and the workers (SO_REUSEPORT, same user) still get the port.
        with _reuseport_socket("127.0.0.1", port) as worker:
            worker.listen()
    _refuse_busy_port("127.0.0.1", port)  # all closed: free again


def _workers_of(pid: int) -> list[int]:
    """The server processes ``pid`` spawned (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` (a bind without SO_REUSEPORT would fail)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_kill_9_of_the_supervisor_ends_its_workers_and_frees_the_port(
    demo_data: Path, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "skyvault.cli", "serve", "--data", str(demo_data),
             "--port", str(port), "--workers", "2", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    workers: list[int] = []
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/tap", supervisor, seconds=120)
        workers = _workers_of(supervisor.pid)
        assert len(workers) == 2, log.read_text()
        assert not _port_is_free(port)

        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 8
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived their supervisor"
        assert _port_is_free(port)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        for worker in workers:
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)


def test_every_option_of_every_command_says_what_it_does() -> None:
    import argparse

    from skyvault.cli import build_parser

    def parsers(
        parser: argparse.ArgumentParser, name: str
    ) -> list[tuple[str, argparse.ArgumentParser]]:
        found = [(name, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    found += parsers(sub, f"{name} {sub_name}")
        return found

    silent = [
        f"{name} {action.option_strings[0]}"
        for name, parser in parsers(build_parser(), "skyvault")
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert not silent, f"options without a description: {', '.join(silent)}"
