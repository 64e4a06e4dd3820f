"""A plain ``pip install skyvault`` (no extras) is enough to run every command.

The fast test reads every import under ``src/`` and checks that the distribution providing
it is declared in ``[project] dependencies`` (directly, or through a declared extra such as
``dask[distributed]``).  The slow one does what a new user does: builds the wheel, installs
it into a fresh virtual environment without extras, ingests a table, starts ``skyvault
serve`` and runs a sync query with nothing but the standard library.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO, random_sky
from tests.service.conftest import _free_port

SRC = REPO / "src" / "skyvault"


def _imported_top_level_modules() -> dict[str, Path]:
    """Every absolute import's top-level module under ``src/skyvault`` (one file using it)."""
    found: dict[str, Path] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def _declared_distributions() -> set[str]:
    """The run-time dependencies, with what their requested extras pull in."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared: set[str] = set()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        declared.add(canonicalize_name(requirement.name))
        for extra in requirement.extras:
            for dep in importlib.metadata.requires(requirement.name) or []:
                sub = Requirement(dep)
                if sub.marker is not None and sub.marker.evaluate({"extra": extra}):
                    declared.add(canonicalize_name(sub.name))
    return declared


def test_every_imported_distribution_is_a_declared_dependency() -> None:
    providers = importlib.metadata.packages_distributions()
    declared = _declared_distributions()
    missing = []
    for module, where in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module == "skyvault":
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported in {where.relative_to(REPO)}) is not installed"
        if not dists & declared:
            missing.append(f"{module} ({'/'.join(sorted(dists))}, {where.relative_to(REPO)})")
    assert not missing, f"imported but not in [project] dependencies: {', '.join(missing)}"


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _sync_csv(url: str, query: str) -> str:
    body = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": query, "FORMAT": "csv"}).encode()
    with urllib.request.urlopen(f"{url}/sync", data=body, timeout=30) as response:
        assert response.status == 200
        text: str = response.read().decode()
        return text


@pytest.mark.slow
def test_the_wheel_without_extras_ingests_serves_and_answers(tmp_path: Path) -> None:
    # Build from a copy, so the build leaves nothing in the work tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    # Nothing of this checkout or of the test environment may leak into the new one.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYVAULT_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)], tmp_path, env, 600)
    (wheel,) = wheels.glob("skyvault-*.whl")

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", str(venv)], tmp_path, env, 120)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path, env, 900)
    skyvault = str(venv / "bin" / "skyvault")

    data = tmp_path / "data"
    pq.write_table(random_sky(2_000, seed=5), tmp_path / "stars.parquet")
    _run(
        [skyvault, "ingest", "stars.parquet", "--table", "cat.stars", "--ra", "ra",
         "--dec", "dec", "--data", str(data), "--quiet", "--public"],
        tmp_path, env, 300,
    )  # fmt: skip

    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [skyvault, "serve", "--data", str(data), "--port", str(port),
             "--log-level", "warning"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/tap"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, f"skyvault serve exited:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/availability", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"no answer:\n{log.read_text()}"
                time.sleep(0.2)
        text = _sync_csv(url, "SELECT COUNT(*) AS n FROM cat.stars")
        assert text.split() == ["n", "2000"]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0, log.read_text()
