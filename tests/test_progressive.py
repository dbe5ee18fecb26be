"""Progressive indexing: lexical answers before any vector, resumable back-fill after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coderag.store import Store

from .conftest import rows_of, run_cli

VERBS = ["parse", "render", "encode", "decode", "merge", "split", "load", "store", "fetch", "scan"]
NOUNS = ["header", "payload", "ledger", "invoice", "token", "bucket", "cursor", "session", "matrix"]


def make_tree(root: Path, n_files: int = 12, per_file: int = 12) -> None:
    """A generated but varied Python tree: n_files × per_file documented functions."""
    for f in range(n_files):
        lines = [f'"""Module {f}: helpers for {NOUNS[f % len(NOUNS)]} handling."""', ""]
        for i in range(per_file):
            v, n = VERBS[(f + i) % len(VERBS)], NOUNS[(f * 3 + i) % len(NOUNS)]
            lines += [
                f"def {v}_{n}_{f}_{i}(value, limit={i + 1}):",
                f'    """{v.capitalize()} the {n} value number {i} of module {f}, up to a limit."""',
                f"    result = [value] * limit  # {v} {n}",
                f"    return result[: {i + 1}]",
                "",
            ]
        (root / f"mod_{f:02d}.py").write_text("\n".join(lines))


def pending(root: Path) -> int:
    return Store(root).count_pending()


def test_lexical_first_then_dense(tmp_path, make_index):
    root = tmp_path / "repo"
    root.mkdir()
    make_tree(root, n_files=3, per_file=4)
    idx = make_index(root, static="off")  # the model's vectors alone (static: test_static.py)
    st = idx.refresh(lexical_only=True)
    assert st.chunks_embedded == 0 and st.chunks_pending > 0
    assert idx.status()["dense_coverage"] == 0.0
    # answers already, in every mode that can: hybrid falls back to its lexical half
    hits = idx.search("encode_ledger_0_2", k=3)
    assert hits and hits[0].symbol.endswith("encode_ledger_0_2")
    assert idx.search("render_invoice_1_0", k=3, mode="lexical")[0].symbol.endswith(
        "render_invoice_1_0"
    )
    assert idx.search("anything", mode="dense") == []
    assert idx.last_dense_coverage == 0.0
    # the human output says how complete the dense index is
    r = run_cli("search", "encode ledger", "--repo", str(root))
    assert r.returncode == 0 and "dense index 0% complete" in r.stderr
    r = run_cli("status", "--repo", str(root), "--json")
    assert json.loads(r.stdout)["dense_coverage"] == 0.0

    done = idx.embed_pending(limit=5)
    assert done == 5
    assert 0.0 < idx.status()["dense_coverage"] < 1.0
    st = idx.refresh()  # the foreground run finishes the job
    assert st.chunks_pending == 0 and idx.status()["dense_coverage"] == 1.0


@pytest.mark.slow
def test_sigkill_mid_backfill_resumes_and_equals_clean_build(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    make_tree(root)
    env = {**os.environ, "CODERAG_EMBED_BATCH": "8", "HF_HUB_OFFLINE": "1"}
    assert run_cli("index", str(root), "--lexical-only", "-q").returncode == 0
    total = pending(root)
    assert total > 100
    proc = subprocess.Popen(
        [sys.executable, "-m", "coderag", "index", str(root), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if pending(root) < total:  # at least one batch of vectors committed
                break
            time.sleep(0.05)
        assert proc.poll() is None, "indexing finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    left = pending(root)
    assert 0 < left < total, (left, total)

    r = run_cli("index", str(root), "--json", env={"CODERAG_EMBED_BATCH": "8"})
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    # only the chunks still missing are embedded (chunks sharing a text share one vector)
    assert summary["chunks_embedded"] + summary["chunks_reused"] == left
    assert summary["chunks_embedded"] <= left
    assert summary["files_indexed"] == 0
    assert pending(root) == 0
    resumed = rows_of(root)

    assert run_cli("index", str(root), "--rebuild", "-q").returncode == 0
    assert rows_of(root) == resumed
