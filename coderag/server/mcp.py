"""``coderag mcp``: a Model Context Protocol server over stdio for coding assistants.

Built on the official ``mcp`` Python SDK (``MCPServer``, named ``FastMCP`` before mcp 2). It
serves one repository with three tools:

``search_code``   hybrid search; hits with path, lines, symbol and text
``index_status``  what the index holds and what the watcher is doing
``reindex``       bring the index up to date (some paths, or everything) and wait for it

The model is loaded once at start, and a watcher keeps the index fresh while the server runs.
stdout carries nothing but MCP messages: the model is loaded with stdout pointed at stderr,
and the SDK diverts file descriptor 1 while it serves; logs go to stderr.

Only the standard library is imported at module level.
"""

import logging
import os
import sys
from contextlib import contextmanager
from typing import Any

from ..errors import CoderagError
from ..vocabulary import Hit, options, validate
from .args import limit_model_threads, model_overrides
from .background import BackgroundWatcher, one_line, stderr_logger, wait_until_applied

log = logging.getLogger("coderag.mcp")

REINDEX_TIMEOUT = 600.0
INSTRUCTIONS = (
    "coderag searches this repository's code and docs by meaning and by identifiers. Call "
    "search_code with a natural-language question ('where do we retry failed uploads') or a "
    "code snippet; each hit names a file and an exact line span. The index follows file edits "
    "by itself; call reindex only after changes made outside this machine's file system view."
)

EPILOG = """examples:
  coderag mcp                     serve the repository around the current folder
  coderag mcp ~/src/project

Register it in an MCP client (Claude Desktop, Cursor, VS Code, ...):
  {"mcpServers": {"coderag": {"command": "coderag", "args": ["mcp", "/path/to/repo"]}}}
"""


def add_arguments(p) -> None:
    p.description = (
        "Serve a repository to coding assistants over the Model Context Protocol (stdio), "
        "with tools search_code, index_status and reindex. The index is kept fresh by a watcher."
    )
    p.epilog = EPILOG
    p.add_argument(
        "path", nargs="?", help="the repository (default: the git root around the current folder)"
    )
    p.add_argument("--no-watch", action="store_true", help="do not watch the files for changes")
    p.add_argument("--model", help="embedding model (default: the one the index was built with)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--dtype", help="float32, bfloat16, float16 (default: by device)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for the model (default 1: steady latency on a busy machine)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every tool call to stderr")


def run(args) -> int:
    from ..index import Index

    limit_model_threads(args.threads)  # before torch is imported
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="coderag mcp: %(message)s",
        stream=sys.stderr,
    )
    say = stderr_logger()
    with stdout_to_stderr():
        index = Index(args.path, **model_overrides(args))
        _ = index.embedder  # load the model now, not on the first call
        background = BackgroundWatcher(
            index,
            log=say,
            verbose=args.verbose,
            on_failure=lambda error: say(f"coderag mcp: not watching {index.root}: {error}"),
        )
        if not args.no_watch:
            background.start()
        server = build_server(index, background)
    print(f"coderag mcp: serving {index.root} over stdio", file=sys.stderr, flush=True)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        background.stop()
    return 0


def watcher_state(background) -> dict | None:
    """What ``index_status`` says of the watcher: its state; why it does not run; or None
    (not asked for)."""
    if background is None:
        return None
    state = background.state()
    if state is None and background.error is not None:
        return {"watching": False, "error": background.error}
    return state


def reindex_now(index, background, paths: list[str] | None, timeout: float) -> dict:
    """Bring the index up to date (through the watcher when it runs) and wait for it, vectors
    included; ``TimeoutError`` when the watcher takes longer than ``timeout``."""
    w = background.watcher if background is not None else None
    if w is None:
        return index.refresh(paths).summary()
    w.submit(paths)
    if not wait_until_applied(w, timeout):
        raise TimeoutError(f"the index did not catch up within {timeout:g}s")
    # the watcher stores batches for full text first; the caller asked for all of it
    embedded = index.embed_pending(0)
    return {"watcher": dict(w.state), "chunks_embedded_now": embedded}


def _annotated(opt, *, literal: bool = True):
    """The type annotation of a vocabulary option, with its description and range for the
    SDK's JSON schema (checked by :func:`coderag.vocabulary.validate`, whose messages say
    what is wrong better than pydantic's)."""
    from typing import Annotated, Literal

    from pydantic import Field

    kind = Literal[opt.choices] if literal and opt.choices is not None else opt.type
    if opt.nullable:
        kind = kind | None
    extra = {"minimum": opt.low, "maximum": opt.high, "minLength": 1 if opt.non_empty else None}
    extra = {k: v for k, v in extra.items() if v is not None}
    return Annotated[kind, Field(description=opt.help, json_schema_extra=extra or None)]


