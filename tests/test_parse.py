"""parse.py: the language table, grammar loading and the neutral structure."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from coderag import parse

CODE_LANGUAGES = [
    "python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp", "csharp",
    "ruby", "php", "kotlin", "swift", "scala", "bash", "lua", "haskell", "elixir", "zig",
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "head", "expected"),
    [
        ("pkg/util.py", "", "python"),
        ("stubs/x.pyi", "", "python"),
        ("web/App.jsx", "", "javascript"),
        ("web/mod.mjs", "", "javascript"),
        ("web/app.ts", "", "typescript"),
        ("web/App.tsx", "", "tsx"),
        ("cmd/main.go", "", "go"),
        ("src/lib.rs", "", "rust"),
        ("A.java", "", "java"),
        ("x.c", "", "c"),
        ("x.h", "", "c"),
        ("x.cpp", "", "cpp"),
        ("x.HPP", "", "cpp"),
        ("Program.cs", "", "csharp"),
        ("lib/a.rb", "", "ruby"),
        ("Rakefile", "", "ruby"),
        ("index.php", "", "php"),
        ("Main.kt", "", "kotlin"),
        ("build.gradle.kts", "", "kotlin"),
        ("App.swift", "", "swift"),
        ("Main.scala", "", "scala"),
        ("run.sh", "", "bash"),
        ("init.lua", "", "lua"),
        ("Main.hs", "", "haskell"),
        ("lib/app.ex", "", "elixir"),
        ("test/app_test.exs", "", "elixir"),
        ("build.zig", "", "zig"),
        ("README.md", "", "markdown"),
        ("docs/index.rst", "", "rst"),
        ("notes.txt", "", None),
        ("data.json", "", None),
        ("Makefile", "", None),
        ("bin/tool", "#!/usr/bin/env python3\nprint(1)\n", "python"),
        ("bin/tool", "#!/usr/bin/python3.11\n", "python"),
        ("bin/tool", "#!/bin/bash\nset -e\n", "bash"),
        ("bin/tool", "#!/usr/bin/env -S node --no-warnings\n", "javascript"),
        ("bin/tool", "#! /usr/bin/env ruby\n", "ruby"),
        ("bin/tool", "#!/usr/bin/env perl\n", None),
        ("bin/tool", "no shebang", None),
        (".bashrc", "", "bash"),
    ],
)
def test_detect_language(path, head, expected):
    assert parse.detect_language(path, head) == expected


def test_supported_languages_cover_the_issue():
    langs = parse.supported_languages()
    assert set(CODE_LANGUAGES) <= set(langs)
    assert {"markdown", "rst"} <= set(langs)
    assert len(langs) == len(set(langs))


def test_extension_table_has_no_conflicts():
    seen = {}
    for sp in parse.LANGUAGES:
        for ext in sp.extensions:
            assert ext == ext.lower() and ext.startswith(".")
            assert ext not in seen, f"{ext} in {seen.get(ext)} and {sp.name}"
            seen[ext] = sp.name


@pytest.mark.parametrize("language", [*CODE_LANGUAGES, "markdown", "rst"])
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
        assert type(v).__module__ in ("builtins", "coderag.parse"), type(v)
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
    assert pf.boundaries[1] == 1 and pf.boundaries[3] == 1 and pf.boundaries[8] == 1
    assert pf.boundaries._root is None  # walked once, then the syntax tree is let go


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


def test_unloadable_grammar_reported_once(monkeypatch, caplog):
    bogus = parse.LanguageSpec("bogus", "tree_sitter_does_not_exist", extensions=(".bogus",))
    monkeypatch.setitem(parse._BY_NAME, "bogus", bogus)
    monkeypatch.delitem(parse._loaded, "bogus", raising=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert parse.parse("a.bogus", "x = 1\n", "bogus") is None
        assert parse.parse("b.bogus", "y = 2\n", "bogus") is None
    assert len([x for x in w if "bogus" in str(x.message)]) == 1
    monkeypatch.delitem(parse._loaded, "bogus", raising=False)


def test_parse_timeout_falls_back(monkeypatch):
    src = "x = [" * 2000 + "]" * 2000 + "\n"
    assert parse.parse("slow.py", src, "python", timeout_s=0.0) is None
    # the thread's parser is usable again afterwards
    assert parse.parse("ok.py", "def f():\n    pass\n", "python") is not None


def test_size_cap_falls_back(monkeypatch):
    monkeypatch.setattr(parse, "MAX_PARSE_BYTES", 100)
    assert parse.parse("big.py", "x = 1\n" * 100, "python") is None
