"""The HTTP API of ``coderag serve`` said once: :data:`ENDPOINTS` lists every route (path,
method, handler name, who needs a credential, request and answer shapes); the app routes and
guards from it (:mod:`coderag.server.app`) and :func:`openapi_schema` makes the OpenAPI 3.1
document of ``GET /openapi.json`` from it.

The search request and the hit come from :mod:`coderag.vocabulary`; every other shape is
written once below, from the same limits the server enforces.

Standard library only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..vocabulary import hit_schema, request_schema
from .runtime import NONCE_PATTERN
from .service import MAX_PATHS, MAX_WAIT, REFRESH_TIMEOUT, package_version

# who must send a bearer credential (the per-start secret or the user's token)
ALWAYS = "always"  # every request: the route changes state
NEVER = "never"  # no request: the identity proof, which a client asks for before trusting
WITH_TOKEN = "with token"  # only when the server was started with a user token

DESCRIPTION = (
    "Local hybrid code search. POST bodies must be JSON sent with "
    "`Content-Type: application/json` (curl: `-H 'Content-Type: application/json' -d "
    "'{...}'`; else 415). The Host header must name the loopback interface (or a name "
    "given with --allow-host) and an Origin header one given with --cors-origin (else "
    "403). Bearer credentials: the per-start secret the server publishes in the "
    "user's runtime folder ($XDG_RUNTIME_DIR/coderag/server-*.json), or the token it "
    "was started with. POST /refresh always needs one; every request but "
    "GET /identity does when the server was started with a token."
)


# ------------------------------------------------------------------ schema helpers
def _typed(kind: str, *, nullable: bool = False, **more) -> dict:
    """``{"type": kind}`` (or ``[kind, "null"]``) with more keywords."""
    return {"type": [kind, "null"] if nullable else kind, **more}


def _object(properties: dict | None = None, **more) -> dict:
    """An object schema, with ``properties`` when given."""
    return {"type": "object", **more} | ({"properties": properties} if properties else {})


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


# --------------------------------------------------------------------------- shapes
ERROR = _object({"error": _typed("string")})  # every refusal: {"error": "one line"}
REPO = _typed(
    "string",
    nullable=True,
    description="a served repository: its root, a path inside it or its folder name; "
    "may be left out when one repository is served",
)
SEARCH_ANSWER = _object(
    {
        "repo": _typed("string"),
        "hits": _typed("array", items={"$ref": "#/components/schemas/Hit"}),
        "took_ms": _typed("number"),
    }
)
REFRESH_REQUEST = _object(
    {
        "repo": REPO,
        "paths": _typed(
            "array",
            nullable=True,
            items=_typed("string"),
            maxItems=MAX_PATHS,
            description="files inside the repository (relative to its root or absolute); "
            "null or absent: everything",
        ),
        "wait": _typed(
            "boolean", default=False, description="answer only when the index has caught up"
        ),
        "timeout": _typed(
            "number",
            default=REFRESH_TIMEOUT,
            maximum=MAX_WAIT,
            description="seconds to wait at most (with wait)",
        ),
    },
    additionalProperties=False,
)
REFRESH_FIELDS = frozenset(REFRESH_REQUEST["properties"])
REPO_STATUS = _object(
    {
        "root": _typed("string"),
        "files": _typed("integer"),
        "chunks": _typed("integer"),
        "model": _typed("string", nullable=True),
        "indexed_at": _typed("string", nullable=True),
        "dense_coverage": _typed("number"),
        "watcher": _typed("object", nullable=True),
        "queue": _typed("integer"),
    }
)
STATUS_ANSWER = _object(
    {
        "model": _object(),
        "in_flight": _typed("integer"),
        "repos": _typed("array", items=REPO_STATUS),
    }
)
IDENTITY_ANSWER = _object({"proof": _typed("string"), "pid": _typed("integer")})
NONCE = {
    "name": "nonce",
    "in": "query",
    "required": True,
    "schema": _typed("string", pattern=f"^{NONCE_PATTERN}$"),
}

# what a request with a JSON body may be refused with (guards, validation, the index, the pool)
POST_ERRORS = ("400", "401", "403", "404", "408", "409", "413", "415", "503")


# ------------------------------------------------------------------------ endpoints
@dataclass(frozen=True)
class Endpoint:
    """One route of the API."""

    path: str
    method: str  # GET or POST
    name: str  # its operationId, and the name of its handler in the app
    summary: str
    answers: tuple  # (status, description, schema) of each success
    errors: tuple = ("401",)  # statuses answered with ERROR
    credential: str = WITH_TOKEN  # ALWAYS, NEVER or WITH_TOKEN
    body: dict | None = None  # the JSON schema of the request body
    params: tuple = ()  # OpenAPI parameter objects


ENDPOINTS = (
    Endpoint(
        "/search",
        "POST",
        "search",
        "Search a served repository",
        answers=(("200", "ok", SEARCH_ANSWER),),
        errors=POST_ERRORS,
        body=request_schema({"repo": REPO}),
    ),
    Endpoint(
        "/refresh",
        "POST",
        "refresh",
        "Re-index changed files (or all) of a served repository",
        answers=(
            ("200", "done (wait: true)", _object()),
            ("202", "queued (wait: false)", _object()),
        ),
        errors=("504", *POST_ERRORS),
        credential=ALWAYS,
        body=REFRESH_REQUEST,
    ),
    Endpoint(
        "/status",
        "GET",
        "status",
        "Model, pool and per-repository index and watcher state",
        answers=(("200", "ok", STATUS_ANSWER),),
    ),
    Endpoint("/health", "GET", "health", "Liveness", answers=(("200", "ok", _object()),)),
    Endpoint(
        "/openapi.json", "GET", "openapi", "This document", answers=(("200", "ok", _object()),)
    ),
    Endpoint(
        "/identity",
        "GET",
        "identity",
        "Prove this is the server that published the runtime file: proof = hex "
        "HMAC-SHA256(secret, nonce). Needs no credential; clients check it before sending "
        "anything else.",
        answers=(("200", "ok", IDENTITY_ANSWER),),
        errors=("400", "403"),
        credential=NEVER,
        params=(NONCE,),
    ),
)


def routes_needing(credential: str) -> frozenset[str]:
    """The paths of the endpoints whose ``credential`` rule is this one."""
    return frozenset(e.path for e in ENDPOINTS if e.credential == credential)


# ------------------------------------------------------------------------- document
BEARER = [{"bearer": []}]


def _operation(e: Endpoint) -> dict:
    op: dict = {"summary": e.summary, "operationId": e.name}
    if e.credential == ALWAYS:
        op["security"] = BEARER
    elif e.credential == NEVER:
        op["security"] = []
    if e.params:
        op["parameters"] = list(e.params)
    if e.body is not None:
        op["requestBody"] = {"required": True, "content": _json(e.body)}
    responses = {code: {"description": d, "content": _json(s)} for code, d, s in e.answers}
    error = {"description": "error", "content": _json(ERROR)}
    op["responses"] = responses | {code: error for code in e.errors}
    return op


def openapi_schema(token_required: bool = False) -> dict:
    """The OpenAPI 3.1 description of every endpoint, made from :data:`ENDPOINTS`."""
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "coderag", "version": package_version(), "description": DESCRIPTION},
        "paths": {e.path: {e.method.lower(): _operation(e)} for e in ENDPOINTS},
        "components": {
            "schemas": {"Hit": hit_schema()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if token_required:
        doc["security"] = BEARER
    return copy.deepcopy(doc)  # the shapes above are shared: a caller may change its copy
