"""bench/funcq/queries.jsonl, the function-level labelled set: integrity only, no network.

The labels themselves are checked against the fetched sources by ``bench/funcq_eval.py``
(every symbol and heading must resolve, see bench/funcq/resolve.py); this test only reads
the query file, so it runs everywhere."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

FUNCQ = Path(__file__).resolve().parents[1] / "bench" / "funcq"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"funcq_{name}", FUNCQ / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def qs():
    return _module("queryset")


@pytest.fixture(scope="module")
def queries(qs):
    return qs.load()


def test_every_line_parses_with_the_required_fields():
    lines = [ln for ln in (FUNCQ / "queries.jsonl").read_text("utf-8").splitlines() if ln.strip()]
    for n, line in enumerate(lines, 1):
        q = json.loads(line)
        assert {"query", "kind", "lang", "relevant", "split"} <= set(q), n


def test_no_problems(qs, queries):
    """Fields, kinds, labels (a path in a package of the query's language plus a symbol or
    heading path, never a line number), the split rule, no duplicates, and no nl/doc
    question that pastes its target's name."""
    languages = _module("corpus").LANGUAGE
    assert qs.problems(queries, languages) == []


def test_size_and_spread(queries):
    assert len(queries) >= 300
    langs = Counter(q["lang"] for q in queries)
    assert len(langs) >= 5 and {"python", "javascript", "typescript", "go", "rust"} <= set(langs)
    packages = {r["path"].split("/")[0] for q in queries for r in q["relevant"]}
    assert len(packages) >= 8
    for lang in langs:  # every class in every language
        assert {q["kind"] for q in queries if q["lang"] == lang} == {"nl", "doc", "code"}, lang


def test_splits_are_balanced_per_language_and_class(queries):
    cells = Counter((q["lang"], q["kind"], q["split"]) for q in queries)
    for lang, kind in {(q["lang"], q["kind"]) for q in queries}:
        tune, held = cells[(lang, kind, "tune")], cells[(lang, kind, "heldout")]
        assert tune and held and abs(tune - held) <= 1, (lang, kind, tune, held)
    total = Counter(q["split"] for q in queries)
    assert abs(total["tune"] - total["heldout"]) <= 3


def test_leak_check_catches_a_pasted_identifier(qs):
    q = {
        "query": "where is canonicalize_name used",
        "kind": "nl",
        "relevant": [{"path": "p/utils.py", "symbol": "utils.canonicalize_name"}],
    }
    assert qs.leaks(q) == ["canonicalize_name"]
    q["query"] = "normalise a project name"
    assert qs.leaks(q) == []
    doc = {
        "query": "markers usage example",
        "kind": "doc",
        "relevant": [{"path": "p/docs/markers.rst", "symbol": "Markers > Usage"}],
    }
    assert qs.leaks(doc) == ["Usage"]
    assert qs.last_name("(*Mux).Mount") == "Mount"
    assert qs.last_name("Word<'a>::break_apart") == "break_apart"


def test_eval_split_filter_andbreakdown():
    """`coderag eval --split` keeps one half; the JSON has means per kind and language."""
    from coderag.errors import UsageError
    from coderag.evaluate import breakdown, select_split

    qs = [
        {"query": "a", "kind": "nl", "lang": "go", "split": "tune"},
        {"query": "b", "kind": "code", "lang": "go", "split": "heldout"},
        {"query": "c", "lang": "rust", "split": "tune"},
    ]
    assert [q["query"] for q in select_split(qs, "tune")] == ["a", "c"]
    assert select_split(qs, None) == qs
    with pytest.raises(UsageError, match="tune, heldout|heldout, tune"):
        select_split(qs, "nope")
    scores = [dict.fromkeys(("recall@10", "mrr@10"), v) for v in (1.0, 0.0, 0.5)]
    import coderag.evaluate as ev

    full = [{m: s.get(m, 0.0) for m in ev.METRICS} for s in scores]
    by_kind = breakdown(qs, full, "kind")
    assert by_kind["nl"]["mrr@10"] == 0.75 and by_kind["nl"]["queries"] == 2
    assert by_kind["code"]["queries"] == 1
    assert set(breakdown(qs, full, "lang")) == {"go", "rust"}
