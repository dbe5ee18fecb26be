"""The endpoint table and the OpenAPI document made from it."""

from __future__ import annotations

import re

from coderag import vocabulary
from coderag.server.openapi import (
    ALWAYS,
    ENDPOINTS,
    NEVER,
    REFRESH_FIELDS,
    openapi_schema,
    routes_needing,
)
from coderag.server.runtime import valid_nonce
from coderag.server.service import MAX_PATHS


def test_every_endpoint_is_in_the_document():
    doc = openapi_schema()
    assert doc["openapi"] == "3.1.0"
    assert {p: set(ops) for p, ops in doc["paths"].items()} == {
        e.path: {e.method.lower()} for e in ENDPOINTS
    }
    names = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert names == [e.name for e in ENDPOINTS] and len(set(names)) == len(names)
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["summary"] and "200" in op["responses"]
            for answer in op["responses"].values():
                assert "application/json" in answer["content"]


def test_credentials_in_the_document_are_what_the_guard_asks():
    assert routes_needing(ALWAYS) == {"/refresh"}
    assert routes_needing(NEVER) == {"/identity"}
    doc = openapi_schema()
    assert "security" not in doc
    assert doc["paths"]["/refresh"]["post"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/identity"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/search"]["post"]
    assert openapi_schema(token_required=True)["security"] == [{"bearer": []}]


def test_shapes_come_from_one_place():
    doc = openapi_schema()
    post = doc["paths"]["/search"]["post"]
    request = post["requestBody"]["content"]["application/json"]["schema"]
    assert request == vocabulary.request_schema({"repo": request["properties"]["repo"]})
    assert doc["components"]["schemas"]["Hit"] == vocabulary.hit_schema()
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["hits"]["items"] == {"$ref": "#/components/schemas/Hit"}
    refresh = doc["paths"]["/refresh"]["post"]["requestBody"]["content"]["application/json"]
    assert set(refresh["schema"]["properties"]) == REFRESH_FIELDS
    assert refresh["schema"]["additionalProperties"] is False
    assert refresh["schema"]["properties"]["paths"]["maxItems"] == MAX_PATHS
    # one error shape for every refusal
    errors = [
        answer
        for ops in doc["paths"].values()
        for op in ops.values()
        for code, answer in op["responses"].items()
        if code >= "400"
    ]
    assert errors and all(a == errors[0] for a in errors)


def test_the_nonce_pattern_is_what_the_server_accepts():
    (param,) = openapi_schema()["paths"]["/identity"]["get"]["parameters"]
    pattern = param["schema"]["pattern"]
    for nonce in ("a" * 16, "a" * 15, "Zz09-_" * 20, "a" * 129, "a" * 20 + "!"):
        assert bool(re.search(pattern, nonce)) == valid_nonce(nonce), nonce


def test_callers_get_their_own_copy():
    doc = openapi_schema()
    doc["paths"]["/search"]["post"]["responses"]["400"]["description"] = "changed"
    doc["components"]["schemas"]["Hit"]["properties"].clear()
    fresh = openapi_schema()
    assert fresh["paths"]["/search"]["post"]["responses"]["400"]["description"] == "error"
    assert fresh["paths"]["/refresh"]["post"]["responses"]["400"]["description"] == "error"
