"""Attacks on ``coderag serve`` and its clients, each against a real server process or a real
repository: planted discovery files, impostors on a stale port, DNS rebinding, cross-site
requests, credential-less state changes, slow clients, deeply nested JSON, a token on the
command line."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import FIXTURES, run_cli
from .server.serving import Server

pytestmark = pytest.mark.slow  # real server processes, slow-client timeouts

QUERY = "upload again with exponential backoff when the server fails"
ALLOWED_ORIGIN = "http://allowed.example"


class Listener:
    """A loopback TCP listener that records every byte sent to it and answers each
    connection with one canned JSON response: what an attacker's process would see."""

    def __init__(self, answer: dict):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[bytes] = []
        body = json.dumps(answer).encode()
        self.reply = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    while len(rest) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        rest += chunk
                        data += chunk
                    conn.sendall(self.reply)
                except OSError:
                    pass
                self.received.append(data)

    def close(self):
        self.sock.close()


def _git(repo: Path, *args: str) -> None:
    from .gitutil import git_env

    subprocess.run(["git", *args], cwd=repo, env=git_env(), check=True, capture_output=True)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, embedder):
    """One indexed repository served with --allow-host and --cors-origin (no watcher)."""
    from coderag import Index

    base = tmp_path_factory.mktemp("guarded")
    repo = base / "repo"
    shutil.copytree(FIXTURES / "smallrepo", repo)
    Index(repo, embedder=embedder).refresh()
    server = Server(
        "--no-watch",
        "--allow-host",
        "editor.internal",
        "--cors-origin",
        ALLOWED_ORIGIN,
        "-v",
        repos=[repo],
        log=base / "server.log",
    )
    yield server
    server.stop()


@pytest.fixture
def http(guarded):
    with httpx.Client(base_url=guarded.url, timeout=60) as client:
        yield client


