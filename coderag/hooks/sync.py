"""``coderag hook run EVENT``: bring the index up to date for one git event.

Each event touches only what git says changed: ``pre-commit`` the staged files (their blob
bytes, as they will be committed), ``post-checkout`` ``git diff OLD NEW``, ``post-merge`` and
``post-rewrite`` ``ORIG_HEAD..HEAD``. A running ``coderag serve`` for the repository (found
in the user's private runtime folder, never through a file in the repository) is handed the
paths, and the hook process loads no model; otherwise the index is refreshed inline, and
only then are the index and torch imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CoderagError
from . import git

DISABLE_ENV = "CODERAG_HOOK"  # CODERAG_HOOK=0 git checkout ...: skip the hooks once
SERVER_TIMEOUT = 60.0  # seconds a hook waits for a running server to refresh
VECTORS_ENV = "CODERAG_HOOK_VECTORS"
#: inline: embed before the hook returns; background: store the chunks (searchable by full
#: text at once), then a detached `coderag index --vectors-only` embeds them; later: leave
#: the vectors to the next `coderag index`, watch or serve
VECTOR_MODES = ("background", "inline", "later")
SERVER_MAX_PATHS = 5_000  # more changed files than this: ask the server for a full refresh

Plan = tuple[list[str], dict[str, bytes], str]


def plan(root: Path, event: str, args=(), stdin: str = "", *, read_blobs: bool = True) -> Plan:
    """Which paths an event touches, staged bytes for some of them (pre-commit, unless
    ``read_blobs`` is false: a server reads the working tree), and what they are."""
    planner = _PLANNERS.get(event)
    if planner is None:
        raise CoderagError(f"unknown hook {event!r} (choose from {', '.join(git.HOOKS)})")
    return planner(root, list(args), stdin, read_blobs)


def _pre_commit(root: Path, args: list[str], stdin: str, read_blobs: bool) -> Plan:
    # Given files (the pre-commit framework's way) never include deleted ones: add the
    # staged deletions, so a removed file leaves the index with the commit that removes it.
    gone = git.staged_deletions(root) if args else []
    if not read_blobs:
        shas, others = git.staged_entries(root, args or None)
        return sorted({*shas, *others, *gone}), {}, "staged"
    max_bytes, accept = _limits(root)
    contents, others = git.staged_changes(root, args or None, max_bytes=max_bytes, accept=accept)
    return sorted({*contents, *others, *gone}), contents, "staged"


def _post_checkout(root: Path, args: list[str], stdin: str, read_blobs: bool) -> Plan:
    old, new, flag = (args + ["", "", "1"])[:3]
    if flag == "0" or not new:
        return [], {}, "file checkout"  # `git checkout -- FILE`: git does not say which
    if old == new:
        return [], {}, "same commit"
    if git.is_null(old):
        old = git.empty_tree(root)  # a new clone or worktree: everything
    return git.changed_between(root, old, new), {}, f"{old[:10]}..{new[:10]}"


def _post_merge(root: Path, args: list[str], stdin: str, read_blobs: bool) -> Plan:
    if args and args[0] == "1":  # --squash: HEAD stays; the merged changes are on disk
        return git.changed_since_head(root), {}, "squash merge"
    orig = git.rev(root, "ORIG_HEAD")
    if orig is None:
        return [], {}, "no ORIG_HEAD"
    return git.changed_between(root, orig, "HEAD"), {}, "ORIG_HEAD..HEAD"


def _post_rewrite(root: Path, args: list[str], stdin: str, read_blobs: bool) -> Plan:
    old = None
    if args and args[0] == "amend":
        pairs = [ln.split() for ln in stdin.splitlines() if ln.strip()]
        old = pairs[0][0] if pairs and pairs[0] else None
    old = old or git.rev(root, "ORIG_HEAD")
    if old is None:
        return [], {}, "no ORIG_HEAD"
    return git.changed_between(root, old, "HEAD"), {}, f"{old[:10]}..HEAD"


_PLANNERS = {
    "pre-commit": _pre_commit,
    "post-checkout": _post_checkout,
    "post-merge": _post_merge,
    "post-rewrite": _post_rewrite,
}


def _limits(root: Path):
    """The largest file to read and the path filter, from the repository's settings; no
    limit and no filter when they cannot be read (the index will say why)."""
    try:
        from ..config import load_config
        from ..files import PathFilter

        config = load_config(root)
    except CoderagError:
        return None, None
    return config.max_file_bytes, PathFilter(root, config).accepts


def sync(
    repo,
    event: str,
    args=(),
    *,
    stdin: str = "",
    use_server: bool = True,
    embedder=None,
    vectors: str = "inline",
) -> dict:
    """Run one hook event for the repository at ``repo`` (default: around the cwd).

    Returns ``{"event", "via", "files", "stats", "note"}``; ``via`` is ``"server"``,
    ``"inline"``, ``"none"`` (nothing to do) or ``"skipped"`` (disabled, or no index yet);
    ``stats`` is ``RefreshStats.summary()`` when the refresh reports one. ``embedder`` lets a
    caller that already holds a model (tests, benchmarks) index inline without loading one.
    ``vectors`` (see :data:`VECTOR_MODES`): with "background" or "later" the chunks are
    stored without loading the model (the index's torch-free tokenizer sizes them) and
    "background" starts a detached ``coderag index --vectors-only`` for the rest.
    Raises on failure; the CLI turns that into a warning.
    """
    root = Path(repo).expanduser().resolve() if repo else _root_here()
    out = {"event": event, "via": "none", "files": 0, "stats": None, "note": None}
    if os.environ.get(DISABLE_ENV, "").lower() in ("0", "off", "false", "no"):
        return {**out, "via": "skipped", "note": f"{DISABLE_ENV}=0"}
    from .. import datadir
    from ..server import find_server  # the runtime folder only: nothing in the repository

    url = find_server(root) if use_server else None
    if url is None and not datadir.has_index(root):
        return {**out, "via": "skipped", "note": "no index yet (run `coderag index`)"}
    # a server reads the working tree itself: no staged bytes to read for it
    paths, contents, what = plan(root, event, args, stdin, read_blobs=url is None)
    out["files"] = len(paths)
    out["note"] = what
    if not paths:
        return out
    if url is not None:
        answer = _hand_to_server(url, root, paths)
        if answer is not None:
            return {**out, "via": "server", "stats": answer.get("stats")}
        if not datadir.has_index(root):
            return {**out, "via": "skipped", "note": "no index yet (run `coderag index`)"}
        paths, contents, what = plan(root, event, args, stdin)  # it went away: inline
    return {**out, **_inline(root, paths, contents, what, embedder, vectors)}


def _inline(root: Path, paths, contents, what: str, embedder, vectors: str) -> dict:
    from ..index import Index  # only now: this is what pulls in torch

    idx = Index(root, embedder=embedder)
    stats = idx.refresh(
        [str(root / p) for p in paths],
        contents=contents or None,
        lexical_only=vectors != "inline",
    )
    note = what
    if vectors == "background" and stats.chunks_pending:
        spawn_vectors(root)
        note = f"{what}; vectors for {stats.chunks_pending} chunk(s) in the background"
    return {"via": "inline", "stats": stats.summary(), "note": note}


def spawn_vectors(root: Path) -> int:
    """Start ``coderag index --vectors-only`` detached from the hook (its own session, no
    terminal), so git returns at once; it waits for the writer lock like any writer. Its
    error output goes to ``.coderag/background.log``."""
    from .. import datadir

    args = ["index", "--vectors-only", "-q", "--repo", str(root)]
    return datadir.spawn(root, args, datadir.BACKGROUND_LOG)


def _root_here() -> Path:
    from ..files import find_root

    return find_root(None)


def _hand_to_server(url, root: Path, paths: list[str]) -> dict | None:
    """``POST /refresh`` the paths and wait; None when nothing answers or what answers cannot
    prove it is that server (index inline then; nothing was sent to it). A server that
    answers with an error raises: it is there, so indexing beside it would only fight it
    for the lock."""
    from ..server import ServerUnavailable, remote_refresh

    send = [str(root / p) for p in paths] if len(paths) <= SERVER_MAX_PATHS else None
    try:
        return remote_refresh(url, repo=root, paths=send, wait=True, timeout=SERVER_TIMEOUT)
    except ServerUnavailable:
        return None


def describe(result: dict) -> str:
    """One line for stderr: what a hook did."""
    if result["via"] == "skipped":
        return f"{result['event']}: skipped: {result['note']}"
    head = f"{result['event']}: {result['files']} changed file(s)"
    s = result.get("stats")
    took = f"{result.get('seconds', 0):.1f}s"
    if not s:  # a watching server answers with its watcher's state, not a summary
        return f"{head}: handed over ({result['via']}, {took})"
    pending = s.get("chunks_pending") or 0
    later = ""
    if pending:
        where = "in the background" if "background" in (result.get("note") or "") else "later"
        later = f", {pending} to embed {where}"
    return (
        f"{head}: {s['files_indexed']} indexed, {s['files_removed']} removed, "
        f"{s.get('files_unchanged', 0)} unchanged; {s['chunks_embedded']} chunks embedded, "
        f"{s['chunks_reused']} reused{later} ({result['via']}, {took})"
    )
