"""Applying batches: failures go back into the queue with one warning, back-fill steps are
sized to the embedding speed. The index is a stand-in that fails on purpose (the real stack
runs in test_watcher.py)."""

from __future__ import annotations

import threading
from pathlib import Path

from coderag.errors import CoderagError, LockHeld
from coderag.watch.queue import RETRY_MIN_S, ChangeQueue
from coderag.watch.runner import (
    BACKFILL_IDLE_STEP_S,
    BACKFILL_MAX,
    BACKFILL_STEP_S,
    Backfill,
    Runner,
)


class FailingIndex:
    def __init__(self, root: Path, error: Exception):
        self.root = root
        self.error = error
        self.calls = 0

    def refresh(self, paths, **kw):
        self.calls += 1
        raise self.error

    def embed_pending(self, limit, **kw):
        raise self.error


def runner_for(index) -> tuple[Runner, ChangeQueue, list[str]]:
    queue = ChangeQueue(debounce=0.0)
    lines: list[str] = []
    runner = Runner(
        index,
        threading.Condition(),
        queue,
        lexical_first=True,
        verbose=False,
        log=lines.append,
        progress=lambda *a, **k: None,
    )
    return runner, queue, lines


def test_a_held_lock_puts_the_same_paths_back_and_warns_once(tmp_path: Path):
    runner, queue, lines = runner_for(FailingIndex(tmp_path, LockHeld("busy")))
    runner.apply({"a.py"}, 1)
    runner.apply({"a.py"}, 1)
    assert queue.pending == {"a.py"} and not queue.full and queue.applied == 0
    assert lines == [
        "coderag watch: warning: another coderag process is writing the index; will retry: busy"
    ]
    assert queue.due_in(0.0) > RETRY_MIN_S  # backing off
    assert runner.batches == 0 and runner.last_stats is None


def test_other_failures_retry_the_whole_tree_but_fail_the_start(tmp_path: Path):
    runner, queue, lines = runner_for(FailingIndex(tmp_path, CoderagError("no model")))
    runner.apply({"a.py"}, 1)
    assert queue.full and lines == ["coderag watch: warning: cannot apply changes: no model"]
    runner, queue, lines = runner_for(FailingIndex(tmp_path, RuntimeError("disk")))
    runner.apply(None, 1)
    assert lines == ["coderag watch: warning: applying changes failed: disk"]
    try:
        runner.apply(None, 1, reason="start")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the start-up reconcile must raise")


def test_a_failed_backfill_step_pauses_the_back_fill(tmp_path: Path):
    runner, _, lines = runner_for(FailingIndex(tmp_path, LockHeld("busy")))
    runner.vectors.pending = 10
    runner.backfill_step()
    assert runner.vectors.due_in(0.0) is not None and runner.vectors.due_in(0.0) > 0
    assert lines == ["coderag watch: warning: back-filling vectors: busy"]


def test_backfill_steps_are_sized_to_the_target_time():
    b = Backfill()
    assert b.due_in(0.0) is None  # nothing pending
    b.pending = 100
    assert b.due_in(0.0) == 0.0
    b.resize(done=10, took=0.1, idle=False)  # 10 ms per chunk
    assert b.step == int(BACKFILL_STEP_S / 0.01)
    b.resize(done=10, took=0.1, idle=True)
    assert b.step == int(BACKFILL_IDLE_STEP_S / 0.01)
    b.resize(done=1, took=10.0, idle=False)
    assert b.step == 1
    b.resize(done=1000, took=0.001, idle=True)
    assert b.step == BACKFILL_MAX
    assert b.record(30) == (70, 30)
    assert b.record(0) == (0, 30)  # a step that finds nothing: done, and how many it took
    assert b.embedded == 0 and b.pending == 0
