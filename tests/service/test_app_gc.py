"""A server process leaves what start-up made out of later garbage collections
(``gc.freeze``); an app built among others (tests, an embedding program) does not."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.service.app import create_app, create_served_app


def test_a_served_app_freezes_what_start_up_made(settings: Settings) -> None:
    gc.unfreeze()
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/tap/availability").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(settings, freeze_gc=True)) as client:
            assert gc.get_freeze_count() > 0
            assert client.get("/tap/availability").status_code == 200
    finally:
        gc.unfreeze()


def test_the_worker_factory_freezes(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """``skyvault serve --workers N`` builds each worker's app with this factory."""
    monkeypatch.setenv("SKYVAULT_DATA_DIR", str(settings.data_dir))
    gc.unfreeze()
    try:
        with TestClient(create_served_app()) as client:
            assert gc.get_freeze_count() > 0
            assert client.get("/tap/availability").status_code == 200
    finally:
        gc.unfreeze()
