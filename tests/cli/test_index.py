"""``coderag index``: a missing model, a held lock, the staged versions and single files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coderag import cli, hooks

from ..conftest import run_cli
from ..gitutil import found, git


def test_missing_model(smallrepo, tmp_path):
    r = run_cli("index", str(smallrepo), "--model", str(tmp_path / "no-such-model"))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "no-such-model" in r.stderr


def test_lock_held(smallrepo):
    from coderag.index import WriterLock

    (smallrepo / ".coderag").mkdir()
    with WriterLock(smallrepo / ".coderag", timeout=1):
        r = run_cli("index", str(smallrepo), env={"CODERAG_LOCK_TIMEOUT": "1"})
    assert r.returncode == 1
    assert "another coderag process" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # a real git repository and several index runs
def test_index_staged_and_index_files_commands(
    gitrepo: Path, make_index, embedder, monkeypatch, capsys
):
    make_index(gitrepo).refresh()
    monkeypatch.chdir(gitrepo)
    a = gitrepo / "uploader" / "config.py"
    b = gitrepo / "uploader" / "client.py"
    a_text, b_text = a.read_text(), b.read_text()

    a.write_text(a_text + "\n\ndef staged_one_marker():\n    return 1\n")
    git(gitrepo, "add", "uploader/config.py")
    a.write_text(a_text + "\n\ndef unstaged_two_marker():\n    return 2\n")
    assert cli.main(["index", "--staged", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files_indexed"] == 1
    assert found(gitrepo, embedder, "staged_one_marker")
    assert not found(gitrepo, embedder, "unstaged_two_marker")

    # staged again with other bytes of the same length: still the staged version
    a.write_text(a_text + "\n\ndef staged_six_marker():\n    return 1\n")
    git(gitrepo, "add", "uploader/config.py")
    assert cli.main(["index", "--staged", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["files_indexed"] == 1
    assert found(gitrepo, embedder, "staged_six_marker")

    # `coderag index FILE`: only that file, from the working tree
    b.write_text(b_text + "\n\ndef only_this_file_marker():\n    return 3\n")
    assert cli.main(["index", "--json", "-q", "uploader/client.py"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files_indexed"] == 1 and summary["files_unchanged"] == 0
    assert found(gitrepo, embedder, "only_this_file_marker")
    assert not found(gitrepo, embedder, "unstaged_two_marker")  # config.py was not touched

    # keys of staged_contents are repo-relative POSIX paths, whatever the cwd
    monkeypatch.chdir(gitrepo / "uploader")
    assert set(hooks.staged_contents(gitrepo, ["config.py"])) == {"uploader/config.py"}
    assert set(hooks.staged_contents(gitrepo)) == {"uploader/config.py"}
