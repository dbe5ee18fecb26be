"""The ``<repo>/.coderag/`` folder: its layout, the checks that make it safe to use, its locks.

A cloned repository is untrusted input, and so is a ``.coderag/`` that came with it (committed,
unpacked from an archive, copied from another machine): its files may be symbolic links to
``~/.bashrc``, its tables forged. So coderag uses a ``.coderag/`` only when it is

* a real folder (not a symbolic link), owned by the current user, and private (0700: the index
  holds the repository's text, which may include secrets; a wider folder is narrowed);
* stamped by this user's coderag: ``.coderag/owner`` holds a random nonce and its HMAC under
  the user's secret key (:func:`coderag.userdirs.user_key`), written when coderag made the
  folder. A folder that came with a repository cannot carry a valid stamp (the key never
  leaves the user's config folder), so it is refused with one line; ``coderag index
  --rebuild`` replaces it. The user's own copies and moves keep working.

Files inside are opened with ``O_NOFOLLOW`` and created 0600 (:func:`open_file`), and the three
``flock`` locks (writer, watcher, back-fill) share :class:`FileLock`. Standard library only.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import os
import secrets
import shutil
import stat
import time
from pathlib import Path

from .errors import CoderagError, IndexCorrupt, LockHeld

NAME = ".coderag"
#: the LanceDB database folder
DB = "db"
#: ``flock`` files: one writer, one watcher, one back-fill run at a time
WRITER_LOCK = "lock"
WATCH_LOCK = "watch.lock"
BACKFILL_LOCK = "backfill.lock"
#: error output of background back-fills started by git hooks
BACKGROUND_LOG = "background.log"
#: torch-free copies of the model's query path and tokenizer
QUERY_ENCODER = "query-encoder"
TOKENIZER = "tokenizer"
STAMP = "owner"
_STAMP_MAGIC = "coderag-owner-1"
REBUILD = "run `coderag index --rebuild` to replace it"


class Untrusted(CoderagError):
    """A ``.coderag/`` folder coderag will not use: a link, another user's, or not stamped."""


def path(root: Path) -> Path:
    return Path(root) / NAME


def _mac(key: bytes, nonce: str) -> str:
    return hmac.new(key, f"{_STAMP_MAGIC}:{nonce}".encode(), hashlib.sha256).hexdigest()


def _stamp_ok(folder: Path) -> bool:
    from .userdirs import read_private, user_key

    data = read_private(folder / STAMP, limit=512)
    if not data:
        return False
    parts = data.decode("ascii", "replace").split()
    if len(parts) != 3 or parts[0] != _STAMP_MAGIC:
        return False
    return hmac.compare_digest(parts[2], _mac(user_key(), parts[1]))


def _write_stamp(folder: Path) -> None:
    from .userdirs import user_key, write_private

    nonce = secrets.token_hex(16)
    line = f"{_STAMP_MAGIC} {nonce} {_mac(user_key(), nonce)}\n"
    write_private(folder / STAMP, line.encode("ascii"))


def check(root: Path, *, create: bool = False) -> Path | None:
    """``<root>/.coderag`` once it is known safe to use; made (stamped, 0700, with a
    ``.gitignore`` of ``*``) when missing and ``create``; None when missing otherwise.

    Raises :class:`Untrusted` for a link, a non-folder, another user's folder, or one this
    user's coderag did not make (an empty folder is adopted)."""
    folder = path(root)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        if not create:
            return None
        return _make(folder)
    except OSError as e:
        raise CoderagError(f"cannot read {folder} ({e.strerror or e})") from None
    if stat.S_ISLNK(st.st_mode):
        raise Untrusted(f"{folder} is a symbolic link; coderag does not follow it ({REBUILD})")
    if not stat.S_ISDIR(st.st_mode):
        raise IndexCorrupt(f"{folder} is not a folder; {REBUILD}")
    if st.st_uid != os.getuid():
        raise Untrusted(f"{folder} belongs to another user; coderag will not use it ({REBUILD})")
    if st.st_mode & 0o077:
        try:
            os.chmod(folder, 0o700, follow_symlinks=False)
        except OSError as e:
            raise CoderagError(f"cannot make {folder} private ({e.strerror or e})") from None
    if _stamp_ok(folder):
        return folder
    try:
        empty = not any(os.scandir(folder))
    except OSError:
        empty = False
    if empty:  # made by hand, or by a coderag killed before stamping: nothing to distrust
        _finish(folder)
        return folder
    raise Untrusted(
        f"{folder} was not made by your coderag (committed to the repository, copied from "
        f"elsewhere, or written by coderag < 0.2); {REBUILD}"
    )


