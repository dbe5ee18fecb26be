"""The search vocabulary: what a search asks for and what it answers, said once.

:class:`SearchRequest` lists every option of a search with its type, default, allowed
values or range and a one-line description; :class:`Hit` every field of a result. The
faces derive their own spelling from these instead of restating them:

* ``Index.search`` takes the same keywords (a test holds its signature to the request);
* the HTTP API validates ``/search`` bodies with :func:`validate`, and its OpenAPI document
  uses :func:`request_schema` and :func:`hit_schema`;
* the MCP tool ``search_code`` gets its signature (and so its input schema) from
  :func:`options` and validates with :func:`validate`;
* ``coderag search`` makes a flag per option (``--NAME``, unless ``cli.search.SEARCH_FLAGS`` spells
  it otherwise) and hands the same options to :func:`~coderag.server.remote_search`.

Adding a search option: a field here and its implementation in ``Index.search``.

The k limits: :data:`MAX_K` is the library's (``Index.search``, and ``coderag search``
answered in its own process); :data:`SERVED_MAX_K` bounds what one request may ask of a
process shared with others (the HTTP API, the MCP tool), so ``coderag search`` hands a
search to a running server only within it.

Standard library only: ``coderag search``'s fast path imports this.
"""

import types
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Union, get_args, get_origin

from .errors import UsageError

MODES = ("hybrid", "dense", "lexical")
KINDS = ("function", "method", "class", "code", "doc")
MAX_K = 1000  # hits per search: the library's limit
SERVED_MAX_K = 200  # hits per search: the limit of a request to a server (HTTP, MCP)


