"""What ``coderag serve`` serves: the repositories, their shared model, the bounded pool.

One process serves one or more repositories. The embedding model is loaded once and shared by
every served :class:`~coderag.index.Index`; a watcher per repository
(:class:`~coderag.server.background.BackgroundWatcher`) keeps its index equal to the working
tree (it is the one writer of that index, taking the same ``.coderag/lock`` as ``coderag
index``). Searches run in a bounded thread pool so the event loop never does CPU work; when
the pool and its queue are full the answer is 503.

Standard library only at module level; the index and anyio are imported when used.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path

from ..errors import CoderagError
from .background import BackgroundWatcher, read_fresh, stderr_logger
from .runtime import pid_alive, publish, read_runtime_info, runtime_file, unpublish

log = logging.getLogger("coderag.server")

MAX_PATHS = 10_000  # paths per refresh
MAX_WAIT = 600.0  # seconds a refresh request may wait for the index to catch up
REFRESH_TIMEOUT = 120  # seconds a refresh request waits when it does not say


class HTTPError(Exception):
    """A request the server refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# ------------------------------------------------------------------------- served repos
class Served:
    """One served repository: its index, its watcher, and what the server did with it."""

    def __init__(self, index):
        self.index = index
        self.root: Path = index.root
        self.background: BackgroundWatcher | None = None  # None: serving without a watcher
        self.refresh_lock = threading.Lock()  # refreshes without a watcher, one at a time
        self.refreshing = 0
        self.last_refresh: dict | None = None
        self.last_error: str | None = None

    @property
    def watcher(self):
        """The running watcher, None without one (not asked for, failed, or stopped): then
        searches read what other processes commit."""
        return self.background.watcher if self.background is not None else None

    def start_watcher(self, log_line, verbose: bool = False) -> None:
        """Start a watcher in a thread of its own (see :class:`BackgroundWatcher`)."""
        self.background = BackgroundWatcher(
            self.index, log=log_line, verbose=verbose, on_failure=self._watcher_failed
        )
        self.background.start()

    def _watcher_failed(self, error: str) -> None:
        self.last_error = f"not watching: {error}"
        stderr_logger("coderag serve: ")(f"{self.root}: {self.last_error}")

    def is_starting(self) -> bool:
        """Is the watcher still in its start-up reconcile (building a new index, maybe)?"""
        return self.background is not None and self.background.is_starting()

    def stop_watcher(self) -> None:
        if self.background is not None:
            self.background.stop()

    def resolve_paths(self, paths) -> list[str]:
        """Absolute paths inside this repository; anything else is refused (400)."""
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise HTTPError(400, "'paths' must be a list of non-empty strings, or null for all")
        if len(paths) > MAX_PATHS:
            raise HTTPError(400, f"at most {MAX_PATHS} paths per refresh")
        out = []
        for p in paths:
            if "\x00" in p:
                raise HTTPError(400, "paths may not contain NUL characters")
            candidate = Path(p) if os.path.isabs(p) else self.root / p
            resolved = candidate.resolve()
            if resolved != self.root and self.root not in resolved.parents:
                raise HTTPError(400, f"path {p!r} is outside the repository {self.root}")
            out.append(str(resolved))
        return out

    def refresh(self, paths: list[str] | None) -> dict:
        """Refresh without a watcher (in a worker thread); serialised per repository."""
        self.refreshing += 1
        try:
            with self.refresh_lock:
                stats = self.index.refresh(paths)
                read_fresh(self.index)
            summary = stats.summary()
            self.last_refresh = {"at": _now_iso(), "paths": count_paths(paths), **summary}
            self.last_error = None
            return summary
        except CoderagError as e:
            self.last_error = str(e)
            raise
        finally:
            self.refreshing -= 1

    def refresh_in_background(self, paths: list[str] | None) -> None:
        def work():
            try:
                self.refresh(paths)
            except Exception as e:  # noqa: BLE001 - reported through /status
                log.warning("refresh of %s failed: %s", self.root, e)
                self.last_error = str(e)

        threading.Thread(target=work, name=f"refresh {self.root.name}", daemon=True).start()

    def status(self) -> dict:
        out: dict = {"root": str(self.root), "name": self.root.name}
        try:
            out.update(self.index.status())
            out["indexed"] = True
        except CoderagError as e:
            out.update(indexed=False, error=str(e))
        state = self.background.state() if self.background is not None else None
        if state is not None:
            state["starting"] = self.is_starting()
            out["watcher"] = state
            out["queue"] = int(state.get("queue") or 0)
        else:
            out["watcher"] = None
            out["queue"] = self.refreshing
        out["last_refresh"] = self.last_refresh
        out["last_error"] = self.last_error
        return out


