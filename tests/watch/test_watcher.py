"""Watch mode on the real stack: real inotify events (watchdog), real LanceDB, real MiniLM.

After every change the watched index must hold exactly the rows a clean rebuild of the same
tree holds. The rebuild runs on a copy of the tree in another folder (lexical only: rows do
not depend on vectors), so the watcher never has to stop for the comparison.
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coderag import Index
from coderag.errors import LockHeld
from coderag.watch import Watcher

from ..conftest import FIXTURES, rows_of, run_cli

pytestmark = pytest.mark.slow  # real watchdog observers, debounce waits, subprocesses

STATE_KEYS = {"watching", "mode", "queue", "batches", "last_batch_at", "pending_vectors"}


def rebuilt_rows(root: Path, embedder, scratch: Path) -> set[tuple]:
    """The rows of a fresh ``--rebuild`` of a copy of ``root``'s files."""
    copy = scratch / "rebuild"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".coderag"), symlinks=True)
    Index(copy, embedder=embedder).refresh(rebuild=True, lexical_only=True)
    return rows_of(copy)


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    """Poll until ``condition()`` is truthy (a bound on waiting, not a speed check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


class Watched:
    def __init__(self, root, index, watcher, logs, scratch, embedder):
        self.root, self.index, self.watcher, self.logs = root, index, watcher, logs
        self.scratch, self.embedder = scratch, embedder

    def settle(self) -> set[tuple]:
        """Apply everything, then return the index rows (asserting they equal a rebuild)."""
        self.watcher.flush(timeout=120)
        rows = rows_of(self.root)
        assert rows == rebuilt_rows(self.root, self.embedder, self.scratch)
        return rows

    def wait_dense(self) -> None:
        wait_for(lambda: self.watcher.state["pending_vectors"] == 0, what="vectors back-filled")


@pytest.fixture(scope="module")
def watched(tmp_path_factory, embedder):
    """One watched copy of the small fixture repo, shared by this module's tests in order."""
    base = tmp_path_factory.mktemp("watched")
    root = base / "repo"
    shutil.copytree(FIXTURES / "smallrepo", root)
    logs: list[str] = []
    index = Index(root, embedder=embedder)
    watcher = Watcher(index, debounce_ms=50, log=logs.append).start()
    try:
        yield Watched(root, index, watcher, logs, base, embedder)
    finally:
        watcher.stop()


# ------------------------------------------------------------------ file operations
def test_start_indexes_the_tree_and_reports_state(watched):
    state = watched.watcher.state
    assert set(state) == STATE_KEYS
    assert state["watching"] is True and state["mode"] == "events"
    assert state["batches"] >= 1 and state["last_batch_at"]
    rows = watched.settle()
    assert {r[0] for r in rows} >= {"uploader/config.py", "docs/design.md", "README.md"}
    # the start-up reconcile was lexical first: searchable by full text at once
    hits = watched.index.search("parse_size_limit", mode="lexical", k=3)
    assert hits and hits[0].symbol.endswith("parse_size_limit")


def test_create_and_modify(watched):
    new = watched.root / "uploader" / "throttle.py"
    new.write_text("def throttle_bandwidth_zq(rate):\n    return min(rate, 1024)\n")
    rows = watched.settle()
    assert any(r[0] == "uploader/throttle.py" for r in rows)
    hits = watched.index.search("throttle_bandwidth_zq", mode="lexical", k=3)
    assert hits and hits[0].path == "uploader/throttle.py"

    with new.open("a") as fh:
        fh.write("\n\ndef throttle_burst_zq(rate):\n    return rate * 2\n")
    rows = watched.settle()
    assert any(r[4] and r[4].endswith("throttle_burst_zq") for r in rows)


def test_atomic_save(watched):
    """Editors write a temporary file and rename it over the original."""
    target = watched.root / "uploader" / "config.py"
    tmp = target.with_name(".config.py.tmp~")
    tmp.write_text(target.read_text().replace("def parse_size_limit", "def parse_size_cap"))
    os.replace(tmp, target)
    rows = watched.settle()
    symbols = {r[4] for r in rows if r[0] == "uploader/config.py"}
    assert any(s and s.endswith("parse_size_cap") for s in symbols)
    assert not any(r[0].endswith(".tmp~") for r in rows)


def test_delete(watched):
    (watched.root / "uploader" / "throttle.py").unlink()
    rows = watched.settle()
    assert not any(r[0] == "uploader/throttle.py" for r in rows)


