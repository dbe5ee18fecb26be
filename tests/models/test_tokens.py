"""coderag.models.tokens: any model's tokenizer, kept under .coderag/, sizes chunks without
torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from coderag.models.tokens import load_token_counter


@pytest.mark.slow
def test_any_models_tokenizer_sizes_chunks_without_torch(tiny_qwen, qwen, tmp_path):
    """A Qwen3 index keeps its tokenizer under .coderag/tokenizer: a later refresh (a git
    hook's) chunks changed files without importing torch, into the rows the model's own
    tokenizer gives."""
    from coderag import Index

    from ..conftest import FIXTURES, rows_of

    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "smallrepo", root)
    Index(root, embedder=qwen).refresh()
    assert (root / ".coderag" / "tokenizer" / "tokenizer.json").is_file()
    assert not (root / ".coderag" / "query-encoder").exists()  # not a BERT model
    counter = load_token_counter(root / ".coderag" / "tokenizer")
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


def test_the_bundled_counter_is_the_models_tokenizer(embedder):
    """The torch-free counter read from the bundled package counts exactly as the loaded
    model does, and carries its identity (what a first build records in meta)."""
    from coderag.models import bundled_token_counter

    from ..conftest import FIXTURES

    light = bundled_token_counter()
    assert (light.model_id, light.dim, light.max_tokens) == (
        embedder.model_id,
        embedder.dim,
        embedder.max_tokens,
    )
    texts = [p.read_text() for p in sorted(FIXTURES.rglob("*")) if p.is_file()][:40]
    texts += ["naïve café", "getHTTPResponse_v2()", "  \t\n", "😀 emoji", "x" * 3000]
    assert [light.count(t) for t in texts] == [embedder.count(t) for t in texts]


def test_a_first_lexical_build_on_a_cpu_needs_no_model(smallrepo, embedder, monkeypatch):
    """``index --lexical-only`` (or ``static = only``) on a new index, on a machine without
    CUDA: chunks are sized by the bundled tokenizer, torch is not loaded, meta names the
    model, and a later full refresh embeds into the same rows."""
    from coderag import Index, models
    from coderag.store import Store

    from ..conftest import rows_of

    monkeypatch.setattr(models, "cuda_impossible", lambda: True)
    idx = Index(smallrepo)
    stats = idx.refresh(lexical_only=True)
    assert not idx.embedder_loaded and stats.chunks_pending > 0
    meta = Store(smallrepo).meta()
    assert (meta["model"], meta["dim"]) == (embedder.model_id, embedder.dim)
    counter = load_token_counter(smallrepo / ".coderag" / "tokenizer")
    assert counter is not None and counter.max_tokens == embedder.max_tokens
    light_rows = rows_of(smallrepo)
    later = Index(smallrepo, embedder=embedder).refresh()
    assert later.chunks_embedded == stats.chunks_pending and later.files_indexed == 0
    assert rows_of(smallrepo) == light_rows
    # with a GPU possible, the model decides what a new index is (it is loaded)
    monkeypatch.setattr(models, "cuda_impossible", lambda: False)
    other = smallrepo.parent / "other"
    shutil.copytree(smallrepo, other, ignore=shutil.ignore_patterns(".coderag"))
    idx = Index(other)
    idx.refresh(lexical_only=True)
    assert idx.embedder_loaded
