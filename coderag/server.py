"""``coderag serve``: a local HTTP JSON API for editors, with the model kept warm.

One process serves one or more repositories. The embedding model is loaded once and shared by
every served :class:`~coderag.index.Index`; a :class:`~coderag.watch.Watcher` per repository
keeps its index equal to the working tree (it is the one writer of that index, taking the
same ``.coderag/lock`` as ``coderag index``). Searches run in a bounded thread pool so the
event loop never does CPU work; when the pool and its queue are full the answer is 503.

Endpoints (JSON): ``POST /search``, ``POST /refresh``, ``GET /status``, ``GET /health``,
``GET /identity``, ``GET /openapi.json``. POST bodies must be sent as
``Content-Type: application/json``. Binding anything but a loopback address needs a token
(``--token-file PATH`` or ``CODERAG_TOKEN``; never on the command line, where ``ps`` shows it).

Security. A cloned repository (every file in it, ``.coderag/`` included) and any web page the
user's browser opens are untrusted:

* **Discovery.** While it runs, the server publishes ``{url, pid, repo, repos, secret,
  token_required}`` for each served repository in a 0600 file in the user's private runtime
  folder (:func:`runtime_file`: ``$XDG_RUNTIME_DIR/coderag/server-<hash of the repo
  root>.json``, else ``/tmp/coderag-<uid>/``), removed at exit if still ours. ``secret`` is
  new at every start. Nothing in the repository says where a server is. **Editors** find the
  URL and the secret in that file and send ``Authorization: Bearer <secret>``.
* **Identity.** ``GET /identity?nonce=N`` answers ``{"proof": hex HMAC-SHA256(secret, N)}``.
  :func:`find_server` only returns loopback servers found that way, and the client
  (:func:`remote_search`, :func:`remote_refresh`) checks the proof on the connection it then
  sends the request and the secret over; a server that cannot prove it gets nothing.
* **Every request** (:class:`RequestGuard`, :class:`JsonOnly`, :class:`BearerAuth`): ``Host``
  must be ``localhost``, a 127.0.0.0/8 literal or ``[::1]`` (any port), a name given with
  ``--allow-host``, or the bound address when binding a non-loopback one, else 403 (DNS
  rebinding); an ``Origin`` header must be one given with ``--cors-origin`` (``null``
  never), else 403; a POST body must be ``application/json``, else 415. Accepted bearer
  credentials are the per-start secret and the user's token: ``POST /refresh`` always needs
  one; with a user token every route does (but ``/identity``), else 401.
* **Slow clients** (:func:`guarded_protocol`, :class:`ReadDeadline`): a request's headers
  must arrive within ``HEAD_TIMEOUT`` seconds (from the connection's start or the request's
  first byte) and its body within ``BODY_TIMEOUT``: else 408, or the connection is closed.

:func:`remote_search` and :func:`remote_refresh` are the client side (standard library only,
so ``coderag search`` starts fast).

Only the standard library is imported at module level; starlette, uvicorn and the index are
imported when the server starts.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import stat
import string
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .display import escape
from .errors import CoderagError, IndexMissing, LockHeld, UsageError
from .vocabulary import SearchRequest, hit_schema, request_schema, validate

log = logging.getLogger("coderag.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7878
MAX_BODY = 1_000_000  # bytes of a request body
DRAIN_MAX = 16_000_000  # bytes of a refused body read and dropped before answering
MAX_PATHS = 10_000  # paths per refresh
MAX_WAIT = 600.0  # seconds a refresh request may wait for the index to catch up
HEAD_TIMEOUT = 5.0  # seconds for a request's headers (from connection start or first byte)
BODY_TIMEOUT = 10.0  # seconds for a request's body, from the end of its headers
RUNTIME_PREFIX = "server-"  # <runtime dir>/server-<hash of the repo root>.json
TOKEN_ENV = "CODERAG_TOKEN"
PROTECTED = frozenset({"/refresh"})  # routes that change state: a credential is always needed
OPEN = frozenset({"/identity"})  # answered without a credential, even with a user token
NONCE_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
REFRESH_FIELDS = {"repo", "paths", "wait", "timeout"}

EPILOG = """examples:
  coderag serve                                  serve the repository around the current folder
  coderag serve ~/src/app ~/src/lib --port 7878  several repositories, one model
  (umask 077; openssl rand -hex 16 > ~/.coderag-token)
  coderag serve --host 0.0.0.0 --token-file ~/.coderag-token --allow-host myhost.lan
  curl -s localhost:7878/search -H 'Content-Type: application/json' \\
       -d '{"query": "retry failed uploads", "k": 5}'

While it runs, its URL and a per-start secret are in a private file in the user's runtime
folder ($XDG_RUNTIME_DIR/coderag/server-*.json, printed at start); `coderag search` and the
git hooks find it there (never in the repository) and ask the server instead of loading the
model. POST /refresh needs `-H "Authorization: Bearer <secret or token>"`.
"""


class ServerUnavailable(CoderagError):
    """No coderag server answers at the given URL."""


class HTTPError(Exception):
    """A request the server refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# ------------------------------------------------------------------------------------ CLI