def test_rename_reuses_vectors(watched):
    watched.wait_dense()

    def spans(rows, path):  # (start, end, kind, text): the symbol names the module, so it moves
        return {(r[1], r[2], r[3], r[5]) for r in rows if r[0] == path}

    before = spans(rows_of(watched.root), "uploader/checksum.py")
    assert before
    (watched.root / "uploader" / "checksum.py").rename(watched.root / "uploader" / "digests.py")
    rows = watched.settle()
    assert not spans(rows, "uploader/checksum.py")
    assert spans(rows, "uploader/digests.py") == before
    stats = watched.watcher.last_stats
    # every chunk of the moved file found its vector in the cache: nothing left to embed
    assert stats.chunks_reused == len(before) and stats.chunks_pending == 0


def test_directory_rename_reuses_vectors(watched):
    watched.wait_dense()
    n_before = sum(1 for r in rows_of(watched.root) if r[0].startswith("uploader/"))
    (watched.root / "uploader").rename(watched.root / "transfer")
    rows = watched.settle()
    assert not any(r[0].startswith("uploader/") for r in rows)
    assert sum(1 for r in rows if r[0].startswith("transfer/")) == n_before
    assert watched.watcher.last_stats.chunks_pending == 0
    assert watched.index.status()["dense_coverage"] == 1.0


