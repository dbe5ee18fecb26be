"""``coderag serve``'s options: the token, what may be bound, the Host policy, the socket."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from argparse import Namespace

import httpx
import pytest

from coderag.errors import UsageError
from coderag.server.args import (
    bind,
    check_bind,
    host_policy,
    limit_model_threads,
    model_overrides,
    read_token_file,
    user_token,
)

from ..conftest import run_cli
from .serving import Server, copy_repo_b


@pytest.mark.slow
def test_token_required_off_loopback_and_clean_shutdown(tmp_path):
    repo = copy_repo_b(tmp_path / "repo")
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


def test_accepted_connections_send_without_delay():
    """The listening socket must say TCP, or asyncio leaves Nagle on for its connections and
    every keep-alive answer waits for the client's delayed ACK (~40 ms)."""
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


def test_binding_off_loopback_needs_a_token():
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "token")
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        with pytest.raises(UsageError, match="--token-file"):
            check_bind(host, None)


def test_host_policy():
    assert host_policy("127.0.0.1", ["Editor.Internal "]) == ({"editor.internal"}, False)
    assert host_policy("127.0.0.1", ["[::1]"]) == ({"[::1]"}, False)
    assert host_policy("0.0.0.0", [], "token") == (set(), True)  # any IP literal
    assert host_policy("[::]", [], "token") == (set(), True)
    assert host_policy("192.0.2.1", [], "token") == ({"192.0.2.1"}, False)
    assert host_policy("fe80::1", [], "token") == ({"[fe80::1]"}, False)
    for bad in ("", "a/b", "a b", "user@host", "host:80", "a?b", "a#b"):
        with pytest.raises(UsageError, match="--allow-host"):
            host_policy("127.0.0.1", [bad])


def test_token_file_must_be_private_and_one_line(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    assert read_token_file(str(token)) == "s3cret"
    token.chmod(0o640)
    with pytest.raises(UsageError, match="chmod 600"):
        read_token_file(str(token))
    token.chmod(0o600)
    for text in ("", "\n", "one\ntwo\n", "x" * 5000):
        token.write_text(text)
        with pytest.raises(UsageError, match="one line"):
            read_token_file(str(token))
    with pytest.raises(UsageError, match="not a regular file"):
        read_token_file(str(tmp_path))
    with pytest.raises(UsageError, match="cannot read"):
        read_token_file(str(tmp_path / "missing"))


def test_user_token(tmp_path, monkeypatch):
    monkeypatch.delenv("CODERAG_TOKEN", raising=False)
    assert user_token(Namespace(token=None, token_file=None)) is None
    monkeypatch.setenv("CODERAG_TOKEN", "from-env")
    assert user_token(Namespace(token=None, token_file=None)) == "from-env"
    token = tmp_path / "token"
    token.write_text("from-file\n")
    token.chmod(0o600)
    assert user_token(Namespace(token=None, token_file=str(token))) == "from-file"
    with pytest.raises(UsageError, match="--token-file"):
        user_token(Namespace(token="s3cret", token_file=None))


def test_model_options_and_threads(monkeypatch):
    args = Namespace(model="m", device=None, dtype="")
    assert model_overrides(args) == {"model": "m"}
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # restored (or removed) afterwards
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's own setting wins
    limit_model_threads(2)
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["MKL_NUM_THREADS"] == "3"
    with pytest.raises(UsageError):
        limit_model_threads(0)
