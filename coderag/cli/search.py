"""``coderag search``: one search, answered by a running ``coderag serve`` for the
repository when there is one (the model is warm there), else in this process.

Its flags are generated from :mod:`coderag.vocabulary` (the search request every face shares);
:data:`SEARCH_FLAGS` only says where a flag is spelled differently from ``--NAME``."""

from __future__ import annotations

import argparse
import json
import sys

from .. import vocabulary
from ..display import escape, escape_block
from ..errors import CoderagError, UsageError
from .options import OVERRIDES, add_model_arguments, open_index

HELP = "search the index"
EPILOG = """examples:
  coderag search "where do we retry failed uploads"
  coderag search parse_config --mode lexical
  coderag search "open a database connection" --lang python --path 'src/**' --json
  cat snippet.py | coderag search - --code
  coderag search "how are sessions expired" --rerank --rerank-model ./ms-marco-MiniLM-L6-v2"""

#: how `coderag search` spells the options of a search (coderag.vocabulary.SearchRequest)
#: where the generic flag is not the right one: --NAME, of the option's type (a bool: a
#: switch; one whose default is None: --NAME/--no-NAME), choices, default and description.
#: None: not a flag; "group": added with that argument group.
SEARCH_FLAGS: dict[str, dict | None] = {
    "query": None,  # the positional QUERY ('-': stdin) or --code-file; see read_query
    "k": {"flags": ("-k",)},
    "code": {"action": "store_true"},  # no --no-code: without --code the query is guessed
    "rerank": {
        "group": "reranking",
        "help": "re-order the top candidates with a cross-encoder / Qwen3-Reranker "
        "(default: setting 'rerank', auto = on when queries run on a GPU; env CODERAG_RERANK)",
    },
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Hybrid search (dense vectors + full text, fused) for a natural-language "
        "question or a code snippet."
    )
    p.epilog = EPILOG
    p.add_argument("query", nargs="?", help="the question or code; '-' reads it from stdin")
    p.add_argument("--repo", help="repository root (default: git root around the current folder)")
    _search_flags(p)
    p.add_argument(
        "--code-file",
        metavar="PATH[:START-END]",
        help="use lines of a file as the code query (find similar implementations)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array of hits")
    p.add_argument(
        "--server",
        help="ask a running `coderag serve` at this URL, sending $CODERAG_TOKEN if set "
        "(default: the server for the repository published in your private runtime folder, "
        "if one runs and proves its identity)",
    )
    p.add_argument(
        "--no-server",
        action="store_true",
        help="search in this process even if a `coderag serve` runs",
    )
    add_model_arguments(p)
    g = p.add_argument_group("reranking")
    _search_flag(g, "rerank")
    g.add_argument(
        "--rerank-model",
        help="reranker: 'auto', a local folder or a Hugging Face id (env CODERAG_RERANK_MODEL)",
    )


def _search_flag(p, name: str) -> None:
    """Add the flag of the search option ``name`` to ``p`` (a parser or an argument group)."""
    opt = next(o for o in vocabulary.options() if o.name == name)
    spelling = dict(SEARCH_FLAGS.get(name) or {})
    flags = spelling.pop("flags", ("--" + name.replace("_", "-"),))
    spelling.pop("group", None)
    kw: dict = {"dest": name, "default": opt.default, "help": opt.help}
    if opt.type is bool:
        kw["action"] = "store_true" if opt.default is False else argparse.BooleanOptionalAction
    else:
        kw["type"] = opt.type
        if opt.choices is not None:
            kw["choices"] = opt.choices
        if opt.default is not None:
            kw["help"] += f" (default {opt.default})"
    kw |= spelling
    p.add_argument(*flags, **kw)


def _search_flags(p: argparse.ArgumentParser) -> None:
    """A flag for every search option but those SEARCH_FLAGS leaves out or puts in a group."""
    for name in vocabulary.FIELDS:
        spelling = SEARCH_FLAGS.get(name, {})
        if spelling is not None and "group" not in spelling:
            _search_flag(p, name)


