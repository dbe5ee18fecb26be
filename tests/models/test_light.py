"""coderag.models.light: the numpy BERT query encoder gives the Embedder's query vectors
without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coderag.models import load_embedder
from coderag.models.light import export_query_encoder, load_query_encoder

from .conftest import cos

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
    assert export_query_encoder(minilm, folder) == folder
    return folder


def test_query_encoder_matches_embedder(minilm, query_encoder_dir):
    qe = load_query_encoder(query_encoder_dir)
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
    small = load_embedder("bundled", device="cpu", dim=128)
    assert export_query_encoder(small, tmp_path / "qe128") is not None
    qe = load_query_encoder(tmp_path / "qe128")
    assert qe.dim == 128
    for q in QUERIES[:5]:
        assert cos(small.embed_query(q), qe.embed_query(q)) >= 0.999


def test_query_encoder_only_for_bert(qwen, tmp_path):
    assert export_query_encoder(qwen, tmp_path / "q") is None
    assert load_query_encoder(tmp_path / "q") is None
    assert load_query_encoder(tmp_path / "nothing-here") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "query_encoder.json").write_text("{not json")
    assert load_query_encoder(tmp_path / "bad") is None


def test_query_encoder_never_imports_torch(query_encoder_dir):
    code = (
        "import sys; from pathlib import Path; from coderag.models.light import load_query_encoder; "
        f"q = load_query_encoder(Path({str(query_encoder_dir)!r})); "
        "v = q.embed_query('where do we retry failed uploads', 'code'); "
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]; "
        "assert not heavy, heavy; assert v.shape == (384,); print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
