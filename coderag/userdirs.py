"""Per-user folders that live outside any repository (a cloned repository is untrusted input).

* :func:`runtime_dir` -- ``$XDG_RUNTIME_DIR/coderag`` (else ``/tmp/coderag-<uid>``): where a
  running ``coderag serve`` publishes its address and per-start secret (0600 files in a
  0700 folder), so nothing in a repository can point a client somewhere else.
* :func:`config_dir` -- ``$XDG_CONFIG_HOME/coderag`` (else ``~/.config/coderag``): the
  user's persistent secret key (:func:`user_key`) that stamps the ``.coderag/`` folders this
  user's coderag made.

Every folder is created 0700 and refused when it is a symbolic link, is owned by another
user, or is open to others (another local user could plant files there). Standard library
only: the CLI's fast paths import this.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from .errors import CoderagError

KEY_FILE = "key"


def _private_dir(path: Path) -> Path:
    """``path`` as a folder only this user can use: made 0700, else checked and refused."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise CoderagError(f"cannot create {path} ({e.strerror or e})") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise CoderagError(f"{path} is not a folder (a symbolic link?); remove it")
    if st.st_uid != os.getuid():
        raise CoderagError(f"{path} belongs to another user; remove it or set XDG_RUNTIME_DIR")
    if st.st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as e:
            raise CoderagError(f"cannot make {path} private ({e.strerror or e})") from None
    return path


def runtime_dir() -> Path:
    """The user's private runtime folder for coderag (created on first use)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and os.path.isdir(base):
        return _private_dir(Path(base) / "coderag")
    return _private_dir(Path(os.environ.get("TMPDIR") or "/tmp") / f"coderag-{os.getuid()}")


def config_dir() -> Path:
    """The user's private, persistent coderag folder (created on first use)."""
    base = os.environ.get("XDG_CONFIG_HOME")
    if not (base and os.path.isabs(base)):
        base = str(Path.home() / ".config")
    return _private_dir(Path(base) / "coderag")


def cache_dir() -> Path:
    """The user's private coderag cache (``$XDG_CACHE_HOME/coderag``, else ``~/.cache``):
    derived data such as distilled static models, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not (base and os.path.isabs(base)):
        base = str(Path.home() / ".cache")
    return _private_dir(Path(base) / "coderag")


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``data`` (links are never
    followed: the temporary file is created exclusively, then renamed over)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_private(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The bytes of a file this user owns and nobody else can write, never through a link;
    None when it is missing or fails those checks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def user_key() -> bytes:
    """This user's secret key (32 random bytes, made once, kept 0600 in :func:`config_dir`)."""
    path = config_dir() / KEY_FILE
    data = read_private(path)
    if data is not None and len(data) == 64:
        try:
            return bytes.fromhex(data.decode("ascii"))
        except ValueError:
            pass
    # made once: the first writer wins (link() never replaces), everyone reads its key
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32).hex().encode("ascii"))
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            data = read_private(path)
            if data is None or len(data) != 64:
                os.replace(tmp, path)  # an unusable key file (a link, others may write it)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    data = read_private(path)
    try:
        key = bytes.fromhex((data or b"").decode("ascii"))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CoderagError(f"cannot read the coderag key at {path}; remove it")
    return key