def read_query(args) -> tuple[str, bool | None]:
    """The query text and whether it is code: the QUERY argument, stdin ('-'), or lines of
    ``--code-file PATH[:START-END]`` (code)."""
    if args.query is None and not args.code_file:
        raise UsageError("a query is needed (or --code-file PATH[:START-END], or '-' for stdin)")
    if args.code_file:
        return _code_file(args.code_file), True
    if args.query == "-":
        return sys.stdin.read(), args.code
    return args.query, args.code


def _code_file(spec: str) -> str:
    from pathlib import Path

    start = end = None
    if ":" in spec and spec.rsplit(":", 1)[1].replace("-", "").isdigit():
        spec, rng = spec.rsplit(":", 1)
        a, _, b = rng.partition("-")
        start, end = int(a), int(b or a)
    try:
        lines = Path(spec).read_text("utf-8", errors="replace").splitlines()
    except OSError as e:
        raise CoderagError(f"cannot read {spec}: {e.strerror or e}") from None
    if start is not None:
        lines = lines[start - 1 : end]
    return "\n".join(lines)


def run(args) -> int:
    query, code = read_query(args)
    # the same search, whether a running server or this process answers it
    params = {n: getattr(args, n) for n in vocabulary.FIELDS if n != "query"} | {"code": code}
    eligible = (
        not args.server
        and not args.no_server
        and args.k <= vocabulary.SERVED_MAX_K  # a server refuses more
        and not any(getattr(args, a, None) for a in OVERRIDES)
    )
    url = args.server
    if eligible:
        from ..server import find_server  # standard library only: cheap

        url = find_server(args.repo)  # a LocalServer: loopback URL + per-start secret
    hits = _remote_search(url, args, query, params, published=eligible) if url else None
    coverage = None
    if hits is None:
        # the next search finds a warm server, unless one was found and did not answer
        hits, coverage = _search_here(args, query, params, start_server=eligible and not url)
    if args.json:
        print(json.dumps(hits, ensure_ascii=False))
        return 0
    _print_hits(hits, query)
    if coverage is not None and coverage < 1.0 and args.mode != "lexical":
        print(
            f"note: dense index {coverage:.0%} complete; results use full text for the rest",
            file=sys.stderr,
        )
    return 0


def _search_here(args, query: str, params: dict, start_server: bool):
    """The hits of a search in this process, and the share of chunks with vectors."""
    idx = open_index(args)
    hits = [h.to_dict() for h in idx.search(query, **params)]
    if start_server:
        from ..server import autoserve_enabled, start_background

        if autoserve_enabled():
            start_background(idx.root)
    return hits, idx.last_dense_coverage


def _remote_search(url, args, query: str, params: dict, published: bool) -> list[dict] | None:
    """The hits from the server at ``url`` (``--server``, or the one ``published`` for the
    repository); None when a published one did not answer as itself: search here then.
    An explicit ``--server`` that does not answer is an error."""
    from ..server import ServerUnavailable, remote_search

    repo = args.repo
    if published:
        from ..files import find_root

        repo = str(find_root(args.repo))
    try:
        return remote_search(url, query, repo=repo, **params)
    except ServerUnavailable:
        if not published:
            raise
        return None  # gone, or not the server that published the file: search here


def _print_hits(hits: list[dict], query: str) -> None:
    from rich.console import Console
    from rich.text import Text

    from ..rank import expand

    # repository text (paths, symbols, snippets) goes in Text objects, never parsed as markup,
    # with control, C1 and bidi characters made visible (escape): nothing reaches the terminal raw
    console = Console(highlight=False)
    if not hits:
        console.print("no results")
        return
    words = sorted({w for w in expand(query) if len(w) >= 3}, key=len, reverse=True)
    for h in hits:
        head = Text()
        head.append(f"{escape(h['path'])}:{h['start_line']}-{h['end_line']}", style="bold cyan")
        head.append(f"  {escape(h['symbol'] or '-')}", style="yellow")
        head.append(f"  {h['score']:.4f}", style="dim")
        console.print(head)
        lines = escape_block(h["text"]).splitlines()
        snippet = Text("\n".join("    " + ln for ln in lines[:6]))
        if len(lines) > 6:
            snippet.append(f"\n    … {len(lines) - 6} more lines", style="dim")
        snippet.highlight_words(words, style="bold magenta", case_sensitive=False)
        console.print(snippet)
        console.print()
