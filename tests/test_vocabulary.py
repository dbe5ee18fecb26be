"""One search vocabulary: every face lists exactly the fields of ``coderag.vocabulary``."""

from __future__ import annotations

import inspect
from dataclasses import MISSING

import pytest

from coderag import vocabulary
from coderag.errors import UsageError
from coderag.vocabulary import FIELDS, HIT_FIELDS, SearchRequest, validate

DEFAULTS = {o.name: o.default for o in vocabulary.options()}


# ------------------------------------------------------------------------ the vocabulary
def test_validate_fills_defaults_and_lets_a_face_field_through():
    req = validate({"query": "x", "repo": "/r", "mode": "", "lang": None}, extra=("repo",))
    assert req == SearchRequest("x")
    assert req.as_search_kwargs() == {**DEFAULTS, "query": "x"}
    assert validate({"query": "x", "k": 200, "kind": "doc", "rerank": False}).kind == "doc"


@pytest.mark.parametrize(
    "body,message",
    [
        ({"query": "x", "k": 201}, "'k' must be between 1 and 200"),
        ({"query": "x", "k": 0}, "'k' must be between 1 and 200"),
        ({"query": "x", "k": "5"}, "'k' must be an integer"),
        ({"query": "x", "k": True}, "'k' must be an integer"),
        ({"query": ""}, "'query' must be a non-empty string"),
        ({"query": "  "}, "'query' must be a non-empty string"),
        ({}, "'query' must be a non-empty string"),
        ({"query": "x", "mode": "fuzzy"}, "unknown mode 'fuzzy' (choose from hybrid, dense"),
        ({"query": "x", "kind": "nonsense"}, "unknown kind 'nonsense'"),
        ({"query": "x", "lang": 3}, "'lang' must be a string"),
        ({"query": "x", "bogus": 1}, "unknown field(s) ['bogus']"),
        ({"query": "x", "repo": "/r"}, "unknown field(s) ['repo']"),
        ({"query": "x", "rerank": "yes"}, "'rerank' must be true, false or null"),
        ({"query": "x", "files": 1}, "'files' must be true, false or null"),
    ],
)
def test_validate_refuses(body, message):
    with pytest.raises(UsageError) as e:
        validate(body)
    assert str(e.value).startswith(message)


def test_k_limits():
    vocabulary.check(k=vocabulary.MAX_K)  # the library's
    with pytest.raises(UsageError, match="between 1 and 1000"):
        vocabulary.check(k=vocabulary.MAX_K + 1)
    with pytest.raises(UsageError, match="between 1 and 200"):
        vocabulary.check(served=True, k=vocabulary.SERVED_MAX_K + 1)
    assert vocabulary.SERVED_MAX_K < vocabulary.MAX_K


def test_request_body_leaves_out_none():
    assert SearchRequest("x", k=2, code=True).body() == {
        "query": "x",
        "k": 2,
        "mode": "hybrid",
        "code": True,
        "files": False,
    }


# ---------------------------------------------------------------------------- the faces
def test_index_search_takes_exactly_the_vocabulary():
    from coderag.index import Index

    params = dict(inspect.signature(Index.search).parameters)
    params.pop("self")
    assert tuple(params) == FIELDS
    got = {
        n: (MISSING if p.default is inspect.Parameter.empty else p.default)
        for n, p in params.items()
    }
    assert got == DEFAULTS


def test_openapi_lists_exactly_the_vocabulary():
    from coderag.server.openapi import openapi_schema

    doc = openapi_schema()
    request = doc["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]
    props = request["schema"]["properties"]
    assert set(props) == {*FIELDS, "repo"}
    assert props["k"]["maximum"] == vocabulary.SERVED_MAX_K
    assert props["kind"]["enum"] == [*vocabulary.KINDS, None]
    assert request["schema"]["required"] == ["query"]
    assert tuple(doc["components"]["schemas"]["Hit"]["properties"]) == HIT_FIELDS


def test_mcp_tool_lists_exactly_the_vocabulary():
    pytest.importorskip("mcp")
    import anyio

    from coderag.server.mcp import build_server

    tools = {t.name: t for t in anyio.run(build_server(None).list_tools)}
    schema = tools["search_code"].input_schema
    assert tuple(schema["properties"]) == FIELDS
    assert schema["required"] == ["query"]
    for o in vocabulary.options(served=True):
        prop = schema["properties"][o.name]
        assert prop["description"] == o.help
        assert prop.get("default", MISSING) == o.default
    assert schema["properties"]["k"]["maximum"] == vocabulary.SERVED_MAX_K
    assert schema["properties"]["mode"]["enum"] == list(vocabulary.MODES)
    out = tools["search_code"].output_schema
    assert tuple(out["$defs"]["SearchHit"]["properties"]) == HIT_FIELDS
