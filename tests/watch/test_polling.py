"""Polling mode's rescans: the first walk records, later walks name what differs."""

from __future__ import annotations

import os
from pathlib import Path

from coderag.config import Config
from coderag.watch.polling import POLL_MIN_S, Polling


def test_walks_report_what_changed_since_the_last_one(tmp_path: Path):
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / "b.py").write_text("b = 1\n")
    p = Polling()
    assert p.due_in(0.0) is None  # not polling
    assert p.begin(reconcile=True) and not p.begin(reconcile=False)
    assert p.reconcile_after_first and p.due_in(123.0) <= 0
    changed, took = p.walk(tmp_path, Config())
    assert changed is None and took >= 0  # the first walk only records the tree
    (tmp_path / "a.py").write_text("a = 22\n")
    os.utime(tmp_path / "a.py", ns=(1, 1))
    (tmp_path / "b.py").unlink()
    (tmp_path / "c.py").write_text("c = 1\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")  # not indexable: not a change to apply
    changed, _ = p.walk(tmp_path, Config())
    assert sorted(changed) == ["a.py", "b.py", "c.py"]
    assert p.walk(tmp_path, Config())[0] == []


def test_a_rescan_is_due_when_asked_for_or_after_the_interval():
    p = Polling()
    p.begin(reconcile=False)
    p.scanned(0, took=0.01)
    assert 0 < p.due_in(p.next_at - POLL_MIN_S) <= POLL_MIN_S
    assert p.due_in(p.next_at) <= 0
    p.requested += 1  # flush() asks for one now
    assert p.due_in(0.0) == 0.0
    p.scanned(p.requested, took=1.0)  # a slow walk: rescans spaced further apart
    assert p.done == 1 and p.due_in(p.next_at - 10.0) > 0
