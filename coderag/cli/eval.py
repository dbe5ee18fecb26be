"""``coderag eval``: retrieval quality on a labelled query file. Its options and run are
the evaluation face's own (:mod:`coderag.evaluate`); this module only puts the command in
the parser."""

from __future__ import annotations

import argparse

HELP = "measure retrieval quality on a labelled query file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..evaluate import add_arguments

    add_arguments(p)


def run(args) -> int:
    from ..evaluate import run

    return run(args)
