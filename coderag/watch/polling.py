"""Rescanning instead of file events, when the OS cannot watch the tree: a walk every few
seconds (slower for trees that take long to walk), compared with the last one."""

from __future__ import annotations

import time
from pathlib import Path

#: polling mode rescans at least this often (slower for trees that take long to walk)
POLL_MIN_S = 2.0


class Polling:
    """When a rescan is due, and the last walk's files to compare the next one with.

    ``active`` and the counters are read and written under the watcher's condition; the
    snapshot only by the thread that scans."""

    def __init__(self):
        self.active = False
        self.requested = 0  # rescans asked for (flush() asks for one)
        self.done = 0  # ... and finished
        self.next_at = 0.0
        self.reconcile_after_first = False  # events may have been lost before we noticed
        self._snapshot: dict[str, tuple[int, int]] = {}
        self._snapshot_taken = False

    def begin(self, reconcile: bool) -> bool:
        """Switch to polling; False when already polling. The first walk only records the
        tree; with ``reconcile`` a full reconcile follows it."""
        if self.active:
            return False
        self.active = True
        self.next_at = 0.0
        self._snapshot_taken = False
        self.reconcile_after_first = reconcile
        return True

    def due_in(self, now: float) -> float | None:
        """Seconds until the next rescan (zero or less: now); None when not polling."""
        if not self.active:
            return None
        if self.requested > self.done:
            return 0.0
        return self.next_at - now

    def walk(self, root: Path, config) -> tuple[list[str] | None, float]:
        """Walk the tree: the paths that differ from the last walk (None after the first
        walk, which only records), and the seconds the walk took."""
        from ..files import walk

        t0 = time.monotonic()
        entries, _ = walk(root, config)
        now = {e.path: (e.size, e.mtime_ns) for e in entries}
        before, self._snapshot = self._snapshot, now
        changed = [p for p, v in now.items() if before.get(p) != v]
        changed += [p for p in before if p not in now]
        first = not self._snapshot_taken
        self._snapshot_taken = True
        return (None if first else changed), time.monotonic() - t0

    def scanned(self, requested: int, took: float) -> None:
        self.done = max(self.done, requested)
        self.next_at = time.monotonic() + max(POLL_MIN_S, 10 * took)
