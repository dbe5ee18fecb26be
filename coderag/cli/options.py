"""What several commands share: the model options, opening the index, error lines."""

from __future__ import annotations

import argparse
import sys

from ..display import escape

#: Index settings a command line may override (each is a flag of the same name)
OVERRIDES = ("model", "device", "dtype", "dim", "rerank_model")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The "model" group: --model, --device, --dtype, --dim."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        help="embedding model: 'auto' (default), a local folder or a Hugging Face id "
        "in sentence-transformers format (env CODERAG_MODEL)",
    )
    g.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    g.add_argument("--dtype", help="float32, bfloat16, float16 (default: by device)")
    g.add_argument("--dim", type=int, help="Matryoshka dimension to truncate vectors to")


def overrides(args) -> dict:
    """The model settings given on the command line (flags left out are not settings)."""
    return {k: getattr(args, k, None) for k in OVERRIDES if getattr(args, k, None)}


def open_index(args, root=None):
    """The :class:`~coderag.index.Index` of ``root`` (default: ``--repo``, else the git root
    around the cwd) with the command line's model settings."""
    from ..index import Index

    return Index(root or getattr(args, "repo", None), **overrides(args))


def err(msg: str) -> None:
    """One line on stderr, prefixed ``coderag:``."""
    print(f"coderag: {escape(msg)}", file=sys.stderr)  # messages may quote repository text