def count_paths(paths) -> int | str:
    """How many paths a refresh names: a number, or "all"."""
    return "all" if paths is None else len(paths)


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ service
class Service:
    """Everything the HTTP app needs: the served repositories, the pool, the token."""

    def __init__(self, served: list[Served], *, token=None, workers=4, queue=64, embedder=None):
        self.served = served
        self.by_root = {str(s.root): s for s in served}
        self.token = token
        self.workers = workers
        self.queue = queue
        self.embedder = embedder
        self.in_flight = 0  # requests in the pool or waiting for it (event loop thread only)
        self.limiter = None  # anyio.CapacityLimiter, made inside the event loop
        self.started_at = time.time()
        self.last_request = time.monotonic()  # for --idle-timeout
        self.requests = 0
        self.stop_reason: str | None = None
        self.url: str | None = None
        self.secret = secrets.token_urlsafe(32)  # new at every start; published privately
        self.server_files: list[Path] = []

    # ---------------------------------------------------------------- building
    @classmethod
    def open(
        cls,
        paths,
        *,
        overrides=None,
        token=None,
        workers=4,
        queue=64,
        watch=True,
        verbose=False,
        embedder=None,
    ) -> Service:
        """Open every repository with one shared embedder, and start their watchers."""
        roots = _roots(paths)
        for r in roots:
            _check_not_served(r)
        indexes, embedder = _open_indexes(roots, overrides or {}, embedder)
        served = [Served(idx) for idx in indexes]
        service = cls(served, token=token, workers=workers, queue=queue, embedder=embedder)
        if watch:
            service.start_watchers(verbose=verbose)
        else:
            for s in served:
                read_fresh(s.index)
        return service

    def start_watchers(self, verbose=False) -> None:
        """One watcher per repository, started in the background: its start-up reconcile
        (a full walk, a first index for a new repository) must not delay serving."""
        for s in self.served:
            prefix = f"[{s.root.name}] " if len(self.served) > 1 else ""
            s.start_watcher(stderr_logger(prefix), verbose=verbose)

    def stop_watchers(self) -> None:
        for s in self.served:
            s.stop_watcher()

    # ------------------------------------------------------------------ requests
    def repo_for(self, value) -> Served:
        """The served repository a request names (``repo``: its root, a path inside it, or
        its folder name); with one repository served it may be left out."""
        if value is None or value == "":
            if len(self.served) == 1:
                return self.served[0]
            names = ", ".join(str(s.root) for s in self.served)
            raise HTTPError(400, f"several repositories are served; name one in 'repo' ({names})")
        if not isinstance(value, str):
            raise HTTPError(400, "'repo' must be a string")
        if "\x00" in value:
            raise HTTPError(400, "'repo' may not contain NUL characters")
        hit = self.by_root.get(value)
        if hit is not None:
            return hit
        if os.path.isabs(value) or value.startswith("~"):
            p = Path(value).expanduser().resolve()
            inside = [s for s in self.served if p == s.root or s.root in p.parents]
            if inside:
                return max(inside, key=lambda s: len(s.root.parts))  # the innermost
        else:
            named = [s for s in self.served if s.root.name == value]
            if len(named) == 1:
                return named[0]
        raise HTTPError(404, f"repository {value!r} is not served here")

    async def in_pool(self, fn, *args):
        """Run blocking work in the bounded pool; 503 when the pool and its queue are full."""
        import anyio.to_thread

        if self.in_flight >= self.workers + self.queue:
            raise HTTPError(503, "the server is busy; retry shortly", headers={"Retry-After": "1"})
        self.in_flight += 1
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=self.limiter)
        finally:
            self.in_flight -= 1

    def status(self) -> dict:
        emb = self.embedder
        return {
            "version": package_version(),
            "pid": os.getpid(),
            "url": self.url,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
            "uptime_s": round(time.time() - self.started_at, 1),
            "model": {
                "id": getattr(emb, "model_id", None),
                "device": getattr(emb, "device", None),
                "dtype": getattr(emb, "dtype", None),
                "dim": getattr(emb, "dim", None),
            },
            "workers": self.workers,
            "queue_limit": self.queue,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "rss_mb": round(rss_mb(), 1),
            "token_required": bool(self.token),
            "repos": [s.status() for s in self.served],
        }

    def should_stop(self, idle_timeout: float = 0, max_memory_mb: int = 0) -> str | None:
        """Why the server should stop now (gracefully), or None: idle for ``idle_timeout``
        seconds, or over ``max_memory_mb`` of resident memory; never while work is in flight.
        0 turns a bound off."""
        if self.in_flight or any(s.refreshing for s in self.served):
            return None
        idle = time.monotonic() - self.last_request
        if idle_timeout and idle >= idle_timeout:
            return f"idle for {idle:.0f}s"
        if max_memory_mb and rss_mb() > max_memory_mb:
            return f"over {max_memory_mb} MB of memory ({rss_mb():.0f} MB)"
        return None

    # ------------------------------------------------------------ start and stop
    def startup(self) -> None:
        """Called once the app runs: publish the URL and the secret for clients and hooks, in
        the user's private runtime folder (one 0600 file per served repository)."""
        import anyio

        self.limiter = anyio.CapacityLimiter(self.workers)
        info = {
            "url": self.url,
            "pid": os.getpid(),
            "repos": [str(x.root) for x in self.served],
            "secret": self.secret,
            "token_required": bool(self.token),
        }
        for s in self.served:
            self.server_files.append(publish(s.root, {**info, "repo": str(s.root)}))
        roots = ", ".join(str(s.root) for s in self.served)
        watching = "watching" if any(s.watcher for s in self.served) else "not watching"
        where = self.server_files[0].parent if self.server_files else "-"
        print(
            f"coderag serve: {self.url} serves {roots} ({watching}; "
            f"model {getattr(self.embedder, 'model_id', '?')}; address and secret for "
            f"clients in {where})",
            file=sys.stderr,
            flush=True,
        )

    def shutdown(self) -> None:
        """Stop the watchers (their locks go with them) and remove the runtime files that
        are still ours; idempotent."""
        self.stop_watchers()
        for path in self.server_files:
            unpublish(path, self.secret)
        self.server_files = []


