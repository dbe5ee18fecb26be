"""``coderag watch``: keep the index equal to the working tree while files change.

How it works, and why:

* **Reconcile, then follow.** The file watch starts *before* the start-up reconcile (a full
  ``Index.refresh()``), so nothing changed during the reconcile is missed; events that
  arrive meanwhile are applied right after it.
* **Filter, coalesce, debounce.** Events under ``.git/``, ``.coderag/``, ignored paths,
  binary files and virtualenvs are dropped at once (our own LanceDB writes never wake the
  worker). The rest become a set of repo-relative paths. A batch is applied after a quiet
  period (``debounce_ms``, default from ``Config.debounce_ms``) or at the latest
  ``MAX_LATENCY_S`` after its first event, so a storm (``git checkout``, a rebase) becomes a
  few large batches; above ``STORM_PATHS`` paths a batch is a full reconcile instead of a
  path list. A change to ``.gitignore`` / ``.coderagignore`` reloads the rules and
  reconciles the whole tree. Every batch goes through ``Index.refresh`` (one writer at a
  time: it takes the writer lock), which re-uses cached vectors, so moves embed nothing.
* **Lexical first, vectors behind.** Batches are stored with ``lexical_only=True``:
  searchable by full text at once. When nothing is pending, vectors are back-filled with
  ``Index.embed_pending`` in small steps, so a fresh edit never waits long behind them.
* **Never stop.** If the OS cannot watch the tree (inotify watch limit reached, the watch
  of some folder missing, repeated queue overflows), the watcher says so once and falls back
  to rescanning the tree every few seconds. Errors while applying a batch are logged and the
  batch is retried.
* **One watcher per repository.** ``.coderag/watch.lock`` is held (``flock``) for the
  watcher's lifetime; a second one is refused naming the first one's pid.

Only this module imports watchdog, and only inside functions.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import datadir
from .display import escape
from .errors import CoderagError, LockHeld, UsageError

if TYPE_CHECKING:
    from .index import Index, RefreshStats

#: a batch is applied at the latest this long after its first event, however busy the tree
MAX_LATENCY_S = 2.0
#: a batch with more paths than this is applied as a full reconcile
STORM_PATHS = 500
#: a back-fill step (the writer lock is held for it, and a fresh edit waits behind it) is
#: sized from the measured speed to take about this long while files are being changed ...
BACKFILL_STEP_S = 0.4
#: ... and this long once nothing changed for BACKFILL_IDLE_S (fewer steps, less overhead)
BACKFILL_IDLE_STEP_S = 1.5
BACKFILL_IDLE_S = 10.0
BACKFILL_MAX = 512
#: polling mode rescans at least this often (slower for trees that take long to walk)
POLL_MIN_S = 2.0
#: overflows of the kernel's event queue tolerated (each answered by a full reconcile)
#: within OVERFLOW_WINDOW_S before the watcher falls back to polling
OVERFLOW_LIMIT = 2
OVERFLOW_WINDOW_S = 60.0
#: after a failed batch, wait this long before retrying (doubling up to RETRY_MAX_S)
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
#: a running batch gets this long to finish after stop() before it is rolled back
STOP_GRACE_S = 2.0

RULE_FILES = frozenset({".gitignore", ".coderagignore"})
FLUSH_PREFIX = "watch-flush-"

EPILOG = """examples:
  coderag watch                      watch the git repository around the current folder
  coderag watch ~/src/project -v     name every file as it is applied
  coderag watch --debounce-ms 500    wait for half a second of quiet before applying
  coderag watch --no-backfill        embed every batch at once instead of in the background
