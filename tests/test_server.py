"""``coderag serve``: a real server process on a free port, real HTTP requests (httpx)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import FIXTURES, run_cli

pytestmark = pytest.mark.slow  # a real uvicorn server with the model loaded

HIT_KEYS = {"path", "start_line", "end_line", "kind", "language", "symbol", "score", "text"}
QUERY = "upload again with exponential backoff when the server fails"


class Server:
    """A ``coderag serve`` subprocess; its URL and per-start secret are read from what it
    published for the first repository in the user's runtime folder, as an editor does."""

    def __init__(self, *args: str, repos: list[Path], log: Path, env: dict | None = None):
        self.repos = repos
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coderag", "serve", *map(str, repos), "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 240.0) -> str:
        from coderag.server import read_runtime_info

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited {self.proc.returncode}: {self.log.read_text()}"
                )
            info = read_runtime_info(self.repos[0])
            if info and info["pid"] == self.proc.pid:
                self.info = info
                self.secret = info["secret"]
                self.auth = {"Authorization": f"Bearer {self.secret}"}
                return info["url"]
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError(f"server did not start: {self.log.read_text()}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def _copy_repo_b(dst: Path) -> Path:
    dst.mkdir()
    for name in ("shapes.py", "guide.md"):
        shutil.copy(FIXTURES / "languages" / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder, tiny_cross_encoder):
    """Two indexed repositories served by one watching server (one model for both)."""
    from coderag import Index

    base = tmp_path_factory.mktemp("served")
    a = base / "repo_a"
    shutil.copytree(FIXTURES / "smallrepo", a)
    b = _copy_repo_b(base / "repo_b")
    for root in (a, b):
        Index(root, embedder=embedder).refresh()
    server = Server(
        repos=[a, b],
        log=base / "server.log",
        env={"CODERAG_RERANK_MODEL": str(tiny_cross_encoder)},
    )
    yield server
    server.stop()


@pytest.fixture
def http(served):
    with httpx.Client(base_url=served.url, timeout=60) as client:
        yield client


def _lines(text: str, start: int, end: int) -> str:
    return "\n".join(text.split("\n")[start - 1 : end])


# ------------------------------------------------------------------------------ search
def test_search_returns_the_same_hits_as_the_library(served, http, embedder):
    from coderag import Index

    a, b = served.repos
    r = http.post("/search", json={"repo": str(a), "query": QUERY, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["repo"] == str(a)
    hits = body["hits"]
    assert hits and all(set(h) == HIT_KEYS for h in hits)
    assert hits[0]["symbol"].endswith("upload_with_retry")
    local = [h.to_dict() for h in Index(a, embedder=embedder).search(QUERY, k=5)]
    assert [(h["path"], h["start_line"], h["end_line"], h["text"]) for h in hits] == [
        (h["path"], h["start_line"], h["end_line"], h["text"]) for h in local
    ]
    for got, want in zip(hits, local, strict=True):
        assert got["score"] == pytest.approx(want["score"], rel=1e-3)

    # filters and modes reach the index; the second repository is addressed by its name
    r = http.post("/search", json={"repo": str(a), "query": "parse_size_limit", "mode": "lexical"})
    assert r.json()["hits"][0]["symbol"].endswith("parse_size_limit")
    r = http.post("/search", json={"repo": str(a), "query": "retries", "kind": "doc", "k": 3})
    assert {h["kind"] for h in r.json()["hits"]} == {"doc"}
    r = http.post("/search", json={"repo": "repo_b", "query": "area of a circle", "k": 3})
    assert r.status_code == 200, r.text
    assert {h["path"] for h in r.json()["hits"]} <= {"shapes.py", "guide.md"}
    assert r.json()["repo"] == str(b)


def test_search_with_rerank(served, http, embedder, tiny_cross_encoder):
    from coderag import Index

    a = served.repos[0]
    r = http.post("/search", json={"repo": str(a), "query": QUERY, "k": 4, "rerank": True})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    local = Index(a, embedder=embedder, rerank_model=str(tiny_cross_encoder)).search(
        QUERY, k=4, rerank=True
    )
    assert [(h["path"], h["start_line"]) for h in hits] == [(h.path, h.start_line) for h in local]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in local], abs=1e-5)
    plain = http.post("/search", json={"repo": str(a), "query": QUERY, "k": 4}).json()["hits"]
    assert [h["score"] for h in plain] != [h["score"] for h in hits]  # CPU "auto": not reranked


def test_cli_search_through_the_server(served):
    from coderag.server import find_server

    a = served.repos[0]
    assert find_server(a).url == served.url
    assert find_server(a, verify=True).secret == served.secret
    r = run_cli("search", QUERY, "--server", served.url, "--repo", str(a), "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert len(hits) == 3 and hits[0]["symbol"].endswith("upload_with_retry")
    # a second server for a repository that is already served refuses to start
    r = run_cli("serve", str(a), "--port", "0")
    assert r.returncode == 1 and "already serves" in r.stderr


def test_find_server_ignores_dead_servers(tmp_path):
    from coderag.server import find_server, publish

    assert find_server(tmp_path) is None
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    info = {"repo": str(tmp_path.resolve()), "secret": "s" * 43}
    publish(tmp_path, {**info, "url": "http://127.0.0.1:1", "pid": int(dead.stdout)})
    assert find_server(tmp_path) is None
    publish(tmp_path, {**info, "url": "http://127.0.0.1:2", "pid": os.getpid()})
    assert find_server(tmp_path).url == "http://127.0.0.1:2"
    assert find_server(tmp_path, verify=True) is None  # nothing there proves the secret


# ------------------------------------------------------------------- refresh and status
def test_refresh_indexes_a_new_file(served, http):
    a = served.repos[0]
    (a / "uploader" / "quota.py").write_text(
        "def remaining_bucket_quota(bucket, used):\n"
        '    """How many bytes a bucket may still take before the quota is hit."""\n'
        "    return max(0, bucket.quota - used)\n"
    )
    body = {"repo": str(a), "paths": ["uploader/quota.py"], "wait": True}
    r = http.post("/refresh", json=body, headers=served.auth)
    assert r.status_code == 200, r.text
    assert r.json()["repo"] == str(a)
    # searchable by full text at once; the watcher fills in its vectors right after
    query = {"repo": str(a), "query": "bytes left in the bucket quota", "k": 3}
    r = http.post("/search", json={**query, "mode": "lexical"})
    assert r.json()["hits"][0]["symbol"].endswith("remaining_bucket_quota")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = {x["root"]: x for x in http.get("/status").json()["repos"]}[str(a)]
        if st["dense_coverage"] == 1.0:
            break
        time.sleep(0.2)
    r = http.post("/search", json={**query, "mode": "dense"})
    assert r.json()["hits"][0]["symbol"].endswith("remaining_bucket_quota")


def test_status_health_openapi(served, http):
    r = http.get("/status")
    assert r.status_code == 200
    st = r.json()
    assert st["model"]["id"] and st["token_required"] is False
    repos = {Path(x["root"]).name: x for x in st["repos"]}
    assert set(repos) == {"repo_a", "repo_b"}
    for x in repos.values():
        assert x["indexed"] and x["files"] >= 2 and x["chunks"] > 0 and x["indexed_at"]
        assert x["model"] == st["model"]["id"]  # one model instance serves both
        assert x["watcher"]["watching"] is True and isinstance(x["queue"], int)
    assert http.get("/health").json()["ok"] is True
    doc = http.get("/openapi.json").json()
    assert set(doc["paths"]) == {
        "/search",
        "/refresh",
        "/status",
        "/health",
        "/identity",
        "/openapi.json",
    }
    assert "post" in doc["paths"]["/search"] and "post" in doc["paths"]["/refresh"]


# ---------------------------------------------------------------------------- refusals
def test_bad_requests_are_refused(served, http):
    a = served.repos[0]
    outside = a.parent / "secret.py"
    outside.write_text("def secret():\n    return 42\n")
    (a / "link.py").symlink_to(outside)
    cases = [
        ("/search", {"repo": str(a), "query": "x", "k": 201}, 400),
        ("/search", {"repo": str(a), "query": "x", "k": 0}, 400),
        ("/search", {"repo": str(a), "query": "x", "k": "5"}, 400),
        ("/search", {"repo": str(a), "query": ""}, 400),
        ("/search", {"repo": str(a), "query": "x", "mode": "fuzzy"}, 400),
        ("/search", {"repo": str(a), "query": "x", "bogus": 1}, 400),
        ("/search", {"repo": str(a), "query": "x", "rerank": "yes"}, 400),
        ("/search", {"query": "x"}, 400),  # two repositories served: which one?
        ("/search", {"repo": "/etc", "query": "x"}, 404),
        ("/search", {"repo": str(outside.parent), "query": "x"}, 404),
        ("/refresh", {"repo": str(a), "paths": ["../secret.py"], "wait": True}, 400),
        ("/refresh", {"repo": str(a), "paths": [str(outside)], "wait": True}, 400),
        ("/refresh", {"repo": str(a), "paths": ["link.py"], "wait": True}, 400),
        ("/refresh", {"repo": str(a), "paths": "uploader/cli.py"}, 400),
        ("/refresh", {"repo": "/", "paths": ["/etc/passwd"]}, 404),
    ]
    for route, body, status in cases:
        r = http.post(route, json=body, headers=served.auth)
        assert r.status_code == status, (route, body, r.text)
        assert r.json()["error"]
    r = http.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    big = json.dumps({"repo": str(a), "query": "x" * 1_100_000})
    r = http.post("/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted while read
        for _ in range(12):
            yield b" " * 100_000

    r = http.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    # nothing from outside the repository made it into the index
    r = http.post("/search", json={"repo": str(a), "query": "secret", "mode": "lexical"})
    assert all(h["path"] != "link.py" and "secret" not in h["text"] for h in r.json()["hits"])


# -------------------------------------------------------------------------- concurrency
@pytest.mark.slow
def test_concurrent_searches_during_refresh(served):
    """50 searches while the same file is rewritten and refreshed again and again: no
    errors, and every hit is the exact text of one version of the file, never a mix."""
    a = served.repos[0]
    target = a / "uploader" / "client.py"
    version_a = target.read_text()
    version_b = '"""Storage client, version B."""\n\n\n' + version_a.replace(
        "delay *= 2", "delay *= 3  # steeper backoff"
    )
    versions = [version_a, version_b]
    other_files = {p: (a / p).read_text() for p in ("uploader/checksum.py", "README.md")}

    async def main():
        async with httpx.AsyncClient(base_url=served.url, timeout=120) as client:
            stop = asyncio.Event()

            async def refresher():
                n = 0
                while not stop.is_set() or n < 2:
                    n += 1
                    target.write_text(versions[n % 2])
                    r = await client.post(
                        "/refresh",
                        json={"repo": str(a), "paths": ["uploader/client.py"], "wait": True},
                        headers=served.auth,
                    )
                    assert r.status_code == 200, r.text
                return n

            async def search(i):
                r = await client.post(
                    "/search", json={"repo": str(a), "query": f"{QUERY} {i % 5}", "k": 8}
                )
                return r

            task = asyncio.create_task(refresher())
            await asyncio.sleep(0.05)
            responses = await asyncio.gather(*(search(i) for i in range(50)))
            stop.set()
            rounds = await task
            return responses, rounds

    responses, rounds = asyncio.run(main())
    assert rounds >= 2
    assert [r.status_code for r in responses] == [200] * 50
    for r in responses:
        hits = r.json()["hits"]
        assert hits
        fits = set(range(len(versions)))
        for h in hits:
            if h["path"] == "uploader/client.py":
                fits &= {
                    i
                    for i, v in enumerate(versions)
                    if _lines(v, h["start_line"], h["end_line"]) == h["text"]
                }
            elif h["path"] in other_files:
                assert _lines(other_files[h["path"]], h["start_line"], h["end_line"]) == h["text"]
        assert fits, f"hits of client.py match no single version: {hits}"
    target.write_text(version_a)


# --------------------------------------------------------------- security and shutdown
@pytest.mark.slow
def test_token_required_off_loopback_and_clean_shutdown(tmp_path):
    repo = _copy_repo_b(tmp_path / "repo")
    r = run_cli("serve", str(repo), "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 2 and "--token" in r.stderr and "Traceback" not in r.stderr

    token = "s3cret-token"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    server = Server(
        "--host", "0.0.0.0", "--token-file", str(token_file), repos=[repo], log=tmp_path / "log"
    )
    info = server.info
    assert info["token_required"] is True and info["pid"] == server.proc.pid
    assert not (repo / ".coderag" / "server.json").exists()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for route in ("/health", "/status", "/openapi.json"):
                assert client.get(route).status_code == 401
            assert client.post("/search", json={"query": "circle area"}).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert client.get("/health", headers=wrong).status_code == 401
            good = {"Authorization": f"Bearer {token}"}
            assert client.get("/health", headers=good).status_code == 200
            # the repository was never indexed: the watcher builds it
            deadline = time.monotonic() + 400  # a loaded 2-core CI machine is slow
            while time.monotonic() < deadline:
                st = client.get("/status", headers=good).json()["repos"][0]
                if st["indexed"] and st["files"] == 2 and st["dense_coverage"] == 1.0:
                    break
                time.sleep(0.2)
            assert st["indexed"] and st["dense_coverage"] == 1.0, st
            r = client.post("/search", json={"query": "area of a circle"}, headers=good)
            assert r.status_code == 200 and r.json()["hits"]
        # the CLI finds the server in the runtime folder and needs no token for it (the
        # per-start secret is its credential); a URL given by hand needs the token
        from coderag.server import find_server, remote_search

        os.environ.pop("CODERAG_TOKEN", None)
        found = find_server(repo, verify=True)
        assert found is not None and found.token_required
        assert remote_search(found, "area of a circle", k=2)
        r = run_cli("search", "circle", "--server", server.url, "--json")
        assert r.returncode == 1 and "CODERAG_TOKEN" in r.stderr
        r = run_cli(
            "search", "circle", "--server", server.url, "--json", env={"CODERAG_TOKEN": token}
        )
        assert r.returncode == 0 and json.loads(r.stdout), r.stderr
    finally:
        rc = server.stop()
    # SIGTERM: exit 0, watcher stopped, writer lock free, runtime file gone
    assert rc == 0, (tmp_path / "log").read_text()
    from coderag.server import read_runtime_info, runtime_file

    assert read_runtime_info(repo) is None and not runtime_file(repo).exists()
    from coderag.index import WriterLock

    WriterLock(repo / ".coderag", timeout=0).acquire().release()


def test_pool_answers_503_when_full():
    """The bounded pool: with every worker busy and no queue, a request is refused at once."""
    import threading

    import anyio

    from coderag.server import HTTPError, Service

    service = Service([], workers=1, queue=0)
    release = threading.Event()
    outcome = {}

    async def main():
        service.limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.in_pool, release.wait)
            while service.in_flight == 0:
                await anyio.sleep(0.01)
            try:
                await service.in_pool(lambda: "ran")
            except HTTPError as e:
                outcome["status"] = e.status
            release.set()
        outcome["after"] = await service.in_pool(lambda: "ran")

    anyio.run(main)
    assert outcome == {"status": 503, "after": "ran"}


def test_accepted_connections_send_without_delay():
    """The listening socket must say TCP, or asyncio leaves Nagle on for its connections and
    every keep-alive answer waits for the client's delayed ACK (~40 ms)."""
    import socket

    from coderag.server import bind

    sock = bind("127.0.0.1", 0)
    seen = {}

    async def main():
        async def handle(reader, writer):
            s = writer.get_extra_info("socket")
            seen["nodelay"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen["nodelay"] != 0