def test_ignored_paths_stay_out(watched):
    root = watched.root
    (root / "node_modules" / "left-pad").mkdir(parents=True)
    (root / "node_modules" / "left-pad" / "index.js").write_text("function leftPad() {}\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("def generated():\n    pass\n")
    (root / "env").mkdir()
    (root / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "env" / "site.py").write_text("def site_thing():\n    pass\n")
    (root / "bundle.min.js").write_text("var a=1;\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = watched.settle()
    paths = {r[0] for r in rows}
    assert not paths & {
        "node_modules/left-pad/index.js",
        "build/generated.py",
        "env/site.py",
        "bundle.min.js",
        "logo.png",
    }


def test_gitignore_change_reapplies_rules(watched):
    root = watched.root
    rows = watched.settle()
    assert any(r[0] == "docs/design.md" for r in rows)
    (root / ".gitignore").write_text("docs/\n")
    rows = watched.settle()
    assert not any(r[0].startswith("docs/") for r in rows)
    (root / ".gitignore").write_text("# nothing ignored\n")
    rows = watched.settle()
    assert any(r[0] == "docs/design.md" for r in rows)


def test_submit_queues_paths_like_events(watched):
    before = watched.watcher.state["batches"]
    watched.watcher.submit(None)  # a full reconcile, as POST /refresh without paths asks
    watched.watcher.submit(["transfer/config.py", str(watched.root / "README.md")])
    watched.settle()
    assert watched.watcher.state["batches"] > before


def test_new_code_becomes_dense_in_the_background(watched):
    path = watched.root / "transfer" / "resume.py"
    path.write_text(
        "def resume_interrupted_transfer(session, offset):\n"
        '    """Continue sending a partially uploaded file from the byte where it stopped."""\n'
        "    session.seek(offset)\n"
        "    return session.send_rest()\n"
    )
    watched.settle()
    # lexically searchable as soon as the batch is applied ...
    assert watched.index.search("resume_interrupted_transfer", mode="lexical", k=1)
    # ... and by meaning once the back-fill has embedded it
    watched.wait_dense()
    assert watched.index.status()["dense_coverage"] == 1.0
    hits = watched.index.search("continue an upload that was cut off halfway", mode="dense", k=3)
    assert any(h.path == "transfer/resume.py" for h in hits)


@pytest.mark.slow
def test_burst_of_500_files_is_applied_in_few_batches(watched):
    root = watched.root / "generated"
    errors: list[BaseException] = []
    searches = 0
    done = threading.Event()

    def search_meanwhile():
        nonlocal searches
        while not done.is_set():
            try:
                watched.index.search("parse size limit", mode="lexical", k=3)
                searches += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

    t = threading.Thread(target=search_meanwhile)
    t.start()
    before = watched.watcher.state["batches"]
    root.mkdir()
    for i in range(500):
        (root / f"mod_{i:03d}.py").write_text(f"def burst_function_{i}(x):\n    return x + {i}\n")
    try:
        rows = watched.settle()
    finally:
        done.set()
        t.join()
    assert sum(1 for r in rows if r[0].startswith("generated/")) == 500
    assert not errors and searches > 0  # searches kept working throughout
    assert watched.watcher.state["batches"] - before < 50  # batches, not one per file

    shutil.rmtree(root)
    rows = watched.settle()
    assert not any(r[0].startswith("generated/") for r in rows)


# ------------------------------------------------------------------ lifetime and locks
def test_second_watcher_is_refused(watched):
    with pytest.raises(LockHeld, match=rf"another coderag watch \(pid {os.getpid()}\)"):
        Watcher(Index(watched.root)).start()
    r = run_cli("watch", str(watched.root))
    assert r.returncode == 1
    assert f"another coderag watch (pid {os.getpid()}) is watching this repository" in r.stderr
    assert "Traceback" not in r.stderr


def test_restart_reconciles_changes_made_while_stopped(smallrepo, embedder, tmp_path):
    index = Index(smallrepo, embedder=embedder)
    Watcher(index, debounce_ms=50, log=lambda line: None).start().stop()
    # edits nobody watched
    (smallrepo / "uploader" / "cli.py").unlink()
    cfg = smallrepo / "uploader" / "config.py"
    cfg.write_text(cfg.read_text() + "\n\ndef offline_change():\n    return 1\n")
    (smallrepo / "docs" / "design.md").rename(smallrepo / "docs" / "architecture.md")
    (smallrepo / "uploader" / "added.py").write_text("def added_offline():\n    pass\n")
    w = Watcher(Index(smallrepo, embedder=embedder), log=lambda line: None).start()
    try:
        # start() has reconciled before returning
        assert rows_of(smallrepo) == rebuilt_rows(smallrepo, embedder, tmp_path)
    finally:
        w.stop()
    assert w.state["watching"] is False
    # the lock went with it
    fd = os.open(smallrepo / ".coderag" / "watch.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the command
class _Stderr:
    """Lines of a child's stderr, read in a thread."""

    def __init__(self, proc):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc):
        for line in proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 180.0) -> str:
        """The first line (seen before or arriving within ``timeout``) containing ``text``."""
        for line in self.seen:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        pytest.fail(f"{text!r} never appeared on stderr; got {self.seen}")

    def rest(self) -> str:
        while True:
            try:
                self.seen.append(self.lines.get(timeout=1.0))
            except queue.Empty:
                return "".join(self.seen)


def _watch_cli(root: Path, prefix: list[str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "coderag", "watch", str(root), "--debounce-ms", "50"]
    return subprocess.Popen(
        (prefix or []) + cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )


def _edit_and_wait(root: Path, ident: str) -> None:
    path = root / "uploader" / "client.py"
    with path.open("a") as fh:
        fh.write(f"\n\ndef {ident}():\n    return None\n")
    wait_for(
        lambda: any(r[4] and r[4].endswith(ident) for r in rows_of(root)),
        what=f"{ident} to be indexed",
    )


@pytest.mark.slow
def test_cli_applies_edits_and_exits_0_on_sigterm(smallrepo):
    proc = _watch_cli(smallrepo)
    err = _Stderr(proc)
    try:
        err.wait_for("watching")
        _edit_and_wait(smallrepo, "added_while_watching_cli")
        err.wait_for("1 file: 1 indexed")  # one line per batch
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err.rest()


def _unshare_works() -> bool:
    if not sys.platform.startswith("linux") or not shutil.which("unshare"):
        return False
    try:
        r = subprocess.run(
            ["unshare", "-U", "-r", "sh", "-c", "echo 7 > /proc/sys/user/max_inotify_watches"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_works(), reason="needs unprivileged user namespaces (unshare -U)")
@pytest.mark.parametrize("limit", [0, 2], ids=["root-unwatchable", "some-folders-unwatchable"])
def test_inotify_limit_falls_back_to_polling(smallrepo, limit):
    """A real inotify watch limit, set low in a private user namespace: with 0 even the root
    cannot be watched (watchdog raises); with 2 watchdog silently skips folders."""
    prefix = [
        "unshare",
        "-U",
        "-r",
        "sh",
        "-c",
        f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$@"',
        "-",
    ]
    proc = _watch_cli(smallrepo, prefix)
    err = _Stderr(proc)
    try:
        warning = err.wait_for("warning:")
        assert "inotify watch limit" in warning and "rescanning" in warning
        err.wait_for("watching")
        _edit_and_wait(smallrepo, "added_while_polling")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = err.rest()
    assert out.count("warning:") == 1, out  # one warning, and it kept going
