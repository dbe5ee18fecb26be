"""What every request to ``coderag serve`` passes before an endpoint sees it.

A cloned repository and any web page the user's browser opens are untrusted:

* **Host and Origin** (:class:`RequestGuard`): ``Host`` must be ``localhost``, a 127.0.0.0/8
  literal or ``[::1]`` (any port), a name given with ``--allow-host``, or the bound address
  when binding a non-loopback one, else 403 (DNS rebinding); an ``Origin`` header must be one
  given with ``--cors-origin`` (``null`` never), else 403.
* **JSON bodies** (:class:`JsonOnly`): a POST body must be ``application/json``, else 415.
* **Credentials** (:class:`BearerAuth`): the per-start secret and the user's token; routes
  that change state always need one, with a user token every route does (but the identity
  proof), else 401.
* **Body size** (:class:`BodyLimit`): a body declared over ``MAX_BODY`` is 413.
* **Slow clients** (:func:`guarded_protocol`, :class:`ReadDeadline`): a request's headers
  must arrive within ``HEAD_TIMEOUT`` seconds (from the connection's start or the request's
  first byte) and its body within ``BODY_TIMEOUT``: else 408, or the connection is closed.

A refusal reads what the client sent first (up to ``DRAIN_MAX`` bytes) so that it gets the
answer: closing a socket with unread data resets the connection.

Imported when the server starts (never by the CLI's fast paths).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging

import anyio
import h11
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from .service import HTTPError

log = logging.getLogger("coderag.server")

MAX_BODY = 1_000_000  # bytes of a request body
DRAIN_MAX = 16_000_000  # bytes of a refused body read and dropped before answering
HEAD_TIMEOUT = 5.0  # seconds for a request's headers (from connection start or first byte)
BODY_TIMEOUT = 10.0  # seconds for a request's body, from the end of its headers


def middleware(
    credentials, *, everywhere: bool, protected, open_routes, hosts, any_ip, cors_origins
) -> list:
    """Starlette's middleware list, outermost first: a deadline on every read, then
    Host/Origin, CORS (only with ``cors_origins``), JSON bodies, bearer credentials, the body
    size."""
    stack = [
        Middleware(ReadDeadline, seconds=BODY_TIMEOUT),
        Middleware(RequestGuard, hosts=hosts, any_ip=any_ip, origins=cors_origins),
        Middleware(JsonOnly),
        Middleware(
            BearerAuth,
            credentials=credentials,
            everywhere=everywhere,
            protected=protected,
            open_routes=open_routes,
        ),
        Middleware(BodyLimit, limit=MAX_BODY),
    ]
    if cors_origins:
        cors = Middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
        stack.insert(2, cors)
    return stack


# ------------------------------------------------------------------------ refusing
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


async def refuse(receive, send, status: int, message: str, headers=()) -> None:
    """Answer ``{"error": message}`` with ``status`` after reading what was sent (the
    connection is closed when that is too much)."""
    drained = await drain(receive)
    await send_json(send, status, {"error": message}, close=not drained, headers=headers)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


# --------------------------------------------------------------------- middleware
class BearerAuth:
    """ASGI middleware: ``Authorization: Bearer <credential>``, one of ``credentials`` (the
    per-start secret, the user's token), on the routes in ``protected``, or on every route
    but those in ``open_routes`` when ``everywhere`` (a user token is configured)."""

    def __init__(self, app, credentials, everywhere: bool, protected, open_routes):
        self.app = app
        self.expected = [c.encode("utf-8") for c in credentials if c]
        self.everywhere = everywhere
        self.protected = frozenset(protected)
        self.open = frozenset(open_routes)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.needed(scope) and not self.allowed(scope):
            challenge = [(b"www-authenticate", b'Bearer realm="coderag"')]
            await refuse(receive, send, 401, "missing or wrong bearer token", challenge)
            return
        await self.app(scope, receive, send)

    def needed(self, scope) -> bool:
        path = scope.get("path", "")
        return path in self.protected or (self.everywhere and path not in self.open)

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
                await refuse(receive, send, 403, problem)
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
                message = "POST bodies must be JSON sent as Content-Type: application/json"
                await refuse(receive, send, 415, message)
                return
        await self.app(scope, receive, send)


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


# ----------------------------------------------------------------------- deadlines
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


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines :func:`guarded_protocol` describes."""

    head_timeout: float = HEAD_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    _timer = None
    _phase = None  # "head" | "body" | None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm("head", self.head_timeout)  # a new connection that sends nothing, too

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase is None and self.conn.their_state is h11.IDLE:
            self._arm("head", self.head_timeout)  # the first byte of the next request
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()
        waiting = self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]
        if self._phase is None and waiting:  # part of a pipelined request, waiting
            self._arm("head", self.head_timeout)

    def _track(self) -> None:
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.body_timeout + 2.0)
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


def guarded_protocol(head_timeout: float = HEAD_TIMEOUT, body_timeout: float = BODY_TIMEOUT):
    """uvicorn's h11 protocol with deadlines it lacks (0.55 has only ``timeout_keep_alive``,
    which waits between requests and restarts with every byte received): a connection whose
    request headers are not complete ``head_timeout`` seconds after it opened, or after the
    request's first byte, is closed; so is one whose body is not complete ``body_timeout``
    seconds (plus a grace, :class:`ReadDeadline` answers 408 first) after its headers, read
    by the app or not. A client that trickles bytes holds a connection for a bounded time."""
    deadlines = {"head_timeout": head_timeout, "body_timeout": body_timeout}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), deadlines)
