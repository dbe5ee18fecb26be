"""The :class:`Watcher`: its public API, the worker thread, and the glue between the file
events (:mod:`.events`) or rescans (:mod:`.polling`), the queue of changes (:mod:`.queue`)
and the runner that applies them (:mod:`.runner`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import datadir
from ..errors import UsageError
from .events import Events
from .polling import POLL_MIN_S, Polling
from .queue import ChangeQueue
from .runner import Cancelled, Runner, log_to_stderr

if TYPE_CHECKING:
    from ..files import PathFilter
    from ..index import Index, RefreshStats

#: a running batch gets this long to finish after stop() before it is rolled back
STOP_GRACE_S = 2.0
#: files whose change may change what is indexed anywhere below their folder
RULE_FILES = frozenset({".gitignore", ".coderagignore", "pyvenv.cfg"})


@dataclass
class _Lifetime:
    """Started, stopping, rolling back; the watch lock and the worker thread."""

    started: bool = False
    stopping: bool = False
    cancel: bool = False  # roll back the work in flight (its progress callback raises)
    lock: datadir.FileLock | None = None
    worker: threading.Thread | None = None


class _EventSink:
    """What the file events call (:class:`~coderag.watch.events.Sink`): the watcher's own
    handling, kept out of its public API."""

    def __init__(self, watcher: Watcher):
        self.watcher = watcher

    def changed(self, rel: str) -> None:
        self.watcher._changed(rel)

    def changed_all(self) -> None:
        self.watcher._changed_all()

    def wants_folder(self, rel: str) -> bool:
        return self.watcher._wants_folder(rel)

    def marker_seen(self, token: str) -> None:
        self.watcher._marker_seen(token)

    def events_failed(self, why: str) -> None:
        self.watcher._events_failed(why)

    def warn(self, what: str, e: Exception) -> None:
        self.watcher._runner.warn(what, e)


class Watcher:
    """Keeps one :class:`~coderag.index.Index` equal to the files under its root.

    ``start()`` reconciles and starts watching; ``stop()`` ends it; ``flush()`` waits until
    everything seen so far is applied; ``submit()`` queues paths as if events had arrived.
    Thread-safe: searches on the same ``Index`` may run concurrently from other threads.
    """

    def __init__(
        self,
        index: Index,
        *,
        debounce_ms: int | None = None,
        verbose: bool = False,
        backfill: bool = True,
        log: Callable[[str], None] | None = None,
    ):
        self.index = index
        self.root: Path = index.root
        if debounce_ms is None:
            debounce_ms = getattr(index.config, "debounce_ms", 200)
        if not 0 <= int(debounce_ms) <= 60_000:
            raise UsageError("--debounce-ms must be between 0 and 60000")
        self.verbose = verbose
        self.backfill = backfill
        self.log = log or log_to_stderr
        # every piece of state below is read and written under this condition
        self._cv = threading.Condition()
        self._queue = ChangeQueue(int(debounce_ms) / 1000.0)
        self._runner = Runner(
            index,
            self._cv,
            self._queue,
            lexical_first=backfill,
            verbose=verbose,
            log=self.log,
            progress=self._progress,
        )
        self._events = Events(self.root, index.data_dir.name, _EventSink(self))
        self._polling = Polling()
        self._life = _Lifetime()
        self._paths: PathFilter | None = None

    @property
    def debounce(self) -> float:
        """Seconds of quiet before a batch is applied."""
        return self._queue.debounce

    @property
    def last_stats(self) -> RefreshStats | None:
        """What the last applied batch did (diagnostics and tests)."""
        return self._runner.last_stats

    # ------------------------------------------------------------------ public API
    def start(self) -> Watcher:
        """Take the watch lock, start watching, reconcile, and apply changes from now on."""
        if self._life.started:
            return self
        self._life.lock = datadir.FileLock(
            self.root,
            datadir.WATCH_LOCK,
            timeout=0,
            busy="another coderag watch{who} is watching this repository",
        ).acquire()
        self._life.started = True
        try:
            self._load_rules()
            why = self._events.start()
            if why is not None:
                self._events_failed(why, rescan=False)  # the reconcile comes next
            if self._polling.active:
                self._scan(0)  # the first walk, before the reconcile: nothing falls in between
            self._runner.apply(None, self._queue.seq, reason="start")
        except Cancelled:
            pass  # stopped while reconciling (Ctrl-C during start-up)
        except BaseException:
            self._shutdown()
            raise
        worker = threading.Thread(target=self._run, name="coderag-watch", daemon=True)
        self._life.worker = worker
        worker.start()
        return self

    def cancel(self) -> None:
        """Roll back the work in flight (the start-up reconcile included) at its next
        progress step, as Ctrl-C does; :meth:`stop` does the rest."""
        self._life.cancel = True

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in flight (roll it back if it takes more than a moment), stop
        watching and release the lock. Idempotent."""
        if not self._life.started:
            return
        self._ask_to_stop()
        worker = self._life.worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(min(STOP_GRACE_S, timeout))
            if worker.is_alive():
                self._life.cancel = True
                worker.join(max(0.0, timeout - STOP_GRACE_S))
        self._shutdown()

    def run_forever(self) -> None:
        """``coderag watch``: start, then block until SIGINT/SIGTERM, then stop."""
        stop = threading.Event()

        def on_signal(signum, frame):  # noqa: ARG001
            stop.set()
            self._ask_to_stop()
            if self._life.worker is None:
                self._life.cancel = True  # roll back the start-up reconcile; stop() does the rest

        old = {}
        if threading.current_thread() is threading.main_thread():
            old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if not stop.is_set():
                self.log(f"coderag watch: watching {self.root} ({self._mode()}); Ctrl-C to stop")
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every change seen so far is applied; ``TimeoutError`` if it takes longer.

        In event mode a marker file is written to ``.coderag/`` and its event waited for:
        events are delivered in order, so every change made before the call has been seen
        by then. In polling mode a rescan is done first.
        """
        if not self._life.started or self._life.stopping:
            return
        deadline = time.monotonic() + timeout
        target = self._seen_so_far(deadline)
        with self._cv:
            self._queue.urgent = True
            self._cv.notify_all()
            while self._queue.applied < target and not self._life.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the index did not catch up within {timeout:g}s")
                self._cv.wait(left)

    @property
    def state(self) -> dict:
        with self._cv:
            return {
                "watching": self._life.started and not self._life.stopping,
                "mode": self._mode(),
                "queue": self._queue.size(),
                "batches": self._runner.batches,
                "last_batch_at": self._runner.last_batch_at,
                "pending_vectors": self._runner.vectors.pending,
            }

    def submit(self, paths: list[str] | None) -> None:
        """Queue ``paths`` (absolute, or relative to the repository root), or a full
        reconcile when ``None``, exactly as if file events had arrived."""
        from ..files import is_real_dir
        from .events import files_below

        if paths is None:
            self._changed_all()
            return
        for p in paths:
            p = os.fspath(p)
            rel = (
                self._events.relative(os.path.normpath(p))
                if os.path.isabs(p)
                else os.path.normpath(p)
            )
            if not rel or rel == "." or rel.startswith(".."):
                continue
            rel = Path(rel).as_posix()
            if not is_real_dir(self.root, rel):  # never a folder reached through a link
                self._changed(rel)
            elif self._wants_folder(rel):
                for sub in files_below(self.root, rel):
                    self._changed(sub)

    # ------------------------------------------------------------------ what events report
    def _changed(self, rel: str) -> None:
        """A path changed: queue it if a walk would index it (rule files reload the rules)."""
        with self._cv:
            if self._queue.touch(rel, time.monotonic()):
                return
        parent, _, name = rel.rpartition("/")
        if name in RULE_FILES:
            # the rules (or a virtualenv) changed: what is indexed may change anywhere below
            if self._rules_matter_in(parent):
                self._load_rules()
                self._changed_all()
            return
        if self._filter().accepts(rel):
            self._enqueue(rel)

    def _changed_all(self) -> None:
        """Anything may have changed: queue a full reconcile."""
        self._enqueue(None)

    def _wants_folder(self, rel: str) -> bool:
        return self._filter().accepts(rel, is_dir=True)

    def _marker_seen(self, token: str) -> None:
        with self._cv:
            if self._queue.marker_seen(token):
                self._cv.notify_all()

    def _events_failed(self, why: str, rescan: bool = True) -> None:
        """Give up on file events (once, with one warning) and rescan periodically; with
        ``rescan`` a full reconcile follows the first walk (events may have been lost)."""
        with self._cv:
            if not self._polling.begin(reconcile=rescan):
                return
            self._cv.notify_all()
        self.log(f"coderag watch: warning: {why}; rescanning every {POLL_MIN_S:g}s or so instead")
        # not from the observer's own threads (an overflow is reported there): join would hang
        threading.Thread(target=self._events.stop, daemon=True).start()

    def _enqueue(self, rel: str | None) -> None:
        with self._cv:
            self._queue.add(rel, time.monotonic())
            self._cv.notify_all()

    # ------------------------------------------------------------------ filtering
    def _load_rules(self) -> None:
        from ..files import PathFilter

        paths = PathFilter(self.root, self.index.config)
        with self._cv:
            self._paths = paths

    def _filter(self) -> PathFilter:
        with self._cv:
            return self._paths

    def _rules_matter_in(self, folder: str) -> bool:
        """Can a rule file (or ``pyvenv.cfg``) in ``folder`` change what is indexed? Not when
        the folder is refused by the rules above it; a virtualenv's own marker always can."""
        from ..files import Refusal

        return self._filter().refusal(folder, is_dir=True) in (None, Refusal.VIRTUALENV)

    # ------------------------------------------------------------------ flush
    def _seen_so_far(self, deadline: float) -> int:
        """The change count that includes every change made before now."""
        if not self._polling.active and self._events.watching:
            seen = self._marker_round_trip(deadline)
            if seen is not None:
                return seen
        with self._cv:  # polling: rescan now
            self._polling.requested += 1
            wanted = self._polling.requested
            self._cv.notify_all()
            while self._polling.done < wanted and not self._life.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the rescan did not finish in time")
                self._cv.wait(left)
            return self._queue.seq

    def _marker_round_trip(self, deadline: float) -> int | None:
        """Write a marker file into the index folder and wait for its event: the change count
        then (None when the watcher fell back to polling meanwhile)."""
        with self._cv:
            token = self._queue.new_marker()
        marker = self.index.data_dir / token
        try:
            marker.write_bytes(b"")
            with self._cv:
                while self._queue.marker_seq(token) is None and not self._polling.active:
                    if self._life.stopping:
                        return self._queue.seq
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("file events did not arrive in time")
                    self._cv.wait(left)
                return self._queue.marker_seq(token)
        finally:
            with self._cv:
                self._queue.drop_marker(token)
            marker.unlink(missing_ok=True)

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        threading.Thread(
            target=self._check_coverage, name="coderag-watch-check", daemon=True
        ).start()
        while True:
            job = self._next_job()
            if job is None:
                return
            kind, arg, seq = job
            try:
                if kind == "batch":
                    self._runner.apply(arg, seq)
                elif kind == "scan":
                    self._scan(arg)
                else:
                    self._runner.backfill_step()
            except Cancelled:
                return
            except Exception as e:  # noqa: BLE001 - the watcher never stops on an error
                self._runner.warn("internal error", e)

    def _next_job(self):
        """Block until there is something to do; batches first, then rescans, then vectors."""
        with self._cv:
            while not self._life.stopping:
                now = time.monotonic()
                batch = self._queue.due_in(now)
                if batch is not None and batch <= 0:
                    paths, seq = self._queue.take()
                    return ("batch", paths, seq)
                scan = self._polling.due_in(now)
                if scan is not None and scan <= 0:
                    return ("scan", self._polling.requested, self._queue.seq)
                vectors = self._runner.vectors.due_in(now) if self.backfill else None
                if vectors is not None and vectors <= 0 and not self._queue.busy:
                    return ("backfill", None, self._queue.seq)
                waits = [w for w in (batch, scan, vectors) if w is not None and w > 0]
                self._cv.wait(max(0.005, min(waits)) if waits else None)
            return None

    def _progress(self, *args, **kw) -> None:
        if self._life.cancel:
            raise Cancelled()

    def _scan(self, requested: int) -> None:
        """Polling mode: walk the tree, queue what differs from the last walk."""
        changed, took = self._polling.walk(self.root, self.index.config)
        if changed is None:
            if self._polling.reconcile_after_first:
                self._changed_all()
        else:
            for rel in changed:
                self._changed(rel)
        with self._cv:
            if changed:
                self._queue.urgent = True
            self._polling.scanned(requested, took)
            self._cv.notify_all()

    def _check_coverage(self) -> None:
        if self._polling.active:
            return
        missing = self._events.unwatched_folders(lambda: self._life.stopping)
        if missing:
            self._events_failed(
                f"{missing} folder(s) cannot be watched (inotify watch limit reached; "
                "raise fs.inotify.max_user_watches)"
            )

    # ------------------------------------------------------------------ lifetime
    def _mode(self) -> str:
        return "polling" if self._polling.active else "events"

    def _ask_to_stop(self) -> None:
        with self._cv:
            self._life.stopping = True
            self._cv.notify_all()

    def _shutdown(self) -> None:
        self._events.stop()
        lock, self._life.lock = self._life.lock, None
        if lock is not None:
            lock.release()
        self._ask_to_stop()
