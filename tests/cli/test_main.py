"""The real ``coderag`` command (``coderag.cli``: main and the parser) in subprocesses and
in-process: the commands end to end, exit codes, one-line errors, help, cheap start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coderag import cli

from ..conftest import run_cli

HIT_KEYS = {"path", "start_line", "end_line", "kind", "language", "symbol", "score", "text"}


SUMMARY_KEYS = {
    "files_indexed",
    "files_skipped",
    "files_removed",
    "chunks_embedded",
    "chunks_reused",
    "seconds",
}


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


def test_help_has_examples():
    for cmd in ("index", "search", "status"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "example" in r.stdout


def test_every_command_has_a_module_with_help_and_a_run(capsys):
    parser = cli.build_parser()
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out
        args = parser.parse_args([name, *_MINIMAL.get(name, [])])
        assert callable(args.handler) and args.command == name


_MINIMAL = {"eval": ["queries.jsonl"], "hook": ["uninstall"]}


def test_main_turns_errors_into_one_line_and_an_exit_code(tmp_path, capsys):
    assert cli.main(["status", "--repo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("coderag: ") and err.count("\n") == 1 and "coderag index" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["search", "x", "--mode", "nonsense"])
    assert e.value.code == 2


def test_help_and_status_import_no_model_library(tmp_path):
    """Building the parser (every command's options) and `coderag status` load neither torch
    nor transformers, nor watchdog (only the watcher imports it, when it starts)."""
    code = (
        "import sys\n"
        "from coderag import cli\n"
        "cli.build_parser().format_help()\n"
        f"rc = cli.main(['status', '--repo', {str(tmp_path)!r}])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'watchdog') "
        "if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "1 []", r.stdout + r.stderr
