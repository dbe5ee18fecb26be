"""``coderag watch``: the command's options (the watcher itself: tests/watch/)."""

from __future__ import annotations

from ..conftest import run_cli


def test_watch_help():
    r = run_cli("watch", "--help")
    assert r.returncode == 0
    for flag in ("--debounce-ms", "--verbose", "--no-backfill", "--model", "examples:"):
        assert flag in r.stdout
