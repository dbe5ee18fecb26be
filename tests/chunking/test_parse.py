"""parse.py: grammar loading, the query loop and the neutral structure it returns."""

from __future__ import annotations

import dataclasses
import gc
import sys
import warnings

import pytest

from coderag.chunking import languages, parse


@pytest.mark.parametrize("language", languages.supported_languages())
def test_every_grammar_and_query_loads(language):
    assert parse.grammar_available(language), language


def test_module_name():
    assert parse.module_name("pkg/util.py") == "pkg.util"
    assert parse.module_name("src/pkg/util.py") == "pkg.util"
    assert parse.module_name("pkg/__init__.py") == "pkg"
    assert parse.module_name("tool.py") == "tool"


def _walk_values(obj):
    todo = [obj]
    while todo:
        o = todo.pop()
        yield o
        if dataclasses.is_dataclass(o):
            todo.extend(getattr(o, f.name) for f in dataclasses.fields(o))
        elif isinstance(o, dict):
            todo.extend(o.keys())
            todo.extend(o.values())
        elif isinstance(o, list | tuple | set):
            todo.extend(o)


def test_parse_returns_a_neutral_structure():
    src = (
        "import os\n\n"
        "class A:\n"
        '    """Doc."""\n'
        "    def f(self, x):\n"
        "        return x\n\n"
        "def g():\n"
        "    pass\n"
    )
    pf = parse.parse("pkg/mod.py", src, "python")
    assert pf is not None
    for v in _walk_values(pf):
        assert type(v).__module__ in ("builtins", "coderag.chunking.parse"), type(v)
    (a, g) = pf.definitions
    assert (a.kind, a.symbol, a.start_line, a.end_line, a.doc) == (
        "class",
        "pkg.mod.A",
        3,
        6,
        (4, 4),
    )
    assert a.header == "class A:"
    (f,) = a.children
    assert (f.kind, f.symbol, f.header) == ("method", "pkg.mod.A.f", "def f(self, x):")
    assert (g.kind, g.symbol, g.start_line, g.end_line) == ("function", "pkg.mod.g", 8, 9)
    assert _holds_syntax_nodes(pf.boundaries)  # computed on first use, from the tree
    assert pf.boundaries[1] == 1 and pf.boundaries[3] == 1 and pf.boundaries[8] == 1
    assert not _holds_syntax_nodes(pf.boundaries)  # walked once, then the tree is let go


def _holds_syntax_nodes(obj) -> bool:
    return any(type(r).__module__.startswith("tree_sitter") for r in gc.get_referents(obj))


def test_definitions_inside_functions_belong_to_the_function():
    src = "def outer():\n    def inner():\n        pass\n    class Local:\n        pass\n"
    pf = parse.parse("m.py", src, "python")
    (outer,) = pf.definitions
    assert outer.children == []


def test_syntax_errors_still_parse():
    pf = parse.parse(
        "bad.py", "def f(:\n    return 1\n\nclass A:\n    def g(self): pass\n", "python"
    )
    assert pf is not None and pf.has_error
    assert any(d.name == "A" for d in pf.definitions)


@pytest.fixture
def zig_wheel_missing(monkeypatch):
    """A language of the table whose grammar wheel cannot be imported."""
    monkeypatch.setitem(sys.modules, "tree_sitter_zig", None)  # import -> ModuleNotFoundError
    parse.forget_grammar("zig")
    yield "zig"
    monkeypatch.undo()
    parse.forget_grammar("zig")


def test_unloadable_grammar_reported_once(zig_wheel_missing):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert parse.parse("a.zig", "const x = 1;\n", "zig") is None
        assert parse.parse("b.zig", "const y = 2;\n", "zig") is None
        assert not parse.grammar_available("zig")
    assert len([x for x in w if "'zig'" in str(x.message)]) == 1


def test_a_forgotten_grammar_loads_again(zig_wheel_missing):
    with pytest.warns(RuntimeWarning, match="zig"):
        assert not parse.grammar_available("zig")
    sys.modules.pop("tree_sitter_zig")  # the wheel is back
    parse.forget_grammar("zig")
    assert parse.parse("a.zig", "fn f() void {}\n", "zig") is not None


def test_parse_timeout_falls_back(monkeypatch):
    src = "x = [" * 2000 + "]" * 2000 + "\n"
    assert parse.parse("slow.py", src, "python", timeout_s=0.0) is None
    # the thread's parser is usable again afterwards
    assert parse.parse("ok.py", "def f():\n    pass\n", "python") is not None


def test_size_cap_falls_back(monkeypatch):
    monkeypatch.setattr(parse, "MAX_PARSE_BYTES", 100)
    assert parse.parse("big.py", "x = 1\n" * 100, "python") is None
