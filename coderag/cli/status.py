"""``coderag status``: what the index holds. Loads no model (never imports torch)."""

from __future__ import annotations

import argparse
import json

from ..display import escape

HELP = "show what the index holds"
EPILOG = """examples:
  coderag status
  coderag status --repo ~/src/project --json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Files, chunks, model, dimension, last indexed time and size on disk."
    p.epilog = EPILOG
    p.add_argument("--repo", help="repository root (default: git root around the current folder)")
    p.add_argument("--json", action="store_true", help="print a JSON object")


def run(args) -> int:
    from ..index import Index

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
