"""The image tests' worlds: a data root with image collections, the people who read them —
alice (in the group ``spies``) and bob, who is in none — and the service on it."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from skyvault.auth import AuthStorage, TokenService, grant_access
from skyvault.auth.storage import utc_now
from skyvault.config import Settings
from skyvault.images.ingest import ImageIngestOptions, ingest_images
from skyvault.service.app import create_app
from tests.service.conftest import ROOMY_AUTH, _free_port, serve_in_thread


@dataclass(frozen=True)
class ImageRoot:
    """A data root with image collections, and the tokens of alice and bob."""

    data: Path
    alice: str
    bob: str


def spies_and_public(data: Path, public: Sequence[str], spies: Sequence[str]) -> tuple[str, str]:
    """Add alice (group ``spies``) and bob to the data root's auth database, grant the
    ``public`` schemas to everyone and the ``spies`` ones to the group; their tokens."""
    storage = AuthStorage.for_data_dir(data)
    try:
        now = utc_now()
        storage.add_user("alice", now)
        storage.add_user("bob", now)
        storage.add_group("spies", ["alice"], now)
        for schema in public:
            grant_access(storage, schema, None)
        for schema in spies:
            grant_access(storage, schema, "spies")
        tokens = TokenService(storage)
        return tokens.create_token("alice", 1), tokens.create_token("bob", 1)
    finally:
        storage.close()


def image_root(
    root: Path,
    collections: Mapping[str, Sequence[Path]],
    public: Sequence[str],
    spies: Sequence[str],
) -> ImageRoot:
    """``root / "data"`` with each collection's images ingested (astropy's warnings about
    the synthetic headers ignored), alice and bob as :func:`spies_and_public` makes them."""
    data = root / "data"
    data.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for collection, paths in collections.items():
            ingest_images(paths, collection, data, options=ImageIngestOptions())
    alice, bob = spies_and_public(data, public=public, spies=spies)
    return ImageRoot(data, alice, bob)


@contextlib.contextmanager
def service_client(data: Path) -> Iterator[TestClient]:
    """The service on ``data`` (roomy limits) in a test client."""
    settings = Settings(data_dir=data, auth=ROOMY_AUTH)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@contextlib.contextmanager
def live_service(data: Path, **settings: Any) -> Iterator[str]:
    """The service on ``data`` (roomy limits, and ``settings``) served on a free port in
    a thread; yields its TAP URL."""
    port = _free_port()
    config = Settings(data_dir=data, auth=ROOMY_AUTH, port=port, **settings)
    with serve_in_thread(create_app(config), port) as url:
        yield url
