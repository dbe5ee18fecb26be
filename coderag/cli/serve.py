"""``coderag serve``: the HTTP JSON API. Its options and start-up are the server's own
(:mod:`coderag.server.args`); this module only puts the command in the parser."""

from __future__ import annotations

import argparse

HELP = "HTTP JSON API for editors, model kept warm, index kept fresh"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..server.args import add_arguments

    add_arguments(p)


def run(args) -> int:
    from ..server.args import run

    return run(args)
