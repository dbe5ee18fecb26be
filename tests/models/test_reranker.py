"""coderag.models.reranker and the optional reranking stage it drives (search, CLI), through
tiny random models with real tokenizers (the ``rerank`` setting's values: test_config.py).

The weights are random, so nothing here measures relevance: the tests check that coderag
scores pairs exactly as each model format prescribes (computed independently below with
plain transformers) and that search puts the reranker's order on top.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from coderag import rank
from coderag.errors import ModelNotFound
from coderag.models import load_reranker
from coderag.models.reranker import RERANK_INSTRUCTIONS, RERANK_MAX_TOKENS

from ..conftest import run_cli

QUERY = "upload again with exponential backoff when the server fails"
DOCS = [
    "def upload_with_retry(client, path, attempts=5):\n    for i in range(attempts):\n"
    "        try:\n            return client.put(path)\n        except IOError:\n"
    "            time.sleep(2 ** i)\n",
    "class Config:\n    bucket: str\n",
    "# Design\n\nUploads are retried with exponential backoff. " * 6,
    "x",
]
# Qwen3-Reranker's prompt, written out from its model card (not imported from coderag)
CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def card_scores(folder, instruction: str, query: str, docs: list[str]) -> list[float]:
    """P("yes") one pair at a time (no padding), the model card's way."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    out = []
    for d in docs:
        user = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {d}"
        ids = (
            tok.encode(CARD_PREFIX, add_special_tokens=False)
            + tok.encode(user, add_special_tokens=False)
            + tok.encode(CARD_SUFFIX, add_special_tokens=False)
        )
        with torch.no_grad():
            logits = lm(input_ids=torch.tensor([ids])).logits[0, -1]
        pair = torch.stack([logits[no], logits[yes]])
        out.append(float(torch.softmax(pair, 0)[1]))
    return out


# ------------------------------------------------------------------------------ models
def test_yes_no_reranker_matches_the_model_card(tiny_yes_no_reranker):
    rr = load_reranker(str(tiny_yes_no_reranker), device="cpu")
    assert rr.kind == "yes-no" and rr.dtype == "float32"
    got = rr.score(QUERY, DOCS)  # one left-padded batch of different lengths
    want = card_scores(tiny_yes_no_reranker, RERANK_INSTRUCTIONS["nl"], QUERY, DOCS)
    assert got.shape == (len(DOCS),)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert len(set(np.round(got, 6))) == len(DOCS)  # distinct: the check above is not vacuous
    # a code query gets the code instruction, so different scores
    code = rr.score(QUERY, DOCS, kind="code")
    want_code = card_scores(tiny_yes_no_reranker, RERANK_INSTRUCTIONS["code"], QUERY, DOCS)
    np.testing.assert_allclose(code, want_code, atol=2e-5)
    assert not np.allclose(code, got)
    assert rr.score(QUERY, []).shape == (0,)
    assert load_reranker(str(tiny_yes_no_reranker), device="cpu") is rr  # one per process


def test_yes_no_reranker_truncates_inside_the_prompt(tiny_yes_no_reranker):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_yes_no_reranker)
    prefix = tok.encode(CARD_PREFIX, add_special_tokens=False)
    suffix = tok.encode(CARD_SUFFIX, add_special_tokens=False)
    rr = load_reranker(str(tiny_yes_no_reranker), device="cpu", max_tokens=96)
    ids = rr.pair_ids(QUERY, ["word " * 5000, "short"], RERANK_INSTRUCTIONS["nl"])
    assert len(ids[0]) == 96 and len(ids[1]) < 96
    for x in ids:  # the fixed prompt parts survive: the judgement is still asked for
        assert x[: len(prefix)] == prefix and x[-len(suffix) :] == suffix
    assert np.all(np.isfinite(rr.score(QUERY, ["word " * 5000])))


def test_cross_encoder_matches_a_direct_forward(tiny_cross_encoder):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rr = load_reranker(str(tiny_cross_encoder), device="cpu")
    assert rr.kind == "cross-encoder"
    got = rr.score(QUERY, DOCS)
    tok = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cross_encoder).eval()
    want = []
    for d in DOCS:
        enc = tok(QUERY, d, truncation=True, max_length=RERANK_MAX_TOKENS, return_tensors="pt")
        with torch.no_grad():
            want.append(float(torch.sigmoid(model(**enc).logits[0, 0])))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(got) > 0.01


