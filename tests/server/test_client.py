"""The client side: finding a server in the runtime folder, checking it, asking it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from coderag.errors import UsageError
from coderag.server import ServerUnavailable, find_server, publish, request

from ..conftest import run_cli
from .serving import QUERY


@pytest.mark.slow
def test_cli_search_through_the_server(served):
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


def test_find_server_ignores_servers_off_loopback(tmp_path):
    info = {"repo": str(tmp_path.resolve()), "secret": "s" * 43, "pid": os.getpid()}
    for url in ("http://192.0.2.1:7878", "https://127.0.0.1:7878", "http://[::1"):
        publish(tmp_path, {**info, "url": url})
        assert find_server(tmp_path) is None, url
    publish(tmp_path, {**info, "url": "http://[::1]:7878"})
    assert find_server(tmp_path) is not None


def test_request_to_nothing_or_no_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerUnavailable, match="cannot reach"):
        request(f"127.0.0.1:{port}", "/health", None, timeout=5)
    with pytest.raises(UsageError, match="not a server URL"):
        request("http://:7878", "/health", None, timeout=5)
