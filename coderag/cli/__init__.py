"""``coderag`` command line: a thin layer over :class:`coderag.Index` and the faces.

Exit codes: 0 ok, 1 user error (one line on stderr, no traceback), 2 usage error.
With ``--json`` nothing but JSON is written to stdout; progress and notes go to stderr.

One module per command (:data:`COMMANDS`), each with ``HELP`` (its line in ``coderag
--help``), ``add_arguments(parser)`` (description, examples, options) and ``run(args)``;
options several commands share are in :mod:`.options`. Building the parser imports no
model library: ``coderag --help`` and ``coderag status`` never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import CoderagError
from .options import err

EPILOG = """examples:
  coderag index                      index the git repository around the current folder
  coderag search "where do we retry failed uploads"
  coderag search "def parse_config(path):" --kind function -k 5
  coderag status --json
"""

#: the sub-commands, in the order ``coderag --help`` lists them: coderag.cli.<name>
COMMANDS = ("index", "search", "status", "watch", "serve", "mcp", "hook", "eval")


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
    for name in COMMANDS:
        command = importlib.import_module(f"{__name__}.{name}")
        cp = sub.add_parser(
            name, help=command.HELP, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        cp.set_defaults(handler=command.run)
        try:
            command.add_arguments(cp)
        except ImportError:  # a face whose dependencies are missing from this build
            cp.set_defaults(_unavailable=True)
    return p


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("coderag")
    except Exception:  # noqa: BLE001
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "_unavailable", False):
            err(f"`{args.command}` is not available in this build")
            return 1
        return args.handler(args)
    except CoderagError as e:
        err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return e.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
