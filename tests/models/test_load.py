"""coderag.models.load: naming, locating and loading models; "auto"; one instance per process;
errors as one line; the import cost."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from coderag.errors import ModelNotFound, UsageError
from coderag.models import load
from coderag.models.load import bundled_model_path, load_embedder, load_reranker

from .conftest import MIXED

# ---------------------------------------------------------------------------------------------
# Locating models
# ---------------------------------------------------------------------------------------------


def test_bundled_model_path_is_real():
    p = bundled_model_path()
    assert (p / "model.safetensors").stat().st_size > 50_000_000
    assert (p / "tokenizer.json").is_file()


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
    emb = load_embedder(str(raw), device="cpu")
    assert emb.pooling == "lasttoken" and emb.instruct
    assert np.allclose(emb.embed_documents(MIXED), qwen.embed_documents(MIXED), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Errors, auto, caching, import cost
# ---------------------------------------------------------------------------------------------


def test_missing_model_path_is_model_not_found(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound) as ei:
        load_embedder(str(missing))
    msg = str(ei.value)
    assert "\n" not in msg and str(missing) in msg


def test_folder_without_model_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound) as ei:
        load_embedder(str(tmp_path))
    assert "\n" not in str(ei.value) and "config.json" in str(ei.value)


def test_named_hub_model_offline_is_model_not_found():
    with pytest.raises(ModelNotFound) as ei:
        load_embedder("coderag-tests/definitely-not-cached-model", device="cpu")
    msg = str(ei.value)
    assert "\n" not in msg and "coderag-tests/definitely-not-cached-model" in msg


@pytest.fixture
def fresh_auto():
    """No "auto" choice remembered, before and after (loaded models are kept)."""
    load.clear_cache(keep_models=True)
    yield
    load.clear_cache(keep_models=True)


def test_auto_on_cpu_picks_minilm(monkeypatch, minilm, fresh_auto):
    monkeypatch.setattr(load, "cuda_available", lambda: False)
    emb = load_embedder("auto")
    assert emb is minilm  # loaded once per process, shared
    assert emb.model_id == load.BUNDLED_MODEL_ID and emb.device == "cpu" and emb.dtype == "float32"


def _gpu_model_cached() -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(load.GPU_MODEL_ID, "config.json"), str)
    except Exception:
        return False


def test_auto_with_gpu_falls_back_when_qwen_unavailable(monkeypatch, caplog, minilm, fresh_auto):
    if _gpu_model_cached():
        pytest.skip("the real Qwen3-Embedding-4B is cached here; the fallback cannot be simulated")
    probed = []
    monkeypatch.setattr(load, "cuda_available", lambda: probed.append(1) or True)
    with caplog.at_level(logging.WARNING, logger="coderag.models.load"):
        emb = load_embedder("auto", device="cpu")
    assert probed and emb is minilm
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert load.GPU_MODEL_ID in warnings[0] and "hf download" in warnings[0]
    # but the same model named explicitly is an error
    with pytest.raises(ModelNotFound):
        load_embedder(load.GPU_MODEL_ID, device="cpu")


def test_models_loaded_once_per_key(minilm):
    assert load_embedder("bundled", device="cpu") is minilm
    assert load_embedder(str(bundled_model_path()), device="cpu") is minilm
    other = load_embedder("bundled", device="cpu", dim=128)
    assert other is not minilm and other.dim == 128 and other.model_id == minilm.model_id


def test_bad_arguments():
    with pytest.raises(UsageError):
        load_embedder("bundled", dtype="int4")
    with pytest.raises(UsageError):
        load_embedder("bundled", dim=0)


def test_missing_or_broken_reranker_is_one_line(tmp_path):
    with pytest.raises(ModelNotFound) as ei:
        load_reranker(str(tmp_path / "nope"), device="cpu")
    assert "no such folder" in str(ei.value) and "\n" not in str(ei.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="not a model folder"):
        load_reranker(str(tmp_path / "empty"), device="cpu")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound) as ei:
        load_reranker(str(tmp_path / "bad"), device="cpu")
    assert "\n" not in str(ei.value)
    # offline and not cached: the hub id is named, nothing is downloaded
    with pytest.raises(ModelNotFound, match="ms-marco-MiniLM-L6-v2"):
        load_reranker("auto", device="cpu")


def test_import_is_cheap():
    code = (
        "import sys, coderag.models, coderag.models.load, coderag.models.embedder, "
        "coderag.models.reranker, coderag.models.light, coderag.models.tokens, "
        "coderag.models.static; "
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'tokenizers') "
        "if m in sys.modules]; print(heavy); assert not heavy"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
