"""The portal's edge (no browser): the root sends a browser there, the page is the shipped
build of the sources in ``portal/``, its CSP allows nothing from elsewhere, and the session
document shows only what the caller may see."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skyvault.portal import STATIC, build_info
from tests.service.security_world import World, bearer, build_world, world_settings

PORTAL_SOURCES = Path(__file__).resolve().parents[2] / "portal"


def _sources_hash() -> tuple[str, list[str]]:
    """The hash ``portal/build.mjs`` writes into build-info.json, computed the same way."""
    files = ["package.json", "package-lock.json", "build.mjs", "index.html", "LICENSES.md"]
    for top in ("src", "public"):
        files += sorted(
            p.relative_to(PORTAL_SOURCES).as_posix()
            for p in (PORTAL_SOURCES / top).rglob("*")
            if p.is_file()
        )
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update((PORTAL_SOURCES / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest(), files


def test_the_shipped_build_is_the_build_of_the_sources() -> None:
    """Edit portal/ and forget `make portal`, and this fails: users get what was built."""
    expected, files = _sources_hash()
    info = build_info()
    assert info["files"] == files
    assert info["sources_sha256"] == expected, "portal/ changed: run `make portal` and commit"
    for name in ("index.html", "app.js", "app.css", "vendor/aladin-lite/aladin.js"):
        assert (STATIC / name).is_file(), name
    # Aladin Lite ships unmodified beside its licence texts (portal/LICENSES.md says why).
    for name in ("LICENSE", "COPYING", "COPYING.LESSER"):
        assert (STATIC / "vendor" / "aladin-lite" / name).is_file()


def test_the_root_and_portal_paths(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "portal/"
    r = client.get("/portal", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "portal/"
    r = client.get("/portal/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self' data:" in policy
    assert "https:" not in policy and "*" not in policy
    assert "http" not in r.text.replace("http-equiv", "")  # nothing named outside the server
    assert (
        client.get("/portal/app.js")
        .headers["content-type"]
        .startswith(("application/javascript", "text/javascript"))
    )


@pytest.mark.parametrize(
    "path",
    [
        "/portal/%2e%2e/pyproject.toml",
        "/portal/..%2fpyproject.toml",
        "/portal/.hidden",
        "/portal/nothing.js",
        "/portal/empty-hips/Norder3/Dir0/Npix768.png",
        "/portal/vendor/",
    ],
)
def test_paths_outside_the_build_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_empty_background_hips_has_every_order_3_tile(client: TestClient) -> None:
    properties = client.get("/portal/empty-hips/properties").text
    assert "hips_order           = 3" in properties and "dataproduct_type     = image" in properties
    tile = client.get("/portal/empty-hips/Norder3/Dir0/Npix767.png")
    assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
    assert client.get("/portal/empty-hips/Norder3/Allsky.png").status_code == 200


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("portal-security"))


def test_the_session_shows_the_caller_and_only_what_they_may_see(world: World) -> None:
    from skyvault.service.app import create_app

    settings = world_settings(world, "jobs-portal")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        anonymous = client.get("/portal/api/session").json()
        assert anonymous["anonymous"] is True and anonymous["user"] is None
        names = {t["name"] for t in anonymous["tables"]}
        assert not any(n.startswith("Secret.") for n in names)
        insider = client.get("/portal/api/session", headers=bearer(world.alice)).json()
        assert insider["user"] == "alice" and insider["groups"]
        assert {t["name"] for t in insider["tables"]} > names
        assert insider["tap"].endswith("/tap")
        # A refused token: 401 with a Bearer challenge only when a script asks (no browser
        # password dialog), with Basic too for everyone else (TOPCAT, curl).
        bad = {"Authorization": "Bearer sv_nope_nope"}
        scripted = client.get(
            "/portal/api/session", headers={**bad, "X-Requested-With": "XMLHttpRequest"}
        )
        assert scripted.status_code == 401
        assert [v.split()[0] for v in scripted.headers.get_list("www-authenticate")] == ["Bearer"]
        plain = client.get("/portal/api/session", headers=bad)
        assert [v.split()[0] for v in plain.headers.get_list("www-authenticate")] == [
            "Bearer",
            "Basic",
        ]


def test_the_session_names_the_users_workspace_schema(world: World) -> None:
    from skyvault.service.app import create_app

    settings = world_settings(world, "jobs-portal-ws")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/portal/api/session").json()["workspace"] is None
        schema = client.get("/portal/api/session", headers=bearer(world.alice)).json()["workspace"]
        assert schema == "user_alice"
        # The very schema the workspace API creates the user's tables in.
        created = client.put(
            f"/tap/tables/{schema}.t",
            content=b'<table><column><name>x</name><dataType xsi:type="vs:VOTableType" '
            b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            b'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">long</dataType>'
            b"</column></table>",
            headers={**bearer(world.alice), "Content-Type": "text/xml"},
        )
        assert created.status_code == 200, created.text
