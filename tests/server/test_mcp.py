"""``coderag mcp`` driven by the MCP SDK's own stdio client, as an assistant would."""

from __future__ import annotations

import json
import os
import shutil
import sys

import anyio
import pytest

from coderag.server.background import BackgroundWatcher
from coderag.server.mcp import reindex_now, watcher_state

from ..conftest import FIXTURES

slow = pytest.mark.slow  # an MCP server subprocess over stdio

HIT_KEYS = {"path", "start_line", "end_line", "symbol", "kind", "language", "score", "text"}


@pytest.fixture
def indexed_repo(tmp_path, embedder):
    from coderag import Index

    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "smallrepo", root)
    Index(root, embedder=embedder).refresh()
    return root


@slow
def test_mcp_tools_over_stdio(indexed_repo):
    from mcp import ClientSession, StdioServerParameters, stdio_client

    root = indexed_repo
    stray: list[Exception] = []  # anything on stdout that is not an MCP message lands here

    async def on_message(message):
        if isinstance(message, Exception):
            stray.append(message)

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "coderag", "mcp", str(root)],
        # XDG_*: the test session's own user folders (the key that stamps .coderag/)
        env={k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_", "XDG_"))},
        cwd=str(root),
    )

    async def session_run():
        out = {}
        with open(root.parent / "mcp.log", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(
                    read, write, message_handler=on_message, read_timeout_seconds=300
                ) as s:
                    await s.initialize()
                    out["tools"] = {t.name: t for t in (await s.list_tools()).tools}
                    out["search"] = await s.call_tool(
                        "search_code", {"query": "read a file in blocks to hash it", "k": 3}
                    )
                    out["filtered"] = await s.call_tool(
                        "search_code", {"query": "retries", "kind": "doc", "k": 2}
                    )
                    out["too_many"] = await s.call_tool("search_code", {"query": "x", "k": 500})
                    out["status"] = await s.call_tool("index_status", {})
                    (root / "uploader" / "quota.py").write_text(
                        "def remaining_bucket_quota(bucket, used):\n"
                        '    """Bytes a bucket may still take before its quota is hit."""\n'
                        "    return max(0, bucket.quota - used)\n"
                    )
                    out["reindex"] = await s.call_tool("reindex", {"paths": ["uploader/quota.py"]})
                    out["outside"] = await s.call_tool("reindex", {"paths": ["../../etc/passwd"]})
                    out["after"] = await s.call_tool(
                        "search_code", {"query": "bytes left in the bucket quota", "k": 1}
                    )
        return out

    out = anyio.run(session_run)
    assert not stray, stray
    tools = out["tools"]
    assert {"search_code", "index_status", "reindex"} <= set(tools)
    assert {"query", "k", "lang", "path", "kind", "rerank"} <= set(
        tools["search_code"].input_schema["properties"]
    )

    res = out["search"]
    assert not res.is_error, res.content
    hits = res.structured_content["result"]
    assert 1 <= len(hits) <= 3 and set(hits[0]) == HIT_KEYS
    assert hits[0]["symbol"].endswith("sha256_of_file")
    assert hits[0]["path"] == "uploader/checksum.py" and hits[0]["start_line"] >= 1
    lines = (root / hits[0]["path"]).read_text().split("\n")
    assert "\n".join(lines[hits[0]["start_line"] - 1 : hits[0]["end_line"]]) == hits[0]["text"]
    # the unstructured content carries the same hits, as JSON text
    assert json.loads(res.content[0].text)["path"] == hits[0]["path"]

    assert {h["kind"] for h in out["filtered"].structured_content["result"]} == {"doc"}
    assert out["too_many"].is_error and "between 1 and" in out["too_many"].content[0].text

    status = out["status"].structured_content
    assert status["indexed"] and status["files"] == 7 and status["chunks"] > 0
    assert status["watcher"]["watching"] is True

    assert not out["reindex"].is_error, out["reindex"].content
    assert out["outside"].is_error and "outside" in out["outside"].content[0].text
    after = out["after"].structured_content["result"]
    assert after[0]["symbol"].endswith("remaining_bucket_quota")


class _Index:
    """Stands in for an Index: its root, and what a refresh without a watcher does."""

    def __init__(self, root):
        self.root = root
        self.refreshed = []

    def refresh(self, paths):
        self.refreshed.append(paths)
        return type("Stats", (), {"summary": lambda self: {"files": len(paths or [])}})()


def test_watcher_state_says_why_it_does_not_run(tmp_path):
    assert watcher_state(None) is None  # --no-watch
    keeper = BackgroundWatcher(_Index(tmp_path), log=print)
    assert watcher_state(keeper) is None  # not started
    keeper.error = "another coderag watch is watching this repository"
    assert watcher_state(keeper) == {"watching": False, "error": keeper.error}


def test_reindex_without_a_watcher_refreshes_directly(tmp_path):
    index = _Index(tmp_path)
    assert reindex_now(index, None, ["a.py"], timeout=1) == {"files": 1}
    keeper = BackgroundWatcher(index, log=print)  # not running: the same
    assert reindex_now(index, keeper, None, timeout=1) == {"files": 0}
    assert index.refreshed == [["a.py"], None]


def test_reindex_refuses_paths_outside_the_repository(tmp_path):
    pytest.importorskip("mcp")
    from coderag.server.mcp import build_server

    index = _Index(tmp_path.resolve())
    server = build_server(index)

    async def call(paths):
        try:
            return await server.call_tool("reindex", {"paths": paths})
        except Exception as e:  # the SDK raises the tool's error
            return e

    outside = anyio.run(call, ["../../etc/passwd"])
    assert isinstance(outside, Exception) and "outside" in str(outside)
    assert index.refreshed == []
    anyio.run(call, ["src/a.py"])
    assert index.refreshed == [[str(tmp_path.resolve() / "src" / "a.py")]]
