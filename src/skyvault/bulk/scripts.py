"""Download scripts for a set of bulk files: ``wget`` and ``curl`` shell scripts, an
``aria2c`` input list.

Each takes the files as :class:`ScriptFile` (the path to write, the URL to fetch, the
checksums).  The URLs carry their authorisation as short-lived signed URLs
(:mod:`skyvault.bulk.signing`): the scripts hold no token or other lasting credential.
The shell scripts resume (``wget -c``, ``curl -C -``), create the directories they need,
and end by checking every file with ``md5sum -c`` and ``sha256sum -c`` (so a script run
twice fetches only what is missing and says whether everything is intact); the aria2c
list gives each file its ``out=`` path and ``checksum=md5=…`` (aria2c checks each file
after fetching it).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ScriptFile", "aria2_input", "curl_script", "wget_script"]


@dataclass(frozen=True)
class ScriptFile:
    """One file to fetch: where it goes (relative, ``/``-separated), from where, and its
    checksums."""

    path: str
    url: str
    md5: str
    sha256: str


def _checks(files: Sequence[ScriptFile]) -> list[str]:
    md5 = "".join(f"{f.md5}  {f.path}\n" for f in files)
    sha = "".join(f"{f.sha256}  {f.path}\n" for f in files)
    return [
        "echo 'checking the files (md5, sha256)'",
        "md5sum -c --quiet <<'SKYVAULT_MD5'",
        md5 + "SKYVAULT_MD5",
        "sha256sum -c --quiet <<'SKYVAULT_SHA256'",
        sha + "SKYVAULT_SHA256",
        "echo 'all files verified'",
    ]


def _script(title: str, fetch: list[str], files: Sequence[ScriptFile]) -> str:
    dirs = sorted({f.path.rsplit("/", 1)[0] for f in files if "/" in f.path})
    lines = [
        "#!/bin/sh",
        f"# {title}",
        "# Run it in the directory the files should go to; run it again to resume.",
        "# The URLs are signed and expire: fetch a new script once they have.",
        "set -eu",
    ]
    lines += [f"mkdir -p {shlex.quote(d)}" for d in dirs]
    return "\n".join([*lines, *fetch, *_checks(files)]) + "\n"


def wget_script(files: Sequence[ScriptFile], title: str) -> str:
    """A shell script fetching ``files`` with ``wget -c`` and checking them."""
    fetch = [f"wget -c -nv -O {shlex.quote(f.path)} {shlex.quote(f.url)}" for f in files]
    return _script(title, fetch, files)


def curl_script(files: Sequence[ScriptFile], title: str) -> str:
    """A shell script fetching ``files`` with ``curl`` (resuming a partial file) and
    checking them."""
    fetch = []
    for f in files:
        path, url = shlex.quote(f.path), shlex.quote(f.url)
        # A file already complete is not asked for again (a range past its end is a 416).
        fetch.append(
            f"if [ ! -f {path} ] || ! echo '{f.md5}  '{path} | md5sum -c --status; then "
            f"curl -fsS -C - -o {path} {url}; fi"
        )
    return _script(title, fetch, files)


def aria2_input(files: Sequence[ScriptFile]) -> str:
    """An ``aria2c -i`` input list: each URL with its ``out=`` path and md5 checksum."""
    return "".join(f"{f.url}\n  out={f.path}\n  checksum=md5={f.md5}\n" for f in files)