# ------------------------------------------------------------------- opening, helpers
def _roots(paths) -> list[Path]:
    """The repository roots around ``paths`` (None: the cwd), each once, in order."""
    from ..files import find_root

    roots: list[Path] = []
    for p in paths:
        r = find_root(p)
        if r not in roots:
            roots.append(r)
    return roots


def _check_not_served(root: Path) -> None:
    """Refuse a repository another live server publishes; check the runtime folder is usable
    before the model loads."""
    runtime_file(root)
    other = read_runtime_info(root)
    if other and pid_alive(other["pid"]) and other["pid"] != os.getpid():
        raise CoderagError(
            f"a coderag server (pid {other['pid']}) already serves {root} at {other['url']}"
        )


def _open_indexes(roots: list[Path], overrides: dict, embedder=None):
    """An Index per root, sharing one embedder (loaded here, once) unless an index was built
    with another model; returns the indexes and the shared embedder."""
    from ..index import Index

    indexes = []
    for r in roots:
        if embedder is None:
            idx = Index(r, **overrides)
            print(f"coderag serve: loading the model for {r} ...", file=sys.stderr, flush=True)
            embedder = idx.embedder  # loaded once, here
        else:
            idx = Index(r, embedder=embedder, **overrides)
            built_with = _index_model(idx)
            if built_with and built_with != embedder.model_id:
                idx = Index(r, **overrides)  # another model: its own (cached per model id)
                _ = idx.embedder
        indexes.append(idx)
    return indexes, embedder


def _index_model(idx) -> str | None:
    try:
        return idx.status().get("model")
    except CoderagError:
        return None


def rss_mb() -> float:
    """This process's resident memory in MB (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def package_version() -> str:
    """The installed coderag's version."""
    try:
        from importlib.metadata import version

        return version("coderag")
    except Exception:  # noqa: BLE001
        return "0+unknown"
