"""The Starlette app of ``coderag serve`` and the uvicorn server that runs it.

Endpoints (JSON; :data:`~coderag.server.openapi.ENDPOINTS`): ``POST /search``,
``POST /refresh``, ``GET /status``, ``GET /health``, ``GET /identity``,
``GET /openapi.json``. Every request first passes the guards of :mod:`coderag.server.guards`.
A handler's refusal is an :class:`~coderag.server.service.HTTPError` or a CoderagError, turned
into ``{"error": "one line"}`` with its status by :func:`error_response`.

Imported when the server starts (never by the CLI's fast paths).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from contextlib import asynccontextmanager

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import CoderagError, LockHeld, UsageError
from ..vocabulary import validate
from .background import one_line, wait_until_applied
from .guards import DRAIN_MAX, MAX_BODY, guarded_protocol, middleware
from .openapi import ALWAYS, ENDPOINTS, NEVER, REFRESH_FIELDS, openapi_schema, routes_needing
from .runtime import proof, valid_nonce
from .service import MAX_WAIT, REFRESH_TIMEOUT, HTTPError, Service, count_paths

log = logging.getLogger("coderag.server")


# ------------------------------------------------------------------------ handlers
class Handlers:
    """The endpoints' handlers (named as in :data:`ENDPOINTS`), over one :class:`Service`."""

    def __init__(self, service: Service):
        self.service = service

    async def search(self, request):
        body = await read_json(request)
        served = self.service.repo_for(body.get("repo"))
        params = search_params(body)
        t0 = time.perf_counter()
        try:
            hits = await self.service.in_pool(lambda: served.index.search(**params))
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

    async def refresh(self, request):
        body = await read_json(request)
        served, paths, wait, timeout = refresh_params(self.service, body)
        out = {"repo": str(served.root), "paths": count_paths(paths), "waited": wait}
        watcher = served.watcher
        if watcher is not None:  # queued to the watcher, the one writer of this index
            watcher.submit(paths)
            if not wait:
                return JSONResponse({**out, "queued": True}, 202)
            return JSONResponse({**out, "watcher": await _caught_up(watcher, timeout)})
        if not wait:
            served.refresh_in_background(paths)
            return JSONResponse({**out, "queued": True}, 202)
        summary = await self.service.in_pool(served.refresh, paths)
        return JSONResponse({**out, "stats": summary})

    async def status(self, request):
        return JSONResponse(await self.service.in_pool(self.service.status))

    async def health(self, request):
        return JSONResponse({"ok": True, "pid": os.getpid()})

    async def openapi(self, request):
        return JSONResponse(openapi_schema(bool(self.service.token)))

    async def identity(self, request):
        nonce = request.query_params.get("nonce", "")
        if not valid_nonce(nonce):
            raise HTTPError(400, "'nonce' must be 16 to 128 letters, digits, '-' or '_'")
        return JSONResponse({"proof": proof(self.service.secret, nonce), "pid": os.getpid()})


async def _caught_up(watcher, timeout: float) -> dict:
    """Wait (a plain thread, outside the search pool: waiting is not CPU work) until the
    watcher has applied what was queued; its state then, or 504."""
    done = await anyio.to_thread.run_sync(lambda: wait_until_applied(watcher, timeout))
    if not done:
        raise HTTPError(504, f"the index did not catch up within {timeout:g}s")
    return dict(watcher.state)


def error_response(e: Exception, request):
    """The answer to a handler's exception: its status and ``{"error": "one line"}``."""
    if isinstance(e, HTTPError):
        return JSONResponse({"error": e.message}, e.status, headers=e.headers)
    if isinstance(e, ClientDisconnect):  # gone while sending its body: nobody to answer
        return Response(status_code=400, headers={"Connection": "close"})
    if isinstance(e, UsageError):
        return JSONResponse({"error": one_line(e)}, 400)
    if isinstance(e, LockHeld):
        return JSONResponse({"error": one_line(e)}, 503, headers={"Retry-After": "5"})
    if isinstance(e, CoderagError):  # IndexMissing above all
        return JSONResponse({"error": one_line(e)}, 409)
    log.error("%s %s failed", request.method, request.url.path, exc_info=e)  # a bug
    return JSONResponse({"error": "internal error (see the server log)"}, 500)


def endpoint(service: Service, handler):
    """``handler`` as a Starlette endpoint: counted (for ``/status`` and the idle bound),
    its exceptions answered by :func:`error_response`, logged with its time."""

    async def handle(request):
        t0 = time.perf_counter()
        service.last_request = time.monotonic()
        service.requests += 1
        try:
            response = await handler(request)
        except Exception as e:  # noqa: BLE001 - every one is answered
            response = error_response(e, request)
        ms = (time.perf_counter() - t0) * 1000
        log.info("%s %s %d %.1fms", request.method, request.url.path, response.status_code, ms)
        return response

    return handle


