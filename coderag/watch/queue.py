"""The changes seen and not yet applied: coalescing, debouncing, storms, retries, and the
flush markers that tell when every change made before a moment has been seen.

Not thread-safe on its own: the watcher holds its condition around every call.
"""

from __future__ import annotations

import os
import threading

#: a batch is applied at the latest this long after its first event, however busy the tree
MAX_LATENCY_S = 2.0
#: a batch with more paths than this is applied as a full reconcile
STORM_PATHS = 500
#: after a failed batch, wait this long before retrying (doubling up to RETRY_MAX_S)
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
#: name of the marker files flush() writes into the index folder (and waits to see)
FLUSH_PREFIX = "watch-flush-"

#: a batch: repo-relative paths (None: the whole tree) and the change count it covers
Batch = tuple[set[str] | None, int]


class ChangeQueue:
    """Paths waiting to be applied (or a full reconcile), counted: ``seq`` changes accepted
    so far, ``applied`` of them covered by finished batches."""

    def __init__(self, debounce: float):
        self.debounce = debounce  # seconds of quiet before a batch is due
        self.pending: set[str] = set()
        self.full = False  # a full reconcile is queued
        self.seq = 0  # accepted changes so far
        self.applied = 0  # changes covered by finished batches
        self.urgent = False  # flush(): skip the quiet period
        self.last_at = 0.0  # monotonic time of the last change
        self._first_at = 0.0  # ... and of the first one of the batch being gathered
        self._retry_at = 0.0
        self._retry_wait = RETRY_MIN_S
        self._markers: dict[str, int | None] = {}  # flush marker -> seq when its event came
        self._flushes = 0

    @property
    def busy(self) -> bool:
        return bool(self.pending) or self.full

    def size(self) -> int:
        """Paths waiting (a queued full reconcile alone counts as one)."""
        return len(self.pending) + (1 if self.full and not self.pending else 0)

    def touch(self, rel: str, now: float) -> bool:
        """True (and the quiet period restarts) when ``rel`` is already waiting."""
        if rel in self.pending:
            self.last_at = now
            return True
        return False

    def add(self, rel: str | None, now: float) -> None:
        """Queue a path, or a full reconcile (``None``)."""
        if not self.busy:
            self._first_at = now
        self.last_at = now
        if rel is None:
            self.full = True
        else:
            self.pending.add(rel)
        self.seq += 1

    def due_in(self, now: float) -> float | None:
        """Seconds until the next batch is due (zero or less: now); None when nothing waits.
        Due after a quiet period, at the latest MAX_LATENCY_S after its first change, never
        before a retry's back-off is over."""
        if not self.busy:
            return None
        if now < self._retry_at:
            return self._retry_at - now
        if self.urgent:
            return 0.0
        return min(self.last_at + self.debounce, self._first_at + MAX_LATENCY_S) - now

    def take(self) -> Batch:
        """Everything waiting, as one batch; a storm (over STORM_PATHS) is a full reconcile."""
        paths = None if self.full or len(self.pending) > STORM_PATHS else set(self.pending)
        self.pending.clear()
        self.full = False
        self.urgent = False
        return paths, self.seq

    def done(self, seq: int) -> None:
        """A batch covering the first ``seq`` changes is applied."""
        self.applied = max(self.applied, seq)
        self._retry_wait = RETRY_MIN_S

    def retry(self, paths: set[str] | None, now: float) -> None:
        """Put a failed batch back, due after a back-off that doubles with each failure."""
        if paths is None:
            self.full = True
        else:
            self.pending |= paths
        self._first_at = self.last_at = now
        self._retry_at = now + self._retry_wait
        self._retry_wait = min(RETRY_MAX_S, self._retry_wait * 2)

    # ------------------------------------------------------------------ flush markers
    def new_marker(self) -> str:
        """A marker file name, unique to this call; its event notes the change count then."""
        self._flushes += 1
        token = f"{FLUSH_PREFIX}{os.getpid()}-{threading.get_ident()}-{self._flushes}"
        self._markers[token] = None
        return token

    def marker_seen(self, token: str) -> bool:
        """Note the change count at the marker's event; False if it is not a waiting marker."""
        if token in self._markers and self._markers[token] is None:
            self._markers[token] = self.seq
            return True
        return False

    def marker_seq(self, token: str) -> int | None:
        """The change count noted when the marker's event came; None until then."""
        return self._markers.get(token)

    def drop_marker(self, token: str) -> None:
        self._markers.pop(token, None)
