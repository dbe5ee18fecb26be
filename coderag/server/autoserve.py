"""The background server ``coderag search`` starts so that the next search finds a warm model.

:func:`start_background` spawns a private ``coderag serve`` for one repository (loopback, any
free port, no watcher: a read accelerator) that stops by itself when idle or too big. One at a
time per repository: ``.coderag/autoserve.lock`` is held for the server's whole life.

Standard library only: ``coderag search`` imports this.
"""

from __future__ import annotations

import os
from pathlib import Path

AUTOSERVE_ENV = "CODERAG_AUTOSERVE"  # 0/off: `coderag search` never starts a server
AUTOSERVE_IDLE_ENV = "CODERAG_AUTOSERVE_IDLE"  # seconds without a request before it stops
AUTOSERVE_MEMORY_ENV = "CODERAG_AUTOSERVE_MEMORY"  # MB of resident memory before it stops
AUTOSERVE_IDLE = 900
AUTOSERVE_MEMORY = 2048
AUTOSERVE_LOCK = "autoserve.lock"
AUTOSERVE_LOG = "serve.log"


def autoserve_enabled() -> bool:
    return os.environ.get(AUTOSERVE_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def start_background(root: Path) -> int | None:
    """Start a private ``coderag serve`` for ``root`` in the background (its own session,
    loopback, any free port, no watcher: a read accelerator), stopping after
    ``CODERAG_AUTOSERVE_IDLE`` seconds without a request (900) or past
    ``CODERAG_AUTOSERVE_MEMORY`` MB (2048). Returns its pid, or None when one is already
    starting (``.coderag/autoserve.lock`` is held for the server's whole life) or there is
    no index to serve. Its errors go to ``.coderag/serve.log``."""
    from .. import datadir
    from ..errors import LockHeld

    root = Path(root)
    if not datadir.has_index(root):
        return None
    lock = datadir.FileLock(root, AUTOSERVE_LOCK, timeout=0, busy="")
    try:
        lock.acquire()
    except LockHeld:
        return None
    idle = _env_number(AUTOSERVE_IDLE_ENV, AUTOSERVE_IDLE)
    memory = _env_number(AUTOSERVE_MEMORY_ENV, AUTOSERVE_MEMORY)
    args = ["serve", str(root), "--port", "0", "--no-watch"]
    args += ["--idle-timeout", str(idle), "--max-memory", str(int(memory))]
    try:  # the child inherits the lock's descriptor and holds the lock until it exits
        return datadir.spawn(root, args, AUTOSERVE_LOG, pass_fds=(lock.fd,))
    finally:
        os.close(lock.fd)  # not release(): unlocking here would unlock the child's copy too
        lock.fd = None


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= 0 else default