"""


class _Cancelled(Exception):
    """Raised from a progress callback to roll back the batch in flight when stopping."""


def _stderr(line: str) -> None:
    print(escape(line), file=sys.stderr, flush=True)  # lines name repository files


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
        self.debounce = int(debounce_ms) / 1000.0
        self.verbose = verbose
        self.backfill = backfill
        self.log = log or _stderr
        #: what the last applied batch did (diagnostics and tests)
        self.last_stats: RefreshStats | None = None

        self._cv = threading.Condition()
        self._pending: set[str] = set()
        self._full = False  # a full reconcile is queued
        self._seq = 0  # accepted changes so far
        self._applied = 0  # changes covered by finished batches
        self._first_at = 0.0
        self._last_at = 0.0
        self._urgent = False  # flush(): skip the quiet period
        self._retry_at = 0.0
        self._retry_wait = RETRY_MIN_S
        self._error_said: set[str] = set()
        self._batches = 0
        self._last_batch_at: str | None = None
        self._pending_vectors = 0
        self._backfill_after = 0.0
        self._backfilled = 0  # vectors embedded since the back-log was last empty
        self._step = 4  # chunks per back-fill step, adapted to the embedding speed
        self._barriers: dict[str, int | None] = {}
        self._flushes = 0
        self._mode = "events"
        self._scan_requested = 0
        self._scan_done = 0
        self._next_scan = 0.0
        self._snapshot: dict[str, tuple[int, int]] = {}
        self._snapshot_taken = False
        self._reconcile_after_snapshot = False
        self._overflows: list[float] = []
        self._stopping = False
        self._cancel = False
        self._started = False
        self._lock = None
        self._observer = None
        self._log_filter: _OverflowFilter | None = None
        self._worker: threading.Thread | None = None
        self._rules = None
        self._decisions: dict[str, bool] = {}
        self._prefix = str(self.root) + os.sep
        self._data_name = index.data_dir.name
        self._flush_prefix = f"{self._data_name}/{FLUSH_PREFIX}"

    # ------------------------------------------------------------------ public API
    def start(self) -> Watcher:
        """Take the watch lock, start watching, reconcile, and apply changes from now on."""
        if self._started:
            return self
        self._acquire_lock()
        self._started = True
        try:
            self._load_rules()
            self._start_observer()
            if self._mode == "polling":
                self._scan(0)  # the first walk, before the reconcile: nothing falls in between
            self._apply(None, self._seq, reason="start")
        except _Cancelled:
            pass  # stopped while reconciling (Ctrl-C during start-up)
        except BaseException:
            self._shutdown()
            raise
        self._worker = threading.Thread(target=self._run, name="coderag-watch", daemon=True)
        self._worker.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in flight (roll it back if it takes more than a moment), stop
        watching and release the lock. Idempotent."""
        if not self._started:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(min(STOP_GRACE_S, timeout))
            if worker.is_alive():
                self._cancel = True
                worker.join(max(0.0, timeout - STOP_GRACE_S))
        self._shutdown()

    def run_forever(self) -> None:
        """``coderag watch``: start, then block until SIGINT/SIGTERM, then stop."""
        stop = threading.Event()

        def on_signal(signum, frame):  # noqa: ARG001
            stop.set()
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            if self._worker is None:
                self._cancel = True  # roll back the start-up reconcile; stop() handles the rest

        old = {}
        if threading.current_thread() is threading.main_thread():
            old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if not stop.is_set():
                self.log(f"coderag watch: watching {self.root} ({self._mode}); Ctrl-C to stop")
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
        if not self._started or self._stopping:
            return
        deadline = time.monotonic() + timeout
        target = self._seen_so_far(deadline)
        with self._cv:
            self._urgent = True
            self._cv.notify_all()
            while self._applied < target and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the index did not catch up within {timeout:g}s")
                self._cv.wait(left)

    @property
    def state(self) -> dict:
        with self._cv:
            queue = len(self._pending) + (1 if self._full and not self._pending else 0)
            return {
                "watching": self._started and not self._stopping,
                "mode": self._mode,
                "queue": queue,
                "batches": self._batches,
                "last_batch_at": self._last_batch_at,
                "pending_vectors": self._pending_vectors,
            }

    def submit(self, paths: list[str] | None) -> None:
        """Queue ``paths`` (absolute, or relative to the repository root), or a full
        reconcile when ``None``, exactly as if file events had arrived."""
        if paths is None:
            self._enqueue_full()
            return
        for p in paths:
            p = os.fspath(p)
            rel = self._rel(os.path.normpath(p)) if os.path.isabs(p) else os.path.normpath(p)
            if not rel or rel == "." or rel.startswith(".."):
                continue
            rel = Path(rel).as_posix()
            from .files import is_real_dir

            if is_real_dir(self.root, rel):  # never a folder reached through a link
                if not self._dir_excluded(rel):
                    for sub in _files_below(self.root, rel):
                        self._on_path(sub)
            else:
                self._on_path(rel)

    # ------------------------------------------------------------------ the lock
    def _acquire_lock(self) -> None:
        self._lock = datadir.FileLock(
            self.root,
            datadir.WATCH_LOCK,
            timeout=0,
            busy="another coderag watch{who} is watching this repository",
        ).acquire()

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _shutdown(self) -> None:
        self._stop_observer()
        self._release_lock()
        with self._cv:
            self._stopping = True
            self._cv.notify_all()

    # ------------------------------------------------------------------ events
    def _start_observer(self) -> None:
        """Watch the tree recursively; on failure (watch limit) fall back to polling."""
        try:
            from watchdog.events import (
                DirCreatedEvent,
                DirDeletedEvent,
                DirMovedEvent,
                FileClosedEvent,
                FileCreatedEvent,
                FileDeletedEvent,
                FileModifiedEvent,
                FileMovedEvent,
            )
            from watchdog.observers import Observer
        except ImportError as e:  # pragma: no cover - watchdog is a dependency
            self._to_polling(f"watchdog is not available ({e})", rescan=False)
            return
        # no open/close-without-write events: reading the tree (our own refresh) is silent
        kinds = [
            FileCreatedEvent,
            FileModifiedEvent,
            FileClosedEvent,
            FileDeletedEvent,
            FileMovedEvent,
            DirCreatedEvent,
            DirDeletedEvent,
            DirMovedEvent,
        ]
        # watchdog warns when a folder it just started watching is registered twice (our own
        # LanceDB writes create folders fast); harmless, and not the user's business
        warnings.filterwarnings(
            "ignore", message="Callback with id", category=RuntimeWarning, module=r"watchdog\."
        )
        observer = None
        try:
            observer = Observer()
            observer.schedule(_Handler(self), str(self.root), recursive=True, event_filter=kinds)
            observer.start()
        except OSError as e:
            if observer is not None:
                _quietly_stop(observer)
            self._to_polling(_watch_failure(e), rescan=False)  # start() reconciles next
            return
        self._observer = observer
        self._log_filter = _OverflowFilter(self)
        for name in _OverflowFilter.LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            _quietly_stop(observer)
        flt, self._log_filter = self._log_filter, None
        if flt is not None:
            for name in _OverflowFilter.LOGGERS:
                logging.getLogger(name).removeFilter(flt)

    def _to_polling(self, why: str, rescan: bool = True) -> None:
        """Give up on file events (once, with one warning) and rescan periodically.

        The first rescan only records the tree; with ``rescan`` a full reconcile follows it,
        since events may have been lost before we noticed."""
        with self._cv:
            if self._mode == "polling":
                return
            self._mode = "polling"
            self._next_scan = 0.0
            self._snapshot_taken = False
            self._reconcile_after_snapshot = rescan
            self._cv.notify_all()
        self.log(f"coderag watch: warning: {why}; rescanning every {POLL_MIN_S:g}s or so instead")
        # not from the observer's own threads (an overflow is reported there): join would hang
        threading.Thread(target=self._stop_observer, daemon=True).start()

    def _rel(self, abspath: str) -> str | None:
        if not abspath.startswith(self._prefix):
            return None
        rel = abspath[len(self._prefix) :]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel

    def _on_event(self, event) -> None:
        """From the observer thread: turn one watchdog event into queued paths."""
        src = self._rel(os.fsdecode(event.src_path))
        dest = getattr(event, "dest_path", "")
        dest = self._rel(os.fsdecode(dest)) if dest else None
        if src and src.startswith(self._flush_prefix):
            self._barrier_seen(src.rsplit("/", 1)[1])
            return
        kind = event.event_type
        if src == self._data_name and event.is_directory and kind in ("deleted", "moved"):
            self._enqueue_full()  # the index itself went away: rebuild it from the whole tree
            return
        if event.is_directory:
            if kind == "deleted" and src and not self._dir_excluded(src):
                # what was below it is only known to the index: rescan the tree
                self._enqueue_full()
            elif kind in ("created", "moved"):
                target = dest if kind == "moved" else src
                if target and not self._dir_excluded(target):
                    # watchdog reports the contents too; a walk is cheap insurance
                    for rel in _files_below(self.root, target):
                        self._on_path(rel)
            return
        for rel in (src, dest):
            if rel:
                self._on_path(rel)

    def _on_path(self, rel: str) -> None:
        with self._cv:
            if rel in self._pending:
                self._last_at = time.monotonic()
                return
        parent, _, name = rel.rpartition("/")
        if name in RULE_FILES or name == "pyvenv.cfg":
            # the rules (or a virtualenv) changed: what is indexed may change anywhere below
            if not self._dir_excluded(parent):
                self._load_rules()
                self._enqueue_full()
            return
        if not self._accepts(rel):
            return
        with self._cv:
            now = time.monotonic()
            if not self._pending and not self._full:
                self._first_at = now
            self._last_at = now
            self._pending.add(rel)
            self._seq += 1
            self._cv.notify_all()

    def _enqueue_full(self) -> None:
        with self._cv:
            now = time.monotonic()
            if not self._pending and not self._full:
                self._first_at = now
            self._last_at = now
            self._full = True
            self._seq += 1
            self._cv.notify_all()

    # ------------------------------------------------------------------ filtering
    def _load_rules(self) -> None:
        from .files import IgnoreRules

        rules = IgnoreRules(self.root, self.index.config)
        with self._cv:
            self._rules = rules
            self._decisions = {}

    def _accepts(self, rel: str) -> bool:
        """Would a full walk index this path (if it exists)? Cached per path."""
        with self._cv:
            hit = self._decisions.get(rel)
            rules = self._rules
        if hit is not None:
            return hit
        from .files import ALWAYS_SKIP_DIRS, BINARY_EXTENSIONS

        parts = rel.split("/")
        name = parts[-1]
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        ok = not (
            any(p in ALWAYS_SKIP_DIRS for p in parts[:-1])
            or name in ALWAYS_SKIP_DIRS
            or ext in BINARY_EXTENSIONS
            or ext.lower() in BINARY_EXTENSIONS
            or not _utf8(rel)
            or rules.excluded(rel)
            or _in_virtualenv(self.root, parts)
        )
        with self._cv:
            if len(self._decisions) > 100_000:
                self._decisions.clear()
            self._decisions[rel] = ok
        return ok

    def _dir_excluded(self, rel: str) -> bool:
        from .files import ALWAYS_SKIP_DIRS

        if not rel:
            return False
        with self._cv:
            rules = self._rules
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            if parts[depth - 1] in ALWAYS_SKIP_DIRS or rules.ignored("/".join(parts[:depth]), True):
                return True
        return False

    # ------------------------------------------------------------------ flush barriers
    def _seen_so_far(self, deadline: float) -> int:
        """The change count that includes every change made before now."""
        if self._mode == "events" and self._observer is not None:
            with self._cv:
                self._flushes += 1
                token = f"{FLUSH_PREFIX}{os.getpid()}-{threading.get_ident()}-{self._flushes}"
                self._barriers[token] = None
            marker = self.index.data_dir / token
            try:
                marker.write_bytes(b"")
                with self._cv:
                    while self._barriers[token] is None and self._mode == "events":
                        if self._stopping:
                            return self._seq
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise TimeoutError("file events did not arrive in time")
                        self._cv.wait(left)
                    seen = self._barriers[token]
                    if seen is not None:
                        return seen
            finally:
                with self._cv:
                    self._barriers.pop(token, None)
                marker.unlink(missing_ok=True)
        # polling: rescan now
        with self._cv:
            self._scan_requested += 1
            wanted = self._scan_requested
            self._cv.notify_all()
            while self._scan_done < wanted and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the rescan did not finish in time")
                self._cv.wait(left)
            return self._seq

    def _barrier_seen(self, token: str) -> None:
        with self._cv:
            if token in self._barriers and self._barriers[token] is None:
                self._barriers[token] = self._seq
                self._cv.notify_all()

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
                    self._apply(arg, seq)
                elif kind == "scan":
                    self._scan(arg)
                else:
                    self._backfill_step()
            except _Cancelled:
                return
            except Exception as e:  # noqa: BLE001 - the watcher never stops on an error
                self._say_error("internal error", e)

    def _next_job(self):
        """Block until there is something to do; batches first, then rescans, then vectors."""
        with self._cv:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                waits = []
                if (self._pending or self._full) and now >= self._retry_at:
                    due = min(self._last_at + self.debounce, self._first_at + MAX_LATENCY_S)
                    if self._urgent or now >= due:
                        paths = (
                            None
                            if self._full or len(self._pending) > STORM_PATHS
                            else set(self._pending)
                        )
                        self._pending.clear()
                        self._full = False
                        self._urgent = False
                        return ("batch", paths, self._seq)
                    waits.append(due - now)
                elif self._pending or self._full:
                    waits.append(self._retry_at - now)
                if self._mode == "polling":
                    if self._scan_requested > self._scan_done or now >= self._next_scan:
                        return ("scan", self._scan_requested, self._seq)
                    waits.append(self._next_scan - now)
                if (
                    self.backfill
                    and self._pending_vectors > 0
                    and not (self._pending or self._full)
                    and now >= self._backfill_after
                ):
                    return ("backfill", None, self._seq)
                if self.backfill and self._pending_vectors > 0 and now < self._backfill_after:
                    waits.append(self._backfill_after - now)
                self._cv.wait(max(0.005, min(waits)) if waits else None)

    def _progress(self, *args, **kw) -> None:
        if self._cancel:
            raise _Cancelled()

    def _apply(self, paths: set[str] | None, seq: int, reason: str = "") -> None:
        """One batch through ``Index.refresh``: the paths, or the whole tree when ``None``."""
        t0 = time.perf_counter()
        full = paths is None
        try:
            stats = self.index.refresh(
                None if full else [str(self.root / p) for p in sorted(paths)],
                lexical_only=self.backfill,
                progress=self._progress,
            )
        except _Cancelled:
            raise
        except LockHeld as e:
            self._requeue(paths, "another coderag process is writing the index; will retry", e)
            return
        except CoderagError as e:
            if reason == "start":
                raise
            self._requeue(None, "cannot apply changes", e)
            return
        except Exception as e:  # noqa: BLE001 - log it, rescan later, keep watching
            if reason == "start":
                raise
            self._requeue(None, "applying changes failed", e)
            return
        ms = (time.perf_counter() - t0) * 1000
        with self._cv:
            self._applied = max(self._applied, seq)
            self._batches += 1
            self._last_batch_at = _now_iso()
            self._pending_vectors = stats.chunks_pending
            self._retry_wait = RETRY_MIN_S
            self._error_said.clear()
            self.last_stats = stats
            self._cv.notify_all()
        self._report(paths, stats, ms, reason)

    def _requeue(self, paths: set[str] | None, what: str, e: Exception) -> None:
        self._say_error(what, e)
        with self._cv:
            if paths is None:
                self._full = True
            else:
                self._pending |= paths
            now = time.monotonic()
            self._first_at = self._last_at = now
            self._retry_at = now + self._retry_wait
            self._retry_wait = min(RETRY_MAX_S, self._retry_wait * 2)

    def _say_error(self, what: str, e: Exception) -> None:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        key = f"{what}: {msg}"
        if key not in self._error_said:
            self._error_said.add(key)
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

    def _backfill_step(self) -> None:
        """Embed a few chunks still without vectors (only called when no change is pending)."""
        t0 = time.perf_counter()
        try:
            done = self.index.embed_pending(self._step, progress=self._progress)
        except _Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 - LockHeld, a model problem: try again later
            self._say_error("back-filling vectors", e)
            with self._cv:
                self._backfill_after = time.monotonic() + 5.0
            return
        took = time.perf_counter() - t0
        if done:
            # each step costs a fixed overhead plus a cost per chunk; sizing the next step
            # as target / (time per chunk) converges to steps that take the target time
            per_chunk = took / done
            with self._cv:
                idle = time.monotonic() - self._last_at > BACKFILL_IDLE_S
            target = BACKFILL_IDLE_STEP_S if idle else BACKFILL_STEP_S
            self._step = max(1, min(BACKFILL_MAX, int(target / per_chunk)))
        with self._cv:
            self._backfilled += done
            # an estimate (a step may fill several chunks of one text); a step that finds
            # nothing to do sets it to zero
            left = max(1, self._pending_vectors - done) if done else 0
            self._pending_vectors = left
            total = self._backfilled
            if left == 0:
                self._backfilled = 0
        if self.verbose and done:
            self.log(
                f"coderag watch: embedded {done} chunks in the background, {left} to go; "
                f"{took * 1000:.0f} ms"
            )
        elif left == 0 and total:
            self.log(f"coderag watch: vectors complete ({total} chunks embedded in the background)")

    # ------------------------------------------------------------------ polling mode
    def _scan(self, requested: int) -> None:
        """Polling mode: walk the tree, queue what differs from the last walk."""
        from .files import walk

        t0 = time.monotonic()
        entries, _ = walk(self.root, self.index.config)
        now = {e.path: (e.size, e.mtime_ns) for e in entries}
        before = self._snapshot
        self._snapshot = now
        changed = [p for p, v in now.items() if before.get(p) != v]
        changed += [p for p in before if p not in now]
        first = not self._snapshot_taken
        self._snapshot_taken = True
        took = time.monotonic() - t0
        if first:
            if self._reconcile_after_snapshot:
                self._enqueue_full()
        else:
            for rel in changed:
                self._on_path(rel)
        with self._cv:
            if changed and not first:
                self._urgent = True
            self._scan_done = max(self._scan_done, requested)
            self._next_scan = time.monotonic() + max(POLL_MIN_S, 10 * took)
            self._cv.notify_all()

    def _check_coverage(self) -> None:
        """Linux: is every folder of the tree really watched? watchdog skips folders it cannot
        watch (the inotify watch limit) without a word, so compare the inodes of our folders
        with the inodes this process watches, as listed in /proc/self/fdinfo."""
        if self._mode != "events" or not os.path.isdir("/proc/self/fdinfo"):
            return
        missing: set[int] = set()
        for attempt in range(3):
            if self._stopping:
                return
            watched = _watched_inodes()
            if watched is None:
                return
            missing = _folder_inodes(self.root) - watched
            if not missing:
                return
            time.sleep(0.5 * (attempt + 1))  # a folder created just now is watched a moment later
        self._to_polling(
            f"{len(missing)} folder(s) cannot be watched (inotify watch limit reached; "
            "raise fs.inotify.max_user_watches)"
        )

    def _overflowed(self) -> None:
        """The kernel dropped events: reconcile now; fall back to polling if it keeps happening."""
        now = time.monotonic()
        self._overflows = [t for t in self._overflows if now - t < OVERFLOW_WINDOW_S] + [now]
        if len(self._overflows) > OVERFLOW_LIMIT:
            self._to_polling("file events keep overflowing the kernel's queue")
        else:
            self._enqueue_full()


