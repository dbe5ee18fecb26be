"""README.md documents the real command line (as sqlite-utils' test_docs does).

The parser is the one ``coderag`` itself builds (``cli.build_parser()``, face modules'
``add_arguments`` included), walked recursively so nested commands (``hook install``) count.
Every sub-command must be named in README.md as ``coderag NAME`` (or as one of the
alternatives in ``coderag hook install|uninstall|run``), every long option must appear as a
whole word, and every sub-command's ``--help`` must have a description and an example.

argparse offers no public way to list a parser's options or sub-parsers, so the walk reads
argparse's own ``_actions`` (a name of the standard library, not of coderag; the suite
reaches none of coderag's private names).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from coderag.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


PARSERS = dict(_walk(build_parser()))
COMMANDS = [path for path in PARSERS if path]
OPTIONS = sorted(
    {
        (path, opt)
        for path, parser in PARSERS.items()
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }
)


def _cmd(path: tuple[str, ...]) -> str:
    return " ".join(path)


def test_walk_finds_every_command():
    names = {_cmd(p) for p in COMMANDS}
    assert {"index", "search", "status", "watch", "serve", "mcp", "eval"} <= names
    assert {"hook install", "hook uninstall", "hook run"} <= names
    # a face whose import failed is registered but empty: its options would go unchecked
    assert not [_cmd(p) for p in COMMANDS if PARSERS[p].get_default("_unavailable")]


@pytest.mark.parametrize("path", COMMANDS, ids=_cmd)
def test_command_in_readme(path):
    *parents, leaf = path
    prefix = r"\s+".join(["coderag", *map(re.escape, parents)])
    # `coderag hook run`, or the leaf among alternatives: `coderag hook install\|uninstall\|run`
    pattern = prefix + r"\s+(?:[\w-]+\\?\|)*" + re.escape(leaf) + r"(?![\w-])"
    assert re.search(pattern, README), f"`coderag {_cmd(path)}` is not mentioned in README.md"


@pytest.mark.parametrize(
    "path,option", OPTIONS, ids=[" ".join(("coderag", *p, o)) for p, o in OPTIONS]
)
def test_option_in_readme(path, option):
    where = f"`coderag {_cmd(path)}`" if path else "`coderag`"
    assert re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", README), (
        f"{where} option {option} is not mentioned in README.md"
    )


@pytest.mark.parametrize("path", COMMANDS, ids=_cmd)
def test_help_has_description_and_example(path):
    parser = PARSERS[path]
    assert (parser.description or "").strip(), f"`coderag {_cmd(path)} --help` has no description"
    epilog = parser.epilog or ""
    assert "examples:" in epilog, f"`coderag {_cmd(path)} --help` has no examples"
    assert re.search(r"^\s+coderag " + re.escape(_cmd(path)) + r"(?![\w-])", epilog, re.M), (
        f"`coderag {_cmd(path)} --help` has no example of `coderag {_cmd(path)}`"
    )
    help_text = parser.format_help()
    assert "examples:" in help_text
