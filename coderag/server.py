"""``coderag serve``: a local HTTP JSON API for editors, with the model kept warm.

One process serves one or more repositories. The embedding model is loaded once and shared by
every served :class:`~coderag.index.Index`; a :class:`~coderag.watch.Watcher` per repository
keeps its index equal to the working tree (it is the one writer of that index, taking the
same ``.coderag/lock`` as ``coderag index``). Searches run in a bounded thread pool so the
event loop never does CPU work; when the pool and its queue are full the answer is 503.

Endpoints (JSON): ``POST /search``, ``POST /refresh``, ``GET /status``, ``GET /health``,
``GET /openapi.json``. Binding anything but a loopback address needs a bearer token.

While it runs, ``<repo>/.coderag/server.json`` ({url, pid, token_required}) tells
``coderag search`` (see :func:`find_server`) and the git hook where to find it; it is removed
at exit. :func:`remote_search` and :func:`remote_refresh` are the client side (standard
library only, so ``coderag search --server URL`` starts fast).

Only the standard library is imported at module level; starlette, uvicorn and the index are
imported when the server starts.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from .errors import CoderagError, IndexMissing, LockHeld, UsageError

log = logging.getLogger("coderag.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7878
MAX_BODY = 1_000_000  # bytes of a request body
DRAIN_MAX = 16_000_000  # bytes of a refused body read and dropped before answering
MAX_K = 200  # hits per search
MAX_PATHS = 10_000  # paths per refresh
MAX_WAIT = 600.0  # seconds a refresh request may wait for the index to catch up
SERVER_FILE = "server.json"
TOKEN_ENV = "CODERAG_TOKEN"
SEARCH_FIELDS = {"query", "repo", "k", "mode", "lang", "path", "kind", "code", "files", "rerank"}
REFRESH_FIELDS = {"repo", "paths", "wait", "timeout"}

EPILOG = """examples:
  coderag serve                                  serve the repository around the current folder
  coderag serve ~/src/app ~/src/lib --port 7878  several repositories, one model
  coderag serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
  curl -s localhost:7878/search -d '{"query": "retry failed uploads", "k": 5}'

The URL is written to <repo>/.coderag/server.json while the server runs; `coderag search`
then asks the server instead of loading the model itself.
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
        "--token",
        help=f"require this bearer token on every request (env {TOKEN_ENV}); "
        "mandatory when binding a non-loopback address",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; CORS is off by default)",
    )
    p.add_argument("--no-watch", action="store_true", help="do not watch the files for changes")
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
    token = args.token or os.environ.get(TOKEN_ENV) or None
    check_bind(args.host, token)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.workers < 1 or args.queue < 0:
        raise UsageError("--workers must be at least 1 and --queue at least 0")
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
        return service.serve(sock, args.host, cors_origins=args.cors_origin)
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
            f"pass --token (or set {TOKEN_ENV}) to require a bearer token"
        )


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
            print(f"coderag serve: {self.root}: {self.last_error}", file=sys.stderr, flush=True)
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
        self.url: str | None = None
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
            other = read_server_file(r)
            if other and pid_alive(other.get("pid")) and other.get("pid") != os.getpid():
                raise CoderagError(
                    f"a coderag server (pid {other['pid']}) already serves {r} at {other.get('url')}"
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
            "token_required": bool(self.token),
            "repos": [s.status() for s in self.served],
        }

    # ------------------------------------------------------------------ running
    def serve(self, sock: socket.socket, host: str, *, cors_origins=()) -> int:
        """Serve on a bound socket until SIGINT/SIGTERM (server.json published meanwhile),
        then clean up."""
        import uvicorn

        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        self.url = f"http://{shown}:{bound_port}"
        app = build_app(self, cors_origins=cors_origins)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        # uvicorn stops gracefully on SIGTERM/SIGINT and then re-raises the signal; turn that
        # last SIGTERM into a normal exit so the cleanup below runs and the exit code is 0.
        previous = signal.signal(signal.SIGTERM, _exit_quietly)
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

    def startup(self) -> None:
        """Called once the app runs: publish the URL for clients and hooks."""
        import anyio

        self.limiter = anyio.CapacityLimiter(self.workers)
        info = {"url": self.url, "pid": os.getpid(), "token_required": bool(self.token)}
        for s in self.served:
            info_repo = {**info, "repo": str(s.root), "repos": [str(x.root) for x in self.served]}
            path = write_server_file(s.root, info_repo)
            self.server_files.append(path)
        roots = ", ".join(str(s.root) for s in self.served)
        watching = "watching" if any(s.watcher for s in self.served) else "not watching"
        print(
            f"coderag serve: {self.url} serves {roots} ({watching}; "
            f"model {getattr(self.embedder, 'model_id', '?')})",
            file=sys.stderr,
            flush=True,
        )

    def shutdown(self) -> None:
        """Stop the watchers (their locks go with them) and remove server.json; idempotent."""
        self.stop_watchers()
        for path in self.server_files:
            remove_server_file(path)
        self.server_files = []


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
        print(f"{prefix}{line}", file=sys.stderr, flush=True)

    return say


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("coderag")
    except Exception:  # noqa: BLE001
        return "0+unknown"


