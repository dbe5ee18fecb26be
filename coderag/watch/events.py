"""File events: a watchdog observer on the tree, its events turned into repo-relative paths
for the watcher, and the ways it fails (no watchdog, the inotify watch limit, folders left
unwatched, kernel queue overflows), each reported so the watcher can fall back to polling.

The only module that imports watchdog, and only inside functions.
"""

from __future__ import annotations

import errno
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Protocol

from ..config import DATA_DIR
from .queue import FLUSH_PREFIX

#: overflows of the kernel's event queue tolerated (each answered by a full reconcile)
#: within OVERFLOW_WINDOW_S before the watcher falls back to polling
OVERFLOW_LIMIT = 2
OVERFLOW_WINDOW_S = 60.0


class Sink(Protocol):
    """What the events are handed to (the watcher)."""

    def changed(self, rel: str) -> None: ...  # a file (or what is left of one) changed
    def changed_all(self) -> None: ...  # anything may have changed: reconcile the tree
    def wants_folder(self, rel: str) -> bool: ...  # would a walk enter this folder?
    def marker_seen(self, token: str) -> None: ...  # a flush marker's event arrived
    def events_failed(self, why: str) -> None: ...  # give up on events: poll instead
    def warn(self, what: str, e: Exception) -> None: ...


class Events:
    """A recursive watch of ``root`` whose events go to ``sink``. ``start()`` says why it
    cannot watch (None when it does); ``stop()`` is idempotent."""

    def __init__(self, root: Path, data_name: str, sink: Sink):
        self.root = root
        self.sink = sink
        self._prefix = str(root) + os.sep
        self._data_name = data_name
        self._flush_prefix = f"{data_name}/{FLUSH_PREFIX}"
        self._observer = None
        self._log_filter: _OverflowFilter | None = None
        self._overflows: list[float] = []

    @property
    def watching(self) -> bool:
        return self._observer is not None

    def start(self) -> str | None:
        """Watch the tree recursively; on failure (the watch limit) say why."""
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
            return f"watchdog is not available ({e})"
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
            observer.schedule(self, str(self.root), recursive=True, event_filter=kinds)
            observer.start()
        except OSError as e:
            if observer is not None:
                _quietly_stop(observer)
            return watch_failure(e)
        self._observer = observer
        self._log_filter = _OverflowFilter(self)
        for name in _OverflowFilter.LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        return None

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            _quietly_stop(observer)
        flt, self._log_filter = self._log_filter, None
        if flt is not None:
            for name in _OverflowFilter.LOGGERS:
                logging.getLogger(name).removeFilter(flt)

    def relative(self, abspath: str) -> str | None:
        """``abspath`` relative to the root (POSIX), or None when it is outside."""
        if not abspath.startswith(self._prefix):
            return None
        rel = abspath[len(self._prefix) :]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel

    # ------------------------------------------------------------------ from the observer
    def dispatch(self, event) -> None:
        """What the watchdog observer calls (duck-typed: watchdog only needs ``dispatch``)."""
        try:
            self._route(event)
        except Exception as e:  # noqa: BLE001 - never kill the observer thread
            self.sink.warn("handling a file event", e)

    def _route(self, event) -> None:
        """Turn one watchdog event into changed paths for the sink."""
        src = self.relative(os.fsdecode(event.src_path))
        dest = getattr(event, "dest_path", "")
        dest = self.relative(os.fsdecode(dest)) if dest else None
        if src and src.startswith(self._flush_prefix):
            self.sink.marker_seen(src.rsplit("/", 1)[1])
            return
        kind = event.event_type
        if event.is_directory:
            self._folder_event(kind, src, dest)
            return
        for rel in (src, dest):
            if rel:
                self.sink.changed(rel)

    def _folder_event(self, kind: str, src: str | None, dest: str | None) -> None:
        if src == self._data_name and kind in ("deleted", "moved"):
            self.sink.changed_all()  # the index itself went away: rebuild it from the tree
        elif kind == "deleted":
            if src and self.sink.wants_folder(src):
                # what was below it is only known to the index: rescan the tree
                self.sink.changed_all()
        elif kind in ("created", "moved"):
            target = dest if kind == "moved" else src
            if target and self.sink.wants_folder(target):
                # watchdog reports the contents too; a walk is cheap insurance
                for rel in files_below(self.root, target):
                    self.sink.changed(rel)

    def overflowed(self) -> None:
        """The kernel dropped events: reconcile now; give up on events if it keeps happening."""
        now = time.monotonic()
        self._overflows = [t for t in self._overflows if now - t < OVERFLOW_WINDOW_S] + [now]
        if len(self._overflows) > OVERFLOW_LIMIT:
            self.sink.events_failed("file events keep overflowing the kernel's queue")
        else:
            self.sink.changed_all()

    # ------------------------------------------------------------------ coverage
    def unwatched_folders(self, stopping) -> int:
        """Linux: how many folders of the tree are not really watched? watchdog skips folders
        it cannot watch (the inotify watch limit) without a word, so compare the inodes of
        our folders with the inodes this process watches, as listed in /proc/self/fdinfo.
        0 when all are, or when it cannot tell; ``stopping()`` cuts the check short."""
        if not self.watching or not os.path.isdir("/proc/self/fdinfo"):
            return 0
        missing: set[int] = set()
        for attempt in range(3):
            if stopping():
                return 0
            watched = _watched_inodes()
            if watched is None:
                return 0
            missing = _folder_inodes(self.root) - watched
            if not missing:
                return 0
            time.sleep(0.5 * (attempt + 1))  # a folder created just now is watched a moment later
        return len(missing)


class _OverflowFilter(logging.Filter):
    """watchdog reports an inotify queue overflow only as a log record; turn the one about
    our tree into a reconcile (and keep it out of the user's terminal)."""

    LOGGERS = ("watchdog.observers.inotify", "watchdog.observers.inotify_c")

    def __init__(self, events: Events):
        super().__init__()
        self.events = events
        self.root = os.fsencode(str(events.root))

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if "called when the thread is inactive" in msg:
            return False  # a harmless race in watchdog while we stop it
        if "overflow" not in msg.lower():
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if args and args[0] in (self.root, str(self.events.root)):
            self.events.overflowed()  # the per-tree record: ours
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


def watch_failure(e: OSError) -> str:
    """Why the tree cannot be watched, with the setting to raise."""
    if e.errno == errno.ENOSPC:
        return "cannot watch the tree: the inotify watch limit is reached (raise fs.inotify.max_user_watches)"
    if e.errno == errno.EMFILE:
        return "cannot watch the tree: too many inotify instances (raise fs.inotify.max_user_instances)"
    return f"cannot watch the tree ({e.strerror or e})"


def files_below(root: Path, rel_dir: str) -> list[str]:
    """Repo-relative paths of the regular files under a folder (no symlinks followed, the
    folder's own path included)."""
    from ..files import is_real_dir

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
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    out: set[int] = set()
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                out |= _inotify_inodes(fd)
        except (OSError, ValueError):
            continue
    return out


def _inotify_inodes(fd: str) -> set[int]:
    out: set[int] = set()
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("inotify wd:"):
                out |= {int(f[4:], 16) for f in line.split() if f.startswith("ino:")}
    return out
