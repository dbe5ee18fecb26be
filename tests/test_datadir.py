"""``coderag.datadir``: the ``<repo>/.coderag/`` folder, the checks that make it safe to use
(a real folder, this user's, private, stamped under this user's key), its replacement by
``--rebuild`` and its ``flock`` locks. Real folders in tmp dirs; whole attacks played by a
hostile repository through the real CLI are in test_security_repo.py."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coderag import datadir
from coderag.errors import CoderagError, IndexCorrupt, LockHeld
from coderag.index import WriterLock


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of the user's outside the repository (think ~/.bashrc)."""
    p = tmp_path / "victim" / "bashrc"
    p.parent.mkdir()
    p.write_text("export PATH=/usr/bin\n")
    return p


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty repository folder."""
    r = tmp_path / "repo"
    r.mkdir()
    return r


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


# ------------------------------------------------------------------------ the trust check
def test_check_makes_a_private_stamped_folder_and_trusts_it_after(root: Path):
    assert datadir.check(root) is None and not datadir.path(root).exists()  # not made unasked
    folder = datadir.check(root, create=True)
    assert folder == root / datadir.NAME == datadir.path(root)
    assert _mode(folder) == 0o700
    assert (folder / ".gitignore").read_text() == "*\n"
    for name in (datadir.STAMP, ".gitignore"):
        assert _mode(folder / name) == 0o600, name
    stamp = (folder / datadir.STAMP).read_bytes()
    assert datadir.check(root) == folder and datadir.check(root, create=True) == folder
    assert (folder / datadir.STAMP).read_bytes() == stamp  # trusted as it is, not re-stamped
    assert not [n for n in os.listdir(root) if n != datadir.NAME]  # no temporary left behind


def test_the_users_own_copy_is_trusted_and_another_keys_is_not(root, tmp_path, monkeypatch):
    datadir.check(root, create=True)
    (root / datadir.NAME / "data").write_text("x")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert datadir.check(copy) == copy / datadir.NAME  # the stamp is not tied to a path
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "another-user"))
    for r in (root, copy):
        with pytest.raises(datadir.Untrusted, match="not made by your coderag"):
            datadir.check(r)


@pytest.mark.parametrize(
    "stamp",
    [
        b"",
        b"coderag-owner-1 nonce\n",
        b"coderag-owner-1 abcd " + b"0" * 64 + b"\n",  # a forged mac
        b"something-else-1 abcd ef\n",
    ],
    ids=["empty", "no mac", "forged mac", "another magic"],
)
def test_a_folder_with_a_bad_stamp_is_refused(root: Path, stamp: bytes):
    folder = root / datadir.NAME
    folder.mkdir(mode=0o700)
    (folder / datadir.STAMP).write_bytes(stamp)
    (folder / datadir.DB).mkdir()
    with pytest.raises(datadir.Untrusted, match=r"not made by your coderag.*--rebuild"):
        datadir.check(root)
    with pytest.raises(datadir.Untrusted):
        datadir.check(root, create=True)  # create never adopts a folder it distrusts


def test_a_valid_stamp_others_may_write_is_refused(root: Path):
    folder = datadir.check(root, create=True)
    (folder / datadir.DB).mkdir()
    os.chmod(folder / datadir.STAMP, 0o666)
    with pytest.raises(datadir.Untrusted):
        datadir.check(root)


def test_an_empty_folder_is_adopted_and_a_wide_one_narrowed(root: Path):
    folder = root / datadir.NAME
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert datadir.check(root) == folder  # made by hand, or by a coderag killed before stamping
    assert _mode(folder) == 0o700 and (folder / datadir.STAMP).is_file()
    os.chmod(folder, 0o777)
    assert datadir.check(root) == folder and _mode(folder) == 0o700


def test_a_link_or_a_file_is_refused(root: Path, tmp_path: Path):
    stamped = tmp_path / "stamped"
    stamped.mkdir()
    (root / datadir.NAME).symlink_to(datadir.check(stamped, create=True))  # even to a good one
    with pytest.raises(datadir.Untrusted, match="symbolic link"):
        datadir.check(root)
    (root / datadir.NAME).unlink()
    (root / datadir.NAME).write_text("not a folder\n")
    with pytest.raises(IndexCorrupt, match="not a folder"):
        datadir.check(root, create=True)
    assert issubclass(datadir.Untrusted, CoderagError)


def test_replace_removes_what_is_there_without_following_links(root, tmp_path, victim: Path):
    folder = root / datadir.NAME
    folder.mkdir()
    (folder / "lock").symlink_to(victim)
    (folder / "tokenizer").symlink_to(victim.parent, target_is_directory=True)
    new = datadir.replace(root)
    assert new == folder and datadir.check(root) == folder
    assert sorted(os.listdir(folder)) == [".gitignore", datadir.STAMP]
    assert victim.read_text() == "export PATH=/usr/bin\n"
    assert os.listdir(victim.parent) == ["bashrc"]

    shutil.rmtree(folder)
    (root / datadir.NAME).symlink_to(victim.parent, target_is_directory=True)
    assert datadir.replace(root) == folder and not folder.is_symlink()  # the link, not its target
    assert os.listdir(victim.parent) == ["bashrc"]
    shutil.rmtree(folder)
    assert datadir.replace(root) == folder  # nothing there: made


def test_open_file_and_has_index(root: Path):
    with pytest.raises(FileNotFoundError):
        datadir.open_file(root, "x", os.O_RDONLY)  # no folder, and not asked to make one
    assert not datadir.path(root).exists() and not datadir.has_index(root)
    fd = datadir.open_file(root, "x", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    assert _mode(root / datadir.NAME / "x") == 0o600
    (root / datadir.NAME / datadir.DB).mkdir()
    assert datadir.has_index(root)


# ----------------------------------------------------------------------------- the locks
def test_a_file_lock_is_exclusive_names_its_holder_and_is_released(root: Path):
    def lock(timeout):
        return datadir.FileLock(root, datadir.WATCH_LOCK, timeout=timeout, busy="busy{who}")

    held = lock(0).acquire()
    assert held.path == root / datadir.NAME / datadir.WATCH_LOCK
    assert held.path.read_text() == str(os.getpid())  # for messages
    with pytest.raises(LockHeld, match=rf"^busy \(pid {os.getpid()}\)$"):
        lock(0).acquire()
    t0 = time.monotonic()
    with pytest.raises(LockHeld):
        lock(0.3).acquire()  # kept trying for its timeout
    assert time.monotonic() - t0 >= 0.3
    held.release()
    assert held.path.read_text() == ""
    with lock(0) as again:
        assert again.fd is not None
    assert again.fd is None
    held.release()  # twice: nothing to do


def test_a_lock_file_that_is_a_link_is_refused(root: Path, victim: Path):
    datadir.check(root, create=True)
    (root / datadir.NAME / datadir.BACKFILL_LOCK).symlink_to(victim)
    with pytest.raises(datadir.Untrusted, match="symbolic link"):
        datadir.FileLock(root, datadir.BACKFILL_LOCK, timeout=0, busy="busy").acquire()
    assert victim.read_text() == "export PATH=/usr/bin\n"


@pytest.mark.slow
def test_links_inside_a_trusted_folder_are_never_followed(smallrepo: Path, victim: Path):
    """Defence in depth: even in this user's own stamped folder, lock and log files are
    opened with O_NOFOLLOW."""
    datadir.check(smallrepo, create=True)
    for name in ("lock", "background.log"):
        (smallrepo / ".coderag" / name).symlink_to(victim)
    with pytest.raises(CoderagError, match="symbolic link"):
        WriterLock(smallrepo / ".coderag", timeout=0).acquire()
    with pytest.raises(OSError):
        datadir.open_log(smallrepo)
    assert victim.read_text() == "export PATH=/usr/bin\n"


# -------------------------------------------------------------------- private to the user
@pytest.mark.slow
def test_the_index_folder_is_private(smallrepo: Path, make_index):
    make_index(smallrepo).refresh()
    folder = smallrepo / ".coderag"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("owner", "lock", ".gitignore"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    os.chmod(folder, 0o755)  # widened later (a restore from a backup, a chmod -R)
    make_index(smallrepo).search("upload", mode="lexical")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.slow
def test_racing_creators_share_one_stamped_folder(smallrepo: Path):
    """Processes creating the folder at once all end up using the same valid folder."""
    code = "import sys; from coderag import datadir; print(datadir.check(sys.argv[1], create=True))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(smallrepo)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert datadir.check(smallrepo) == smallrepo / ".coderag"
    assert not [n for n in os.listdir(smallrepo) if n.startswith(".coderag.")]