# ------------------------------------------------------------------ request bodies
async def read_json(request) -> dict:
    """The request body as a JSON object, refused when larger than MAX_BODY bytes."""
    _check_declared_length(request.headers.get("content-length"))
    data = await _read_body(request.stream())
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


def _check_declared_length(declared: str | None) -> None:
    if declared is None:
        return
    try:
        too_big = int(declared) > MAX_BODY
    except ValueError:
        raise HTTPError(400, "bad Content-Length") from None
    if too_big:
        raise HTTPError(413, f"request body over {MAX_BODY:,} bytes")


async def _read_body(stream) -> bytearray:
    """Everything the client sends, up to MAX_BODY bytes; past that the rest is read and
    dropped (up to DRAIN_MAX, see :class:`~coderag.server.guards.BodyLimit`), then 413."""
    data = bytearray()
    async for chunk in stream:
        data += chunk
        if len(data) > MAX_BODY:
            seen = len(data)
            async for rest in stream:
                seen += len(rest)
                if seen > DRAIN_MAX:
                    break
            raise HTTPError(413, f"request body over {MAX_BODY:,} bytes")
    return data


def search_params(body: dict) -> dict:
    """Validate a /search body (:func:`coderag.vocabulary.validate`, plus the HTTP API's own
    ``repo``) into keyword arguments of ``Index.search``; a refusal is a 400."""
    try:
        return validate(body, extra=("repo",)).as_search_kwargs()
    except UsageError as e:
        raise HTTPError(400, str(e)) from None


def refresh_params(service: Service, body: dict) -> tuple:
    """A /refresh body checked: the served repository, its absolute paths (None: all),
    whether to wait and for how long at most; a refusal is a 400 (404: no such repository)."""
    unknown = set(body) - REFRESH_FIELDS
    if unknown:
        raise HTTPError(400, f"unknown field(s) {sorted(unknown)}")
    served = service.repo_for(body.get("repo"))
    raw = body.get("paths")
    paths = None if raw is None else served.resolve_paths(raw)
    wait = body.get("wait", False)
    if not isinstance(wait, bool):
        raise HTTPError(400, "'wait' must be true or false")
    timeout = body.get("timeout", REFRESH_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise HTTPError(400, "'timeout' must be a positive number of seconds")
    return served, paths, wait, min(float(timeout), MAX_WAIT)


# ----------------------------------------------------------------------------- app
def build_app(service: Service, *, cors_origins=(), hosts=(), any_ip=False):
    """The Starlette app: a route per endpoint, the request guards (deadline, Host/Origin,
    JSON bodies, bearer credentials, body size), optional CORS, startup/shutdown."""
    handlers = Handlers(service)
    routes = [
        Route(e.path, endpoint(service, getattr(handlers, e.name)), methods=[e.method])
        for e in ENDPOINTS
    ]
    guards = middleware(
        [service.secret] + ([service.token] if service.token else []),
        everywhere=bool(service.token),
        protected=routes_needing(ALWAYS),
        open_routes=routes_needing(NEVER),
        hosts=hosts,
        any_ip=any_ip,
        cors_origins=cors_origins,
    )

    @asynccontextmanager
    async def lifespan(app):
        service.startup()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.shutdown)

    return Starlette(routes=routes, middleware=guards, lifespan=lifespan)


# ------------------------------------------------------------------------- serving
def serve(
    service: Service,
    sock: socket.socket,
    host: str,
    *,
    cors_origins=(),
    hosts=(),
    any_ip=False,
    idle_timeout: float = 0,
    max_memory_mb: int = 0,
) -> int:
    """Serve on a bound socket until SIGINT/SIGTERM, idle for ``idle_timeout`` seconds or
    past ``max_memory_mb`` (0: no bound); the address and secret are published in the
    runtime folder meanwhile. Then clean up; 0 if it served at all."""
    service.url = _url(host, sock.getsockname()[1])
    app = build_app(service, cors_origins=cors_origins, hosts=hosts, any_ip=any_ip)
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
        bounds = (service, server, idle_timeout, max_memory_mb)
        threading.Thread(
            target=_bounds, args=bounds, name="idle/memory bounds", daemon=True
        ).start()
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.shutdown()
        sock.close()
    print("coderag serve: stopped", file=sys.stderr, flush=True)
    return 0 if server.started else 1


def _url(host: str, port: int) -> str:
    """The URL clients use for a server bound to ``host`` (a wildcard: its loopback)."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"http://{shown}:{port}"


def _bounds(service: Service, server, idle_timeout: float, max_memory_mb: int) -> None:
    """Stop the server (gracefully: requests in flight finish) once
    :meth:`Service.should_stop` says why."""
    while not server.should_exit:
        time.sleep(0.5)
        reason = service.should_stop(idle_timeout, max_memory_mb)
        if reason is None:
            continue
        service.stop_reason = reason
        print(f"coderag serve: stopping: {reason}", file=sys.stderr, flush=True)
        server.should_exit = True


def _exit_quietly(signum, frame):  # noqa: ARG001
    raise SystemExit(0)
