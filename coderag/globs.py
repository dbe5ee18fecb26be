"""``--path`` globs on POSIX paths, matched in time linear in the path (no backtracking).

The rules (unchanged from the regex/fnmatch matcher this replaces):

* a pattern without ``/`` matches the file *name* at any depth, by :mod:`fnmatch` rules
  (``*``, ``?``, ``[abc]``, ``[!a-z]``), or a folder of that exact name and everything below;
* a pattern with ``/`` matches the whole path (a leading ``/`` is ignored): ``**/`` is zero or
  more folders, ``**`` anything, ``*`` and ``?`` stay within one folder, other characters
  (``[`` included) are literal; the pattern taken literally also matches as a folder prefix.

A glob is compiled to a short token list and run as a bit-parallel NFA (one Python int holds
the set of live states), so the cost is O(len(path) * len(glob) / word size) whatever the
pattern: ``"**/" * 200 + "[z]"`` costs what ``"src/**"`` costs. Standard library only.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from functools import lru_cache

from .errors import CoderagError

#: longer globs are refused (one line): no real path filter needs more
MAX_GLOB_CHARS = 1024

# token kinds
_LIT, _ONE, _CLASS, _STAR, _ANY, _DIRS = range(6)
_STARS = (_STAR, _ANY, _DIRS)


def check_glob(glob: str) -> None:
    if len(glob) > MAX_GLOB_CHARS:
        raise CoderagError(f"path glob too long (over {MAX_GLOB_CHARS} characters)")


def _simplify(tokens: list) -> list:
    """Runs of wildcards reduced to an equivalent shortest form (only speed depends on it):
    a run holding ``**`` is ``**``; repeats of ``*`` or of ``**/`` are one."""
    out: list = []
    i = 0
    while i < len(tokens):
        if tokens[i][0] not in _STARS:
            out.append(tokens[i])
            i += 1
            continue
        j = i
        while j < len(tokens) and tokens[j][0] in _STARS:
            j += 1
        run = tokens[i:j]
        if any(t[0] == _ANY for t in run):
            out.append((_ANY, None))
        else:
            for t in run:
                if not out or out[-1][0] != t[0]:
                    out.append(t)
        i = j
    return out


def _path_tokens(g: str) -> list:
    """A pattern with ``/``: ``**/``, ``**``, ``*``, ``?``; everything else literal."""
    out, i = [], 0
    while i < len(g):
        if g.startswith("**/", i):
            out.append((_DIRS, None))
            i += 3
        elif g.startswith("**", i):
            out.append((_ANY, None))
            i += 2
        else:
            c = g[i]
            out.append((_STAR, None) if c == "*" else (_ONE, None) if c == "?" else (_LIT, c))
            i += 1
    return _simplify(out)


def _name_tokens(glob: str) -> list:
    """A pattern without ``/``: fnmatch's rules, bracket expressions found exactly as
    :func:`fnmatch.translate` finds them (and each compiled by it, to test one character)."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append((_ANY, None))  # a name holds no "/": "*" is anything
        elif c == "?":
            out.append((_ONE, None))
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append((_LIT, "["))
            else:
                out.append((_CLASS, re.compile(fnmatch.translate(glob[i - 1 : j + 1])).match))
                i = j + 1
        else:
            out.append((_LIT, c))
    return _simplify(out)


class _Nfa:
    """Bit i set = "the next thing to match is token i". ``**/`` (``(?:.*/)?``) takes two
    bits: its entry (may be skipped) and "inside the folders" (must end on a ``/``)."""

    def __init__(self, tokens: list) -> None:
        self.lit: dict[str, int] = {}
        self.one = self.star = self.any = self.dirs_in = self.dirs_mid = self.skip = 0
        self.classes: list[tuple[int, Callable]] = []
        pos = 0
        for kind, arg in tokens:
            bit = 1 << pos
            if kind == _LIT:
                self.lit[arg] = self.lit.get(arg, 0) | bit
            elif kind == _ONE:
                self.one |= bit
            elif kind == _CLASS:
                self.classes.append((bit, arg))
            elif kind == _STAR:
                self.star |= bit
                self.skip |= bit
            elif kind == _ANY:
                self.any |= bit
                self.skip |= bit
            else:  # _DIRS
                self.dirs_in |= bit
                self.dirs_mid |= bit << 1
                pos += 1
            pos += 1
        self.accept = 1 << pos
        self._step: dict[str, int] = {}  # char -> the bits that consume it and move on
        self.start = self._close(1)

    def _close(self, s: int) -> int:
        """Add the states reachable without consuming: skipping ``*``, ``**`` or ``**/``."""
        while True:
            t = s | ((s & self.skip) << 1) | ((s & self.dirs_in) << 2)
            if t == s:
                return s
            s = t

    def _consumers(self, c: str) -> int:
        m = self._step.get(c)
        if m is None:
            m = self.lit.get(c, 0) | (self.one if c != "/" else 0)
            for bit, test in self.classes:
                if test(c):
                    m |= bit
            if len(self._step) < 4096:
                self._step[c] = m
        return m

    def fullmatch(self, text: str) -> bool:
        s = self.start
        stay_other = self.star | self.any  # "*" stays on anything but "/", "**" on anything
        for c in text:
            nxt = ((s & self._consumers(c)) << 1) | (s & (self.any if c == "/" else stay_other))
            inside = ((s & self.dirs_in) << 1) | (s & self.dirs_mid)
            if inside:
                nxt |= inside
                if c == "/":
                    nxt |= inside << 1  # the folders part ends on this "/"
            if not nxt:
                return False
            s = self._close(nxt)
        return bool(s & self.accept)


@lru_cache(maxsize=256)
def compile_glob(glob: str) -> Callable[[str], bool]:
    """A predicate on repository-relative POSIX paths (see the module docstring)."""
    check_glob(glob)
    if "/" not in glob:
        name = _Nfa(_name_tokens(glob))
        folder = glob + "/"
        return lambda path: name.fullmatch(path.rsplit("/", 1)[-1]) or path.startswith(folder)
    g = glob.lstrip("/")
    whole = _Nfa(_path_tokens(g))
    folder = g.rstrip("/") + "/"
    return lambda path: whole.fullmatch(path) or path.startswith(folder)


def glob_match(path: str, glob: str) -> bool:
    return compile_glob(glob)(path)


def _like_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "%_\\" else ch for ch in text)


def like_patterns(glob: str) -> list[str]:
    """LIKE patterns (escape ``\\``) whose union holds every path the glob matches; the exact
    check follows. Wildcard runs become one ``%`` (``**/`` too: it may match nothing)."""
    check_glob(glob)
    if "/" in glob:
        g = glob.lstrip("/")
        tokens, out, folder = _path_tokens(g), [], g.rstrip("/")
    else:
        tokens, out, folder = _name_tokens(glob), ["%"], glob  # the name, at any depth
    for kind, arg in tokens:
        if kind == _LIT:
            out.append(_like_escape(arg))
        elif kind in (_ONE, _CLASS):
            out.append("_")
        elif not out or out[-1] != "%":
            out.append("%")
    return ["".join(out), _like_escape(folder) + "/%"]
