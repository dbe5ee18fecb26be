"""The runtime file a server publishes in the user's private folder, and its identity proof."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

from coderag.server.runtime import (
    is_loopback,
    pid_alive,
    proof,
    publish,
    read_runtime_info,
    runtime_file,
    unpublish,
    valid_nonce,
)


def _info(root, **more) -> dict:
    base = {"url": "http://127.0.0.1:7878", "pid": os.getpid(), "secret": "s" * 43}
    return {**base, "repo": str(root.resolve()), **more}


def test_publish_is_private_and_read_back(tmp_path):
    path = publish(tmp_path, _info(tmp_path))
    assert path == runtime_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tmp_path not in path.parents  # never inside the repository
    assert read_runtime_info(tmp_path) == _info(tmp_path)
    assert runtime_file(tmp_path / ".") == path  # one file per resolved root


def test_what_a_server_does_not_write_is_ignored(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for info in (
        _info(other),  # published for another repository
        _info(tmp_path, secret="short"),
        _info(tmp_path, pid="1"),
        _info(tmp_path, url=None),
    ):
        publish(tmp_path, info)
        assert read_runtime_info(tmp_path) is None, info
    runtime_file(tmp_path).write_text("not json")
    assert read_runtime_info(tmp_path) is None


def test_unpublish_removes_only_our_file(tmp_path):
    path = publish(tmp_path, _info(tmp_path))
    unpublish(path, "another secret")  # a later server replaced it: kept
    assert path.exists()
    unpublish(path, "s" * 43)
    assert not path.exists()
    unpublish(path, "s" * 43)  # gone already: nothing to do


def test_proof_and_nonce():
    nonce = "n" * 32
    want = hmac.new(b"secret", nonce.encode(), hashlib.sha256).hexdigest()
    assert proof("secret", nonce) == want
    assert valid_nonce("a" * 16) and valid_nonce("A-z_0" * 25)
    for bad in ("a" * 15, "a" * 129, "a" * 20 + "!", "a" * 20 + "\n", "é" * 20, ""):
        assert not valid_nonce(bad), bad


def test_loopback_and_live_pids():
    assert all(map(is_loopback, ("localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "example.com", "192.0.2.1", "")))
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1) and not pid_alive("1")