def _port(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


# ------------------------------------------------------------- discovery (item 2)
def test_a_planted_server_json_is_ignored_by_search_and_hooks(
    tmp_path, make_index, embedder, monkeypatch
):
    """A repository that ships .coderag/server.json naming the attacker's port: neither
    `coderag search` nor a git hook sends it a query, a path or the user's token."""
    from coderag import hooks

    repo = tmp_path / "cloned"
    shutil.copytree(FIXTURES / "smallrepo", repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "init")
    make_index(repo).refresh()
    attacker = Listener({"hits": [], "stats": None, "proof": "0" * 64})
    try:
        planted = {"url": attacker.url, "pid": os.getpid(), "token_required": False}
        (repo / ".coderag" / "server.json").write_text(json.dumps(planted))
        r = run_cli(
            "search", QUERY, "--repo", str(repo), "--json", env={"CODERAG_TOKEN": "users-token"}
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["symbol"].endswith("upload_with_retry")  # in-process

        monkeypatch.setenv("CODERAG_TOKEN", "users-token")
        (repo / "uploader" / "new.py").write_text("def planted_marker():\n    return 1\n")
        _git(repo, "add", "uploader/new.py")
        res = hooks.sync(repo, "pre-commit", embedder=embedder, vectors="inline")
        assert res["via"] == "inline" and res["files"] == 1
        time.sleep(0.3)
        assert attacker.received == []
    finally:
        attacker.close()


def test_clients_check_identity_before_sending_anything(tmp_path, make_index):
    """A stale runtime file whose port an impostor now holds: the client asks for a proof of
    the secret, gets a wrong one, and sends nothing else (the search runs in-process)."""
    from coderag.server import find_server, publish, remote_refresh

    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "smallrepo", repo)
    make_index(repo).refresh()
    impostor = Listener({"hits": [], "proof": "0" * 64})
    try:
        info = {"url": impostor.url, "pid": os.getpid(), "secret": "real-secret-" * 4}
        publish(repo, {**info, "repo": str(repo.resolve()), "repos": [str(repo.resolve())]})
        assert find_server(repo) is not None  # found (live pid, loopback) ...
        assert find_server(repo, verify=True) is None  # ... but it cannot prove the secret
        r = run_cli("search", QUERY, "--repo", str(repo), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["symbol"].endswith("upload_with_retry")
        from coderag.server import ServerUnavailable

        with pytest.raises(ServerUnavailable):
            remote_refresh(find_server(repo), repo=repo, paths=[str(repo / "README.md")])
        time.sleep(0.3)
        assert impostor.received, "the client never asked for the proof"
        for data in impostor.received:
            assert data.startswith(b"GET /identity?nonce="), data
            assert b"authorization" not in data.lower()
            assert b"real-secret" not in data and b"upload" not in data
            assert b"README" not in data
    finally:
        impostor.close()


def test_the_server_publishes_privately_and_proves_its_identity(guarded, http):
    from coderag.server import runtime_file

    repo = guarded.repos[0]
    assert not (repo / ".coderag" / "server.json").exists()
    path = runtime_file(repo)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    info = json.loads(path.read_text())
    assert set(info) >= {"url", "pid", "repo", "repos", "secret", "token_required"}
    assert info["repo"] == str(repo.resolve()) and len(info["secret"]) >= 32

    nonce = "n" * 32
    r = http.get("/identity", params={"nonce": nonce})
    want = hmac.new(info["secret"].encode(), nonce.encode(), hashlib.sha256).hexdigest()
    assert r.status_code == 200 and r.json()["proof"] == want
    assert http.get("/identity", params={"nonce": "short"}).status_code == 400

    # `coderag search` finds it there, checks its identity, then asks it
    r = run_cli("search", QUERY, "--repo", str(repo), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["symbol"].endswith("upload_with_retry")
    log = guarded.log.read_text()
    assert "GET /identity 200" in log and "POST /search 200" in log


# -------------------------------------------------------- rebinding and CSRF (item 4)
def test_dns_rebinding_hosts_are_refused(guarded, http):
    port = _port(guarded)
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}", ""):
        for method, route in (("GET", "/health"), ("GET", "/status"), ("GET", "/identity")):
            r = http.request(method, route, headers={"Host": host})
            assert r.status_code == 403, (host, route, r.text)
        r = http.post("/search", json={"query": "retry"}, headers={"Host": host})
        assert r.status_code == 403 and "Host" in r.json()["error"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.9.9.9", f"editor.internal:{port}"):
        assert http.get("/health", headers={"Host": host}).status_code == 200, host
    assert http.get("/health", headers={"Host": f"[::1]:{port}"}).status_code == 200


def test_cross_origin_requests_are_refused(guarded, http):
    for origin in ("http://evil.example", "null", f"http://localhost:{_port(guarded)}"):
        r = http.post("/search", json={"query": "retry"}, headers={"Origin": origin})
        assert r.status_code == 403, (origin, r.text)
        assert http.get("/status", headers={"Origin": origin}).status_code == 403
    r = http.post("/search", json={"query": "retry"}, headers={"Origin": ALLOWED_ORIGIN})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_post_bodies_must_be_json(guarded, http):
    body = json.dumps({"query": "retry", "k": 2})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = http.post("/search", content=body, headers=headers)
        assert r.status_code == 415, (ctype, r.text)
        r = http.post("/refresh", content="{}", headers={**headers, **guarded.auth})
        assert r.status_code == 415
    r = http.post(
        "/search", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert r.status_code == 200 and len(r.json()["hits"]) == 2


def test_refresh_needs_a_credential(guarded, http):
    repo = guarded.repos[0]
    body = {"repo": str(repo), "paths": ["README.md"], "wait": True}
    assert http.post("/refresh", json=body).status_code == 401
    wrong = {"Authorization": "Bearer not-the-secret"}
    assert http.post("/refresh", json=body, headers=wrong).status_code == 401
    r = http.post("/refresh", json=body, headers=guarded.auth)
    assert r.status_code == 200, r.text
    # reads stay open on loopback without a user token
    assert http.post("/search", json={"query": "retry", "k": 1}).status_code == 200
    assert http.get("/status").status_code == 200


# ------------------------------------------------------------- item 8: slow clients
def _seconds_until_closed(sock: socket.socket, trickle: bytes, limit: float) -> tuple[float, bytes]:
    """Send ``trickle`` one byte every 0.5 s; the seconds until the server closes the
    connection and what it answered (limit: give up)."""
    t0 = time.monotonic()
    got = b""
    sock.settimeout(0.5)
    i = 0
    while time.monotonic() - t0 < limit:
        try:
            if i < len(trickle):
                sock.sendall(trickle[i : i + 1])
                i += 1
        except OSError:
            return time.monotonic() - t0, got
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - t0, got
        if not chunk:
            return time.monotonic() - t0, got
        got += chunk
    return float("inf"), got


def test_slow_clients_are_disconnected(guarded, http):
    from coderag.server.guards import BODY_TIMEOUT, HEAD_TIMEOUT

    port = _port(guarded)
    head = b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    results = {}

    def silent():  # opens a connection and sends nothing
        with socket.create_connection(("127.0.0.1", port)) as s:
            results["silent"] = _seconds_until_closed(s, b"", 30)

    def headers():  # trickles its headers, never ending them
        with socket.create_connection(("127.0.0.1", port)) as s:
            results["headers"] = _seconds_until_closed(s, head + b"X-Slow: " + b"a" * 200, 30)

    def body():  # sends its headers, then trickles the body
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(head + b"Content-Length: 1000\r\n\r\n")
            results["body"] = _seconds_until_closed(s, b'{"query": "' + b"a" * 900, 30)

    def unread():  # a body the app never reads (GET): answered, then cut off
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
            results["unread"] = _seconds_until_closed(s, b"x" * 900, 30)

    threads = [threading.Thread(target=f) for f in (silent, headers, body, unread)]
    for t in threads:
        t.start()
    time.sleep(1)
    # meanwhile the server answers everyone else
    for _ in range(3):
        assert http.get("/health").status_code == 200
        assert http.post("/search", json={"query": "retry", "k": 1}).status_code == 200
        time.sleep(0.5)
    for t in threads:
        t.join(40)
    assert results["silent"][0] < HEAD_TIMEOUT + 3, results
    assert results["headers"][0] < HEAD_TIMEOUT + 3, results
    took, answer = results["body"]
    assert took < BODY_TIMEOUT + 3, results
    assert answer.startswith(b"HTTP/1.1 408"), answer
    took, answer = results["unread"]
    assert took < BODY_TIMEOUT + 5 and answer.startswith(b"HTTP/1.1 200"), results
    assert http.get("/health").status_code == 200


# -------------------------------------------------------- item 8: nested JSON, --token
def test_deeply_nested_json_is_a_400(guarded, http):
    for body in ("[" * 100_000, '{"query": ' + "[" * 100_000):
        r = http.post("/search", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert "\n" not in r.json()["error"] and "nested" in r.json()["error"]
    assert http.get("/health").status_code == 200


def test_token_on_the_command_line_is_refused(tmp_path):
    for args in (["--token", "s3cret"], ["--token=s3cret"]):
        r = run_cli("serve", str(tmp_path), "--host", "0.0.0.0", "--port", "99999", *args)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "--token-file" in lines[0] and "CODERAG_TOKEN" in lines[0]
        assert "s3cret" not in r.stderr
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o644)
    r = run_cli("serve", str(tmp_path), "--host", "0.0.0.0", "--token-file", str(token))
    assert r.returncode == 2 and "chmod 600" in r.stderr, r.stderr
    token.chmod(0o600)
    r = run_cli(
        "serve", str(tmp_path), "--host", "0.0.0.0", "--port", "99999", "--token-file", str(token)
    )
    assert r.returncode == 2 and "--port" in r.stderr, r.stderr  # the file was accepted
