"""A cloned repository is untrusted input, its ``.coderag/`` included: each test plays an attack
a repository could carry out on a real repository, and checks that it now fails safely.

* a committed ``.coderag/`` whose lock or log files are links to the user's files;
* a forged or foreign index (another user's, another key's, copied in);
* folder links followed on explicit paths: ``index FILE``, hook diffs, watcher events.

The folder's own checks (stamp, mode, links inside it, locks, racing creators) are unit-tested
in test_datadir.py.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from coderag import hooks
from coderag.errors import CoderagError
from coderag.index import Index, WriterLock

from . import gitutil
from .conftest import run_cli
from .gitutil import commit_all, git

pytestmark = pytest.mark.slow  # many real `coderag` subprocesses against hostile repositories

gitrepo = gitutil.gitrepo  # the fixture: smallrepo as a git repository

SECRET = "BEGIN OPENSSH PRIVATE KEY hunter2secretmaterial"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of the user's outside the repository (think ~/.bashrc)."""
    p = tmp_path / "victim" / "bashrc"
    p.parent.mkdir()
    p.write_text("export PATH=/usr/bin\n")
    return p


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A private folder outside the repository (think ~/.ssh)."""
    d = tmp_path / "dot-ssh"
    d.mkdir()
    (d / "id_rsa.py").write_text(f'KEY = """{SECRET}"""\n')
    return d


def _all_texts(root: Path) -> str:
    from coderag.store import Store

    rows = Store(root).all_chunk_rows(["path", "text"])
    return "\n".join(r["path"] + "\n" + r["text"] for r in rows)


# ------------------------------------------------------------ 1. a planted .coderag/
@pytest.mark.parametrize("name", ["lock", "watch.lock", "backfill.lock", "background.log"])
def test_a_committed_coderag_folder_with_links_is_refused(gitrepo: Path, victim: Path, name):
    planted = gitrepo / ".coderag"
    planted.mkdir()
    (planted / name).symlink_to(victim)
    (planted / "tokenizer.tmp").symlink_to(victim.parent, target_is_directory=True)
    git(gitrepo, "add", "-f", ".coderag")
    commit_all(gitrepo, "ship an index")
    before = victim.read_text()

    for args in (["index"], ["search", "upload", "--mode", "lexical", "--no-server"], ["status"]):
        r = run_cli(*args, "--repo", str(gitrepo))
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "not made by your coderag" in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    with pytest.raises(CoderagError, match="not made by your coderag"):
        Index(gitrepo).refresh(lexical_only=True)
    with pytest.raises(CoderagError):
        WriterLock(gitrepo / ".coderag", timeout=0).acquire()
    with pytest.raises(CoderagError):
        hooks.spawn_vectors(gitrepo)
    assert victim.read_text() == before and not (victim.parent / "tokenizer.json").exists()

    # the way out the message names: --rebuild replaces the folder, never writing through it
    r = run_cli("index", "--rebuild", "--repo", str(gitrepo))
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == before and sorted(os.listdir(victim.parent)) == ["bashrc"]
    assert not (gitrepo / ".coderag" / name).is_symlink()
    assert "upload" in run_cli("search", "upload", "--repo", str(gitrepo), "--no-server").stdout


def test_a_coderag_symlink_is_refused_and_rebuild_replaces_only_the_link(smallrepo, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (smallrepo / ".coderag").symlink_to(elsewhere, target_is_directory=True)
    r = run_cli("index", "--repo", str(smallrepo))
    assert r.returncode == 1 and "symbolic link" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(elsewhere) == ["keep.txt"]
    assert run_cli("index", "--rebuild", "--repo", str(smallrepo)).returncode == 0
    assert os.listdir(elsewhere) == ["keep.txt"]
    assert (smallrepo / ".coderag").is_dir() and not (smallrepo / ".coderag").is_symlink()


def test_an_index_stamped_with_another_key_is_refused(smallrepo: Path, tmp_path: Path):
    """A real index made under another user's key (forged, or copied in from elsewhere)."""
    other = {"XDG_CONFIG_HOME": str(tmp_path / "other-user")}
    assert run_cli("index", "--repo", str(smallrepo), env=other).returncode == 0
    assert run_cli("status", "--repo", str(smallrepo), env=other).returncode == 0
    r = run_cli("search", "retry", "--repo", str(smallrepo), "--no-server")
    assert r.returncode == 1 and "not made by your coderag" in r.stderr
    # rebuilt under this user's key, it is theirs, and so are their own copies of it
    assert run_cli("index", "--rebuild", "--repo", str(smallrepo)).returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(smallrepo, copy)
    assert run_cli("status", "--repo", str(copy)).returncode == 0
    r = run_cli("status", "--repo", str(copy), env=other)
    assert r.returncode == 1 and "not made by your coderag" in r.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="changing a folder's owner needs root")
def test_another_users_coderag_folder_is_refused(smallrepo: Path):
    assert run_cli("index", "--repo", str(smallrepo)).returncode == 0
    os.chown(smallrepo / ".coderag", 54321, -1)
    r = run_cli("search", "retry", "--repo", str(smallrepo), "--no-server")
    assert r.returncode == 1 and "belongs to another user" in r.stderr


# ---------------------------------------------------- 3. folder links on every path
def test_explicit_paths_never_follow_folder_links(smallrepo: Path, outside: Path, make_index):
    idx = make_index(smallrepo)
    idx.refresh(lexical_only=True)
    (smallrepo / "notes").symlink_to(outside, target_is_directory=True)
    for paths in (["notes"], ["notes/id_rsa.py"], [str(smallrepo / "notes" / "id_rsa.py")]):
        stats = idx.refresh(paths, lexical_only=True)
        assert stats.files_indexed == 0, paths
    r = run_cli("index", "notes", "notes/id_rsa.py", "--repo", str(smallrepo), cwd=smallrepo)
    assert r.returncode == 0, r.stderr
    assert SECRET not in _all_texts(smallrepo) and "id_rsa" not in _all_texts(smallrepo)


def test_a_pulled_folder_link_is_not_indexed_by_the_post_merge_hook(
    gitrepo: Path, outside: Path, make_index, embedder
):
    make_index(gitrepo).refresh(lexical_only=True)
    base = git(gitrepo, "rev-parse", "HEAD").stdout.strip()
    git(gitrepo, "checkout", "-q", "-b", "evil")
    (gitrepo / "notes").symlink_to(outside, target_is_directory=True)
    commit_all(gitrepo, "add notes")
    evil = git(gitrepo, "rev-parse", "HEAD").stdout.strip()
    git(gitrepo, "checkout", "-q", "main")
    git(gitrepo, "merge", "-q", "--ff-only", "evil")
    assert base != evil
    res = hooks.sync(gitrepo, "post-merge", ["0"], embedder=embedder)
    assert res["via"] == "inline", res
    assert SECRET not in _all_texts(gitrepo)


def test_the_watcher_never_follows_a_new_folder_link(smallrepo: Path, outside: Path, make_index):
    from coderag.watch import Watcher

    idx = make_index(smallrepo)
    w = Watcher(idx, log=lambda line: None)
    w.start()
    try:
        w.flush(timeout=120)
        (smallrepo / "escape").symlink_to(outside, target_is_directory=True)
        time.sleep(0.5)
        w.submit(["escape", str(smallrepo / "escape" / "id_rsa.py")])
        w.flush(timeout=120)
        (outside / "later.py").write_text(f"LATER = '{SECRET}'\n")
        time.sleep(0.5)
        w.flush(timeout=120)
        assert SECRET not in _all_texts(smallrepo)
    finally:
        w.stop()
