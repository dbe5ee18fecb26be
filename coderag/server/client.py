"""The client side of ``coderag serve``: find the server for a repository, prove it is the one
that published itself, and send it a search or a refresh.

:func:`find_server` reads what a server published in the user's runtime folder
(:mod:`coderag.server.runtime`) and only returns loopback servers whose process lives.
:func:`request` checks the server's identity (``GET /identity``, an HMAC of a fresh nonce
under the per-start secret) on the very connection it then sends the request and the secret
over: a server that cannot prove it gets nothing. :func:`remote_search` and
:func:`remote_refresh` are what ``coderag search`` and the git hooks call.

Standard library only (no proxies, no redirects), so ``coderag search`` starts fast.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import CoderagError, UsageError
from ..vocabulary import SearchRequest
from .runtime import TOKEN_ENV, is_loopback, pid_alive, proof, read_runtime_info


class ServerUnavailable(CoderagError):
    """No coderag server answers at the given URL."""


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
            request(self, "/health", None, timeout=timeout)
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

    from ..files import find_root

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


# ------------------------------------------------------------------------- one request
@dataclass(frozen=True)
class _Target:
    """Where a request goes and with which credential."""

    base: str  # the URL shown in messages
    host: str
    port: int | None
    prefix: str  # the URL's path, routes go under it
    https: bool
    credential: str | None
    local: LocalServer | None  # found in the runtime folder: its identity is checked first


def _target(server) -> _Target:
    """``server`` is a :class:`LocalServer` (the secret is the credential) or a URL the user
    gave (``CODERAG_TOKEN``, if set, is the credential)."""
    from urllib.parse import urlsplit

    if isinstance(server, LocalServer):
        base, credential, local = server.url.rstrip("/"), server.secret, server
    else:
        base = str(server).rstrip("/")
        if not base.startswith(("http://", "https://")):
            base = "http://" + base
        credential, local = os.environ.get(TOKEN_ENV), None
    try:
        parts = urlsplit(base)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UsageError(f"not a server URL: {base}") from None
    if not host:
        raise UsageError(f"not a server URL: {base}")
    https = parts.scheme == "https"
    return _Target(base, host, port, parts.path.rstrip("/"), https, credential, local)


def request(server, route: str, payload: dict | None, *, timeout: float) -> dict:
    """One JSON request with the standard library, straight to the server (no proxies, no
    redirects): ``GET route`` without a payload, else ``POST route`` with it as the JSON body.
    A :class:`LocalServer` first proves its identity on the connection the request then uses.
    Returns the answer's JSON; raises :class:`ServerUnavailable` when nothing (or not that
    server) answers, :class:`~coderag.errors.UsageError` for a 400, a CoderagError for any
    other refusal."""
    import http.client

    t = _target(server)
    kind = http.client.HTTPSConnection if t.https else http.client.HTTPConnection
    conn = kind(t.host, t.port, timeout=timeout)
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if t.credential:
        headers["Authorization"] = f"Bearer {t.credential}"
    try:
        if t.local is not None:
            _check_identity(conn, t)
            conn.auto_open = 0  # the request goes over the connection just checked, or not at all
        conn.request("POST" if payload is not None else "GET", t.prefix + route, data, headers)
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ServerUnavailable(f"cannot reach a coderag server at {t.base} ({e})") from None
    finally:
        conn.close()
    if resp.status >= 300:
        raise _refusal(t, resp.status, resp.reason, body)
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ServerUnavailable(
            f"{t.base} did not answer with JSON; is it a coderag server?"
        ) from None


def _refusal(t: _Target, status: int, reason: str, body: bytes) -> CoderagError:
    """The error for an answer with ``status`` >= 300 (its ``{"error": ...}`` if it has one)."""
    try:
        message = json.loads(body.decode("utf-8")).get("error") or reason
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = reason
    if status == 401 and t.local is not None:
        return CoderagError(f"the server at {t.base} refused its own secret ({message})")
    if status == 401:
        return CoderagError(f"the server at {t.base} wants a bearer token; set {TOKEN_ENV}")
    if status == 400:
        return UsageError(f"server: {message}")
    return CoderagError(f"server ({status}): {message}")


def _check_identity(conn, t: _Target) -> None:
    """``GET /identity`` with a fresh nonce; anything but the right proof raises
    :class:`ServerUnavailable` before a query, a path or the secret is sent."""
    nonce = secrets.token_urlsafe(24)
    conn.request(
        "GET", f"{t.prefix}/identity?nonce={nonce}", headers={"Accept": "application/json"}
    )
    resp = conn.getresponse()
    body = resp.read(65536)
    try:
        got = json.loads(body.decode("utf-8")).get("proof")
    except (ValueError, AttributeError, UnicodeDecodeError):
        got = None
    want = proof(t.local.secret, nonce).encode("ascii")
    if not (
        resp.status == 200
        and isinstance(got, str)
        and hmac.compare_digest(got.encode("utf-8"), want)
    ):
        raise ServerUnavailable(
            f"the process at {t.base} is not the coderag server that published it "
            "(identity check failed); nothing was sent"
        )


# ----------------------------------------------------------------------- the two calls
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
    return request(server, "/search", payload, timeout=timeout)["hits"]


def remote_refresh(
    server: LocalServer | str, *, repo=None, paths=None, wait: bool = True, timeout: float = 120.0
) -> dict:
    """``POST /refresh`` on a running server (the git hook's way to hand over paths)."""
    payload: dict = {"paths": [str(p) for p in paths] if paths is not None else None}
    payload["wait"] = wait
    payload["timeout"] = timeout
    if repo is not None:
        payload["repo"] = _repo_arg(repo)
    return request(server, "/refresh", payload, timeout=timeout + 10)


def _repo_arg(repo) -> str:
    p = Path(str(repo)).expanduser()
    return str(p.resolve()) if p.exists() else str(repo)