def _search_signature():
    """``search_code``'s signature, from the vocabulary: the SDK makes its input schema (and
    its output schema, from the hits' fields) out of it."""
    import inspect

    from typing_extensions import TypedDict

    hit = TypedDict("SearchHit", {o.name: _annotated(o, literal=False) for o in options(Hit)})
    params = [
        inspect.Parameter(
            o.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if o.required else o.default,
            annotation=_annotated(o),
        )
        for o in options(served=True)
    ]
    return inspect.Signature(params, return_annotation=list[hit])


def _sign(fn, signature) -> None:
    """Give ``fn`` this signature (what ``inspect`` and ``typing.get_type_hints`` see)."""
    fn.__signature__ = signature
    fn.__annotations__ = {n: p.annotation for n, p in signature.parameters.items()}
    fn.__annotations__["return"] = signature.return_annotation


@contextmanager
def stdout_to_stderr():
    """Point file descriptor 1 (and sys.stdout) at stderr for a while: whatever a library
    prints while the model loads must not reach the MCP client as a broken message."""
    sys.stdout.flush()
    saved = os.dup(1)
    saved_py = sys.stdout
    try:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = saved_py
        os.dup2(saved, 1)
        os.close(saved)


def _sdk():
    """The SDK's high-level server class and its tool error (mcp 2: MCPServer; 1: FastMCP)."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:  # mcp 1.x
        from mcp.server.fastmcp import FastMCP as MCPServer
        from mcp.server.fastmcp.exceptions import ToolError
    return MCPServer, ToolError


def build_server(index, background=None):
    """The MCP server for one :class:`~coderag.index.Index` (and its
    :class:`~coderag.server.background.BackgroundWatcher`, if any): the three tools."""
    MCPServer, ToolError = _sdk()
    server = MCPServer("coderag", instructions=INSTRUCTIONS, log_level="WARNING")
    for tool in (
        search_code_tool(index, ToolError),
        index_status_tool(index, background),
        reindex_tool(index, background, ToolError),
    ):
        server.tool()(tool)
    return server


def search_code_tool(index, ToolError):
    """The tool ``search_code``, with its signature (and so its schemas) from the vocabulary."""

    def search_code(**arguments):
        """Search the repository's code and docs; best hits first.

        query: a natural-language question ("where are failed uploads retried") or code.
        Each hit: path (relative to the repository root), start_line and end_line (1-based,
        inclusive), symbol (qualified name or null), kind, language, score, and text (the
        exact lines).
        """
        try:
            request = validate(arguments)
            hits = index.search(**request.as_search_kwargs())
        except CoderagError as e:
            raise ToolError(one_line(e)) from None
        return [h.to_dict() for h in hits]

    _sign(search_code, _search_signature())
    return search_code


def index_status_tool(index, background):
    """The tool ``index_status``."""

    def index_status() -> dict[str, Any]:
        """What the index holds (files, chunks, model, last update, share of chunks with
        vectors) and what the file watcher is doing (queue length, batches applied)."""
        try:
            out = index.status()
            out["indexed"] = True
        except CoderagError as e:
            out = {"root": str(index.root), "indexed": False, "error": str(e)}
        out["watcher"] = watcher_state(background)
        return out

    return index_status


def reindex_tool(index, background, ToolError):
    """The tool ``reindex``."""

    def reindex(paths: list[str] | None = None) -> dict[str, Any]:
        """Bring the index up to date and wait until it is: only `paths` (files, relative to
        the repository root), or everything when left out. Not needed after ordinary edits:
        a watcher follows them."""
        absolute = None if paths is None else _inside(index.root, paths, ToolError)
        try:
            done = reindex_now(index, background, absolute, REINDEX_TIMEOUT)
        except CoderagError as e:
            raise ToolError(one_line(e)) from None
        except TimeoutError:
            raise ToolError(f"the index did not catch up within {REINDEX_TIMEOUT:g}s") from None
        return {"root": str(index.root), "done": True, **done}

    return reindex


def _inside(root, paths: list[str], ToolError) -> list[str]:
    """``paths`` (relative to ``root``) as absolute paths; a tool error for one outside it."""
    out = []
    for p in paths:
        resolved = (root / p).resolve()
        if resolved != root and root not in resolved.parents:
            raise ToolError(f"path {p!r} is outside the repository")
        out.append(str(resolved))
    return out
