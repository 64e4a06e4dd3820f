"""Short-lived signed URLs for bulk files, for clients that cannot send an Authorization header.

A signature is an HMAC-SHA256, under a key kept in the data root
(``DIR/.skyvault/bulk-signing.key``, created on first use, mode 0600, shared by every server
process and replica that serves the root), of

    the signer's user name, the signed path, the expiry time (Unix seconds)

The signed path is the part of the URL below ``/bulk/``: a file (``s/t/dataset/_metadata``)
covers that file only; a directory (ending in ``/``) covers everything beneath it, so that
``wget -r`` can mirror a table from one signed URL.  The URL carries no credential: only
the user name, the expiry and the signature, and it is only good for that path until then.
When it is used, the request runs as the signer *with their access at that moment* (a grant
revoked since applies).  Removing the key file invalidates every signed URL at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from skyvault.catalog.layout import bulk_signing_key_file

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "SignedPath",
    "covers",
    "load_key",
    "sign",
    "verify",
]

#: Lifetime of a signed URL when none is asked for, and the longest one may ask for, s.
DEFAULT_LIFETIME = 3600
MAX_LIFETIME = 7 * 24 * 3600


@dataclass(frozen=True)
class SignedPath:
    """The parameters a signed URL carries."""

    user: str
    path: str
    expires: int
    signature: str

    def query(self) -> str:
        """The query string that makes a ``/bulk/`` URL signed."""
        from urllib.parse import urlencode

        return urlencode(
            {
                "signed_path": self.path,
                "user": self.user,
                "expires": str(self.expires),
                "signature": self.signature,
            }
        )


def load_key(data_dir: Path) -> bytes:
    """The signing key of ``data_dir`` (created, once, by whichever process comes first)."""
    path = bulk_signing_key_file(data_dir)
    internal = path.parent
    with contextlib.suppress(FileNotFoundError):
        return bytes.fromhex(path.read_text().strip())
    internal.mkdir(parents=True, exist_ok=True)
    tmp = internal / f".{path.name}.{uuid.uuid4().hex[:8]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and fails if another process was first
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def _mac(key: bytes, user: str, path: str, expires: int) -> str:
    # JSON keeps the fields apart whatever characters they hold.
    message = json.dumps(["skyvault-bulk-v1", user, path, expires]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(key: bytes, user: str, path: str, expires: int) -> SignedPath:
    """A signature for ``user`` to read ``path`` (below ``/bulk/``) until ``expires``."""
    return SignedPath(user, path, expires, _mac(key, user, path, expires))


def verify(key: bytes, signed: SignedPath) -> bool:
    """Whether ``signed`` was made with ``key`` (expiry not checked here)."""
    expected = _mac(key, signed.user, signed.path, signed.expires)
    return hmac.compare_digest(expected, signed.signature)


def covers(signed_path: str, requested: str) -> bool:
    """Whether a signature for ``signed_path`` covers the request for ``requested``."""
    if signed_path.endswith("/"):
        return requested == signed_path[:-1] or requested.startswith(signed_path)
    return requested == signed_path
