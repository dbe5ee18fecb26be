"""``coderag.userdirs``: the user's own folders outside any repository (runtime, config, cache),
private files in them, and the secret key that stamps ``.coderag/`` folders. Every test points
the XDG variables at its own tmp folder: the session's key is never touched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coderag import userdirs
from coderag.errors import CoderagError


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """XDG folders of a user of this test alone."""
    for var, sub in (
        ("XDG_RUNTIME_DIR", "run"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


def test_each_folder_is_made_private_under_its_xdg_variable(home: Path):
    for get, sub in (
        (userdirs.runtime_dir, "run"),
        (userdirs.config_dir, "config"),
        (userdirs.cache_dir, "cache"),
    ):
        folder = get()
        assert folder == home / sub / "coderag" and _mode(folder) == 0o700
        assert get() == folder  # the second time: checked, the same


def test_relative_or_missing_xdg_variables_fall_back(home: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(home / "h"))
    monkeypatch.setenv("TMPDIR", str(home / "tmp"))
    (home / "tmp").mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")  # relative: never trusted
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "no-such-folder"))
    assert userdirs.config_dir() == home / "h" / ".config" / "coderag"
    assert userdirs.cache_dir() == home / "h" / ".cache" / "coderag"
    assert userdirs.runtime_dir() == home / "tmp" / f"coderag-{os.getuid()}"
    assert not (home / "no-such-folder").exists() and not Path("relative").exists()


def test_a_folder_that_is_a_link_is_refused_and_a_wide_one_narrowed(home: Path):
    (home / "elsewhere").mkdir()
    (home / "run" / "coderag").symlink_to(home / "elsewhere", target_is_directory=True)
    with pytest.raises(CoderagError, match="not a folder"):
        userdirs.runtime_dir()
    (home / "config" / "coderag").mkdir(mode=0o777)
    os.chmod(home / "config" / "coderag", 0o777)
    assert _mode(userdirs.config_dir()) == 0o700


def test_private_files_round_trip_and_never_follow_links(tmp_path: Path):
    target = tmp_path / "secret"
    userdirs.write_private(target, b"one")
    assert userdirs.read_private(target) == b"one" and _mode(target) == 0o600
    userdirs.write_private(target, b"two")  # replaced whole
    assert userdirs.read_private(target) == b"two"
    assert userdirs.read_private(target, limit=1) == b"t"
    assert sorted(os.listdir(tmp_path)) == ["secret"]  # no temporary left behind

    victim = tmp_path / "victim"
    victim.write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(victim)
    assert userdirs.read_private(link) is None
    userdirs.write_private(link, b"written")  # the link is replaced, its target untouched
    assert victim.read_text() == "mine" and not link.is_symlink()
    assert userdirs.read_private(link) == b"written"


def test_read_private_refuses_what_others_may_write(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.write_bytes(b"x")
    for mode in (0o620, 0o602):
        os.chmod(shared, mode)
        assert userdirs.read_private(shared) is None, oct(mode)
    os.chmod(shared, 0o644)  # others may read it: that is the caller's business
    assert userdirs.read_private(shared) == b"x"
    os.mkfifo(tmp_path / "fifo")
    assert userdirs.read_private(tmp_path / "fifo") is None  # not a regular file, and no hang
    assert userdirs.read_private(tmp_path / "missing") is None
    assert userdirs.read_private(tmp_path) is None  # a folder


def test_user_key_is_made_once_and_kept(home: Path):
    key = userdirs.user_key()
    path = home / "config" / "coderag" / userdirs.KEY_FILE
    assert len(key) == 32 and _mode(path) == 0o600
    assert path.read_text() == key.hex()
    assert userdirs.user_key() == key
    os.chmod(path, 0o400)  # read-only to its owner: still the key
    assert userdirs.user_key() == key


@pytest.mark.parametrize("damage", ["short", "a link", "writable by others"])
def test_an_unusable_key_file_is_replaced(home: Path, damage: str):
    path = userdirs.config_dir() / userdirs.KEY_FILE
    victim = home / "victim"
    victim.write_text("ab" * 32)  # a valid-looking key someone else knows
    if damage == "short":
        path.write_text("abcd")
    elif damage == "a link":
        path.symlink_to(victim)
    else:
        path.write_text("ab" * 32)
        os.chmod(path, 0o666)
    key = userdirs.user_key()
    assert len(key) == 32 and key != bytes.fromhex("ab" * 32)
    assert not path.is_symlink() and _mode(path) == 0o600 and path.read_text() == key.hex()
    assert victim.read_text() == "ab" * 32
    assert userdirs.user_key() == key


def test_a_key_file_of_the_right_size_but_not_hex_is_one_line_not_replaced(home: Path):
    path = userdirs.config_dir() / userdirs.KEY_FILE
    path.write_text("zz" * 32)
    os.chmod(path, 0o600)
    with pytest.raises(CoderagError, match=r"cannot read the coderag key at .*; remove it$"):
        userdirs.user_key()
    assert path.read_text() == "zz" * 32  # left for the user to look at
