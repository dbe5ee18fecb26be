"""``coderag index``: build or refresh the index (the whole tree, some files, the staged
versions, or only the vectors left for later)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..display import escape
from .options import add_model_arguments, err, open_index

HELP = "index (or refresh) a repository"
EPILOG = """examples:
  coderag index
  coderag index ~/src/project --json
  coderag index src/app.py src/util.py
  coderag index --rebuild --model ./my-model
  coderag index --vectors-only   # embed what --lexical-only or a git hook left"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Walk the repository, chunk code and docs with tree-sitter, embed and store them under "
        "<repo>/.coderag/. Unchanged files are skipped; only changed chunks are embedded."
    )
    p.epilog = EPILOG
    p.add_argument(
        "paths",
        nargs="*",
        help="the repository folder (default: the git root around the current folder), "
        "or files inside it to index only those",
    )
    p.add_argument("--repo", help="repository root when PATHS are files")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--rebuild", action="store_true", help="drop the index and build it anew")
    p.add_argument(
        "--lexical-only",
        action="store_true",
        help="store chunks and the full-text index, leave embedding for later",
    )
    p.add_argument(
        "--vectors-only",
        action="store_true",
        help="only embed the chunks still without a vector (what --lexical-only or a git "
        "hook left for later); reads no files",
    )
    p.add_argument(
        "--staged",
        action="store_true",
        help="index the staged (git index) version of changed files",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="name every skipped file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    add_model_arguments(p)


def run(args) -> int:
    root, files = _root_and_files(args)
    idx = open_index(args, root)
    if args.vectors_only:
        return _vectors_only(idx, args, files)
    contents = None
    if args.staged:
        contents, files = _staged(idx, files)
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
    _report(stats, args)
    return 0


def _root_and_files(args) -> tuple[str | None, list[str]]:
    """``coderag index FOLDER`` names the repository; ``coderag index FILE...`` files in the
    repository around the cwd (or ``--repo``)."""
    root, files = args.repo, list(args.paths)
    if root is None and len(files) == 1 and Path(files[0]).is_dir():
        return files[0], []
    if root is None and files:
        from ..files import find_root

        root = str(find_root(None))
    return root, files


def _staged(idx, files: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """The staged bytes to index, and every path to refresh: those plus the ones to take from
    the working tree (deletions, links, files the path filter refuses or too large)."""
    from ..files import PathFilter
    from ..hooks import staged_changes

    contents, others = staged_changes(
        idx.root,
        files or None,
        max_bytes=idx.config.max_file_bytes,
        accept=PathFilter(idx.root, idx.config).accepts,
    )
    return contents, [*contents, *others]


def _vectors_only(idx, args, files) -> int:
    """Back-fill vectors in small batches, each under the writer lock only briefly, so a
    git hook or a watcher writing meanwhile is never kept waiting for long."""
    from ..errors import UsageError

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


def _report(stats, args) -> None:
    for note in stats.notes:
        err(note)
    if args.verbose:
        for s in stats.skipped:
            print(f"skipped {escape(s.path)}: {escape(s.reason)}", file=sys.stderr)
    if args.json:
        print(json.dumps(stats.summary()))
        return
    reasons = ", ".join(f"{n} {r}" for r, n in stats.summary()["skipped_reasons"].items())
    print(
        f"indexed {stats.files_indexed} files ({stats.files_unchanged} unchanged, "
        f"{stats.files_skipped} skipped, {stats.files_removed} removed); "
        f"chunks: {stats.chunks_embedded} embedded, {stats.chunks_reused} reused"
        + (f", {stats.chunks_pending} waiting for vectors" if stats.chunks_pending else "")
        + f"; {stats.seconds:.1f}s"
    )
    if reasons and not args.quiet:
        print(f"skipped: {reasons} (--verbose names them)", file=sys.stderr)


def _empty_summary() -> dict:
    from ..index import RefreshStats

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
