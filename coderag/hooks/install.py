"""``coderag hook install|uninstall``: write the hook scripts, chaining hooks already there.

A hook that is already in place and not ours is moved aside to ``NAME.coderag-chained``,
run first by our script, and its exit status honoured; uninstall puts it back. The script
itself is the resource file ``hook.sh`` beside this module.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import CoderagError
from .git import HOOKS, hooks_dir

CHAINED = ".coderag-chained"  # suffix of a user's hook moved aside by install
MARKER = "written by `coderag hook install`"  # how our own scripts are recognised


def is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return MARKER.encode() in fh.read(1024)
    except OSError:
        return False


@cache
def _template() -> dict[str, str]:
    """The sections of ``hook.sh``: "head", "pre-commit", "post-rewrite", "other"."""
    text = resources.files(__package__).joinpath("hook.sh").read_text(encoding="utf-8")
    _note, *sections = re.split(r"^#@ (\S+)\n", text, flags=re.M)
    return dict(zip(sections[0::2], sections[1::2], strict=True))


def hook_script(name: str, *, strict: bool = False, python: str | None = None) -> str:
    """The ``/bin/sh`` script for one hook: run a chained hook first, then coderag."""
    # Without --strict the hook exits 0 whatever indexing does; a non-zero status can then
    # only mean coderag could not start at all (uninstalled from that environment, say),
    # and that must not stop a commit either.
    words = {
        "NAME": name,
        "MARKER": MARKER,
        "CHAINED": CHAINED,
        "PYTHON": shlex.quote(python or sys.executable),
        "FLAGS": " --strict" if strict else "",
        "ON_ERROR": ""
        if strict
        else f' || echo "coderag: the {name} hook could not run; carrying on" >&2',
        "MISSING": "return 1" if strict else "return 0",
    }
    sections = _template()
    body = name if name in ("pre-commit", "post-rewrite") else "other"
    text = sections["head"] + sections[body]
    return re.sub(r"@([A-Z_]+)@", lambda m: words[m.group(1)], text)


def install(
    root: Path, hooks=HOOKS, *, strict: bool = False, python: str | None = None
) -> list[str]:
    """Write the hooks; a foreign hook already in place is moved aside and chained."""
    d = hooks_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in hooks:
        if name not in HOOKS:
            raise CoderagError(f"unknown hook {name!r} (choose from {', '.join(HOOKS)})")
        path, chained = d / name, d / (name + CHAINED)
        note = ""
        if os.path.lexists(path) and not is_ours(path):
            if os.path.lexists(chained):
                raise CoderagError(
                    f"{path} is not coderag's and {chained.name} exists too; move one of them away"
                )
            os.replace(path, chained)
            note = f" (your hook is now {chained.name} and runs first)"
        elif os.path.lexists(chained):
            note = f" (chains {chained.name})"
        tmp = d / f".{name}.coderag-tmp"
        tmp.write_text(hook_script(name, strict=strict, python=python), encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, path)
        lines.append(f"installed {path}{note}")
    return lines


def uninstall(root: Path) -> list[str]:
    """Remove our hooks and restore the ones they chained; foreign hooks are left alone."""
    d = hooks_dir(root)
    lines = []
    for name in HOOKS:
        path, chained = d / name, d / (name + CHAINED)
        if os.path.lexists(path) and is_ours(path):
            path.unlink()
            if os.path.lexists(chained):
                os.replace(chained, path)
                lines.append(f"removed coderag's {name} hook; restored yours")
            else:
                lines.append(f"removed {path}")
        elif os.path.lexists(chained):
            lines.append(f"left {chained} alone: {name} is no longer coderag's hook")
    return lines or ["no coderag hooks installed"]
