"""The real ``coderag`` command in subprocesses: output formats, exit codes, error paths."""

from __future__ import annotations

import json
import shutil

import pytest

from coderag.models import bundled_model_path

from .conftest import run_cli

HIT_KEYS = {"path", "start_line", "end_line", "kind", "language", "symbol", "score", "text"}
SUMMARY_KEYS = {
    "files_indexed",
    "files_skipped",
    "files_removed",
    "chunks_embedded",
    "chunks_reused",
    "seconds",
}


@pytest.mark.slow
def test_index_search_status_json(smallrepo):
    r = run_cli("index", str(smallrepo), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # stdout is one JSON object, progress went to stderr
    assert SUMMARY_KEYS <= set(summary)
    assert summary["files_indexed"] == 7 and summary["chunks_embedded"] > 0

    r = run_cli("search", "exponential backoff", "--repo", str(smallrepo), "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert 1 <= len(hits) <= 3
    for h in hits:
        assert set(h) == HIT_KEYS
        assert not h["path"].startswith("/") and "\\" not in h["path"]
        assert 1 <= h["start_line"] <= h["end_line"]

    r = run_cli("status", "--repo", str(smallrepo), "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert {"files", "chunks", "model", "dim", "indexed_at", "bytes"} <= set(st)

    # re-index from inside the repo (default root: the folder around the cwd)
    r = run_cli("index", "--json", cwd=smallrepo)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["chunks_embedded"] == 0


@pytest.mark.slow
def test_human_output(smallrepo):
    assert run_cli("index", str(smallrepo), "-q").returncode == 0
    r = run_cli(
        "search", "settings from environment variables", "--repo", str(smallrepo), "-k", "2"
    )
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    path_span, symbol, score = first.split()
    assert path_span.startswith("uploader/") and ":" in path_span and "-" in path_span
    float(score)
    r = run_cli("status", "--repo", str(smallrepo))
    assert "chunks" in r.stdout and r.returncode == 0


def test_missing_repo_is_a_one_line_error(tmp_path):
    r = run_cli("search", "x", "--repo", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = run_cli("status", "--repo", str(tmp_path))
    assert r.returncode == 1 and "coderag index" in r.stderr


def test_usage_error_exit_2(smallrepo):
    r = run_cli("search")
    assert r.returncode == 2
    r = run_cli("search", "x", "--mode", "nonsense")
    assert r.returncode == 2


def test_missing_model(smallrepo, tmp_path):
    r = run_cli("index", str(smallrepo), "--model", str(tmp_path / "no-such-model"))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "no-such-model" in r.stderr


@pytest.mark.slow
def test_model_mismatch(smallrepo, tmp_path):
    assert run_cli("index", str(smallrepo), "-q").returncode == 0
    other = tmp_path / "other-model"
    shutil.copytree(bundled_model_path(), other)
    r = run_cli("search", "upload", "--repo", str(smallrepo), "--model", str(other))
    assert r.returncode == 1
    assert "--rebuild" in r.stderr and "Traceback" not in r.stderr


def test_lock_held(smallrepo):
    from coderag.index import WriterLock

    (smallrepo / ".coderag").mkdir()
    with WriterLock(smallrepo / ".coderag", timeout=1):
        r = run_cli("index", str(smallrepo), env={"CODERAG_LOCK_TIMEOUT": "1"})
    assert r.returncode == 1
    assert "another coderag process" in r.stderr and "Traceback" not in r.stderr


def test_help_has_examples():
    for cmd in ("index", "search", "status"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "example" in r.stdout
