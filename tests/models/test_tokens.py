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