def _finish(folder: Path) -> None:
    gi = folder / ".gitignore"
    if not os.path.lexists(gi):
        fd = os.open(gi, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("*\n")
    _write_stamp(folder)


def _make(folder: Path) -> Path:
    """Make the folder complete under a temporary name, then rename it into place: another
    process racing us either loses the rename (and checks ours) or never sees a half one."""
    tmp = folder.with_name(f"{NAME}.new-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.mkdir(tmp, 0o700)
        _finish(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CoderagError(f"cannot create {folder} ({e.strerror or e})") from None
    try:
        os.rename(tmp, folder)  # renaming over an empty folder is fine: it had nothing
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise CoderagError(f"cannot create {folder} ({e.strerror or e})") from None
    return check(folder.parent, create=False) or _make(folder)


def replace(root: Path) -> Path:
    """``--rebuild``: whatever is at ``.coderag`` (a link, a file, a foreign or damaged
    folder; links inside are removed, never followed) goes, and a fresh folder is made."""
    folder = path(root)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return check(root, create=True)
    if stat.S_ISDIR(st.st_mode):
        aside = folder.with_name(f"{NAME}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.unlink(folder)
    return check(root, create=True)


def open_file(root: Path, name: str, flags: int, mode: int = 0o600) -> int:
    """Open ``.coderag/<name>`` (checked folder; created 0600 with ``O_CREAT``), never
    through a symbolic link."""
    folder = check(root, create=bool(flags & os.O_CREAT))
    if folder is None:
        raise FileNotFoundError(errno.ENOENT, "no index folder", str(path(root)))
    return os.open(folder / name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


class FileLock:
    """An exclusive ``flock`` on ``.coderag/<name>``, released by the kernel if the holder
    dies (a killed process never leaves it behind). The holder's pid is written for messages.

    ``timeout``: None waits as long as it takes, 0 tries once, else seconds to keep trying.
    ``busy`` is the message of the :class:`LockHeld` raised when it cannot be had; ``{who}``
    in it becomes `` (pid N)`` when the holder's pid is known."""

    def __init__(self, root: Path, name: str, *, timeout: float | None, busy: str):
        self.root = Path(root)
        self.name = name
        self.timeout = timeout
        self.busy = busy
        self.fd: int | None = None

    @property
    def path(self) -> Path:
        return path(self.root) / self.name

    def acquire(self) -> FileLock:
        try:
            fd = open_file(self.root, self.name, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Untrusted(
                    f"{self.path} is a symbolic link; coderag does not follow it"
                ) from None
            raise CoderagError(f"cannot open {self.path} ({e.strerror or e})") from None
        if self.timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = _read_pid(fd)
                        os.close(fd)
                        who = f" (pid {holder})" if holder else ""
                        raise LockHeld(self.busy.format(who=who)) from None
                    time.sleep(0.1)
        try:  # the holder's pid, for messages only (a full disk must not fail the lock)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        self.fd = fd
        return self

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def has_index(root: Path) -> bool:
    """Is there a database under ``.coderag/`` (checked cheaply: no trust check, no import)?"""
    return (path(root) / DB).is_dir()


def spawn(root: Path, args: list[str], log: str, pass_fds: tuple[int, ...] = ()) -> int:
    """Start ``python -m coderag ARGS`` detached (its own session, no terminal, no input) in
    ``root``, its error output appended to ``.coderag/<log>``; returns its pid."""
    import subprocess
    import sys

    with os.fdopen(open_log(root, log), "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coderag", *args],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    return proc.pid


def open_log(root: Path, name: str = BACKGROUND_LOG) -> int:
    """An append-only descriptor for a log file under ``.coderag/`` (0600, no links)."""
    return open_file(root, name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
