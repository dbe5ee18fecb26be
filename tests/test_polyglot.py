"""A polyglot repository: natural-language questions find the right function in any language."""

from __future__ import annotations

import shutil

import pytest

from .conftest import FIXTURES

pytestmark = pytest.mark.slow  # retrieval quality across languages with the real model

QUESTIONS = [
    # (question, language filter or None, expected path, expected symbol suffix)
    ("accept incoming connections in a loop until the listener fails", None, "server.go", "Serve"),
    ("euclidean distance between two points", None, "geometry.rs", "distance"),
    ("keep a value between a minimum and a maximum", "rust", "geometry.rs", "clamp"),
    ("create a new key value store with a given capacity", "typescript", "store.ts", "createStore"),
    ("function that creates a new server for an address", "go", "server.go", "NewServer"),
]


@pytest.fixture(scope="module")
def polyglot(tmp_path_factory, embedder):
    from coderag import Index

    root = tmp_path_factory.mktemp("polyglot") / "repo"
    shutil.copytree(FIXTURES / "languages", root)
    idx = Index(root, embedder=embedder)
    stats = idx.refresh()
    assert stats.files_skipped == 0
    return idx


@pytest.mark.parametrize(("question", "lang", "path", "symbol"), QUESTIONS)
def test_question_finds_the_function(polyglot, question, lang, path, symbol):
    hits = polyglot.search(question, k=3, lang=lang)
    top = [(h.path, h.symbol or "") for h in hits]
    assert hits[0].path == path and hits[0].symbol.endswith(symbol), top


def test_every_language_is_indexed(polyglot):
    from coderag.store import Store

    langs = {r["language"] for r in Store(polyglot.root).all_chunk_rows(["language"])}
    assert {"go", "rust", "typescript", "python", "java", "csharp", "markdown", "rst"} <= langs
