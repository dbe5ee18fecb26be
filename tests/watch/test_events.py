"""What file events mean: watchdog-shaped events (plain objects: only ``dispatch`` is
watchdog's interface) routed to a recording sink, overflows, and why watching can fail."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from coderag.watch.events import OVERFLOW_LIMIT, Events, files_below, watch_failure


@dataclass
class Event:
    event_type: str
    src_path: str
    is_directory: bool = False
    dest_path: str = ""


class Sink:
    def __init__(self, refused_folders=()):
        self.calls: list[tuple] = []
        self.refused = set(refused_folders)

    def changed(self, rel):
        self.calls.append(("changed", rel))

    def changed_all(self):
        self.calls.append(("all",))

    def wants_folder(self, rel):
        return rel not in self.refused

    def marker_seen(self, token):
        self.calls.append(("marker", token))

    def events_failed(self, why):
        self.calls.append(("failed", why))

    def warn(self, what, e):
        self.calls.append(("warn", what, str(e)))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("src/a.py", "src/deep/b.py", "vendor/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    return tmp_path


def test_file_events_become_repo_relative_paths(tree: Path):
    sink = Sink()
    ev = Events(tree, ".coderag", sink)
    ev.dispatch(Event("modified", str(tree / "src" / "a.py")))
    ev.dispatch(Event("moved", str(tree / "src" / "a.py"), dest_path=str(tree / "src" / "z.py")))
    ev.dispatch(Event("created", "/somewhere/else.py"))  # outside the tree: nothing
    assert sink.calls == [("changed", "src/a.py"), ("changed", "src/a.py"), ("changed", "src/z.py")]
    assert ev.relative(str(tree / "src" / "a.py")) == "src/a.py"
    assert ev.relative(str(tree)) is None


def test_folder_events(tree: Path):
    sink = Sink(refused_folders={"vendor"})
    ev = Events(tree, ".coderag", sink)
    ev.dispatch(Event("created", str(tree / "src"), is_directory=True))  # its files, walked
    assert sorted(sink.calls) == [("changed", "src/a.py"), ("changed", "src/deep/b.py")]
    sink.calls.clear()
    ev.dispatch(Event("created", str(tree / "vendor"), is_directory=True))  # refused: nothing
    ev.dispatch(Event("deleted", str(tree / "vendor"), is_directory=True))
    assert sink.calls == []
    ev.dispatch(Event("deleted", str(tree / "old"), is_directory=True))  # only the index knew
    ev.dispatch(Event("deleted", str(tree / ".coderag"), is_directory=True))  # the index itself
    assert sink.calls == [("all",), ("all",)]


def test_flush_markers_and_handler_errors(tree: Path):
    sink = Sink()
    ev = Events(tree, ".coderag", sink)
    ev.dispatch(Event("created", str(tree / ".coderag" / "watch-flush-1-2-3")))
    assert sink.calls == [("marker", "watch-flush-1-2-3")]
    ev.dispatch(object())  # not an event: reported, the observer thread lives on
    assert sink.calls[-1][:2] == ("warn", "handling a file event")


def test_overflows_reconcile_then_give_up_on_events(tree: Path):
    sink = Sink()
    ev = Events(tree, ".coderag", sink)
    for _ in range(OVERFLOW_LIMIT):
        ev.overflowed()
    assert sink.calls == [("all",)] * OVERFLOW_LIMIT
    ev.overflowed()
    assert sink.calls[-1][0] == "failed" and "overflowing" in sink.calls[-1][1]


def test_why_watching_fails_names_the_setting():
    assert "max_user_watches" in watch_failure(OSError(errno.ENOSPC, "No space left"))
    assert "max_user_instances" in watch_failure(OSError(errno.EMFILE, "Too many"))
    assert "Permission denied" in watch_failure(OSError(errno.EACCES, "Permission denied"))


def test_files_below_follows_no_link(tree: Path):
    os.symlink(tree / "vendor", tree / "src" / "linked")
    assert sorted(files_below(tree, "src")) == ["src/a.py", "src/deep/b.py"]
    assert files_below(tree, "src/linked") == []  # a folder reached through a link
    assert files_below(tree, "missing") == []


def test_a_real_watch_starts_and_stops(tree: Path):
    ev = Events(tree, ".coderag", Sink())
    why = ev.start()
    try:
        assert why is None and ev.watching
        assert ev.unwatched_folders(lambda: False) == 0
    finally:
        ev.stop()
    assert not ev.watching
    ev.stop()  # idempotent
