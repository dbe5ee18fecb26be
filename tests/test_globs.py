"""``coderag.globs``: the ``--path`` matcher and its LIKE pre-filter, as pure functions.

The matcher is checked against the backtracking regex/fnmatch matcher it replaced (the
semantics to keep, by hypothesis and by hand-picked examples), its LIKE patterns against an
independent LIKE evaluator (they must keep every match), and its cost on hostile patterns
(linear in the path: no backtracking). The same patterns through the real CLI are in
test_security_input.py.
"""

from __future__ import annotations

import fnmatch
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderag.errors import CoderagError
from coderag.globs import MAX_GLOB_CHARS, check_glob, compile_glob, glob_match, like_patterns


def _old_glob_match(path: str, glob: str) -> bool:
    """The matcher this replaces (backtracking regex / fnmatch): the semantics to keep."""
    if "/" not in glob:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], glob) or path.startswith(glob + "/")
    g = glob.lstrip("/")
    rx, i = "", 0
    while i < len(g):
        if g.startswith("**/", i):
            rx += "(?:.*/)?"
            i += 3
        elif g.startswith("**", i):
            rx += ".*"
            i += 2
        elif g[i] == "*":
            rx += "[^/]*"
            i += 1
        elif g[i] == "?":
            rx += "[^/]"
            i += 1
        else:
            rx += re.escape(g[i])
            i += 1
    return re.fullmatch(rx, path) is not None or path.startswith(g.rstrip("/") + "/")


def _like(pattern: str, text: str) -> bool:
    """SQL LIKE with ESCAPE '\\', as LanceDB evaluates it."""
    rx, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            rx += re.escape(pattern[i + 1])
            i += 2
            continue
        rx += ".*" if c == "%" else "." if c == "_" else re.escape(c)
        i += 1
    return re.fullmatch(rx, text, re.S) is not None


GLOB_CHARS = st.text(alphabet="ab/*?[]!-.%_\\", max_size=9)
PATHS = st.text(alphabet="ab/.[]!-*%_\\", min_size=1, max_size=10)


@settings(max_examples=3000, deadline=None)
@given(GLOB_CHARS, PATHS)
def test_glob_matcher_agrees_with_the_old_one(glob, path):
    assert glob_match(path, glob) == _old_glob_match(path, glob), (glob, path)


@settings(max_examples=2000, deadline=None)
@given(GLOB_CHARS, PATHS)
def test_like_prefilter_keeps_every_match(glob, path):
    """What LanceDB is asked for (LIKE) holds every path the glob matches."""
    if glob_match(path, glob):
        assert any(_like(p, path) for p in like_patterns(glob)), (glob, path, like_patterns(glob))


def test_glob_examples():
    cases = [
        ("src/**", "src/a/b.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("**/b.py", "b.py", True),
        ("**/b.py", "x/y/b.py", True),
        ("*.py", "x/y/b.py", True),
        ("[ab].py", "x/a.py", True),
        ("[!ab].py", "x/a.py", False),
        ("x/[ab].py", "x/a.py", False),  # with a "/", brackets are literal (as before)
        ("x/[ab].py", "x/[ab].py", True),
        ("uploader", "uploader/client.py", True),
        ("/src/", "src/a.py", True),
        ("a?c", "q/abc", True),
        ("a/?c", "a//c", False),
    ]
    for glob, path, want in cases:
        assert glob_match(path, glob) is want, (glob, path)
        assert _old_glob_match(path, glob) is want, (glob, path)


HOSTILE_GLOBS = [
    "**/" * 200 + "[z]",
    "**/a" * 150 + "x",
    "*a/" * 300,
    "?*" * 400,
    "*/" * 400 + "z",
]


def test_glob_matcher_is_linear_on_hostile_patterns():
    """10,000 deep paths against each hostile glob: well under a second each here. The old
    backtracking matcher took 2 s for ONE path of 10 folders at just 20 repeats of "**/"; at
    200 repeats it does not finish."""
    paths = [f"{'d/' * 15}m{i}/file{i}.py" for i in range(10_000)]
    for glob in HOSTILE_GLOBS:
        t0 = time.perf_counter()
        keep = compile_glob(glob)
        hits = sum(map(keep, paths))
        took = time.perf_counter() - t0
        assert hits == 0 and took < 5.0, (glob[:12], took)


def test_too_long_globs_are_refused_in_one_line():
    longest = "*" * MAX_GLOB_CHARS
    check_glob(longest)
    assert compile_glob(longest)("a.py") and like_patterns(longest)
    for use in (check_glob, compile_glob, like_patterns, lambda g: glob_match("a.py", g)):
        with pytest.raises(CoderagError, match="too long") as e:
            use(longest + "*")
        assert "\n" not in str(e.value)


def test_like_patterns_escape_what_like_would_read_as_wildcards():
    """``%``, ``_`` and ``\\`` in a glob are literal characters of a file name: escaped (the
    store's filter says ``ESCAPE '\\'``); the glob's own wildcards become ``%`` and ``_``."""
    assert like_patterns("names/a_b%c\\.py") == [
        "names/a\\_b\\%c\\\\.py",
        "names/a\\_b\\%c\\\\.py/%",
    ]
    assert like_patterns("*.py") == ["%.py", "*.py/%"]  # a name: at any depth, or a folder
    assert like_patterns("/src/**/x?.py")[0] == "src/%x_.py"  # "**/" may match no folder
    assert like_patterns("[ab].py")[0] == "%_.py"  # a class is one character
