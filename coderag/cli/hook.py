"""``coderag hook install|uninstall|run``: git hooks that keep the index fresh
(:mod:`coderag.hooks`). Only the standard library is imported until a hook indexes inline."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..display import escape
from ..errors import CoderagError
from ..hooks import HOOKS, VECTOR_MODES, VECTORS_ENV

HELP = "install or run git hooks that keep the index fresh"
EPILOG = """examples:
  coderag hook install                  pre-commit, post-checkout, post-merge, post-rewrite
  coderag hook install --pre-commit     only the pre-commit hook
  coderag hook install --strict         a failed indexing run stops the commit
  coderag hook uninstall                remove them, restoring hooks that were there before
  CODERAG_HOOK=0 git checkout main      skip the hooks for one command

pre-commit framework (.pre-commit-config.yaml):
  - repo: <URL of coderag's git repository>
    rev: <a tag or commit>
    hooks:
      - id: coderag-index
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Keep the index in step with git: index what is staged before each commit, and "
        "refresh only the files that differ after a checkout, merge, rebase or amend."
    )
    p.epilog = EPILOG
    sub = p.add_subparsers(dest="hook_action", metavar="ACTION")
    sub.required = True
    _add_install(sub)
    _add_uninstall(sub)
    _add_run(sub)


def _add_install(sub) -> None:
    p = sub.add_parser(
        "install",
        help="write git hooks (default: all four)",
        description="Write plain git hooks into `git rev-parse --git-path hooks`. A hook already "
        "there is moved to NAME.coderag-chained and run first; its exit status is honoured.",
        epilog="examples:\n  coderag hook install\n  coderag hook install --pre-commit "
        "--post-checkout\n  coderag hook install --strict --repo ~/src/project",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name in HOOKS:
        p.add_argument(f"--{name}", action="store_true", help=f"install the {name} hook")
    p.add_argument(
        "--strict",
        action="store_true",
        help="let a failed indexing run fail the hook (and so stop a commit)",
    )
    p.add_argument("--repo", help="repository (default: the git repository around the cwd)")


def _add_uninstall(sub) -> None:
    p = sub.add_parser(
        "uninstall",
        help="remove coderag's git hooks, restoring chained ones",
        description="Remove the hooks `coderag hook install` wrote and put back the hooks they "
        "had moved aside.",
        epilog="examples:\n  coderag hook uninstall\n  coderag hook uninstall --repo ~/src/project",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repo", help="repository (default: the git repository around the cwd)")


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="what an installed hook runs (also the pre-commit framework's entry)",
        description="Bring the index up to date for one git event. pre-commit: the staged "
        "files (or the given FILES, at their staged version); post-checkout OLD NEW FLAG: the "
        "files that differ between OLD and NEW; post-merge: ORIG_HEAD..HEAD; post-rewrite "
        "amend|rebase: the rewritten range. Failures warn and exit 0 unless --strict.",
        epilog="examples:\n  coderag hook run pre-commit\n"
        "  coderag hook run pre-commit -- src/app.py src/util.py\n"
        "  coderag hook run --json post-checkout -- HEAD@{1} HEAD 1\n"
        "  coderag hook run --vectors inline pre-commit   # embed before returning\n"
        "(options go before the hook name; what follows -- is passed through)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("event", choices=HOOKS, help="the git hook being run")
    p.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="what git passes this hook, or FILES for pre-commit (put them after --)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when indexing fails")
    p.add_argument("--repo", help="repository (default: the repository around the cwd)")
    p.add_argument("--no-server", action="store_true", help="index inline even if a server runs")
    p.add_argument(
        "--vectors",
        choices=VECTOR_MODES,
        default=None,
        help="when new chunks get their vectors: background (default; the hook returns "
        f"without loading the model), inline, or later (env {VECTORS_ENV})",
    )
    p.add_argument("--json", action="store_true", help="print what was done as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing unless it fails")


def run(args) -> int:
    from .. import hooks

    if args.hook_action == "run":
        return _run_event(args)
    root = hooks.git_toplevel(args.repo)
    if args.hook_action == "install":
        chosen = [h for h in HOOKS if getattr(args, h.replace("-", "_"))] or list(HOOKS)
        lines = hooks.install(root, chosen, strict=args.strict)
    else:
        lines = hooks.uninstall(root)
    for line in lines:
        print(line)
    return 0


def _run_event(args) -> int:
    """One hook event; a failure is a warning (exit 0) unless --strict."""
    from ..hooks import describe

    t0 = time.perf_counter()
    try:
        result = _sync(args)
    except Exception as e:  # noqa: BLE001 - a hook reports, it does not crash the git command
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not isinstance(e, CoderagError):
            msg = f"{type(e).__name__}: {msg}"
        tail = "" if args.strict else "; carrying on (run `coderag index` later)"
        print(f"coderag: {args.event} hook: indexing failed: {escape(msg)}{tail}", file=sys.stderr)
        if args.json:
            print(json.dumps({"event": args.event, "via": "failed", "error": msg}))
        return 1 if args.strict else 0
    result["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(result))
    elif not args.quiet and result["via"] != "none":
        print(f"coderag: {escape(describe(result))}", file=sys.stderr)
    return 0


def _sync(args) -> dict:
    from ..hooks import sync

    stdin = ""
    if args.event == "post-rewrite" and sys.stdin is not None and not sys.stdin.isatty():
        stdin = sys.stdin.read()
    vectors = args.vectors or os.environ.get(VECTORS_ENV) or "background"
    if vectors not in VECTOR_MODES:
        raise CoderagError(f"{VECTORS_ENV} must be one of {', '.join(VECTOR_MODES)}")
    return sync(
        args.repo,
        args.event,
        args.args,
        stdin=stdin,
        use_server=not args.no_server,
        vectors=vectors,
    )
