"""``coderag mcp``: the MCP server over stdio. Its options and start-up are the MCP face's
own (:mod:`coderag.server.mcp`); this module only puts the command in the parser."""

from __future__ import annotations

import argparse

HELP = "MCP server over stdio for coding assistants"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..server.mcp import add_arguments

    add_arguments(p)


def run(args) -> int:
    from ..server.mcp import run

    return run(args)