def add_arguments(p) -> None:
    p.description = (
        "Serve one or more repositories over a local HTTP JSON API: the model is loaded once "
        "and kept warm, and a watcher per repository keeps each index fresh."
    )
    p.epilog = EPILOG
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="repositories to serve (default: the git root around the current folder)",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"require the bearer token in this file (yours, not readable by others) on every "
        f"request (or env {TOKEN_ENV}); mandatory when binding a non-loopback address",
    )
    # not an option any more (ps shows it to every user); kept so that argparse does not read
    # `--token X` as an abbreviation of --token-file, and so that it gets a clear error
    p.add_argument("--token", nargs="?", const="", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; CORS is off by default; "
        "any other Origin is refused)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept requests whose Host header names NAME (repeatable; default: "
        "localhost, 127.0.0.0/8 and [::1] only, against DNS rebinding)",
    )
    p.add_argument("--no-watch", action="store_true", help="do not watch the files for changes")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=0,
        metavar="SECONDS",
        help="stop after this long without a request (default 0: never); the background "
        "server `coderag search` starts uses 900",
    )
    p.add_argument(
        "--max-memory",
        type=int,
        default=0,
        metavar="MB",
        help="stop (after the requests in flight) once the process uses more than this much "
        "memory (resident; default 0: no bound)",
    )
    p.add_argument(
        "--workers", type=int, default=4, help="threads that run searches and refreshes (default 4)"
    )
    p.add_argument(
        "--queue",
        type=int,
        default=64,
        help="requests that may wait for a worker before the server answers 503 (default 64)",
    )
    add_threads_argument(p)
    p.add_argument("--model", help="embedding model (default: the one each index was built with)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--dtype", help="float32, bfloat16, float16 (default: by device)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request and batch")


def run(args) -> int:
    if args.token is not None:
        raise UsageError(
            "--token is not accepted (other users see it in `ps`); use --token-file PATH "
            f"(a file only you can read) or set {TOKEN_ENV}"
        )
    token = read_token_file(args.token_file) if args.token_file else None
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(args.host, token)
    hosts, any_ip = host_policy(args.host, args.allow_host, token)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.workers < 1 or args.queue < 0:
        raise UsageError("--workers must be at least 1 and --queue at least 0")
    if args.idle_timeout < 0 or args.max_memory < 0:
        raise UsageError("--idle-timeout and --max-memory must not be negative")
    limit_model_threads(args.threads)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="coderag serve: %(message)s",
        stream=sys.stderr,
    )
    overrides = {k: getattr(args, k, None) for k in ("model", "device", "dtype")}
    sock = bind(args.host, args.port)  # first: a port in use fails before the model loads
    try:
        service = Service.open(
            args.paths or [None],
            overrides={k: v for k, v in overrides.items() if v},
            token=token,
            workers=args.workers,
            queue=args.queue,
            watch=not args.no_watch,
            verbose=args.verbose,
        )
        return service.serve(
            sock,
            args.host,
            cors_origins=args.cors_origin,
            hosts=hosts,
            any_ip=any_ip,
            idle_timeout=args.idle_timeout,
            max_memory_mb=args.max_memory,
        )
    finally:
        sock.close()


def add_threads_argument(p) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for the model (default 1: a one-query forward pass gains little from "
        "more, and on a busy machine extra threads make it many times slower)",
    )


