"""Applying batches to the index: each through ``Index.refresh`` (which takes the writer
lock), lexically first when vectors are back-filled behind; failures put the batch back
for a retry; vectors back-filled in steps sized to the embedding speed; one line per batch.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..display import escape
from ..errors import CoderagError, LockHeld
from .queue import ChangeQueue

if TYPE_CHECKING:
    from ..index import Index, RefreshStats

#: a back-fill step (the writer lock is held for it, and a fresh edit waits behind it) is
#: sized from the measured speed to take about this long while files are being changed ...
BACKFILL_STEP_S = 0.4
#: ... and this long once nothing changed for BACKFILL_IDLE_S (fewer steps, less overhead)
BACKFILL_IDLE_STEP_S = 1.5
BACKFILL_IDLE_S = 10.0
BACKFILL_MAX = 512
#: after a failed back-fill step, wait this long before the next
BACKFILL_PAUSE_S = 5.0


class Cancelled(Exception):
    """Raised from a progress callback to roll back the batch in flight when stopping."""


def log_to_stderr(line: str) -> None:
    """The watcher's default log: one line on stderr, escaped (lines name repository files)."""
    print(escape(line), file=sys.stderr, flush=True)


class Backfill:
    """Vectors still to embed behind the batches, and the size of the next step."""

    def __init__(self):
        self.pending = 0  # chunks without vectors (an estimate between steps)
        self.after = 0.0  # no step before this monotonic time (after a failed one)
        self.embedded = 0  # vectors embedded since the back-log was last empty
        self.step = 4  # chunks per step, adapted to the embedding speed

    def due_in(self, now: float) -> float | None:
        """Seconds until the next step (zero or less: now); None when nothing is pending."""
        return self.after - now if self.pending > 0 else None

    def resize(self, done: int, took: float, idle: bool) -> None:
        # each step costs a fixed overhead plus a cost per chunk; sizing the next step
        # as target / (time per chunk) converges to steps that take the target time
        target = BACKFILL_IDLE_STEP_S if idle else BACKFILL_STEP_S
        self.step = max(1, min(BACKFILL_MAX, int(target / (took / done))))

    def record(self, done: int) -> tuple[int, int]:
        """Count a step; (chunks left, embedded since the back-log was last empty)."""
        self.embedded += done
        # an estimate (a step may fill several chunks of one text); a step that finds
        # nothing to do sets it to zero
        left = max(1, self.pending - done) if done else 0
        self.pending = left
        total = self.embedded
        if left == 0:
            self.embedded = 0
        return left, total


class Runner:
    """Applies the watcher's batches and back-fill steps to its index and says what they did.

    Shares the watcher's condition and queue: a finished batch advances ``queue.applied``,
    a failed one goes back into the queue. ``progress`` is handed to the index (it raises
    :class:`Cancelled` to roll back the work in flight when the watcher stops)."""

    def __init__(
        self,
        index: Index,
        cv: threading.Condition,
        queue: ChangeQueue,
        *,
        lexical_first: bool,
        verbose: bool,
        log: Callable[[str], None],
        progress: Callable[..., None],
    ):
        self.index = index
        self.root: Path = index.root
        self.lexical_first = lexical_first
        self.verbose = verbose
        self.log = log
        self.vectors = Backfill()
        self.batches = 0
        self.last_batch_at: str | None = None
        self.last_stats: RefreshStats | None = None
        self._cv = cv
        self._queue = queue
        self._progress = progress
        self._said: set[str] = set()

    def apply(self, paths: set[str] | None, seq: int, reason: str = "") -> None:
        """One batch through ``Index.refresh``: the paths, or the whole tree when ``None``.
        The start-up reconcile (``reason="start"``) raises what fails; later batches are
        retried."""
        t0 = time.perf_counter()
        try:
            stats = self.index.refresh(
                None if paths is None else [str(self.root / p) for p in sorted(paths)],
                lexical_only=self.lexical_first,
                progress=self._progress,
            )
        except Cancelled:
            raise
        except LockHeld as e:
            self._retry(paths, "another coderag process is writing the index; will retry", e)
            return
        except Exception as e:  # noqa: BLE001 - log it, rescan later, keep watching
            if reason == "start":
                raise
            what = (
                "cannot apply changes" if isinstance(e, CoderagError) else "applying changes failed"
            )
            self._retry(None, what, e)
            return
        ms = (time.perf_counter() - t0) * 1000
        with self._cv:
            self._queue.done(seq)
            self.batches += 1
            self.last_batch_at = datetime.now(UTC).isoformat(timespec="seconds")
            self.vectors.pending = stats.chunks_pending
            self._said.clear()
            self.last_stats = stats
            self._cv.notify_all()
        self._report(paths, stats, ms, reason)

    def _retry(self, paths: set[str] | None, what: str, e: Exception) -> None:
        self.warn(what, e)
        with self._cv:
            self._queue.retry(paths, time.monotonic())

    def warn(self, what: str, e: Exception) -> None:
        """Say a problem once (until a batch succeeds)."""
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        key = f"{what}: {msg}"
        if key not in self._said:
            self._said.add(key)
            self.log(f"coderag watch: warning: {key}")

    def _report(self, paths, stats, ms: float, reason: str) -> None:
        changed = stats.files_indexed or stats.files_removed or stats.files_skipped
        if not changed and not self.verbose:
            return
        if paths is None:
            what = "start-up rescan" if reason == "start" else "full rescan"
            head = f"{what} ({stats.files_unchanged} files unchanged)"
        else:
            head = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
        pending = f", {stats.chunks_pending} waiting for vectors" if stats.chunks_pending else ""
        self.log(
            f"coderag watch: {head}: {stats.files_indexed} indexed, {stats.files_removed} removed, "
            f"{stats.files_skipped} skipped; chunks: {stats.chunks_embedded} embedded, "
            f"{stats.chunks_reused} reused{pending}; {ms:.0f} ms"
        )
        if self.verbose:
            for p in sorted(paths or ()):
                there = (self.root / p).is_file()
                self.log(f"  {'updated' if there else 'deleted'} {p}")
            for s in stats.skipped:
                self.log(f"  skipped {s.path}: {s.reason}")

    def backfill_step(self) -> None:
        """Embed a few chunks still without vectors (only called when no change is pending)."""
        t0 = time.perf_counter()
        try:
            done = self.index.embed_pending(self.vectors.step, progress=self._progress)
        except Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 - LockHeld, a model problem: try again later
            self.warn("back-filling vectors", e)
            with self._cv:
                self.vectors.after = time.monotonic() + BACKFILL_PAUSE_S
            return
        took = time.perf_counter() - t0
        if done:
            with self._cv:
                idle = time.monotonic() - self._queue.last_at > BACKFILL_IDLE_S
            self.vectors.resize(done, took, idle)
        with self._cv:
            left, total = self.vectors.record(done)
        if self.verbose and done:
            self.log(
                f"coderag watch: embedded {done} chunks in the background, {left} to go; "
                f"{took * 1000:.0f} ms"
            )
        elif left == 0 and total:
            self.log(f"coderag watch: vectors complete ({total} chunks embedded in the background)")