# ---------------------------------------------------------------------------- the app
def build_app(service: Service, *, cors_origins=()):
    """The Starlette app: routes, bearer auth, optional CORS, startup/shutdown."""
    from contextlib import asynccontextmanager

    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def endpoint(fn):
        async def handle(request):
            t0 = time.perf_counter()
            try:
                response = await fn(request)
            except HTTPError as e:
                response = JSONResponse({"error": e.message}, e.status, headers=e.headers)
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

    @asynccontextmanager
    async def lifespan(app):
        service.startup()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.shutdown)

    middleware = [Middleware(BodyLimit, limit=MAX_BODY)]
    if service.token:
        middleware.insert(0, Middleware(BearerAuth, token=service.token))
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.insert(
            0,
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
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return body


def search_params(body: dict) -> dict:
    """Validate a /search body into keyword arguments of ``Index.search``."""
    unknown = set(body) - SEARCH_FIELDS
    if unknown:
        raise HTTPError(400, f"unknown field(s) {sorted(unknown)}")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise HTTPError(400, "'query' must be a non-empty string")
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int):
        raise HTTPError(400, "'k' must be an integer")
    if not 1 <= k <= MAX_K:
        raise HTTPError(400, f"'k' must be between 1 and {MAX_K}")
    out = {"k": k}
    for name in ("mode", "lang", "path", "kind"):
        v = body.get(name)
        if v is not None and not isinstance(v, str):
            raise HTTPError(400, f"{name!r} must be a string")
        if v:
            out[name] = v
    for name in ("code", "files", "rerank"):
        v = body.get(name)
        if v is not None and not isinstance(v, bool):
            raise HTTPError(400, f"{name!r} must be true, false or null")
        if v is not None:
            out[name] = v
    return {"query": query, **out}


class BearerAuth:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = token.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not self.allowed(scope):
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

    def allowed(self, scope) -> bool:
        header = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value
                break
        scheme, _, credential = header.partition(b" ")
        # compare_digest runs even for a wrong scheme, so timing says nothing about the token
        same = hmac.compare_digest(credential.strip(), self.expected)
        return same and scheme.lower() == b"bearer"


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
    """The OpenAPI 3.1 description of every endpoint (hand-written: no model classes)."""
    hit = {
        "type": "object",
        "required": [
            "path",
            "start_line",
            "end_line",
            "kind",
            "language",
            "symbol",
            "score",
            "text",
        ],
        "properties": {
            "path": {"type": "string", "description": "POSIX path relative to the repo root"},
            "start_line": {"type": "integer", "minimum": 1},
            "end_line": {"type": "integer", "minimum": 1, "description": "inclusive"},
            "kind": {"type": "string", "enum": ["function", "method", "class", "code", "doc"]},
            "language": {"type": "string"},
            "symbol": {"type": ["string", "null"]},
            "score": {"type": "number"},
            "text": {"type": "string", "description": "the exact lines start_line..end_line"},
        },
    }
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
        "404": error,
        "409": error,
        "413": error,
        "503": error,
    }
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "coderag",
            "version": _version(),
            "description": "Local hybrid code search. Every request needs a bearer token when "
            "the server was started with one.",
        },
        "paths": {
            "/search": {
                "post": {
                    "summary": "Search a served repository",
                    "operationId": "search",
                    "requestBody": body(
                        {
                            "type": "object",
                            "required": ["query"],
                            "additionalProperties": False,
                            "properties": {
                                "query": {"type": "string", "minLength": 1},
                                "repo": repo,
                                "k": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": MAX_K,
                                    "default": 10,
                                },
                                "mode": {
                                    "type": "string",
                                    "enum": ["hybrid", "dense", "lexical"],
                                    "default": "hybrid",
                                },
                                "lang": {"type": ["string", "null"]},
                                "path": {"type": ["string", "null"], "description": "glob"},
                                "kind": {
                                    "type": ["string", "null"],
                                    "enum": ["function", "method", "class", "code", "doc", None],
                                },
                                "code": {
                                    "type": ["boolean", "null"],
                                    "description": "treat the query as code (null: guess)",
                                },
                                "files": {"type": "boolean", "default": False},
                                "rerank": {
                                    "type": ["boolean", "null"],
                                    "description": "re-order the top candidates with the "
                                    "reranker (null: the server's 'rerank' setting)",
                                },
                            },
                        }
                    ),
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
        },
        "components": {"schemas": {"Hit": hit}},
    }
    if token_required:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


