"""``coderag`` command line: a thin layer over :class:`coderag.Index`.

Exit codes: 0 ok, 1 user error (one line on stderr, no traceback), 2 usage error.
With ``--json`` nothing but JSON is written to stdout; progress and notes go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from . import vocabulary
from .display import escape, escape_block
from .errors import CoderagError, UsageError

EPILOG = """examples:
  coderag index                      index the git repository around the current folder
  coderag search "where do we retry failed uploads"
  coderag search "def parse_config(path):" --kind function -k 5
  coderag status --json
"""

# sub-commands implemented in face modules: name -> module exposing add_arguments/run
FACES = {
    "watch": "coderag.watch",
    "serve": "coderag.server.args",
    "mcp": "coderag.server.mcp",
    "hook": "coderag.hook",
    "eval": "coderag.evaluate",
}
FACE_HELP = {
    "watch": "keep the index equal to the working tree (debounced file events)",
    "serve": "HTTP JSON API for editors, model kept warm, index kept fresh",
    "mcp": "MCP server over stdio for coding assistants",
    "hook": "install or run git hooks that keep the index fresh",
    "eval": "measure retrieval quality on a labelled query file",
}


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        help="embedding model: 'auto' (default), a local folder or a Hugging Face id "
        "in sentence-transformers format (env CODERAG_MODEL)",
    )
    g.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    g.add_argument("--dtype", help="float32, bfloat16, float16 (default: by device)")
    g.add_argument("--dim", type=int, help="Matryoshka dimension to truncate vectors to")


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


def _rerank_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reranking")
    _search_flag(g, "rerank")
    g.add_argument(
        "--rerank-model",
        help="reranker: 'auto', a local folder or a Hugging Face id (env CODERAG_RERANK_MODEL)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="coderag",
        description="Find the code that does X: local hybrid search over a repository's code and docs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"coderag {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    pi = sub.add_parser(
        "index",
        help="index (or refresh) a repository",
        description="Walk the repository, chunk code and docs with tree-sitter, embed and store "
        "them under <repo>/.coderag/. Unchanged files are skipped; only changed chunks are embedded.",
        epilog="examples:\n  coderag index\n  coderag index ~/src/project --json\n"
        "  coderag index src/app.py src/util.py\n  coderag index --rebuild --model ./my-model\n"
        "  coderag index --vectors-only   # embed what --lexical-only or a git hook left",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pi.add_argument(
        "paths",
        nargs="*",
        help="the repository folder (default: the git root around the current folder), "
        "or files inside it to index only those",
    )
    pi.add_argument("--repo", help="repository root when PATHS are files")
    pi.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    pi.add_argument("--rebuild", action="store_true", help="drop the index and build it anew")
    pi.add_argument(
        "--lexical-only",
        action="store_true",
        help="store chunks and the full-text index, leave embedding for later",
    )
    pi.add_argument(
        "--vectors-only",
        action="store_true",
        help="only embed the chunks still without a vector (what --lexical-only or a git "
        "hook left for later); reads no files",
    )
    pi.add_argument(
        "--staged",
        action="store_true",
        help="index the staged (git index) version of changed files",
    )
    pi.add_argument("-v", "--verbose", action="store_true", help="name every skipped file")
    pi.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    _model_args(pi)

    ps = sub.add_parser(
        "search",
        help="search the index",
        description="Hybrid search (dense vectors + full text, fused) for a natural-language "
        "question or a code snippet.",
        epilog='examples:\n  coderag search "where do we retry failed uploads"\n'
        "  coderag search parse_config --mode lexical\n"
        "  coderag search \"open a database connection\" --lang python --path 'src/**' --json\n"
        "  cat snippet.py | coderag search - --code\n"
        '  coderag search "how are sessions expired" --rerank --rerank-model ./ms-marco-MiniLM-L6-v2',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ps.add_argument("query", nargs="?", help="the question or code; '-' reads it from stdin")
    ps.add_argument("--repo", help="repository root (default: git root around the current folder)")
    _search_flags(ps)
    ps.add_argument(
        "--code-file",
        metavar="PATH[:START-END]",
        help="use lines of a file as the code query (find similar implementations)",
    )
    ps.add_argument("--json", action="store_true", help="print a JSON array of hits")
    ps.add_argument(
        "--server",
        help="ask a running `coderag serve` at this URL, sending $CODERAG_TOKEN if set "
        "(default: the server for the repository published in your private runtime folder, "
        "if one runs and proves its identity)",
    )
    ps.add_argument(
        "--no-server",
        action="store_true",
        help="search in this process even if a `coderag serve` runs",
    )
    _model_args(ps)
    _rerank_args(ps)

    pst = sub.add_parser(
        "status",
        help="show what the index holds",
        description="Files, chunks, model, dimension, last indexed time and size on disk.",
        epilog="examples:\n  coderag status\n  coderag status --repo ~/src/project --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pst.add_argument("--repo", help="repository root (default: git root around the current folder)")
    pst.add_argument("--json", action="store_true", help="print a JSON object")

    for name, modname in FACES.items():
        fp = sub.add_parser(
            name, help=FACE_HELP[name], formatter_class=argparse.RawDescriptionHelpFormatter
        )
        fp.set_defaults(_face=modname)
        try:
            importlib.import_module(modname).add_arguments(fp)
        except ImportError:
            fp.set_defaults(_unavailable=True)
    return p


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("coderag")
    except Exception:  # noqa: BLE001
        return "0+unknown"


def _err(msg: str) -> None:
    print(f"coderag: {escape(msg)}", file=sys.stderr)  # messages may quote repository text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "_face", None):
            if getattr(args, "_unavailable", False):
                _err(f"`{args.command}` is not available in this build")
                return 1
            return importlib.import_module(args._face).run(args)
        return {"index": cmd_index, "search": cmd_search, "status": cmd_status}[args.command](args)
    except CoderagError as e:
        _err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return e.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 0


def _index_for(args, **extra):
    from .index import Index

    overrides = {
        k: getattr(args, k, None)
        for k in ("model", "device", "dtype", "dim", "rerank_model")
        if getattr(args, k, None)
    }
    return Index(extra.get("root") or getattr(args, "repo", None), **overrides)


# --------------------------------------------------------------------- index
def _vectors_only(idx, args, files) -> int:
    """Back-fill vectors in small batches, each under the writer lock only briefly, so a
    git hook or a watcher writing meanwhile is never kept waiting for long."""
    import time

    if files or args.staged or args.lexical_only or args.rebuild:
        raise UsageError("--vectors-only takes no files and no --staged/--lexical-only/--rebuild")
    t0, done = time.perf_counter(), 0
    with idx.backfill_turn():  # one back-filler at a time: a second waits, then finds the rest
        while n := idx.embed_pending(limit=32):
            done += n
    if args.json:
        print(json.dumps({"chunks_embedded": done, "seconds": round(time.perf_counter() - t0, 3)}))
    elif not args.quiet:
        print(f"{done} chunks embedded; {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_index(args) -> int:
    from pathlib import Path

    root = args.repo
    files = list(args.paths)
    if root is None and len(files) == 1 and Path(files[0]).is_dir():
        root, files = files[0], []
    if root is None and files:
        from .files import find_root

        root = str(find_root(None))
    idx = _index_for(args, root=root)
    if args.vectors_only:
        return _vectors_only(idx, args, files)
    contents = None
    if args.staged:
        from .hook import staged_changes

        contents, others = staged_changes(
            idx.root, files or None, max_bytes=idx.config.max_file_bytes
        )
        files = [*contents, *others]  # others (deletions, links): from the working tree
        if not files:
            if args.json:
                print(json.dumps(_empty_summary()))
            return 0
    progress = None if args.quiet else _RichProgress(verbose=args.verbose)
    try:
        stats = idx.refresh(
            [str(idx.root / f) if args.staged else f for f in files] or None,
            progress=progress,
            lexical_only=args.lexical_only,
            rebuild=args.rebuild,
            contents={str(k): v for k, v in contents.items()} if contents else None,
        )
    finally:
        if progress:
            progress.close()
    for note in stats.notes:
        _err(note)
    if args.verbose:
        for s in stats.skipped:
            print(f"skipped {escape(s.path)}: {escape(s.reason)}", file=sys.stderr)
    if args.json:
        print(json.dumps(stats.summary()))
    else:
        reasons = ", ".join(f"{n} {r}" for r, n in stats.summary()["skipped_reasons"].items())
        line = (
            f"indexed {stats.files_indexed} files ({stats.files_unchanged} unchanged, "
            f"{stats.files_skipped} skipped, {stats.files_removed} removed); "
            f"chunks: {stats.chunks_embedded} embedded, {stats.chunks_reused} reused"
            + (f", {stats.chunks_pending} waiting for vectors" if stats.chunks_pending else "")
            + f"; {stats.seconds:.1f}s"
        )
        print(line)
        if reasons and not args.quiet:
            print(f"skipped: {reasons} (--verbose names them)", file=sys.stderr)
    return 0


def _empty_summary() -> dict:
    from .index import RefreshStats

    return RefreshStats().summary()


class _RichProgress:
    """Two phases on stderr: parsing/storing files, then embedding chunks (chunks/s, ETA)."""

    def __init__(self, verbose: bool = False):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.verbose = verbose
        self.started = False
        self.files_task = None
        self.embed_task = None
        self.chunks = 0
        self.t_embed = 0.0
        self.done = 0

    def __call__(self, event: str, **kw) -> None:
        if event == "model":
            from rich.text import Text

            line = f"model {kw['model']} on {kw['device']} ({kw['dtype']}, {kw['dim']} dims)"
            self.console.print(Text(escape(line), style="dim"))  # a Text: no markup parsed
            return
        if not self.started:
            self.progress.start()
            self.started = True
        if event == "parse":
            self.files_task = self.progress.add_task("parse + store", total=kw["total"], rate="")
        elif event == "parsed":
            self.chunks += kw["chunks"]
            self.progress.update(self.files_task, advance=kw["files"], rate=f"{self.chunks} chunks")
        elif event == "embed":
            self.t_embed = time.perf_counter()
            self.embed_task = self.progress.add_task("embed", total=kw["total"], rate="")
        elif event == "embedded":
            self.done += kw["chunks"]
            rate = self.done / max(1e-9, time.perf_counter() - self.t_embed)
            self.progress.update(self.embed_task, advance=kw["chunks"], rate=f"{rate:.1f} chunks/s")

    def close(self) -> None:
        if self.started:
            self.progress.stop()


# -------------------------------------------------------------------- search
def read_query(args) -> tuple[str, bool | None]:
    code = args.code
    if args.query is None and not args.code_file:
        raise UsageError("a query is needed (or --code-file PATH[:START-END], or '-' for stdin)")
    if args.code_file:
        from pathlib import Path

        spec = args.code_file
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
        return "\n".join(lines), True
    if args.query == "-":
        return sys.stdin.read(), code
    return args.query, code


def cmd_search(args) -> int:
    query, code = read_query(args)
    # the same search, whether a running server or this process answers it
    params = {n: getattr(args, n) for n in vocabulary.FIELDS if n != "query"} | {"code": code}
    url, auto, hits, coverage = args.server, False, None, None
    eligible = (
        not url
        and not args.no_server
        and args.k <= vocabulary.SERVED_MAX_K  # a server refuses more
        and not any(
            getattr(args, a, None) for a in ("model", "device", "dtype", "dim", "rerank_model")
        )
    )
    if eligible:
        from .server import find_server  # standard library only: cheap

        url = find_server(args.repo)  # a LocalServer: loopback URL + per-start secret
        auto = url is not None
    if url:
        from .server import ServerUnavailable, remote_search

        repo = args.repo
        if auto:
            from .files import find_root

            repo = str(find_root(args.repo))
        try:
            hits = remote_search(url, query, repo=repo, **params)
        except ServerUnavailable:
            if not auto:
                raise  # an explicit --server that does not answer is an error
            hits = None  # gone, or not the server that published the file: search here
    if hits is None:
        idx = _index_for(args)
        found = idx.search(query, **params)
        hits = [h.to_dict() for h in found]
        coverage = idx.last_dense_coverage
        if eligible and not url:  # the next search finds a warm server
            from .server import autoserve_enabled, start_background

            if autoserve_enabled():
                start_background(idx.root)
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


def _print_hits(hits: list[dict], query: str) -> None:
    from rich.console import Console
    from rich.text import Text

    from .rank import expand

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


# -------------------------------------------------------------------- status
def cmd_status(args) -> int:
    from .index import Index

    st = Index(args.repo).status()
    if args.json:
        print(json.dumps(st))
        return 0
    width = max(map(len, st))
    for k, v in st.items():
        if k == "bytes":
            v = f"{v:,} bytes"
        print(f"{k:<{width}}  {escape(v)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
