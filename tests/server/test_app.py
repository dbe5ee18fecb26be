"""``coderag serve``'s endpoints: a real server process on a free port, real HTTP requests
(httpx); and the app's request checks, called directly."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from coderag.errors import IndexMissing, LockHeld, UsageError
from coderag.server.app import error_response, refresh_params, search_params
from coderag.server.service import MAX_WAIT, HTTPError, Served, Service

from .serving import HIT_KEYS, QUERY

slow = pytest.mark.slow  # a real uvicorn server with the model loaded


def _lines(text: str, start: int, end: int) -> str:
    return "\n".join(text.split("\n")[start - 1 : end])


# ------------------------------------------------------------------------------ search
@slow
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


@slow
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


# ------------------------------------------------------------------- refresh and status
@slow
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


@slow
def test_status_health_openapi(served, http):
    from coderag.server.openapi import openapi_schema

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
    assert doc == openapi_schema(token_required=False)  # what the app serves is the document


# ---------------------------------------------------------------------------- refusals
@slow
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


class _Root:
    """Stands in for an Index where only its root is read."""

    def __init__(self, root: Path):
        self.root = root


def test_refresh_bodies_are_checked(tmp_path):
    repo = (tmp_path / "repo").resolve()
    (repo / "src").mkdir(parents=True)
    service = Service([Served(_Root(repo))])
    served, paths, wait, timeout = refresh_params(service, {})
    assert (served.root, paths, wait, timeout) == (repo, None, False, 120.0)
    _, paths, wait, timeout = refresh_params(
        service, {"paths": ["src/a.py"], "wait": True, "timeout": 10_000}
    )
    assert (paths, wait, timeout) == ([str(repo / "src" / "a.py")], True, MAX_WAIT)
    refused = [
        {"bogus": 1},
        {"wait": "yes"},
        {"timeout": 0},
        {"timeout": True},
        {"paths": ["../outside.py"]},
        {"paths": [""]},
        {"repo": 3},
    ]
    for body in refused:
        with pytest.raises(HTTPError) as e:
            refresh_params(service, body)
        assert e.value.status == 400, body
    with pytest.raises(HTTPError) as e:
        refresh_params(service, {"repo": "elsewhere"})
    assert e.value.status == 404


def test_search_bodies_are_checked():
    assert search_params({"query": "x", "repo": "r", "k": 3})["k"] == 3
    for body in ({"query": ""}, {"query": "x", "k": 201}, {"query": "x", "bogus": 1}):
        with pytest.raises(HTTPError) as e:
            search_params(body)
        assert e.value.status == 400 and "\n" not in e.value.message


def test_errors_become_one_line_answers():
    class Request:
        method, url = "POST", type("URL", (), {"path": "/search"})()

    cases = [
        (HTTPError(404, "nope"), 404, "nope"),
        (UsageError("bad\nmore"), 400, "bad"),
        (LockHeld("busy"), 503, "busy"),
        (IndexMissing("no index"), 409, "no index"),
        (RuntimeError("secret details"), 500, "internal error (see the server log)"),
    ]
    for exc, status, message in cases:
        r = error_response(exc, Request())
        assert r.status_code == status and json.loads(r.body) == {"error": message}
    assert error_response(LockHeld("busy"), Request()).headers["retry-after"] == "5"


# -------------------------------------------------------------------------- concurrency
@slow
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