class _Handler:
    """What the watchdog observer calls (duck-typed: watchdog only needs ``dispatch``)."""

    def __init__(self, watcher: Watcher):
        self.watcher = watcher

    def dispatch(self, event) -> None:
        try:
            self.watcher._on_event(event)
        except Exception as e:  # noqa: BLE001 - never kill the observer thread
            self.watcher._say_error("handling a file event", e)


class _OverflowFilter(logging.Filter):
    """watchdog reports an inotify queue overflow only as a log record; turn the one about
    our tree into a reconcile (and keep it out of the user's terminal)."""

    LOGGERS = ("watchdog.observers.inotify", "watchdog.observers.inotify_c")

    def __init__(self, watcher: Watcher):
        super().__init__()
        self.watcher = watcher
        self.root = os.fsencode(str(watcher.root))

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if "called when the thread is inactive" in msg:
            return False  # a harmless race in watchdog while we stop it
        if "overflow" not in msg.lower():
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if args and args[0] in (self.root, str(self.watcher.root)):
            self.watcher._overflowed()  # the per-tree record: ours
            return False
        return bool(args)  # the global "events were lost" record: the per-tree one follows


# ---------------------------------------------------------------------- helpers
def _quietly_stop(observer) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(5.0)
    except Exception:  # noqa: BLE001, S110 - shutting down regardless
        pass


