"""One git event at a time in real git repositories: staged indexing, branch switches, the
server fast path, failure handling, vectors off the hook, and the pre-commit framework."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coderag import cli, hooks
from coderag.index import Index, WriterLock

from ..conftest import run_cli
from ..gitutil import append, commit_all, found, git, git_env, head, indexed_files

pytestmark = pytest.mark.slow  # real git repositories, hooks run by git, background back-fills

PROJECT = Path(__file__).resolve().parents[2]


def test_commit_indexes_the_staged_version_not_the_working_tree(
    gitrepo: Path, make_index, embedder
):
    (gitrepo / ".gitignore").write_text("secret/\n")
    commit_all(gitrepo, "ignore secret/")
    make_index(gitrepo).refresh()
    hooks.install(gitrepo, ["pre-commit"])

    target = gitrepo / "uploader" / "checksum.py"
    original = target.read_text()
    target.write_text(original + "\n\ndef staged_marker_alpha():\n    return 'staged'\n")
    git(gitrepo, "add", "uploader/checksum.py")
    target.write_text(original + "\n\ndef unstaged_marker_beta():\n    return 'unstaged'\n")
    (gitrepo / "secret").mkdir()
    (gitrepo / "secret" / "keys.py").write_text("def ignored_marker_gamma():\n    return 1\n")
    git(gitrepo, "add", "-f", "secret/keys.py")  # tracked, but ignored: never indexed
    git(gitrepo, "rm", "-q", "uploader/cli.py")
    # a published server naming a live process but a port nobody listens on (a server that
    # went away): the hook falls back to indexing inline, staged bytes and all
    from coderag.server import publish

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    info = {"url": f"http://127.0.0.1:{closed_port}", "pid": os.getpid(), "secret": "x" * 32}
    publish(gitrepo, {**info, "repo": str(gitrepo.resolve())})

    assert "uploader/cli.py" in indexed_files(gitrepo)
    r = git(gitrepo, "commit", "-q", "-m", "partially staged")
    assert "coderag: pre-commit: 3 changed file(s)" in r.stderr, r.stderr
    assert "(inline," in r.stderr
    assert found(gitrepo, embedder, "staged_marker_alpha")
    assert not found(gitrepo, embedder, "unstaged_marker_beta")
    assert not found(gitrepo, embedder, "ignored_marker_gamma")
    assert "uploader/cli.py" not in indexed_files(gitrepo)  # the staged deletion removed it
    assert "secret/keys.py" not in indexed_files(gitrepo)


def test_branch_switch_touches_only_changed_files_and_embeds_nothing_on_return(
    gitrepo: Path, make_index, embedder, capsys
):
    main_sha = head(gitrepo)
    git(gitrepo, "checkout", "-q", "-b", "feature")
    append(gitrepo / "uploader" / "client.py", "\n\ndef feature_only_upload():\n    return 'f'\n")
    (gitrepo / "uploader" / "retry.py").write_text(
        '"""Retry helpers."""\n\n\ndef backoff_delays(n):\n    return [2**i for i in range(n)]\n'
    )
    git(gitrepo, "rm", "-q", "docs/design.md")
    commit_all(gitrepo, "feature")
    feature_sha = head(gitrepo)
    git(gitrepo, "checkout", "-q", "main")
    make_index(gitrepo).refresh()

    git(gitrepo, "checkout", "-q", "feature")
    res = hooks.sync(gitrepo, "post-checkout", [main_sha, feature_sha, "1"], embedder=embedder)
    s = res["stats"]
    assert res["via"] == "inline" and res["files"] == 3
    assert (s["files_indexed"], s["files_removed"], s["files_unchanged"]) == (2, 1, 0)
    assert s["chunks_embedded"] > 0
    assert found(gitrepo, embedder, "backoff_delays")
    assert Index(gitrepo).status()["commit"] == feature_sha

    git(gitrepo, "checkout", "-q", "main")
    res = hooks.sync(gitrepo, "post-checkout", [feature_sha, main_sha, "1"], embedder=embedder)
    s = res["stats"]
    assert (s["files_indexed"], s["files_removed"]) == (2, 1)
    assert s["chunks_embedded"] == 0 and s["chunks_reused"] > 0  # all seen before
    assert not found(gitrepo, embedder, "backoff_delays")

    # the same rows as a clean index of this checkout
    from ..conftest import rows_of

    clean = gitrepo.parent / "clean"
    shutil.copytree(gitrepo, clean, ignore=shutil.ignore_patterns(".coderag", ".git"))
    make_index(clean).refresh(lexical_only=True)
    assert rows_of(gitrepo) == rows_of(clean)

    assert cli.main(["status", "--repo", str(gitrepo)]) == 0
    assert main_sha in capsys.readouterr().out


def test_what_each_event_touches(gitrepo: Path, monkeypatch):
    """post-checkout/merge/rewrite: exactly the files that differ (renames on both sides)."""
    first = head(gitrepo)
    assert hooks.plan(gitrepo, "post-checkout", [first, first, "1"])[0] == []
    assert hooks.plan(gitrepo, "post-checkout", [first, first, "0"])[0] == []
    everything = hooks.plan(gitrepo, "post-checkout", ["0" * 40, first, "1"])[0]
    assert "uploader/client.py" in everything and len(everything) == 7

    git(gitrepo, "checkout", "-q", "-b", "topic")
    git(gitrepo, "mv", "uploader/cli.py", "uploader/command.py")
    append(gitrepo / "README.md", "\nTopic.\n")
    commit_all(gitrepo, "topic")
    git(gitrepo, "checkout", "-q", "main")
    git(gitrepo, "merge", "-q", "--ff-only", "topic")
    paths, contents, _ = hooks.plan(gitrepo, "post-merge", ["0"])
    assert sorted(paths) == ["README.md", "uploader/cli.py", "uploader/command.py"]
    assert contents == {}

    before = head(gitrepo)
    append(gitrepo / "uploader" / "config.py", "\nLIMIT = 3\n")
    git(gitrepo, "add", "-A")
    git(gitrepo, "commit", "-q", "--amend", "-m", "topic, amended")
    stdin = f"{before} {head(gitrepo)}\n"
    assert hooks.plan(gitrepo, "post-rewrite", ["amend"], stdin)[0] == ["uploader/config.py"]

    # pre-commit with FILES (the pre-commit framework): their staged bytes, plus every staged
    # deletion (the framework never passes deleted files)
    append(gitrepo / "README.md", "\nStaged line.\n")
    git(gitrepo, "add", "README.md")
    staged_readme = (gitrepo / "README.md").read_bytes()
    append(gitrepo / "README.md", "\nUnstaged line.\n")
    git(gitrepo, "rm", "-q", "docs/design.md")
    monkeypatch.chdir(gitrepo)  # file names are relative to the cwd, the root for a hook
    paths, contents, _ = hooks.plan(gitrepo, "pre-commit", ["README.md"])
    assert paths == ["README.md", "docs/design.md"]
    assert contents == {"README.md": staged_readme}

    monkeypatch.setenv("CODERAG_HOOK", "0")
    assert hooks.sync(gitrepo, "post-merge", ["0"])["via"] == "skipped"
    monkeypatch.delenv("CODERAG_HOOK")
    # without an index a hook does nothing (and loads nothing)
    res = hooks.sync(gitrepo, "post-checkout", ["0" * 40, first, "1"], use_server=False)
    assert res["via"] == "skipped" and "no index" in res["note"]


def test_failed_indexing_never_blocks_a_commit_unless_strict(gitrepo: Path, make_index):
    make_index(gitrepo).refresh()
    hooks.install(gitrepo, ["pre-commit"])
    env = git_env(CODERAG_LOCK_TIMEOUT="0.2")
    lock = WriterLock(gitrepo / ".coderag", 1).acquire()  # another writer holds the index
    try:
        append(gitrepo / "README.md", "\nFirst.\n")
        r = commit_all(gitrepo, "lenient", env=env)
        assert "indexing failed" in r.stderr and "another coderag process" in r.stderr
        assert git(gitrepo, "log", "-1", "--format=%s").stdout.strip() == "lenient"

        hooks.install(gitrepo, ["pre-commit"], strict=True)
        append(gitrepo / "README.md", "\nSecond.\n")
        r = commit_all(gitrepo, "strict", env=env, check=False)
        assert r.returncode != 0 and "indexing failed" in r.stderr
        assert git(gitrepo, "log", "-1", "--format=%s").stdout.strip() == "lenient"
    finally:
        lock.release()


SHIM = """import os, pathlib
pathlib.Path(os.environ["CODERAG_TEST_IMPORT_LOG"]).open("a").write(__name__ + "\\n")
raise ImportError(__name__ + " must not be imported by a hook talking to a server")
"""


def _start_server(repo: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "coderag", "serve", str(repo), "--port", "0", "--no-watch"],
        env=git_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    from coderag.server import read_runtime_info

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"coderag serve exited: {proc.stderr.read()}")
        data = read_runtime_info(repo)
        if data and data["pid"] == proc.pid:
            return proc, data["url"]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("coderag serve did not start")


def test_hooks_hand_paths_to_a_running_server_and_load_no_model(
    gitrepo: Path, make_index, embedder, tmp_path: Path
):
    make_index(gitrepo).refresh()
    hooks.install(gitrepo)
    shim = tmp_path / "shim"
    for name in ("torch", "transformers", "sentence_transformers", "lancedb"):
        (shim / name).mkdir(parents=True)
        (shim / name / "__init__.py").write_text(SHIM)
    imported = tmp_path / "imported.log"
    env = git_env(PYTHONPATH=str(shim), CODERAG_TEST_IMPORT_LOG=str(imported))

    proc, _url = _start_server(gitrepo)
    try:
        append(
            gitrepo / "uploader" / "client.py", "\n\ndef served_commit_marker():\n    return 1\n"
        )
        r = commit_all(gitrepo, "via server", env=env)  # pre-commit
        assert "(server," in r.stderr, r.stderr
        git(gitrepo, "checkout", "-q", "-b", "side", env=env)
        (gitrepo / "uploader" / "side.py").write_text("def served_branch_marker():\n    return 2\n")
        commit_all(gitrepo, "side", env=env)
        git(gitrepo, "checkout", "-q", "main", env=env)  # post-checkout: side.py goes away
        assert not found(gitrepo, embedder, "served_branch_marker")
        r = git(gitrepo, "merge", "-q", "--ff-only", "side", env=env)  # post-merge
        assert "post-merge: 1 changed file(s)" in r.stderr and "(server," in r.stderr
        assert found(gitrepo, embedder, "served_branch_marker")
        append(gitrepo / "uploader" / "side.py", "\n\ndef served_amend_marker():\n    return 3\n")
        git(gitrepo, "add", "-A")
        r = git(gitrepo, "commit", "-q", "--amend", "-m", "side, amended", env=env)
        assert "post-rewrite: 1 changed file(s)" in r.stderr, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert found(gitrepo, embedder, "served_commit_marker")
    assert found(gitrepo, embedder, "served_amend_marker")
    assert not imported.exists(), imported.read_text()


def test_pre_commit_framework_runs_the_hook_from_this_repository(
    gitrepo: Path, make_index, embedder, tmp_path: Path
):
    """``pre-commit try-repo`` builds a virtualenv from this repository (pip installs the
    project and its dependencies from the configured package indexes) and runs
    ``coderag-index`` on the given files. It takes minutes: most of it is unpacking torch."""
    # try-repo clones a git repository; a snapshot of the project as it is on disk
    # (committed or not) makes the test independent of the checkout's state.
    snapshot = tmp_path / "project"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        env=git_env(),
        capture_output=True,
        check=True,
    ).stdout
    for rel in filter(None, listed.decode().split("\0")):
        src = PROJECT / rel
        if src.is_file():
            (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, snapshot / rel)
    git(snapshot, "init", "-q", "-b", "main")
    commit_all(snapshot, "snapshot")

    make_index(gitrepo).refresh()
    append(gitrepo / "uploader" / "config.py", "\n\ndef framework_marker():\n    return 1\n")
    git(gitrepo, "add", "uploader/config.py")
    pre_commit = Path(sys.executable).with_name("pre-commit")
    env = git_env(
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        PIP_NO_COMPILE="0",  # pip reads PIP_NO_COMPILE=0 as --no-compile: saves a minute
        HF_HUB_OFFLINE="1",
    )
    r = subprocess.run(
        [str(pre_commit), "try-repo", str(snapshot), "coderag-index", "--verbose",
         "--files", "uploader/config.py"],
        cwd=gitrepo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "coderag index" in r.stdout and "Passed" in r.stdout
    assert "pre-commit: 1 changed file(s): 1 indexed" in r.stdout
    assert found(gitrepo, embedder, "framework_marker")


def test_hook_stores_chunks_without_loading_the_model(gitrepo: Path, make_index):
    """vectors=later: the chunks are sized by the index's own torch-free tokenizer copy,
    are the same rows a full index makes, and are searchable by full text at once."""
    from ..conftest import rows_of

    make_index(gitrepo).refresh()
    append(gitrepo / "uploader" / "client.py", "\n\ndef hook_added_helper():\n    return 7\n")
    git(gitrepo, "add", "-A")
    code = (
        "import json, sys\n"
        "from coderag import hooks\n"
        f"res = hooks.sync({str(gitrepo)!r}, 'pre-commit', [], use_server=False, vectors='later')\n"
        "print(json.dumps(res))\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res, heavy = (json.loads(line) for line in r.stdout.strip().splitlines())
    assert heavy == []  # no torch, no transformers: the hook's cost is parsing and writing
    assert res["via"] == "inline" and res["stats"]["files_indexed"] == 1
    assert res["stats"]["chunks_embedded"] == 0 and res["stats"]["chunks_pending"] >= 1
    assert (
        Index(gitrepo)
        .search("hook_added_helper", mode="lexical", k=1)[0]
        .symbol.endswith("hook_added_helper")
    )
    clean = gitrepo.parent / "clean"
    shutil.copytree(gitrepo, clean, ignore=shutil.ignore_patterns(".coderag", ".git"))
    make_index(clean).refresh(lexical_only=True)
    assert rows_of(gitrepo) == rows_of(clean)  # same chunks as the model's tokenizer makes


def test_hook_background_vectors_arrive(gitrepo: Path, make_index):
    make_index(gitrepo).refresh()
    hooks.install(gitrepo, ["pre-commit"])
    append(gitrepo / "uploader" / "client.py", "\n\ndef background_helper():\n    return 8\n")
    env = {k: v for k, v in git_env().items() if k != "CODERAG_HOOK_VECTORS"}
    git(gitrepo, "add", "-A")
    r = git(gitrepo, "commit", "-m", "bg", env=env)
    assert "in the background" in r.stderr, r.stderr
    idx = Index(gitrepo)
    deadline = time.monotonic() + 240
    while idx.status()["dense_coverage"] < 1.0:
        assert time.monotonic() < deadline, "the background vectors never arrived"
        time.sleep(0.5)
    hit = idx.search("a helper that returns eight in the background", k=20, mode="dense")
    assert any(h.symbol and h.symbol.endswith("background_helper") for h in hit)
    r = run_cli("index", "--vectors-only", "--json", "--repo", str(gitrepo))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["chunks_embedded"] == 0  # nothing left to do
    r = run_cli("index", "--vectors-only", "--staged", "--repo", str(gitrepo))
    assert r.returncode == 2


def test_background_back_fillers_take_turns(gitrepo: Path, make_index):
    """While one back-fill run holds its turn, a second `index --vectors-only` (another
    commit's) waits instead of loading a second model; then it embeds what is left."""
    make_index(gitrepo).refresh()
    append(gitrepo / "uploader" / "client.py", "\n\ndef turn_taking_helper():\n    return 9\n")
    Index(gitrepo).refresh(lexical_only=True)
    holder = Index(gitrepo)
    with holder.backfill_turn():
        proc = subprocess.Popen(
            [sys.executable, "-m", "coderag", "index", "--vectors-only", "--json"],
            cwd=gitrepo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert proc.poll() is None  # waiting for its turn
        assert Index(gitrepo).status()["dense_coverage"] < 1.0
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert json.loads(out)["chunks_embedded"] >= 1
    assert Index(gitrepo).status()["dense_coverage"] == 1.0
    (gitrepo.parent / "unindexed").mkdir()
    r = run_cli("index", "--vectors-only", "--repo", str(gitrepo.parent / "unindexed"))
    assert r.returncode == 1 and "no index" in r.stderr and r.stderr.count("\n") == 1
    assert not (gitrepo.parent / "unindexed" / ".coderag").exists()  # nothing created
