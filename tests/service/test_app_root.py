"""The server's root sends a browser to the portal; nothing loads from a CDN."""

from __future__ import annotations

from fastapi.testclient import TestClient

from skyvault.config import Settings
from skyvault.service.app import create_app
from tests.service.conftest import query_status, read_votable


def test_the_root_redirects_to_the_portal(client: TestClient) -> None:
    for method in ("GET", "HEAD"):
        r = client.request(method, "/", follow_redirects=False)
        assert r.status_code == 302
        assert r.headers["location"] == "portal/"
    r = client.get("/")  # as a browser does
    assert r.status_code == 200
    assert r.url.path == "/portal/"
    assert r.headers["content-type"].startswith("text/html")
    assert "skyvault portal" in r.text
    r = client.get("/tap")  # the TAP landing page stays where it is
    assert r.status_code == 200 and "skyvault TAP service" in r.text


def test_the_portal_finds_tap_under_the_configured_prefix(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"path_prefix": "/archive/tap"}))
    with TestClient(app) as client:
        r = client.get("/")
        assert r.status_code == 200
        assert r.url.path == "/portal/"
        assert client.get("/portal/api/session").json()["tap"].endswith("/archive/tap")


def test_no_page_loads_its_scripts_from_a_cdn(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 404
        assert query_status(read_votable(r.content)) == [("ERROR", f"nothing at {path}")]
    for path in ("/", "/portal/", "/tap", "/tap/examples", "/openapi.json"):
        assert "cdn" not in client.get(path).text.lower(), path
