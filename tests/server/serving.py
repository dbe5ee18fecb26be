"""A real ``coderag serve`` process for the tests of tests/server/ and test_security_server.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import FIXTURES

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


def copy_repo_b(dst: Path) -> Path:
    """A second small repository: two files of tests/fixtures/languages."""
    dst.mkdir()
    for name in ("shapes.py", "guide.md"):
        shutil.copy(FIXTURES / "languages" / name, dst / name)
    return dst