def limit_model_threads(n: int) -> None:
    """Cap the math libraries' thread pools before torch is imported (it reads these once).

    Measured on the 2-core machine under load: a query embedding took 270-1350 ms with two
    OpenMP threads and 30 ms with one. A variable the user set wins."""
    if n < 1:
        raise UsageError("--threads must be at least 1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose the index beyond this machine without a token."""
    if not token and not is_loopback(host):
        raise UsageError(
            f"binding {host} makes the index reachable from other machines; "
            f"pass --token-file PATH (or set {TOKEN_ENV}) to require a bearer token"
        )


def read_token_file(path: str) -> str:
    """The token in ``path``: a regular file of this user that group and others can neither
    read nor write (chmod 600), one line."""
    try:
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise UsageError(f"cannot read --token-file {path} ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"--token-file {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise UsageError(f"--token-file {path} belongs to another user")
        if st.st_mode & 0o077:
            raise UsageError(
                f"--token-file {path} is open to group or others (mode "
                f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
            )
        data = os.read(fd, 4097)
    finally:
        os.close(fd)
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or len(data) > 4096 or "\n" in token or "\r" in token:
        raise UsageError(f"--token-file {path} must hold one line: the token")
    return token


def host_policy(bind_host: str, extra=(), token: str | None = None) -> tuple[set[str], bool]:
    """The Host header names a request may carry besides the loopback ones, and whether any
    IP literal may (binding a wildcard address with a token: other machines reach it by
    address, and an IP literal cannot be rebound the way a DNS name can)."""
    names = set()
    for name in extra:
        n = name.strip().lower()
        if not n or any(c in n for c in "/ \t@?#") or (":" in n and not n.startswith("[")):
            raise UsageError(f"--allow-host takes a host name or address, got {name!r}")
        names.add(n)
    any_ip = False
    if token and not is_loopback(bind_host):
        h = bind_host.strip("[]").lower()
        if h in ("", "0.0.0.0", "::"):
            any_ip = True
        else:
            names.add(f"[{h}]" if ":" in h else h)
    return names, any_ip


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------- served repos
class Served:
    """One served repository: its index, its watcher, and what the server did with it."""

    def __init__(self, index, watcher=None):
        self.index = index
        self.root: Path = index.root
        self.watcher = watcher
        self.refresh_lock = threading.Lock()  # refreshes without a watcher, one at a time
        self.refreshing = 0
        self.starting: threading.Thread | None = None  # the watcher's start-up reconcile
        self.last_refresh: dict | None = None
        self.last_error: str | None = None

    def start_watcher(self) -> None:
        """Start the watcher (in a thread of its own). Without it (another process watches
        this repository, or it failed), searches read what other processes commit."""
        w = self.watcher
        try:
            w.start()
        except Exception as e:  # noqa: BLE001 - LockHeld above all: serve without it
            self.watcher = None
            self.last_error = f"not watching: {_one_line(e)}"
            print(
                f"coderag serve: {self.root}: {escape(self.last_error)}",
                file=sys.stderr,
                flush=True,
            )
            self.read_fresh()

    def is_starting(self) -> bool:
        """Is the watcher still in its start-up reconcile (building a new index, maybe)?"""
        return bool(self.starting and self.starting.is_alive())

    def stop_watcher(self) -> None:
        w, self.watcher = self.watcher, None
        if w is None:
            return
        if self.starting is not None and self.starting.is_alive():
            w._cancel = True  # roll back the start-up reconcile, as `coderag watch` does
            self.starting.join(10)
        try:
            w.stop()
        except Exception as e:  # noqa: BLE001 - shutting down regardless
            log.warning("stopping the watcher of %s: %s", self.root, e)

    def read_fresh(self) -> None:
        """Let searches see commits of other processes (no writer of ours opens the store
        anew after each batch). TODO(index.py): a public switch for long-lived readers."""
        try:
            self.index._open_store(fresh=True)
        except CoderagError:
            pass  # no index yet: the first search opens it
        except AttributeError:  # pragma: no cover - Index without the private helper
            pass

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
                self.read_fresh()
            summary = stats.summary()
            self.last_refresh = {"at": _now_iso(), "paths": _count(paths), **summary}
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
        w = self.watcher
        if w is not None:
            state = dict(w.state)
            state["starting"] = self.is_starting()
            out["watcher"] = state
            out["queue"] = int(state.get("queue") or 0)
        else:
            out["watcher"] = None
            out["queue"] = self.refreshing
        out["last_refresh"] = self.last_refresh
        out["last_error"] = self.last_error
        return out


def _count(paths) -> int | str:
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
        from .files import find_root
        from .index import Index

        overrides = overrides or {}
        roots: list[Path] = []
        for p in paths:
            r = find_root(p)
            if r not in roots:
                roots.append(r)
        for r in roots:
            runtime_file(r)  # the runtime folder must be usable before the model loads
            other = read_runtime_info(r)
            if other and pid_alive(other["pid"]) and other["pid"] != os.getpid():
                raise CoderagError(
                    f"a coderag server (pid {other['pid']}) already serves {r} at {other['url']}"
                )
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
        served = [Served(idx) for idx in indexes]
        service = cls(served, token=token, workers=workers, queue=queue, embedder=embedder)
        if watch:
            service.start_watchers(verbose=verbose)
        else:
            for s in served:
                s.read_fresh()
        return service

    def start_watchers(self, verbose=False) -> None:
        """One watcher per repository, started in the background: its start-up reconcile
        (a full walk, a first index for a new repository) must not delay serving."""
        try:
            from .watch import Watcher
        except ImportError as e:  # pragma: no cover - watch.py ships with coderag
            log.warning("cannot watch files (%s); serving without watchers", e)
            return
        for s in self.served:
            prefix = f"[{s.root.name}] " if len(self.served) > 1 else ""
            s.watcher = Watcher(s.index, verbose=verbose, log=_stderr_with(prefix))
            s.starting = threading.Thread(
                target=s.start_watcher, name=f"watch {s.root.name}", daemon=True
            )
            s.starting.start()

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
            "version": _version(),
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
            "rss_mb": round(_rss_mb(), 1),
            "token_required": bool(self.token),
            "repos": [s.status() for s in self.served],
        }

    # ------------------------------------------------------------------ running
    def serve(
        self,
        sock: socket.socket,
        host: str,
        *,
        cors_origins=(),
        hosts=(),
        any_ip=False,
        idle_timeout: float = 0,
        max_memory_mb: int = 0,
    ) -> int:
        """Serve on a bound socket until SIGINT/SIGTERM (the address and secret published in
        the runtime folder meanwhile), then clean up."""
        import uvicorn

        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        self.url = f"http://{shown}:{bound_port}"
        app = build_app(self, cors_origins=cors_origins, hosts=hosts, any_ip=any_ip)
        config = uvicorn.Config(
            app,
            http=guarded_protocol(),  # h11 with deadlines for headers and bodies
            ws="none",  # no WebSocket routes: an upgrade request is an ordinary request
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        # uvicorn stops gracefully on SIGTERM/SIGINT and then re-raises the signal; turn that
        # last SIGTERM into a normal exit so the cleanup below runs and the exit code is 0.
        previous = signal.signal(signal.SIGTERM, _exit_quietly)
        if idle_timeout or max_memory_mb:
            threading.Thread(
                target=self._bounds,
                args=(server, idle_timeout, max_memory_mb),
                name="idle/memory bounds",
                daemon=True,
            ).start()
        try:
            server.run(sockets=[sock])
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.shutdown()
            sock.close()
        print("coderag serve: stopped", file=sys.stderr, flush=True)
        return 0 if server.started else 1

    def _bounds(self, server, idle_timeout: float, max_memory_mb: int) -> None:
        """Stop the server (gracefully: requests in flight finish) when it has been idle for
        ``idle_timeout`` seconds or its resident memory passes ``max_memory_mb``."""
        while not server.should_exit:
            time.sleep(0.5)
            if self.in_flight or any(s.refreshing for s in self.served):
                continue
            idle = time.monotonic() - self.last_request
            if idle_timeout and idle >= idle_timeout:
                self.stop_reason = f"idle for {idle:.0f}s"
            elif max_memory_mb and _rss_mb() > max_memory_mb:
                self.stop_reason = f"over {max_memory_mb} MB of memory ({_rss_mb():.0f} MB)"
            else:
                continue
            print(f"coderag serve: stopping: {self.stop_reason}", file=sys.stderr, flush=True)
            server.should_exit = True

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


def _rss_mb() -> float:
    """This process's resident memory in MB (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def _exit_quietly(signum, frame):  # noqa: ARG001
    raise SystemExit(0)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it every keep-alive answer waits ~40 ms (Nagle against delayed ACKs)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise CoderagError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _index_model(idx) -> str | None:
    try:
        return idx.status().get("model")
    except CoderagError:
        return None


def _stderr_with(prefix: str):
    def say(line: str) -> None:
        print(f"{prefix}{escape(line)}", file=sys.stderr, flush=True)  # names repository files

    return say


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("coderag")
    except Exception:  # noqa: BLE001
        return "0+unknown"


# ---------------------------------------------------------------------------- the app
def build_app(service: Service, *, cors_origins=(), hosts=(), any_ip=False):
    """The Starlette app: routes, request guards (deadline, Host/Origin, JSON bodies, bearer
    credentials, body size), optional CORS, startup/shutdown."""
    from contextlib import asynccontextmanager

    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def endpoint(fn):
        async def handle(request):
            t0 = time.perf_counter()
            service.last_request = time.monotonic()
            service.requests += 1
            try:
                response = await fn(request)
            except HTTPError as e:
                response = JSONResponse({"error": e.message}, e.status, headers=e.headers)
            except ClientDisconnect:  # gone while sending its body: nobody to answer
                response = Response(status_code=400, headers={"Connection": "close"})
            except UsageError as e:
                response = JSONResponse({"error": _one_line(e)}, 400)
            except LockHeld as e:
                response = JSONResponse({"error": _one_line(e)}, 503, headers={"Retry-After": "5"})
            except IndexMissing as e:
                response = JSONResponse({"error": _one_line(e)}, 409)
            except CoderagError as e:
                response = JSONResponse({"error": _one_line(e)}, 409)
            except Exception:  # noqa: BLE001 - a bug; logged with its traceback
                log.exception("%s %s failed", request.method, request.url.path)
                response = JSONResponse({"error": "internal error (see the server log)"}, 500)
            log.info(
                "%s %s %d %.1fms",
                request.method,
                request.url.path,
                response.status_code,
                (time.perf_counter() - t0) * 1000,
            )
            return response

        return handle

    async def search(request):
        body = await read_json(request)
        served = service.repo_for(body.get("repo"))
        params = search_params(body)
        t0 = time.perf_counter()
        try:
            hits = await service.in_pool(lambda: served.index.search(**params))
        except CoderagError as e:
            if isinstance(e, UsageError) or not served.is_starting():
                raise
            raise HTTPError(
                503,
                f"the index of {served.root} is being built; retry shortly",
                headers={"Retry-After": "2"},
            ) from None
        return JSONResponse(
            {
                "repo": str(served.root),
                "hits": [h.to_dict() for h in hits],
                "took_ms": round((time.perf_counter() - t0) * 1000, 2),
            }
        )

    async def refresh(request):
        body = await read_json(request)
        unknown = set(body) - REFRESH_FIELDS
        if unknown:
            raise HTTPError(400, f"unknown field(s) {sorted(unknown)}")
        served = service.repo_for(body.get("repo"))
        raw = body.get("paths")
        paths = None if raw is None else served.resolve_paths(raw)
        wait = body.get("wait", False)
        if not isinstance(wait, bool):
            raise HTTPError(400, "'wait' must be true or false")
        timeout = body.get("timeout", 120)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise HTTPError(400, "'timeout' must be a positive number of seconds")
        timeout = min(float(timeout), MAX_WAIT)
        out = {"repo": str(served.root), "paths": _count(paths), "waited": wait}
        watcher = served.watcher
        if watcher is not None:
            watcher.submit(paths)
            if not wait:
                return JSONResponse({**out, "queued": True}, 202)
            # waiting is not CPU work: a plain thread, outside the search pool
            done = await anyio.to_thread.run_sync(lambda: _flush(watcher, timeout))
            if not done:
                raise HTTPError(504, f"the index did not catch up within {timeout:g}s")
            return JSONResponse({**out, "watcher": dict(watcher.state)})
        if not wait:
            served.refresh_in_background(paths)
            return JSONResponse({**out, "queued": True}, 202)
        summary = await service.in_pool(served.refresh, paths)
        return JSONResponse({**out, "stats": summary})

    async def status(request):
        return JSONResponse(await service.in_pool(service.status))

    async def health(request):
        return JSONResponse({"ok": True, "pid": os.getpid()})

    async def openapi(request):
        return JSONResponse(openapi_schema(bool(service.token)))

    async def identity(request):
        nonce = request.query_params.get("nonce", "")
        if not 16 <= len(nonce) <= 128 or not set(nonce) <= NONCE_CHARS:
            raise HTTPError(400, "'nonce' must be 16 to 128 letters, digits, '-' or '_'")
        return JSONResponse({"proof": proof(service.secret, nonce), "pid": os.getpid()})

    @asynccontextmanager
    async def lifespan(app):
        service.startup()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.shutdown)

    # outermost first: a deadline on every read, then Host/Origin, CORS, JSON bodies, bearer
    # credentials (the per-start secret or the user's token), the body size
    credentials = [service.secret] + ([service.token] if service.token else [])
    middleware = [
        Middleware(ReadDeadline, seconds=BODY_TIMEOUT),
        Middleware(RequestGuard, hosts=hosts, any_ip=any_ip, origins=cors_origins),
        Middleware(JsonOnly),
        Middleware(BearerAuth, credentials=credentials, everywhere=bool(service.token)),
        Middleware(BodyLimit, limit=MAX_BODY),
    ]
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.insert(
            2,
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
            ),
        )
    routes = [
        Route("/search", endpoint(search), methods=["POST"]),
        Route("/refresh", endpoint(refresh), methods=["POST"]),
        Route("/status", endpoint(status), methods=["GET"]),
        Route("/health", endpoint(health), methods=["GET"]),
        Route("/openapi.json", endpoint(openapi), methods=["GET"]),
        Route("/identity", endpoint(identity), methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _flush(watcher, timeout: float) -> bool:
    """Wait until the watcher has applied everything queued; False on a timeout."""
    try:
        result = watcher.flush(timeout=timeout)
    except TimeoutError:
        return False
    return result is not False


def _one_line(e: Exception) -> str:
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__


async def read_json(request) -> dict:
    """The request body as a JSON object, refused when larger than MAX_BODY bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > MAX_BODY:
                raise HTTPError(413, f"request body over {MAX_BODY:,} bytes")
        except ValueError:
            raise HTTPError(400, "bad Content-Length") from None
    data = bytearray()
    stream = request.stream()
    async for chunk in stream:
        data += chunk
        if len(data) > MAX_BODY:
            seen = len(data)
            async for rest in stream:  # read and drop the rest (see BodyLimit)
                seen += len(rest)
                if seen > DRAIN_MAX:
                    break
            raise HTTPError(413, f"request body over {MAX_BODY:,} bytes")
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(400, "the request body is not valid JSON") from None
    except RecursionError:
        raise HTTPError(400, "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return body


def search_params(body: dict) -> dict:
    """Validate a /search body (:func:`coderag.vocabulary.validate`, plus the HTTP API's own
    ``repo``) into keyword arguments of ``Index.search``; a refusal is a 400."""
    try:
        return validate(body, extra=("repo",)).as_search_kwargs()
    except UsageError as e:
        raise HTTPError(400, str(e)) from None


class BearerAuth:
    """ASGI middleware: ``Authorization: Bearer <credential>``, one of ``credentials`` (the
    per-start secret, the user's token), on the routes in PROTECTED, or on every route but
    those in OPEN when ``everywhere`` (a user token is configured)."""

    def __init__(self, app, credentials, everywhere: bool = False):
        self.app = app
        self.expected = [c.encode("utf-8") for c in credentials if c]
        self.everywhere = everywhere

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.needed(scope) and not self.allowed(scope):
            # read what was sent first (see BodyLimit), so the client gets the answer
            drained = await drain(receive)
            await send_json(
                send,
                401,
                {"error": "missing or wrong bearer token"},
                close=not drained,
                headers=[(b"www-authenticate", b'Bearer realm="coderag"')],
            )
            return
        await self.app(scope, receive, send)

    def needed(self, scope) -> bool:
        path = scope.get("path", "")
        return path in PROTECTED or (self.everywhere and path not in OPEN)

    def allowed(self, scope) -> bool:
        header = _header(scope, b"authorization") or b""
        scheme, _, credential = header.partition(b" ")
        credential = credential.strip()
        # compare_digest runs for every credential, even for a wrong scheme, so timing says
        # nothing about them
        same = False
        for expected in self.expected:
            same |= hmac.compare_digest(credential, expected)
        return same and scheme.lower() == b"bearer"


class RequestGuard:
    """ASGI middleware against DNS rebinding and cross-site requests (403 otherwise):

    * ``Host`` must name this machine's loopback interface (``localhost``, a 127.0.0.0/8
      literal, ``[::1]``; any port), a name in ``hosts``, or, with ``any_ip``, any IP literal:
      a web page that rebinds its own domain name to 127.0.0.1 still sends that name;
    * an ``Origin`` header (browsers send it on cross-site requests) must be in ``origins``
      (``--cors-origin``); ``null`` and every other origin are refused."""

    def __init__(self, app, hosts=(), any_ip: bool = False, origins=()):
        self.app = app
        self.hosts = {h.lower() for h in hosts}
        self.any_ip = any_ip
        self.origins = {o.rstrip("/").lower() for o in origins if o.strip() != "null"}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            problem = self.problem(scope)
            if problem:
                drained = await drain(receive)
                await send_json(send, 403, {"error": problem}, close=not drained)
                return
        await self.app(scope, receive, send)

    def problem(self, scope) -> str | None:
        raw = _header(scope, b"host")
        host = raw.decode("latin-1") if raw is not None else ""
        if not self.host_allowed(host):
            return (
                f"Host {host[:80]!r} is not this server's (DNS rebinding?); "
                "start it with --allow-host NAME to accept a name"
            )
        origin = _header(scope, b"origin")
        if origin is not None:
            o = origin.decode("latin-1").strip()
            if o.rstrip("/").lower() not in self.origins:
                return f"requests from origin {o[:80]!r} are refused (see --cors-origin)"
        return None

    def host_allowed(self, value: str) -> bool:
        name = _host_name(value)
        if not name:
            return False
        if name == "localhost" or name == "[::1]" or name in self.hosts:
            return True
        try:
            ip = ipaddress.ip_address(name.strip("[]") if name.startswith("[") else name)
        except ValueError:
            return False
        if ip.version == 6 and not name.startswith("["):
            return False  # an IPv6 literal in Host is always in brackets
        return (ip.version == 4 and ip.is_loopback) or self.any_ip


def _host_name(value: str) -> str | None:
    """The host of a Host header (lower case; IPv6 kept in brackets), None if malformed."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[: end + 1], v[end + 1 :]
    else:
        name, colon, port = v.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return name or None


class JsonOnly:
    """ASGI middleware: POST bodies must be ``Content-Type: application/json`` (else 415), so
    a cross-site HTML form or ``text/plain`` fetch, which a browser sends without asking,
    never reaches an endpoint."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") == "POST":
            ctype = (_header(scope, b"content-type") or b"").decode("latin-1")
            if ctype.split(";", 1)[0].strip().lower() != "application/json":
                drained = await drain(receive)
                await send_json(
                    send,
                    415,
                    {"error": "POST bodies must be JSON sent as Content-Type: application/json"},
                    close=not drained,
                )
                return
        await self.app(scope, receive, send)


class BodyTimeout(HTTPError):
    """The request body did not arrive within its deadline."""

    def __init__(self, seconds: float):
        super().__init__(
            408, f"the request body did not arrive within {seconds:g}s", {"Connection": "close"}
        )


class ReadDeadline:
    """ASGI middleware: the whole request body must arrive within ``seconds`` of the end of
    its headers. A read past that raises :class:`BodyTimeout`; the endpoint (or this
    middleware, if nothing answered yet) sends 408 and the connection is closed."""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import anyio

        deadline = anyio.current_time() + self.seconds
        started = False
        body_done = False

        async def timed_receive():
            nonlocal body_done
            if body_done:  # later reads wait for a disconnect: no deadline on those
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.seconds) from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except BodyTimeout as e:
            if started:
                raise
            log.info("%s %s: %s", scope.get("method"), scope.get("path"), e.message)
            await send_json(send, 408, {"error": e.message}, close=True)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def guarded_protocol(head_timeout: float = HEAD_TIMEOUT, body_timeout: float = BODY_TIMEOUT):
    """uvicorn's h11 protocol with deadlines it lacks (0.55 has only ``timeout_keep_alive``,
    which waits between requests and restarts with every byte received): a connection whose
    request headers are not complete ``head_timeout`` seconds after it opened, or after the
    request's first byte, is closed; so is one whose body is not complete ``body_timeout``
    seconds (plus a grace, :class:`ReadDeadline` answers 408 first) after its headers, read
    by the app or not. A client that trickles bytes holds a connection for a bounded time."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _timer = None
        _phase = None  # "head" | "body" | None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm("head", head_timeout)  # a new connection that sends nothing, too

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._phase is None and self.conn.their_state is h11.IDLE:
                self._arm("head", head_timeout)  # the first byte of the next request
            super().data_received(data)
            self._track()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._track()
            if self._phase is None and self.conn.their_state is h11.IDLE:
                if self.conn.trailing_data[0]:  # part of a pipelined request, waiting
                    self._arm("head", head_timeout)

        def _track(self) -> None:
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                if self._phase != "body":
                    self._arm("body", body_timeout + 2.0)
            elif state is not h11.IDLE:
                self._disarm()  # the request is in (or the connection is done)

        def _arm(self, phase: str, seconds: float) -> None:
            self._disarm()
            self._phase = phase
            self._timer = self.loop.call_later(seconds, self._expired, phase, seconds)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._phase = None

        def _expired(self, phase: str, seconds: float) -> None:
            self._timer = None
            self._phase = None
            if not self.transport.is_closing():
                what = "headers" if phase == "head" else "body"
                log.info("closing a connection: request %s not received in %gs", what, seconds)
                self.transport.close()

    return GuardedH11Protocol


class BodyLimit:
    """ASGI middleware: refuse bodies declared larger than ``limit`` without keeping them.

    The rest of such a body is read and dropped (up to ``DRAIN_MAX`` bytes) before the 413
    goes out: closing a socket with unread data resets the connection, and the client would
    see a reset instead of the answer. Endpoints also count what they read, for bodies sent
    without a Content-Length."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope.get("headers", []):
                if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                    drained = int(value) <= DRAIN_MAX and await drain(receive)
                    await send_json(
                        send,
                        413,
                        {"error": f"request body over {self.limit:,} bytes"},
                        close=not drained,
                    )
                    return
        await self.app(scope, receive, send)


async def drain(receive, already: int = 0) -> bool:
    """Read and drop the rest of a request body; False if it goes past DRAIN_MAX."""
    seen = already
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client went away
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if seen > DRAIN_MAX:
            return False


async def send_json(send, status: int, payload: dict, *, close=False, headers=()) -> None:
    body = json.dumps(payload).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------ OpenAPI
def openapi_schema(token_required: bool = False) -> dict:
    """The OpenAPI 3.1 description of every endpoint (hand-written: no model classes; the
    search request and the hit come from :mod:`coderag.vocabulary`)."""
    error = {
        "description": "error",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
            }
        },
    }
    repo = {
        "type": ["string", "null"],
        "description": "a served repository: its root, a path inside it or its folder name; "
        "may be left out when one repository is served",
    }

    def ok(schema, description="ok"):
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def body(schema):
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    errors = {
        "400": error,
        "401": error,
        "403": error,
        "404": error,
        "408": error,
        "409": error,
        "413": error,
        "415": error,
        "503": error,
    }
    bearer = [{"bearer": []}]
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "coderag",
            "version": _version(),
            "description": "Local hybrid code search. POST bodies must be JSON sent with "
            "`Content-Type: application/json` (curl: `-H 'Content-Type: application/json' -d "
            "'{...}'`; else 415). The Host header must name the loopback interface (or a name "
            "given with --allow-host) and an Origin header one given with --cors-origin (else "
            "403). Bearer credentials: the per-start secret the server publishes in the "
            "user's runtime folder ($XDG_RUNTIME_DIR/coderag/server-*.json), or the token it "
            "was started with. POST /refresh always needs one; every request but "
            "GET /identity does when the server was started with a token.",
        },
        "paths": {
            "/search": {
                "post": {
                    "summary": "Search a served repository",
                    "operationId": "search",
                    "requestBody": body(request_schema({"repo": repo})),
                    "responses": {
                        "200": ok(
                            {
                                "type": "object",
                                "properties": {
                                    "repo": {"type": "string"},
                                    "hits": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Hit"},
                                    },
                                    "took_ms": {"type": "number"},
                                },
                            }
                        ),
                        **errors,
                    },
                }
            },
            "/refresh": {
                "post": {
                    "summary": "Re-index changed files (or all) of a served repository",
                    "operationId": "refresh",
                    "security": bearer,
                    "requestBody": body(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "repo": repo,
                                "paths": {
                                    "type": ["array", "null"],
                                    "items": {"type": "string"},
                                    "maxItems": MAX_PATHS,
                                    "description": "files inside the repository (relative to "
                                    "its root or absolute); null or absent: everything",
                                },
                                "wait": {
                                    "type": "boolean",
                                    "default": False,
                                    "description": "answer only when the index has caught up",
                                },
                                "timeout": {
                                    "type": "number",
                                    "default": 120,
                                    "maximum": MAX_WAIT,
                                    "description": "seconds to wait at most (with wait)",
                                },
                            },
                        }
                    ),
                    "responses": {
                        "200": ok({"type": "object"}, "done (wait: true)"),
                        "202": ok({"type": "object"}, "queued (wait: false)"),
                        "504": error,
                        **errors,
                    },
                }
            },
            "/status": {
                "get": {
                    "summary": "Model, pool and per-repository index and watcher state",
                    "operationId": "status",
                    "responses": {
                        "200": ok(
                            {
                                "type": "object",
                                "properties": {
                                    "model": {"type": "object"},
                                    "in_flight": {"type": "integer"},
                                    "repos": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "root": {"type": "string"},
                                                "files": {"type": "integer"},
                                                "chunks": {"type": "integer"},
                                                "model": {"type": ["string", "null"]},
                                                "indexed_at": {"type": ["string", "null"]},
                                                "dense_coverage": {"type": "number"},
                                                "watcher": {"type": ["object", "null"]},
                                                "queue": {"type": "integer"},
                                            },
                                        },
                                    },
                                },
                            }
                        ),
                        "401": error,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "operationId": "health",
                    "responses": {"200": ok({"type": "object"}), "401": error},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": ok({"type": "object"}), "401": error},
                }
            },
            "/identity": {
                "get": {
                    "summary": "Prove this is the server that published the runtime file: "
                    "proof = hex HMAC-SHA256(secret, nonce). Needs no credential; clients "
                    "check it before sending anything else.",
                    "operationId": "identity",
                    "security": [],
                    "parameters": [
                        {
                            "name": "nonce",
                            "in": "query",
                            "required": True,
                            "schema": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9_-]{16,128}$",
                            },
                        }
                    ],
                    "responses": {
                        "200": ok(
                            {
                                "type": "object",
                                "properties": {
                                    "proof": {"type": "string"},
                                    "pid": {"type": "integer"},
                                },
                            }
                        ),
                        "400": error,
                        "403": error,
                    },
                }
            },
        },
        "components": {
            "schemas": {"Hit": hit_schema()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if token_required:
        doc["security"] = bearer
    return doc


# ------------------------------------------------------------------ discovery and identity
def runtime_file(root) -> Path:
    """Where a server for the repository at ``root`` publishes its address and secret: a file
    in the user's private runtime folder named from a hash of the resolved root (nothing in
    the repository, which may come from anyone, is ever read for this)."""
    from .userdirs import runtime_dir

    key = str(Path(root).resolve()).encode("utf-8", "surrogateescape")
    return runtime_dir() / f"{RUNTIME_PREFIX}{hashlib.sha256(key).hexdigest()[:32]}.json"


def publish(root, info: dict) -> Path:
    """Write ``info`` to the runtime file of ``root`` (0600, replaced atomically)."""
    from .userdirs import write_private

    path = runtime_file(root)
    write_private(path, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return path


def read_runtime_info(root) -> dict | None:
    """What a server published for the repository at ``root`` (exactly that root), or None:
    no file, not this user's private file, or not what a server writes."""
    from .userdirs import read_private

    try:
        path = runtime_file(root)
    except CoderagError:
        return None
    data = read_private(path)
    if data is None:
        return None
    try:
        info = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not (
        isinstance(info, dict)
        and isinstance(info.get("url"), str)
        and isinstance(info.get("secret"), str)
        and len(info["secret"]) >= 16
        and isinstance(info.get("pid"), int)
        and info.get("repo") == str(Path(root).resolve())
    ):
        return None
    return info


def unpublish(path: Path, secret: str) -> None:
    """Remove a runtime file if it is still ours (a later server may have replaced it)."""
    from .userdirs import read_private

    try:
        info = json.loads((read_private(path) or b"{}").decode("utf-8"))
        if info.get("pid") == os.getpid() and hmac.compare_digest(
            str(info.get("secret", "")).encode(), secret.encode()
        ):
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proof(secret: str, nonce: str) -> str:
    """What ``GET /identity?nonce=N`` answers: hex HMAC-SHA256 of the nonce under the secret."""
    return hmac.new(secret.encode("utf-8"), nonce.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class LocalServer:
    """A running ``coderag serve`` found in the user's runtime folder. Requests to it first
    check that it knows ``secret`` (``GET /identity``), then send the secret as the bearer
    credential, on the same connection."""

    url: str
    secret: str
    pid: int
    repo: str
    token_required: bool = False

    def __str__(self) -> str:
        return self.url

    def verify(self, timeout: float = 5.0) -> bool:
        """Does the process listening at ``url`` prove it knows the secret?"""
        try:
            _request(self, "/health", None, timeout=timeout)
        except CoderagError:
            return False
        return True


def find_server(root=None, *, verify: bool = False) -> LocalServer | None:
    """The ``coderag serve`` running for the repository at ``root`` (default: the one around
    the cwd), from the file it published in the user's runtime folder; None when there is
    none, its process is gone, or it listens on a non-loopback address. With ``verify``, also
    None unless it proves its identity now (a request does that anyway, before anything else
    is sent)."""
    from urllib.parse import urlsplit

    from .files import find_root

    try:
        r = find_root(root)
    except CoderagError:
        return None
    info = read_runtime_info(r)
    if not info or not pid_alive(info["pid"]):
        return None
    try:
        parts = urlsplit(info["url"])
        host, _port = parts.hostname or "", parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or not is_loopback(host):
        return None
    server = LocalServer(
        url=info["url"],
        secret=info["secret"],
        pid=info["pid"],
        repo=info["repo"],
        token_required=bool(info.get("token_required")),
    )
    if verify and not server.verify():
        return None
    return server


# ------------------------------------------------------------- the background server
AUTOSERVE_ENV = "CODERAG_AUTOSERVE"  # 0/off: `coderag search` never starts a server
AUTOSERVE_IDLE_ENV = "CODERAG_AUTOSERVE_IDLE"  # seconds without a request before it stops
AUTOSERVE_MEMORY_ENV = "CODERAG_AUTOSERVE_MEMORY"  # MB of resident memory before it stops
AUTOSERVE_IDLE = 900
AUTOSERVE_MEMORY = 2048
AUTOSERVE_LOCK = "autoserve.lock"
AUTOSERVE_LOG = "serve.log"


def autoserve_enabled() -> bool:
    return os.environ.get(AUTOSERVE_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def start_background(root: Path) -> int | None:
    """Start a private ``coderag serve`` for ``root`` in the background (its own session,
    loopback, any free port, no watcher: a read accelerator), stopping after
    ``CODERAG_AUTOSERVE_IDLE`` seconds without a request (900) or past
    ``CODERAG_AUTOSERVE_MEMORY`` MB (2048). Returns its pid, or None when one is already
    starting (``.coderag/autoserve.lock`` is held for the server's whole life) or there is
    no index to serve. Its errors go to ``.coderag/serve.log``."""
    from . import datadir
    from .errors import LockHeld

    root = Path(root)
    if not datadir.has_index(root):
        return None
    lock = datadir.FileLock(root, AUTOSERVE_LOCK, timeout=0, busy="")
    try:
        lock.acquire()
    except LockHeld:
        return None
    idle = _env_number(AUTOSERVE_IDLE_ENV, AUTOSERVE_IDLE)
    memory = _env_number(AUTOSERVE_MEMORY_ENV, AUTOSERVE_MEMORY)
    args = ["serve", str(root), "--port", "0", "--no-watch"]
    args += ["--idle-timeout", str(idle), "--max-memory", str(int(memory))]
    try:  # the child inherits the lock's descriptor and holds the lock until it exits
        return datadir.spawn(root, args, AUTOSERVE_LOG, pass_fds=(lock.fd,))
    finally:
        os.close(lock.fd)  # not release(): unlocking here would unlock the child's copy too
        lock.fd = None


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= 0 else default


# ---------------------------------------------------------------------------- the client
def _request(server, route: str, payload: dict | None, *, timeout: float) -> dict:
    """One JSON request with the standard library, straight to the server (no proxies, no
    redirects). ``server`` is a :class:`LocalServer` (its identity is checked first, on the
    connection the request then uses; the secret is the credential) or a URL the user gave
    (``CODERAG_TOKEN``, if set, is the credential)."""
    import http.client
    from urllib.parse import urlsplit

    local = isinstance(server, LocalServer)
    if local:
        base, credential = server.url.rstrip("/"), server.secret
    else:
        base = str(server).rstrip("/")
        if not base.startswith(("http://", "https://")):
            base = "http://" + base
        credential = os.environ.get(TOKEN_ENV)
    try:
        parts = urlsplit(base)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UsageError(f"not a server URL: {base}") from None
    if not host:
        raise UsageError(f"not a server URL: {base}")
    prefix = parts.path.rstrip("/")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(host, port, timeout=timeout)
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    try:
        if local:
            _check_identity(conn, prefix, server, base)
            conn.auto_open = 0  # the request goes over the connection just checked, or not at all
        conn.request("POST" if payload is not None else "GET", prefix + route, data, headers)
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ServerUnavailable(f"cannot reach a coderag server at {base} ({e})") from None
    finally:
        conn.close()
    if resp.status >= 300:
        try:
            message = json.loads(body.decode("utf-8")).get("error") or resp.reason
        except (ValueError, AttributeError, UnicodeDecodeError):
            message = resp.reason
        if resp.status == 401:
            if local:
                raise CoderagError(f"the server at {base} refused its own secret ({message})")
            raise CoderagError(f"the server at {base} wants a bearer token; set {TOKEN_ENV}")
        if resp.status == 400:
            raise UsageError(f"server: {message}")
        raise CoderagError(f"server ({resp.status}): {message}")
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ServerUnavailable(
            f"{base} did not answer with JSON; is it a coderag server?"
        ) from None


def _check_identity(conn, prefix: str, server: LocalServer, base: str) -> None:
    """``GET /identity`` with a fresh nonce; anything but the right proof raises
    :class:`ServerUnavailable` before a query, a path or the secret is sent."""
    nonce = secrets.token_urlsafe(24)
    conn.request("GET", f"{prefix}/identity?nonce={nonce}", headers={"Accept": "application/json"})
    resp = conn.getresponse()
    body = resp.read(65536)
    try:
        got = json.loads(body.decode("utf-8")).get("proof")
    except (ValueError, AttributeError, UnicodeDecodeError):
        got = None
    want = proof(server.secret, nonce).encode("ascii")
    if not (
        resp.status == 200
        and isinstance(got, str)
        and hmac.compare_digest(got.encode("utf-8"), want)
    ):
        raise ServerUnavailable(
            f"the process at {base} is not the coderag server that published it "
            "(identity check failed); nothing was sent"
        )


def remote_search(
    server: LocalServer | str, query: str, *, repo=None, timeout: float = 60.0, **options
) -> list[dict]:
    """``POST /search`` on a running server: the hit dicts (``Hit.to_dict()``), best first.

    ``server`` is what :func:`find_server` found, or a URL the user gave.
    ``repo`` may be a path (sent absolute) or left out when the server serves one repository.
    ``options``: those of ``Index.search`` (:class:`~coderag.vocabulary.SearchRequest`).
    Raises :class:`ServerUnavailable` when nothing answers, a CoderagError for a refusal."""
    payload = SearchRequest(query, **options).body()
    if repo is not None:
        payload["repo"] = _repo_arg(repo)
    return _request(server, "/search", payload, timeout=timeout)["hits"]


def remote_refresh(
    server: LocalServer | str, *, repo=None, paths=None, wait: bool = True, timeout: float = 120.0
) -> dict:
    """``POST /refresh`` on a running server (the git hook's way to hand over paths)."""
    payload: dict = {"paths": [str(p) for p in paths] if paths is not None else None}
    payload["wait"] = wait
    payload["timeout"] = timeout
    if repo is not None:
        payload["repo"] = _repo_arg(repo)
    return _request(server, "/refresh", payload, timeout=timeout + 10)


def _repo_arg(repo) -> str:
    p = Path(str(repo)).expanduser()
    return str(p.resolve()) if p.exists() else str(repo)
