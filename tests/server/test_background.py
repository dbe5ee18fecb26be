"""A watcher in a thread of its own, as ``coderag serve`` and ``coderag mcp`` run it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coderag import datadir
from coderag.display import escape
from coderag.server.background import (
    BackgroundWatcher,
    stderr_logger,
    wait_until_applied,
)


def _until(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_stderr_logger_prefixes_and_escapes(capsys):
    stderr_logger("[repo] ")("updated evil\x1b]52;c;x\x07.py")
    err = capsys.readouterr().err
    assert err == "[repo] " + escape("updated evil\x1b]52;c;x\x07.py") + "\n"
    assert "\x1b" not in err and "\x07" not in err


def test_wait_until_applied():
    class Flushes:
        def __init__(self, result=None, error=None):
            self.result, self.error = result, error

        def flush(self, timeout):
            if self.error:
                raise self.error
            return self.result

    assert wait_until_applied(Flushes(), 1) is True
    assert wait_until_applied(Flushes(error=TimeoutError("late")), 1) is False
    assert wait_until_applied(Flushes(result=False), 1) is False


@pytest.mark.slow
def test_starts_in_the_background_and_stops(smallrepo: Path, make_index):
    index = make_index(smallrepo)
    index.refresh()
    lines: list[str] = []
    bw = BackgroundWatcher(index, log=lines.append, on_failure=lines.append)
    assert bw.watcher is None and bw.state() is None  # not started yet
    bw.start()
    _until(lambda: not bw.is_starting())
    assert bw.error is None and bw.state()["watching"] is True
    (smallrepo / "new.py").write_text("def background_marker():\n    return 1\n")
    bw.watcher.submit([str(smallrepo / "new.py")])
    assert wait_until_applied(bw.watcher, 60)
    assert index.search("background_marker", mode="lexical", k=1)[0].path == "new.py"
    bw.stop()
    assert bw.watcher is None and bw.state() is None
    bw.stop()  # idempotent
    with datadir.FileLock(smallrepo, datadir.WATCH_LOCK, timeout=0, busy="held"):
        pass  # the watch lock went with it


@pytest.mark.slow
def test_a_watcher_that_cannot_start_is_reported(smallrepo: Path, make_index):
    index = make_index(smallrepo)
    index.refresh()
    failures: list[str] = []
    other = datadir.FileLock(smallrepo, datadir.WATCH_LOCK, timeout=0, busy="held").acquire()
    try:
        bw = BackgroundWatcher(index, log=lambda line: None, on_failure=failures.append)
        bw.start()
        _until(lambda: not bw.is_starting())
    finally:
        other.release()
    assert bw.watcher is None and bw.state() is None
    assert failures == [bw.error] and "another coderag watch" in bw.error
    assert index.search("upload", mode="lexical", k=1)  # searches still read the index
    bw.stop()  # nothing to stop
