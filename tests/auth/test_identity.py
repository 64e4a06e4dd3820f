"""Identity from headers: built-in Bearer/Basic, the proxy headers and the user-info URL."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from skyvault.auth.identity import (
    BuiltinAuthenticator,
    Identity,
    ProxyAuthenticator,
    www_authenticate_challenges,
)
from skyvault.auth.storage import AuthStorage
from skyvault.auth.tokens import INVALID_CREDENTIALS, TokenService
from skyvault.errors import AuthenticationRequired, AuthServiceUnavailable, UsageError


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def builtin(storage: AuthStorage, tokens: TokenService) -> BuiltinAuthenticator:
    return BuiltinAuthenticator(storage, tokens)


@pytest.fixture
def token(tokens: TokenService, alice: str) -> str:
    return tokens.create_token(alice, 1)


ALICE = Identity("alice", frozenset({"dp02"}))


def test_no_credentials_is_anonymous(builtin: BuiltinAuthenticator) -> None:
    assert builtin.authenticate({}) == Identity.anonymous()
    assert builtin.authenticate({"Accept": "*/*"}).is_anonymous


@pytest.mark.parametrize(
    "make",
    [
        lambda t: f"Bearer {t}",
        lambda t: f"bearer   {t}  ",
        lambda t: _basic("", t),
        lambda t: _basic("alice", t),
        lambda t: "basic " + base64.b64encode(f"alice:{t}".encode()).decode(),
    ],
    ids=["bearer", "bearer-spaces-lowercase", "basic-no-user", "basic-user", "basic-lowercase"],
)
def test_accepted_forms(builtin: BuiltinAuthenticator, token: str, make: Any) -> None:
    assert builtin.authenticate({"Authorization": make(token)}) == ALICE
    assert builtin.authenticate({"authorization": make(token)}) == ALICE


def test_groups_come_from_the_database_on_every_request(
    builtin: BuiltinAuthenticator, token: str, storage: AuthStorage
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    assert builtin.authenticate(headers).groups == {"dp02"}
    storage.remove_members("dp02", ["alice"])
    assert builtin.authenticate(headers).groups == frozenset()


def _malformed(token: str) -> dict[str, str]:
    return {
        "empty": "",
        "scheme only": "Bearer",
        "bearer empty": "Bearer ",
        "unknown scheme": f"Token {token}",
        "digest": 'Digest username="alice"',
        "no space": f"Bearer{token}",
        "basic bad base64": "Basic !!!notbase64!!!",
        "basic bad padding": "Basic YWxpY2U6",
        "basic no colon": "Basic " + base64.b64encode(token.encode()).decode(),
        "basic not utf-8": "Basic " + base64.b64encode(b"alice:\xff\xfe").decode(),
        "basic non-ascii": "Basic ÿÿÿÿ",
        "basic token as user": _basic(token, ""),
        "basic other user": _basic("bob", token),
        "basic wrong password": _basic("alice", "secret"),
        "bearer garbage": "Bearer sv_zzzz",
    }


def test_malformed_headers_are_refused_alike(builtin: BuiltinAuthenticator, token: str) -> None:
    shapes = set()
    for name, value in _malformed(token).items():
        with pytest.raises(AuthenticationRequired) as info:
            builtin.authenticate({"Authorization": value})
        assert info.value.message == INVALID_CREDENTIALS, name
        shapes.add((str(info.value), info.value.to_dict().__repr__()))
    assert len(shapes) == 1


def test_duplicate_authorization_is_refused(builtin: BuiltinAuthenticator, token: str) -> None:
    with pytest.raises(AuthenticationRequired):
        builtin.authenticate({"Authorization": f"Bearer {token}", "authorization": "Bearer x"})

    class MultiHeaders(dict[str, str]):
        def getlist(self, name: str) -> list[str]:
            return [f"Bearer {token}", f"Bearer {token}"] if name.lower() == "authorization" else []

    with pytest.raises(AuthenticationRequired):
        builtin.authenticate(MultiHeaders())


def test_builtin_mode_ignores_proxy_headers(builtin: BuiltinAuthenticator, token: str) -> None:
    forged = {"X-Auth-Request-User": "alice", "X-Auth-Request-Groups": "dp02,admin"}
    assert builtin.authenticate(forged) == Identity.anonymous()
    bob_token_headers = {**forged, "Authorization": f"Bearer {token}"}
    assert builtin.authenticate(bob_token_headers) == ALICE


def test_challenges() -> None:
    assert www_authenticate_challenges() == [
        'Bearer realm="skyvault"',
        'Basic realm="skyvault"',
    ]
    assert www_authenticate_challenges(invalid_token=True)[0] == (
        'Bearer realm="skyvault", error="invalid_token"'
    )


# --- proxy mode -----------------------------------------------------------------------------


def test_proxy_user_and_groups_headers() -> None:
    proxy = ProxyAuthenticator()
    headers = {"X-Auth-Request-User": "alice", "X-Auth-Request-Groups": "dp02, staff,,"}
    assert proxy.authenticate(headers) == Identity("alice", frozenset({"dp02", "staff"}))
    lower = {k.lower(): v for k, v in headers.items()}
    assert proxy.authenticate(lower) == proxy.authenticate(headers)
    assert proxy.authenticate({"X-Auth-Request-User": "bob"}) == Identity("bob", frozenset())


def test_proxy_ignores_authorization_and_is_anonymous_without_user(token: str) -> None:
    proxy = ProxyAuthenticator()
    assert proxy.authenticate({"Authorization": f"Bearer {token}"}).is_anonymous
    assert proxy.authenticate({"X-Auth-Request-User": "  "}).is_anonymous
    assert proxy.authenticate({"X-Auth-Request-Groups": "dp02"}).is_anonymous


@pytest.mark.parametrize("user", ["al ice", "alice\nadmin", "-x", "a" * 65, "ä"])
def test_proxy_refuses_odd_user_names(user: str) -> None:
    with pytest.raises(AuthenticationRequired, match=INVALID_CREDENTIALS):
        ProxyAuthenticator().authenticate({"X-Auth-Request-User": user})


def test_proxy_custom_headers() -> None:
    proxy = ProxyAuthenticator(user_header="X-Forwarded-User", groups_header="X-Forwarded-Groups")
    headers = {"X-Forwarded-User": "carol", "X-Forwarded-Groups": "g1"}
    assert proxy.authenticate(headers) == Identity("carol", frozenset({"g1"}))
    assert proxy.authenticate({"X-Auth-Request-User": "alice"}).is_anonymous


class _UserInfo:
    """A tiny user-info service on localhost, counting its requests."""

    def __init__(self) -> None:
        self.groups: dict[str, Any] = {}
        self.hits: list[tuple[str, str | None]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append((self.path, self.headers.get("Authorization")))
                user = self.path.rsplit("/", 1)[-1]
                body = json.dumps(outer.groups.get(user, {"groups": []})).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/users/{{user}}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def userinfo() -> Iterator[_UserInfo]:
    server = _UserInfo()
    yield server
    server.close()


class _Ticker:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_userinfo_groups_are_cached(userinfo: _UserInfo) -> None:
    userinfo.groups["alice"] = {"username": "alice", "groups": [{"name": "dp02", "id": 1}]}
    userinfo.groups["bob"] = {"groups": ["staff", "dp03"]}
    ticker = _Ticker()
    proxy = ProxyAuthenticator(userinfo_url=userinfo.url, cache_seconds=60, monotonic=ticker)
    headers = {"X-Auth-Request-User": "alice", "X-Auth-Request-Groups": "ignored"}
    assert proxy.authenticate(headers) == Identity("alice", frozenset({"dp02"}))
    assert len(userinfo.hits) == 1
    ticker.t += 59
    assert proxy.authenticate(headers).groups == {"dp02"}
    assert len(userinfo.hits) == 1  # served from the cache
    bob = proxy.authenticate({"X-Auth-Request-User": "bob"})
    assert bob.groups == {"staff", "dp03"}
    assert [p for p, _ in userinfo.hits] == ["/users/alice", "/users/bob"]
    userinfo.groups["alice"] = {"groups": ["dp02", "new"]}
    ticker.t += 2
    assert proxy.authenticate(headers).groups == {"dp02", "new"}
    assert len(userinfo.hits) == 3


def test_userinfo_forwards_the_delegated_token(userinfo: _UserInfo) -> None:
    proxy = ProxyAuthenticator(userinfo_url=userinfo.url, userinfo_bearer="service-token")
    proxy.authenticate({"X-Auth-Request-User": "a1", "X-Auth-Request-Token": "delegated"})
    proxy.authenticate({"X-Auth-Request-User": "a2"})
    assert [auth for _, auth in userinfo.hits] == ["Bearer delegated", "Bearer service-token"]


@pytest.mark.parametrize(
    "answer",
    [
        {"username": "mallory", "groups": ["dp02"]},  # someone else's answer
        {"groups": "dp02"},
        {"groups": [1, 2]},
        ["dp02"],
    ],
)
def test_userinfo_odd_answers_fail_clearly(userinfo: _UserInfo, answer: Any) -> None:
    userinfo.groups["alice"] = answer
    proxy = ProxyAuthenticator(userinfo_url=userinfo.url)
    with pytest.raises(AuthServiceUnavailable) as info:
        proxy.authenticate({"X-Auth-Request-User": "alice"})
    assert "127.0.0.1" not in str(info.value)


def test_userinfo_errors_are_not_anonymous(userinfo: _UserInfo) -> None:
    userinfo.status = 500
    proxy = ProxyAuthenticator(userinfo_url=userinfo.url)
    with pytest.raises(AuthServiceUnavailable) as info:
        proxy.authenticate({"X-Auth-Request-User": "alice"})
    assert info.value.http_status == 503
    userinfo.close()
    with pytest.raises(AuthServiceUnavailable):
        proxy.authenticate({"X-Auth-Request-User": "alice"})
    # Failures are not cached: the next request asks again.
    assert len(userinfo.hits) == 1


def test_userinfo_url_must_be_http() -> None:
    with pytest.raises(UsageError):
        ProxyAuthenticator(userinfo_url="file:///etc/passwd")
