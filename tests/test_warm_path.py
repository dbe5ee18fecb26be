"""The warm path for one-shot searches: the first `coderag search` starts a private background
server for the repository; later ones use it; it stops when idle or too big."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coderag import server

from .conftest import run_cli

pytestmark = pytest.mark.slow

AUTO = {"CODERAG_AUTOSERVE": "1", "CODERAG_AUTOSERVE_IDLE": "60"}


def _wait_for_server(root: Path, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = server.find_server(root, verify=True)
        if found is not None:
            return found
        time.sleep(0.25)
    log = root / ".coderag" / server.AUTOSERVE_LOG
    raise AssertionError(f"no background server: {log.read_text() if log.exists() else ''}")


def _stop(found) -> None:
    try:
        os.kill(found.pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.pid_alive(found.pid):
        time.sleep(0.1)


def test_first_search_starts_a_server_the_next_one_uses_it(smallrepo: Path, make_index):
    make_index(smallrepo).refresh()
    assert server.find_server(smallrepo) is None
    first = run_cli("search", "retry failed uploads", "--repo", str(smallrepo), "--json", env=AUTO)
    assert first.returncode == 0, first.stderr
    found = _wait_for_server(smallrepo)
    try:
        assert found.repo == str(smallrepo.resolve())
        # one server per repository: while it lives, no second one is started
        assert server.start_background(smallrepo) is None
        before = server.request(found, "/status", None, timeout=30)["requests"]
        second = run_cli(
            "search", "retry failed uploads", "--repo", str(smallrepo), "--json", env=AUTO
        )
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout) == json.loads(first.stdout)  # the same answer
        status = server.request(found, "/status", None, timeout=30)
        assert status["requests"] >= before + 2  # the second search went to the server
        assert status["repos"][0]["watcher"] is None  # a read accelerator: no watcher
    finally:
        _stop(found)


def test_disabled_or_no_index_starts_nothing(smallrepo: Path):
    r = run_cli("search", "upload", "--repo", str(smallrepo), "--mode", "lexical")
    assert r.returncode == 1  # no index yet
    assert server.start_background(smallrepo) is None  # nothing to serve
    assert not (smallrepo / ".coderag" / server.AUTOSERVE_LOCK).exists()


def test_the_background_server_stops_when_idle(smallrepo: Path, make_index):
    make_index(smallrepo).refresh(lexical_only=True)
    env = {**AUTO, "CODERAG_AUTOSERVE_IDLE": "2"}
    r = run_cli("search", "upload", "--repo", str(smallrepo), "--mode", "lexical", env=env)
    assert r.returncode == 0, r.stderr
    found = _wait_for_server(smallrepo)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.pid_alive(found.pid):
        time.sleep(0.2)
    assert not server.pid_alive(found.pid), "still running after 60 s idle"
    assert server.find_server(smallrepo) is None  # its runtime file went with it
    log = (smallrepo / ".coderag" / server.AUTOSERVE_LOG).read_text()
    assert "stopping: idle for" in log


def test_serve_stops_past_its_memory_bound(smallrepo: Path, make_index):
    make_index(smallrepo).refresh(lexical_only=True)
    p = subprocess.run(
        [sys.executable, "-m", "coderag", "serve", str(smallrepo), "--port", "0"]
        + ["--no-watch", "--max-memory", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "stopping: over 1 MB of memory" in p.stderr
