"""A file watcher run in a thread of its own, for the long-lived faces (``coderag serve``, one
per served repository, and ``coderag mcp``).

:class:`BackgroundWatcher` starts a :class:`~coderag.watch.Watcher` without holding up the
face: its start-up reconcile (a full walk, the first index of a new repository) runs in a
thread while requests are already answered. When it cannot run (another ``coderag watch``
has the repository, above all), ``watcher`` becomes None, the face is told why, and searches
read what the other process commits (:func:`read_fresh`).

Standard library only at module level.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from ..display import escape

log = logging.getLogger("coderag.server")


def stderr_logger(prefix: str = "") -> Callable[[str], None]:
    """A log function: each line to stderr after ``prefix``, escaped (lines name repository
    files, whose names may carry terminal controls)."""

    def say(line: str) -> None:
        print(f"{prefix}{escape(line)}", file=sys.stderr, flush=True)

    return say


def one_line(e: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__


def read_fresh(index) -> None:
    """Let searches of ``index`` see commits of other processes (no writer of ours opens the
    store anew after each batch)."""
    index.read_fresh()


def wait_until_applied(watcher, timeout: float) -> bool:
    """Wait until ``watcher`` has applied every change queued so far; False on a timeout."""
    try:
        result = watcher.flush(timeout=timeout)
    except TimeoutError:
        return False
    return result is not False


class BackgroundWatcher:
    """Keeps one index equal to the working tree from a thread of its own.

    ``watcher`` is the running :class:`~coderag.watch.Watcher`, or None: not started, stopped,
    or failed to start (``error`` says why, and ``on_failure`` was called with it)."""

    def __init__(
        self,
        index,
        *,
        log: Callable[[str], None],
        verbose: bool = False,
        on_failure: Callable[[str], None] | None = None,
    ):
        self.index = index
        self.watcher = None
        self.error: str | None = None
        self._log = log
        self._verbose = verbose
        self._on_failure = on_failure
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create the watcher and start it in the background."""
        from ..watch import Watcher

        self.watcher = Watcher(self.index, verbose=self._verbose, log=self._log)
        name = f"watch {self.index.root.name}"
        self._thread = threading.Thread(target=self._run_start, name=name, daemon=True)
        self._thread.start()

    def _run_start(self) -> None:
        try:
            self.watcher.start()
        except Exception as e:  # noqa: BLE001 - LockHeld above all: carry on without it
            self.watcher = None
            self.error = one_line(e)
            if self._on_failure is not None:
                self._on_failure(self.error)
            try:
                read_fresh(self.index)  # see the other watcher's commits
            except Exception:  # noqa: BLE001, S110 - best effort: opened on first use
                pass

    def is_starting(self) -> bool:
        """Is the watcher still in its start-up reconcile (building a new index, maybe)?"""
        return bool(self._thread and self._thread.is_alive())

    def state(self) -> dict | None:
        """The watcher's state (a copy), None when it does not run."""
        w = self.watcher
        return None if w is None else dict(w.state)

    def stop(self) -> None:
        """Stop the watcher (its lock goes with it), rolling back a start-up reconcile still
        in progress as ``coderag watch`` does on Ctrl-C. Idempotent."""
        w, self.watcher = self.watcher, None
        if w is None:
            return
        if self.is_starting():
            w.cancel()  # roll back the start-up reconcile
            self._thread.join(10)
        try:
            w.stop()
        except Exception as e:  # noqa: BLE001 - shutting down regardless
            log.warning("stopping the watcher of %s: %s", self.index.root, e)
