"""The guards every request passes, on a small app (the attacks on a real server:
tests/test_security_server.py)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from coderag.server.guards import MAX_BODY, RequestGuard, middleware

ORIGIN = "http://allowed.example"


def _client(*, token: str | None = None, cors=(), hosts=("testserver",), any_ip=False):
    async def echo(request):
        return JSONResponse({"got": len(await request.body())})

    routes = [Route(p, echo, methods=["GET", "POST"]) for p in ("/open", "/read", "/write")]
    stack = middleware(
        ["the-secret"] + ([token] if token else []),
        everywhere=bool(token),
        protected={"/write"},
        open_routes={"/open"},
        hosts=hosts,
        any_ip=any_ip,
        cors_origins=cors,
    )
    return TestClient(Starlette(routes=routes, middleware=stack))


def test_credentials():
    c = _client()
    assert c.get("/read").status_code == 200
    assert c.post("/write", json={}).status_code == 401
    r = c.post("/write", json={}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]
    assert r.headers["www-authenticate"] == 'Bearer realm="coderag"'
    assert (
        c.post("/write", json={}, headers={"Authorization": "Basic the-secret"}).status_code == 401
    )
    assert (
        c.post("/write", json={}, headers={"Authorization": "Bearer the-secret"}).status_code == 200
    )
    assert (
        c.post("/write", json={}, headers={"Authorization": "bearer the-secret"}).status_code == 200
    )

    c = _client(token="users-token")  # with a user token every route needs one, but /open
    assert c.get("/read").status_code == 401
    assert c.get("/nowhere").status_code == 401
    assert c.get("/open").status_code == 200
    for credential in ("the-secret", "users-token"):
        auth = {"Authorization": f"Bearer {credential}"}
        assert c.get("/read", headers=auth).status_code == 200


def test_post_bodies_must_be_json():
    c = _client()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = c.post("/read", content=b"{}", headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype
    r = c.post("/read", content=b"{}", headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200


def test_declared_bodies_over_the_limit_are_refused():
    c = _client()
    big = b" " * (MAX_BODY + 1)
    r = c.post("/read", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["error"]
    r = c.post("/read", content=big[:MAX_BODY], headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {"got": MAX_BODY}


def test_hosts_and_origins():
    c = _client(cors=[ORIGIN])
    for host in ("evil.example", "localhost.evil.example:80", "", "[::1", "localhost:x"):
        r = c.get("/read", headers={"Host": host})
        assert r.status_code == 403, host
    for host in ("localhost", "localhost:7878", "127.0.0.1", "127.9.9.9:1", "[::1]:7878"):
        assert c.get("/read", headers={"Host": host}).status_code == 200, host
    for origin in ("http://evil.example", "null", "http://localhost:7878"):
        assert c.get("/read", headers={"Origin": origin}).status_code == 403, origin
    r = c.get("/read", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize(
    ("host", "hosts", "any_ip", "allowed"),
    [
        ("192.0.2.1:7878", (), False, False),
        ("192.0.2.1:7878", (), True, True),  # bound to a wildcard with a token
        ("[2001:db8::1]", (), True, True),
        ("2001:db8::1", (), True, False),  # an IPv6 literal is always in brackets
        ("myhost.lan:7878", ("myhost.lan",), False, True),
        ("MyHost.LAN", ("myhost.lan",), False, True),
        ("other.lan", ("myhost.lan",), True, False),  # names are never "any IP"
    ],
)
def test_host_allowed(host, hosts, any_ip, allowed):
    assert RequestGuard(None, hosts=hosts, any_ip=any_ip).host_allowed(host) is allowed
