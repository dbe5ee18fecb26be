"""The ranking stack, piece by piece (pure functions on hand-made rows), then end to end on
a small repository with the real model, LanceDB and tree-sitter."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import pytest

from coderag import rank
from coderag.rank import Weights

from .conftest import run_cli


def _plain() -> dict:
    """Weights with every boost and prior off: the bare fusion."""
    return dict(priors=False, file_coherence=0.0, saturation=1.0, path_match=0.0)


PLAIN = Weights(**_plain())


def row(i, path="a.py", kind="function", symbol=None, start=1, end=5, text=None, lang="python"):
    return {
        "id": str(i),
        "path": path,
        "kind": kind,
        "symbol": symbol,
        "start_line": start,
        "end_line": end,
        "text": text if text is not None else f"chunk {i} " * 12,
        "language": lang,
    }


def order(fused):
    return [r["id"] for r, _ in fused]


# ------------------------------------------------------------------ tokenisation
@pytest.mark.parametrize(
    "word, parts",
    [
        ("parseHTTPResponse_v2", ["parse", "http", "response", "v", "2"]),
        ("max_retry_count", ["max", "retry", "count"]),
        ("max-retry-count", ["max", "retry", "count"]),
        ("utf8Decode", ["utf", "8", "decode"]),
        ("XMLHttpRequest", ["xml", "http", "request"]),
        ("$scope", ["scope"]),
        ("Base64", ["base", "64"]),
    ],
)
def test_identifiers_split_on_case_underscores_dashes_and_digits(word, parts):
    assert rank.split_identifier(word) == parts


def test_search_text_keeps_identifiers_whole_and_split_plus_path_and_symbol():
    st = rank.search_text(
        "resp = parseHTTPResponse_v2(raw)", "src/net/http_client.py", "Client.fetch"
    )
    words = st.split()
    assert "parseHTTPResponse_v2" in words  # the whole identifier stays searchable
    assert {"parse", "http", "response", "v", "2"} <= set(words)  # and its parts
    assert {"src", "net", "client"} <= set(words)  # path words
    assert words.count("fetch") == 2  # a chunk is about its own name


def test_query_terms_are_plain_words_only():
    terms = rank.query_terms('retry" OR path:/etc AND (x*) -- NOT "upload" ^2 where is the code')
    assert terms.split() == ["retry", "path", "etc", "not", "upload"]  # lower case: no operators
    assert not set('"():*^-') & set(terms)
    assert rank.query_terms("the code of a") == ""


@pytest.mark.parametrize(
    "query, is_code",
    [
        ("def parse(s):\n    return s.split(',')", True),
        ("for (let i = 0; i < n; i++) { total += xs[i]; }", True),
        ("if err != nil { return err }", True),
        ("where do we retry failed uploads", False),
        ("how is the Content-Type header parsed", False),
        ("what calls parse() on start up when the config is missing", False),
    ],
)
def test_code_queries_are_recognised(query, is_code):
    assert rank.looks_like_code(query) is is_code


def test_query_symbols():
    assert rank.query_symbols("parse_config") == ({"parse_config"}, 1.0)
    assert rank.query_symbols("Sinatra::Base") == ({"Base"}, 1.0)
    names, strength = rank.query_symbols("where does loadConfigFile read the env")
    assert names == {"loadConfigFile"} and strength == 0.5
    assert rank.query_symbols("where do we retry uploads") == (set(), 0.5)


# ------------------------------------------------------------------ fusion
@pytest.mark.parametrize("fusion", ["relative", "rrf"])
def test_fusion_weights_decide_between_the_retrievers(fusion):
    a, b = row(1, "a.py"), row(2, "b.py")
    lexical = [dict(a, _score=12.0), dict(b, _score=4.0)]  # BM25
    dense = [dict(b, _score=0.9), dict(a, _score=0.3)]  # cosine
    lean_lex = rank.rank(
        lexical, dense, [], [], "q words", Weights(fusion=fusion, dense=0.2, **_plain())
    )
    lean_dense = rank.rank(
        lexical, dense, [], [], "q words", Weights(fusion=fusion, dense=5.0, **_plain())
    )
    assert order(lean_lex) == ["1", "2"] and order(lean_dense) == ["2", "1"]


def test_fusion_scores():
    a, b, c = (dict(row(i, f"{i}.py"), _score=s) for i, s in ((1, 9.0), (2, 5.0), (3, 1.0)))
    rrf = dict((r["id"], s) for r, s in rank.rank([a, b, c], [], [], [], "q", _w("rrf")))
    assert rrf == pytest.approx({"1": 1 / 11, "2": 1 / 12, "3": 1 / 13})
    rel = dict((r["id"], s) for r, s in rank.rank([a, b, c], [], [], [], "q", _w("relative")))
    assert rel == pytest.approx({"1": 1.0 / 11, "2": 0.5 / 11, "3": 0.0})  # min-max
    both = rank.rank([a], [dict(a, _score=0.8), dict(b, _score=0.2)], [], [], "q", _w("relative"))
    assert dict((r["id"], s) for r, s in both)["1"] == pytest.approx((1.0 + 1.5) / 11)


def test_a_static_list_beside_the_models_counts_only_with_a_weight():
    a, b, c = row(1, "a.py"), row(2, "b.py"), row(3, "c.py")
    w = Weights(fusion="rrf", dense=1.0, code_query_dense=0.5, **_plain())
    static = [c, a]  # found by the static vectors only / by both
    off = dict((r["id"], s) for r, s in rank.rank([a], [b], [], [], "q", w, static=static))
    assert "3" not in off and off["1"] == pytest.approx(1 / 11)
    on = dataclasses.replace(w, static=0.5)
    got = dict((r["id"], s) for r, s in rank.rank([a], [b], [], [], "q", on, static=static))
    assert got["3"] == pytest.approx(0.5 / 11)
    assert got["1"] == pytest.approx(1 / 11 + 0.5 / 12)
    # scaled like the model's list for a code snippet
    code = dict((r["id"], s) for r, s in rank.rank([], [], [], [], "q", on, True, static))
    assert code["3"] == pytest.approx(0.25 / 11)


def _w(fusion: str) -> Weights:
    return Weights(fusion=fusion, rrf_k=10, dense=1.5, **_plain())


def test_code_queries_lean_on_exact_matching():
    a, b = row(1, "a.py"), row(2, "b.py")
    w = Weights(fusion="rrf", dense=1.0, code_query_dense=0.3, **_plain())
    nl = dict((r["id"], s) for r, s in rank.rank([a], [b], [], [], "q", w, code=False))
    code = dict((r["id"], s) for r, s in rank.rank([a], [b], [], [], "q", w, code=True))
    assert nl["2"] == pytest.approx(nl["1"]) and nl["2"] == pytest.approx(1 / 11)
    assert code["2"] == pytest.approx(0.3 / 11) and code["1"] == pytest.approx(1 / 11)


def test_a_chunk_defining_the_queried_symbol_is_boosted():
    mention = row(1, "app.py", kind="code", text="cfg = parse_config(path)  # parse_config " * 3)
    definition = row(2, "config.py", symbol="settings.parse_config")
    fused = rank.rank([mention], [], [definition], [], "parse_config", Weights())
    assert order(fused)[0] == "2"  # found by name although full text ranked it nowhere


def test_path_words_in_the_query_boost_matching_files():
    router, other = row(1, "pkg/router.go", lang="go"), row(2, "pkg/server.go", lang="go")
    w = Weights(priors=False, file_coherence=0.0, saturation=1.0)
    fused = rank.rank([other, router], [], [], [], "retry the request in the router", w)
    assert order(fused)[0] == "1"
    # a plural or abbreviated file name still matches: impls.rs ~ "implementations"
    impls, mod = row(3, "src/ser/impls.rs", lang="rust"), row(4, "src/ser/mod.rs", lang="rust")
    q = "standard library Serialize implementations"
    assert order(rank.rank([mod, impls], [], [], [], q, w))[0] == "3"
    singular = dataclasses.replace(w, plural_paths=False)
    assert order(rank.rank([mod, impls], [], [], [], q, singular))[0] == "4"


def test_priors_push_tests_and_examples_down():
    src = row(1, "lib/util.py")
    test = row(2, "tests/test_util.py")
    example = row(3, "examples/util_demo.py")
    w = Weights(file_coherence=0.0, path_match=0.0, fusion="rrf")
    assert order(rank.rank([test, example, src], [], [], [], "helpers", w))[0] == "1"
    off = dataclasses.replace(w, priors=False)
    assert order(rank.rank([test, example, src], [], [], [], "helpers", off))[0] == "2"
    assert rank.path_prior("tests/test_retry.py") < 1.0 and rank.path_prior("lib/retry.py") == 1.0


def test_identical_code_is_listed_once_at_its_shortest_path():
    body = "def helper(x):\n    # shared between the vendored copies of this library\n    return x * 2 + 1\n"
    vendored = row(1, "third_party/lib/util.py", text=body)
    original = row(2, "util.py", text=body)
    fused = rank.rank([vendored, original], [], [], [], "helper", PLAIN)
    assert order(fused) == ["2"]


def test_more_hits_from_one_file_have_diminishing_returns():
    a1, a2, a3 = row(1, "a.py", start=1), row(2, "a.py", start=10), row(3, "a.py", start=20)
    b = row(4, "b.py")
    w = Weights(fusion="rrf", priors=False, file_coherence=0.0, path_match=0.0, saturation=0.5)
    assert order(rank.rank([a1, a2, a3, b], [], [], [], "q", w)).index("4") < 3


def test_a_docstring_hit_is_shown_as_its_definition():
    doc = row(1, "a.py", kind="doc", symbol="mod.retry", start=2, end=3)
    fn = row(2, "a.py", kind="function", symbol="mod.retry", start=1, end=9)
    fused = rank.rank([doc], [], [], [fn], "retry with backoff", PLAIN)
    assert order(fused) == ["2"]


def test_parts_of_a_split_definition_take_one_slot():
    parts = [row(i, "a.py", symbol="m.big", start=20 * i, end=20 * i + 19) for i in (1, 2, 3)]
    other = row(4, "b.py", symbol="m.small")
    ranked = [parts[1], parts[2], parts[0], other]
    lexical = [dict(r, _score=s) for r, s in zip(ranked, (12, 11, 10, 5), strict=True)]
    fused = rank.rank(lexical, [], [], [], "q", _w("rrf"))
    assert order(fused) == ["2", "4"]  # shown as its best part, listed once
    assert fused[0][1] == pytest.approx(1 / 11)  # scored by its best part, not the sum
    # found by name: the boost lifts the definition once, not once per part
    named = rank.rank([], [], parts, [], "big", Weights(**_plain()))
    assert len(named) == 1 and named[0][0]["id"] == "1"  # nothing scored: its first part


def test_a_definition_gets_the_evidence_of_all_its_parts():
    """Full text finds the head of a split function, the vectors its body: the definition
    has both, and beats a chunk that each retriever ranks a little higher on its own."""
    head = row(1, "a.py", symbol="m.retry", start=1, end=20)
    body = row(2, "a.py", symbol="m.retry", start=21, end=40)
    rival, filler = row(3, "b.py", symbol="m.other"), row(4, "c.py", symbol="m.filler")
    lexical = [dict(rival, _score=10.0), dict(head, _score=9.0), dict(filler, _score=0.0)]
    dense = [dict(body, _score=0.9), dict(rival, _score=0.5), dict(filler, _score=0.1)]
    w = Weights(fusion="relative", dense=1.0, lexical=1.0, **_plain())
    fused = rank.rank(lexical, dense, [], [], "q", w)
    assert order(fused)[:2] == ["2", "3"]  # 0.9 + 1.0 against 1.0 + 0.5; shown as its body
    assert fused[0][1] == pytest.approx(1.9 / 11)


def test_loose_top_level_code_yields_to_a_definition():
    imports = row(1, "a.py", kind="code", symbol="a")
    fn = row(2, "b.py", kind="function", symbol="b.f")
    w = Weights(fusion="rrf", file_coherence=0.0, path_match=0.0, saturation=1.0)
    assert order(rank.rank([imports, fn], [], [], [], "q", w)) == ["2", "1"]
    off = dataclasses.replace(w, priors=False)
    assert order(rank.rank([imports, fn], [], [], [], "q", off)) == ["1", "2"]


def test_a_test_module_inside_a_source_file_counts_as_tests():
    inline = row(1, "src/lib.rs", symbol="tests::parses_ok", lang="rust")
    real = row(2, "src/parse.rs", symbol="Parser::parse", lang="rust")
    w = Weights(fusion="rrf", file_coherence=0.0, path_match=0.0, saturation=1.0)
    assert order(rank.rank([inline, real], [], [], [], "q", w)) == ["2", "1"]
    assert rank.chunk_prior(inline) == rank.TEST_PATH_PRIOR
    assert rank.chunk_prior(real) == 1.0
    # a test file whose symbols repeat its path is not pushed down twice
    in_tests = row(3, "tests/test_parse.py", symbol="tests.test_parse.test_ok")
    assert rank.chunk_prior(in_tests) == rank.path_prior("tests/test_parse.py")


# ------------------------------------------------------------------ results
def test_collapse_keeps_one_hit_per_place():
    outer = (row(1, "a.py", kind="class", start=1, end=50), 0.9)
    nested = (row(2, "a.py", kind="method", start=10, end=20), 0.8)
    elsewhere = (row(3, "a.py", start=60, end=70), 0.7)
    other = (row(4, "b.py", start=10, end=20), 0.6)
    assert order(rank.collapse([outer, nested, elsewhere, other], 10)) == ["1", "3", "4"]
    assert order(rank.collapse([outer, nested, elsewhere, other], 2)) == ["1", "3"]


def test_files_mode_aggregates_a_files_chunks():
    single = (row(1, "one.py"), 0.50)
    many = [(row(i, "many.py", start=i * 10, end=i * 10 + 5), 0.45) for i in range(2, 5)]
    ranked = rank.by_file([single, *many], 10)
    assert [r["path"] for r, _ in ranked] == ["many.py", "one.py"]
    assert ranked[0][1] == pytest.approx(0.45 + 0.25 * 0.9)


# ------------------------------------------------------------------ end to end
@pytest.fixture
def coderepo(tmp_path, make_index):
    root = tmp_path / "repo"
    (root / "net").mkdir(parents=True)
    (root / "net" / "http_client.py").write_text(
        textwrap.dedent(
            '''\
            """HTTP client helpers."""


            def parseHTTPResponse_v2(raw):
                """Split a raw HTTP response into status line, headers and body."""
                head, _, body = raw.partition(b"\\r\\n\\r\\n")
                lines = head.split(b"\\r\\n")
                return lines[0], lines[1:], body


            def send_request(sock, data):
                """Write a request to the socket."""
                sock.sendall(data)
            '''
        )
    )
    (root / "net" / "router.go").write_text(
        textwrap.dedent(
            """\
            package net

            // Route sends a request to the handler registered for its path.
            func Route(table map[string]func(), path string) {
            \tif h, ok := table[path]; ok {
            \t\th()
            \t}
            }
            """
        )
    )
    (root / "notes.md").write_text("# Notes\n\n## Parsing\n\nResponses are parsed by the client.\n")
    idx = make_index(root)
    idx.refresh()
    return root, idx


def test_identifier_found_whole_and_by_its_words(coderepo):
    root, idx = coderepo
    for q in ("parseHTTPResponse_v2", "parse http response"):
        top = idx.search(q, k=3, mode="lexical")[0]
        assert top.symbol and top.symbol.endswith("parseHTTPResponse_v2"), q


def test_every_hit_is_an_exact_line_span(coderepo):
    root, idx = coderepo
    for q, files in (("split the response into headers and body", False), ("routing", True)):
        for h in idx.search(q, k=10, files=files):
            lines = (root / h.path).read_text().split("\n")
            assert "\n".join(lines[h.start_line - 1 : h.end_line]) == h.text
        if files:
            hits = idx.search(q, k=10, files=True)
            assert len({h.path for h in hits}) == len(hits)


def test_fusion_settings_reach_the_ranking(coderepo, make_index):
    root, idx = coderepo
    assert (idx.weights.rrf_k, idx.weights.dense) == (idx.config.rrf_k, idx.config.dense_weight)
    tuned = make_index(root, rrf_k=60, dense_weight=2.0, lexical_weight=0.5, candidates=2)
    assert (tuned.weights.rrf_k, tuned.weights.dense, tuned.weights.lexical) == (60, 2.0, 0.5)
    q = "split the response into headers and body"
    assert [h.score for h in tuned.search(q, k=3)] != [h.score for h in idx.search(q, k=3)]


def test_code_file_and_stdin_queries(coderepo):
    root, idx = coderepo
    r = run_cli(
        "search", "--code-file", "net/http_client.py:4-8", "--repo", str(root), "--json",
        "--no-server", "-k", "2", cwd=root,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["symbol"].endswith("parseHTTPResponse_v2")
    snippet = (
        "func lookup(m map[string]func(), p string) {\n\tif f, ok := m[p]; ok {\n\t\tf()\n\t}\n}\n"
    )
    r = run_cli("search", "-", "--repo", str(root), "--json", "--no-server", input=snippet)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["symbol"] == "Route"
    r = run_cli("search", "--repo", str(root), "--no-server")
    assert r.returncode == 2 and "a query is needed" in r.stderr


def test_rerank_head_orders_the_head_by_the_model_and_keeps_the_tail_below():
    fused = [({"id": c}, 1.0 - i / 10) for i, c in enumerate("abcde")]
    out = rank.rerank_head(fused, [0.2, 0.9, 0.2])
    assert [r["id"] for r, _ in out] == ["b", "a", "c", "d", "e"]  # a tie keeps fused order
    assert [s for _, s in out] == [0.9, 0.2, 0.2, 0.1, 0.05]
    assert rank.rerank_head(fused, []) == fused