# ------------------------------------------------------------------------------ search
@pytest.mark.slow
def test_search_puts_the_rerankers_order_on_top(smallrepo, make_index, tiny_cross_encoder):
    from coderag.store import Store

    idx = make_index(smallrepo, rerank_model=str(tiny_cross_encoder), rerank_depth=1000)
    idx.refresh()
    # kind=function: the dense retriever returns every function of this small repo, so the
    # reranker sees them all and its top three are the answer
    rows = [
        r
        for r in Store(smallrepo).all_chunk_rows(
            ["path", "language", "symbol", "text", "start_line", "end_line", "kind"]
        )
        if r["kind"] == "function"
    ]
    scores = load_reranker(str(tiny_cross_encoder), device="cpu").score(
        QUERY, [rank.rerank_text(r) for r in rows]
    )
    best = sorted(range(len(rows)), key=lambda i: -scores[i])[:3]
    hits = idx.search(QUERY, k=3, kind="function", rerank=True)
    assert [(h.path, h.start_line) for h in hits] == [
        (rows[i]["path"], rows[i]["start_line"]) for i in best
    ]
    assert [h.score for h in hits] == pytest.approx([float(scores[i]) for i in best], abs=1e-5)
    plain = idx.search(QUERY, k=3, kind="function", rerank=False)
    assert [h.score for h in plain] != [h.score for h in hits]  # fused scores, not the model's


@pytest.mark.slow
def test_rerank_depth_bounds_the_reordered_head(smallrepo, make_index, tiny_cross_encoder):
    idx = make_index(smallrepo, rerank_model=str(tiny_cross_encoder), rerank_depth=2)
    idx.refresh()
    hits = idx.search(QUERY, k=6, rerank=True)  # depth max(2, k) = 6 candidates re-ordered
    assert len(hits) == 6
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # the tail after the reranked head keeps its fused order, scored below the head
    fused = [({"path": f"f{i}.py", "language": "python", "symbol": None, "text": t}, 1.0 - i / 10)
             for i, t in enumerate(DOCS + ["tail one", "tail two"])]  # fmt: skip
    from coderag import rank

    scores = idx.reranker.score(QUERY, [rank.rerank_text(r) for r, _ in fused[:2]], "nl")
    out = rank.rerank_head(fused, [float(x) for x in scores])
    assert [r["path"] for r, _ in out[2:]] == [f"f{i}.py" for i in range(2, 6)]
    assert max(s for _, s in out[2:]) < min(s for _, s in out[:2])
    assert {r["path"] for r, _ in out[:2]} == {"f0.py", "f1.py"}


@pytest.mark.slow
def test_auto_reranks_only_on_a_gpu_and_falls_back_once(smallrepo, make_index, caplog):
    idx = make_index(smallrepo)
    idx.refresh()
    idx.search(QUERY, k=3)  # CPU, rerank "auto": no reranker is even loaded
    assert not idx.reranker_loaded
    # a GPU index whose reranker cannot be had: one warning, then plain hybrid search
    from coderag import Index

    gpu = Index(smallrepo, embedder=SimpleNamespace(device="cuda"), rerank_model="/no/such/rr")
    with caplog.at_level(logging.WARNING, logger="coderag.index"):
        first = gpu.search(QUERY, k=3, mode="lexical")
        gpu.search(QUERY, k=3, mode="lexical")
    warned = [r for r in caplog.records if "not reranking" in r.getMessage()]
    assert len(warned) == 1 and "/no/such/rr" in warned[0].getMessage()
    assert [h.to_dict() for h in first] == [
        h.to_dict() for h in idx.search(QUERY, k=3, mode="lexical")
    ]
    # asked for explicitly, a missing reranker is an error, not a silent fallback
    on = Index(smallrepo, embedder=SimpleNamespace(device="cuda"), rerank_model="/no/such/rr")
    with pytest.raises(ModelNotFound):
        on.search(QUERY, k=3, mode="lexical", rerank=True)


# ------------------------------------------------------------------------------ faces
@pytest.mark.slow
def test_cli_search_and_eval_with_rerank(smallrepo, make_index, tiny_yes_no_reranker, tmp_path):
    make_index(smallrepo).refresh()
    r = run_cli(
        "search", QUERY, "--repo", str(smallrepo), "--json", "--no-server", "-k", "4",
        "--rerank", "--rerank-model", str(tiny_yes_no_reranker),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    scores = [h["score"] for h in hits]
    assert len(hits) == 4 and scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)  # P("yes"), not fused RRF scores
    rr = load_reranker(str(tiny_yes_no_reranker), device="cpu")
    want = rr.score(QUERY, [rank.rerank_text(h) for h in hits])
    np.testing.assert_allclose(scores, want, atol=1e-4)

    r = run_cli(
        "search", QUERY, "--repo", str(smallrepo), "--no-server",
        "--rerank", "--rerank-model", str(tmp_path / "missing"),
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().startswith("coderag: cannot load reranker")
    assert len(r.stderr.strip().splitlines()) == 1

    queries = tmp_path / "q.jsonl"
    queries.write_text(
        json.dumps({"query": QUERY, "relevant": [{"path": "uploader/client.py"}]}) + "\n"
    )
    r = run_cli(
        "eval", str(queries), "--repo", str(smallrepo), "--json",
        "--mode", "hybrid,hybrid+rerank", "--rerank-model", str(tiny_yes_no_reranker),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res) == {"hybrid", "hybrid+rerank"}
    assert res["hybrid+rerank"]["queries"] == 1
    r = run_cli("eval", str(queries), "--repo", str(smallrepo), "--mode", "fuzzy+rerank")
    assert r.returncode == 2 and "+rerank" in r.stderr
