"""``coderag watch``: keep the index equal to the working tree (:class:`coderag.watch.Watcher`)."""

from __future__ import annotations

import argparse

from .options import add_model_arguments, open_index

HELP = "keep the index equal to the working tree (debounced file events)"
EPILOG = """examples:
  coderag watch                      watch the git repository around the current folder
  coderag watch ~/src/project -v     name every file as it is applied
  coderag watch --debounce-ms 500    wait for half a second of quiet before applying
  coderag watch --no-backfill        embed every batch at once instead of in the background
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Keep the index equal to the working tree: reconcile what changed while nobody "
        "watched, then apply file changes in debounced batches (full text at once, vectors "
        "in the background). One watcher per repository; Ctrl-C or SIGTERM stops it cleanly."
    )
    p.epilog = EPILOG
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="the repository to watch (default: the git root around the current folder)",
    )
    p.add_argument(
        "--debounce-ms",
        type=int,
        metavar="MS",
        help="quiet period before a batch of changes is applied (default 200, or "
        "debounce_ms in .coderag.toml)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="name every file as it is applied")
    p.add_argument(
        "--no-backfill",
        action="store_true",
        help="embed each batch before applying the next instead of storing it lexically "
        "first and filling in vectors in the background",
    )
    add_model_arguments(p)


def run(args) -> int:
    from ..watch import Watcher

    watcher = Watcher(
        open_index(args, args.path),
        debounce_ms=args.debounce_ms,
        verbose=args.verbose,
        backfill=not args.no_backfill,
    )
    watcher.run_forever()
    return 0