def _watch_failure(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "cannot watch the tree: the inotify watch limit is reached (raise fs.inotify.max_user_watches)"
    if e.errno == errno.EMFILE:
        return "cannot watch the tree: too many inotify instances (raise fs.inotify.max_user_instances)"
    return f"cannot watch the tree ({e.strerror or e})"


def _utf8(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _in_virtualenv(root: Path, parts: list[str]) -> bool:
    """Is the file inside a virtualenv (a folder with ``pyvenv.cfg``), as the walk skips them?"""
    for depth in range(1, len(parts)):
        if (root.joinpath(*parts[:depth]) / "pyvenv.cfg").exists():
            return True
    return False


def _files_below(root: Path, rel_dir: str) -> list[str]:
    """Repo-relative paths of the regular files under a folder (no symlinks followed, the
    folder's own path included)."""
    from .files import is_real_dir

    out: list[str] = []
    if not is_real_dir(root, rel_dir):
        return out
    stack = [rel_dir]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(root / d) as it:
                for entry in it:
                    rel = f"{d}/{entry.name}"
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(rel)
                    elif entry.is_file(follow_symlinks=False):
                        out.append(rel)
        except OSError:
            continue
    return out


def _folder_inodes(root: Path) -> set[int]:
    """Inodes of every folder of the tree (what a recursive watch covers), minus .coderag/."""
    from .config import DATA_DIR

    out: set[int] = set()
    stack = [str(root)]
    first = True
    while stack:
        d = stack.pop()
        try:
            ino = os.lstat(d).st_ino
            with os.scandir(d) as it:  # an unreadable folder cannot be watched either
                out.add(ino)
                for entry in it:
                    if first and entry.name == DATA_DIR:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            pass
        first = False
    return out


def _watched_inodes() -> set[int] | None:
    """Inodes watched by this process's inotify descriptors (None if it cannot tell)."""
    out: set[int] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("inotify wd:"):
                        for field in line.split():
                            if field.startswith("ino:"):
                                out.add(int(field[4:], 16))
        except (OSError, ValueError):
            continue
    return out


# ---------------------------------------------------------------------- CLI face
def add_arguments(parser) -> None:
    parser.description = (
        "Keep the index equal to the working tree: reconcile what changed while nobody "
        "watched, then apply file changes in debounced batches (full text at once, vectors "
        "in the background). One watcher per repository; Ctrl-C or SIGTERM stops it cleanly."
    )
    parser.epilog = EPILOG
    parser.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="the repository to watch (default: the git root around the current folder)",
    )
    parser.add_argument(
        "--debounce-ms",
        type=int,
        metavar="MS",
        help="quiet period before a batch of changes is applied (default 200, or "
        "debounce_ms in .coderag.toml)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="name every file as it is applied"
    )
    parser.add_argument(
        "--no-backfill",
        action="store_true",
        help="embed each batch before applying the next instead of storing it lexically "
        "first and filling in vectors in the background",
    )
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        help="embedding model: 'auto' (default), a local folder or a Hugging Face id "
        "in sentence-transformers format (env CODERAG_MODEL)",
    )
    g.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    g.add_argument("--dtype", help="float32, bfloat16, float16 (default: by device)")
    g.add_argument("--dim", type=int, help="Matryoshka dimension to truncate vectors to")


def run(args) -> int:
    from .index import Index

    overrides = {
        k: getattr(args, k, None)
        for k in ("model", "device", "dtype", "dim")
        if getattr(args, k, None) is not None
    }
    index = Index(getattr(args, "path", None), **overrides)
    watcher = Watcher(
        index,
        debounce_ms=getattr(args, "debounce_ms", None),
        verbose=getattr(args, "verbose", False),
        backfill=not getattr(args, "no_backfill", False),
    )
    watcher.run_forever()
    return 0
