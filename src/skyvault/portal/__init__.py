"""The portal: a web page for browsing, querying and looking at the archive.

Its JavaScript is built from npm packages (``portal/`` at the repository root: ``make
portal``) into :data:`STATIC`, which ships inside the Python package, so a user of ``pip
install skyvault`` needs no Node and the page loads nothing from a CDN.  The web edge
(``service/handlers/portal.py``) serves it at ``/portal/``; this package holds only the built
files and what describes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["STATIC", "build_info", "content_security_policy"]

#: The built portal: ``index.html``, ``app.js``, ``app.css``, ``chunks/``, ``vendor/``.
STATIC = Path(__file__).parent / "static"

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def build_info() -> dict[str, Any]:
    """What the shipped build was made from (``build-info.json``: source hash, versions)."""
    data: dict[str, Any] = json.loads((STATIC / "build-info.json").read_text())
    return data


def content_security_policy() -> str:
    """The page's Content-Security-Policy: everything from the server itself, so a browser
    refuses any load from elsewhere; the one inline script (the import map) by its hash;
    WebAssembly for Aladin Lite."""
    html = (STATIC / "index.html").read_text()
    hashes = [
        "'sha256-" + _b64(hashlib.sha256(m.group(1).encode()).digest()) + "'"
        for m in _INLINE_SCRIPT.finditer(html)
    ]
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'wasm-unsafe-eval' {' '.join(hashes)}".strip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "connect-src 'self' data:",  # Aladin Lite reads its WebAssembly from a data: URL
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'self'",
        ]
    )


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()
