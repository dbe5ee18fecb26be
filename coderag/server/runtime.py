"""What a running server and its clients share outside any repository: the runtime file, the
identity proof, the user's token variable, what counts as loopback.

While it runs, ``coderag serve`` publishes ``{url, pid, repo, repos, secret, token_required}``
for each served repository in a 0600 file in the user's private runtime folder
(:func:`runtime_file`: ``$XDG_RUNTIME_DIR/coderag/server-<hash of the repo root>.json``, else
``/tmp/coderag-<uid>/``), removed at exit if still ours. ``secret`` is new at every start.
Nothing in the repository (which may come from anyone) says where a server is.

``GET /identity?nonce=N`` answers :func:`proof`: hex HMAC-SHA256(secret, N); a client checks
it before it sends anything else (:mod:`coderag.server.client`).

Standard library only: ``coderag search`` and the git hooks import this.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
from pathlib import Path

from ..errors import CoderagError

RUNTIME_PREFIX = "server-"  # <runtime dir>/server-<hash of the repo root>.json
TOKEN_ENV = "CODERAG_TOKEN"  # the user's token: the server's credential, a client's for a URL
NONCE_PATTERN = "[A-Za-z0-9_-]{16,128}"  # what GET /identity accepts as its nonce


def runtime_file(root) -> Path:
    """Where a server for the repository at ``root`` publishes its address and secret: a file
    in the user's private runtime folder named from a hash of the resolved root (nothing in
    the repository, which may come from anyone, is ever read for this)."""
    from ..userdirs import runtime_dir

    key = str(Path(root).resolve()).encode("utf-8", "surrogateescape")
    return runtime_dir() / f"{RUNTIME_PREFIX}{hashlib.sha256(key).hexdigest()[:32]}.json"


def publish(root, info: dict) -> Path:
    """Write ``info`` to the runtime file of ``root`` (0600, replaced atomically)."""
    from ..userdirs import write_private

    path = runtime_file(root)
    write_private(path, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return path


def read_runtime_info(root) -> dict | None:
    """What a server published for the repository at ``root`` (exactly that root), or None:
    no file, not this user's private file, or not what a server writes."""
    from ..userdirs import read_private

    try:
        path = runtime_file(root)
    except CoderagError:
        return None
    data = read_private(path)
    if data is None:
        return None
    try:
        info = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not (
        isinstance(info, dict)
        and isinstance(info.get("url"), str)
        and isinstance(info.get("secret"), str)
        and len(info["secret"]) >= 16
        and isinstance(info.get("pid"), int)
        and info.get("repo") == str(Path(root).resolve())
    ):
        return None
    return info


def unpublish(path: Path, secret: str) -> None:
    """Remove a runtime file if it is still ours (a later server may have replaced it)."""
    from ..userdirs import read_private

    try:
        info = json.loads((read_private(path) or b"{}").decode("utf-8"))
        if info.get("pid") == os.getpid() and hmac.compare_digest(
            str(info.get("secret", "")).encode(), secret.encode()
        ):
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def valid_nonce(nonce: str) -> bool:
    """Is ``nonce`` one that ``GET /identity`` answers (16 to 128 of ``A-Za-z0-9_-``)?"""
    return re.fullmatch(NONCE_PATTERN, nonce) is not None


def proof(secret: str, nonce: str) -> str:
    """What ``GET /identity?nonce=N`` answers: hex HMAC-SHA256 of the nonce under the secret."""
    return hmac.new(secret.encode("utf-8"), nonce.encode("utf-8"), hashlib.sha256).hexdigest()


def is_loopback(host: str) -> bool:
    """Does ``host`` (a name or an address, IPv6 maybe in brackets) name this machine's
    loopback interface?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