# --------------------------------------------------------------------------- server.json
def server_file(root: Path) -> Path:
    from .config import DATA_DIR

    return Path(root) / DATA_DIR / SERVER_FILE


def write_server_file(root: Path, info: dict) -> Path:
    path = server_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_server_file(root: Path) -> dict | None:
    try:
        info = json.loads(server_file(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return None
    return info


def remove_server_file(path: Path) -> None:
    """Remove server.json if it is still ours (another server may have taken over)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("pid") == os.getpid():
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


def find_server(root=None) -> str | None:
    """The URL of a running ``coderag serve`` for the repository at ``root`` (default: the one
    around the cwd), or None: no server.json, its process is gone, or it wants a token and
    ``CODERAG_TOKEN`` is not set."""
    from .files import find_root

    try:
        r = find_root(root)
    except CoderagError:
        return None
    info = read_server_file(r)
    if not info or not pid_alive(info.get("pid")):
        return None
    if info.get("token_required") and not os.environ.get(TOKEN_ENV):
        return None
    return info["url"]


# ---------------------------------------------------------------------------- the client
def _request(url: str, route: str, payload: dict | None, *, timeout: float) -> dict:
    """One JSON request with the standard library (no proxies: the server is local)."""
    import urllib.error
    import urllib.request

    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = "http://" + base
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + route, data=data, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read().decode("utf-8")).get("error") or e.reason
        except (ValueError, AttributeError, OSError):
            message = e.reason
        if e.code == 401:
            raise CoderagError(
                f"the server at {base} wants a bearer token; set {TOKEN_ENV}"
            ) from None
        if e.code == 400:
            raise UsageError(f"server: {message}") from None
        raise CoderagError(f"server ({e.code}): {message}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ServerUnavailable(f"cannot reach a coderag server at {base} ({reason})") from None
    except ValueError:
        raise ServerUnavailable(
            f"{base} did not answer with JSON; is it a coderag server?"
        ) from None


def remote_search(
    url: str,
    query: str,
    *,
    repo=None,
    k: int = 10,
    mode: str = "hybrid",
    lang=None,
    path=None,
    kind=None,
    code=None,
    files: bool = False,
    rerank: bool | None = None,
    timeout: float = 60.0,
) -> list[dict]:
    """``POST /search`` on a running server: the hit dicts (``Hit.to_dict()``), best first.

    ``repo`` may be a path (sent absolute) or left out when the server serves one repository.
    Raises :class:`ServerUnavailable` when nothing answers, a CoderagError for a refusal."""
    payload: dict = {"query": query, "k": k, "mode": mode, "files": bool(files)}
    for name, value in (
        ("lang", lang),
        ("path", path),
        ("kind", kind),
        ("code", code),
        ("rerank", rerank),
    ):
        if value is not None:
            payload[name] = value
    if repo is not None:
        payload["repo"] = _repo_arg(repo)
    return _request(url, "/search", payload, timeout=timeout)["hits"]


def remote_refresh(
    url: str, *, repo=None, paths=None, wait: bool = True, timeout: float = 120.0
) -> dict:
    """``POST /refresh`` on a running server (the git hook's way to hand over paths)."""
    payload: dict = {"paths": [str(p) for p in paths] if paths is not None else None}
    payload["wait"] = wait
    payload["timeout"] = timeout
    if repo is not None:
        payload["repo"] = _repo_arg(repo)
    return _request(url, "/refresh", payload, timeout=timeout + 10)


def _repo_arg(repo) -> str:
    p = Path(str(repo)).expanduser()
    return str(p.resolve()) if p.exists() else str(repo)