def _option(
    description: str,
    *,
    default: Any = MISSING,
    choices: tuple | None = None,
    low: int | None = None,
    high: int | None = None,
    served_high: int | None = None,
    non_empty: bool = False,
):
    """A dataclass field with what the faces need to know about it (see :class:`Option`)."""
    meta = {"help": description, "choices": choices, "low": low, "high": high}
    meta |= {"served_high": served_high, "non_empty": non_empty}
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One search: the keywords of ``Index.search``, the body of ``POST /search`` (plus the
    HTTP API's own ``repo``) and the arguments of the MCP tool ``search_code``. ``None`` (or
    leaving an option out) means its default."""

    query: str = _option("a natural-language question or a code snippet", non_empty=True)
    k: int = _option("number of hits", default=10, low=1, high=MAX_K, served_high=SERVED_MAX_K)
    mode: str = _option(
        "hybrid: meaning and words, fused; dense: meaning only; lexical: words only",
        default="hybrid",
        choices=MODES,
    )
    lang: str | None = _option("only this language (python, go, markdown, ...)", default=None)
    path: str | None = _option("only paths matching this glob ('src/**', '*.py')", default=None)
    kind: str | None = _option("only chunks of this kind", default=None, choices=KINDS)
    code: bool | None = _option("treat the query as code (default: guessed)", default=None)
    files: bool = _option("rank files instead of chunks: one hit per file", default=False)
    rerank: bool | None = _option(
        "re-order the top candidates with the reranker model (default: the 'rerank' "
        "setting; slow on a CPU)",
        default=None,
    )

    def as_search_kwargs(self) -> dict:
        """The keyword arguments of ``Index.search`` (``query`` included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def body(self) -> dict:
        """The JSON body of ``POST /search``: every option that is not None."""
        return {k: v for k, v in self.as_search_kwargs().items() if v is not None}


@dataclass
class Hit:
    """One search result: an exact line span of one file."""

    path: str = _option("POSIX path relative to the repository root")
    start_line: int = _option("first line, 1-based", low=1)
    end_line: int = _option("last line, 1-based, inclusive", low=1)
    kind: str = _option("what the lines are", choices=KINDS)
    language: str = _option("the file's language (python, markdown, text, ...)")
    symbol: str | None = _option(
        "qualified name (pkg.mod.Class.method); a doc chunk's heading path; or null"
    )
    score: float = _option("relevance: higher is better, comparable within one search")
    text: str = _option("the exact lines start_line..end_line")

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = tuple(f.name for f in fields(SearchRequest))
HIT_FIELDS = tuple(f.name for f in fields(Hit))


@dataclass(frozen=True, slots=True)
class Option:
    """One field of :class:`SearchRequest` or :class:`Hit`, as the faces see it."""

    name: str
    type: type  # str, int, float or bool
    nullable: bool  # None is a value of its own (guess, the setting, no symbol)
    default: Any  # MISSING: required
    help: str
    choices: tuple | None
    low: int | None
    high: int | None
    non_empty: bool  # a string with more than white space

    @property
    def required(self) -> bool:
        return self.default is MISSING


def options(cls=SearchRequest, *, served: bool = False) -> list[Option]:
    """The fields of ``cls`` in order; ``served``: with the limits of a request to a server."""
    out = []
    for f in fields(cls):
        kind, nullable = f.type, False
        if get_origin(kind) in (Union, types.UnionType):
            args = [a for a in get_args(kind) if a is not type(None)]
            kind, nullable = args[0], len(args) < len(get_args(kind))
        m = f.metadata
        high = m["served_high"] if served and m["served_high"] is not None else m["high"]
        out.append(
            Option(
                name=f.name,
                type=kind,
                nullable=nullable,
                default=f.default,
                help=m["help"],
                choices=m["choices"],
                low=m["low"],
                high=high,
                non_empty=m["non_empty"],
            )
        )
    return out


# ------------------------------------------------------------------------------ checking
_TYPE_ERRORS = {
    str: "must be a string",
    int: "must be an integer",
    float: "must be a number",
    bool: "must be true, false or null",
}


def _has_type(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def check(*, served: bool = False, **values) -> None:
    """Raise :class:`UsageError` for a value outside its option's allowed values or range
    (``served``: the limits of a request to a server). None passes: it means the default."""
    for opt in options(served=served):
        value = values.get(opt.name)
        if value is None:
            continue
        if opt.choices is not None and value not in opt.choices:
            raise UsageError(f"unknown {opt.name} {value!r} (choose from {', '.join(opt.choices)})")
        low, high = opt.low, opt.high
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                raise UsageError(f"'{opt.name}' must be between {low} and {high}")
            bound = f"at least {low}" if high is None else f"at most {high}"
            raise UsageError(f"'{opt.name}' must be {bound}")


def validate(body: dict, *, extra: Iterable[str] = ()) -> SearchRequest:
    """A search as it arrives from outside (a JSON ``/search`` body, ``search_code``'s
    arguments) as a checked :class:`SearchRequest`, with the served limits. ``extra``: the
    names a face handles itself (the HTTP API's ``repo``), let through unread. A null, or an
    empty string for an optional string, means the option's default. Raises
    :class:`UsageError` with a one-line message."""
    unknown = set(body) - set(FIELDS) - set(extra)
    if unknown:
        raise UsageError(f"unknown field(s) {sorted(unknown)}")
    values = {}
    for opt in options(served=True):
        value = body.get(opt.name)
        if not opt.required and (value is None or (value == "" and opt.type is str)):
            continue
        if not _has_type(value, opt.type) or (opt.non_empty and not value.strip()):
            what = "must be a non-empty string" if opt.non_empty else _TYPE_ERRORS[opt.type]
            raise UsageError(f"'{opt.name}' {what}")
        values[opt.name] = value
    check(served=True, **values)
    return SearchRequest(**values)


# ---------------------------------------------------------------------------- JSON schema
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def property_schema(opt: Option) -> dict:
    """The JSON schema of one option (or hit field)."""
    kind = _JSON_TYPES[opt.type]
    out: dict = {"type": [kind, "null"] if opt.nullable else kind}
    if opt.choices is not None:
        out["enum"] = [*opt.choices, None] if opt.nullable else list(opt.choices)
    if opt.non_empty:
        out["minLength"] = 1
    if opt.low is not None:
        out["minimum"] = opt.low
    if opt.high is not None:
        out["maximum"] = opt.high
    if not opt.required and opt.default is not None:
        out["default"] = opt.default
    out["description"] = opt.help
    return out


def request_schema(extra: dict | None = None) -> dict:
    """The JSON schema of a served search request (``extra``: a face's own properties)."""
    opts = options(served=True)
    return {
        "type": "object",
        "required": [o.name for o in opts if o.required],
        "additionalProperties": False,
        "properties": {o.name: property_schema(o) for o in opts} | (extra or {}),
    }


def hit_schema() -> dict:
    """The JSON schema of one hit (``Hit.to_dict()``)."""
    opts = options(Hit)
    return {
        "type": "object",
        "required": [o.name for o in opts],
        "properties": {o.name: property_schema(o) for o in opts},
    }
