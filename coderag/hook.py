"""``coderag hook``: git hooks that keep the index in step with commits, checkouts and merges.

A watcher follows the working tree; hooks follow git. Each hook touches only what git says
changed, so it stays cheap:

* ``pre-commit`` indexes what is *staged*: the blob bytes from the git index, so a partially
  staged file is indexed as it will be committed, not as it sits in the working tree.
* ``post-checkout`` (``git diff OLD NEW``), ``post-merge`` and ``post-rewrite``
  (``ORIG_HEAD..HEAD``) refresh only the files that differ. The embedding cache is keyed by
  chunk text, so switching back to a branch seen before embeds nothing.
* When a ``coderag serve`` runs for the repository (found in the user's private runtime
  folder, never through a file in the repository; it must prove it knows the secret it
  published there before any path is sent), the paths are handed to it and the hook
  process loads no model: the index and torch are imported only on the inline path, after
  that decision.
* A hook never stops a commit or a checkout because indexing failed: it warns on stderr and
  exits 0, unless installed with ``--strict``. Ignored files are never indexed (the index
  applies ``.gitignore``/``.coderagignore`` to every path it is given). Without an index yet,
  hooks do nothing: building one is ``coderag index``'s job, not a commit's.

``coderag hook install`` writes small ``/bin/sh`` scripts into ``git rev-parse --git-path
hooks``. A hook that is already there is moved aside to ``NAME.coderag-chained``, run first,
and its exit status honoured; ``coderag hook uninstall`` puts it back.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .display import escape
from .errors import CoderagError

HOOKS = ("pre-commit", "post-checkout", "post-merge", "post-rewrite")
CHAINED = ".coderag-chained"  # suffix of a user's hook moved aside by install
MARKER = "written by `coderag hook install`"  # how our own scripts are recognised
DISABLE_ENV = "CODERAG_HOOK"  # CODERAG_HOOK=0 git checkout ...: skip the hooks once
SERVER_TIMEOUT = 60.0  # seconds a hook waits for a running server to refresh
VECTORS_ENV = "CODERAG_HOOK_VECTORS"
#: inline: embed before the hook returns; background: store the chunks (searchable by full
#: text at once), then a detached `coderag index --vectors-only` embeds them; later: leave
#: the vectors to the next `coderag index`, watch or serve
VECTOR_MODES = ("background", "inline", "later")
SERVER_MAX_PATHS = 5_000  # more changed files than this: ask the server for a full refresh
_REGULAR = ("100644", "100755")  # git modes of regular files (symlinks, submodules are not)

EPILOG = """examples:
  coderag hook install                  pre-commit, post-checkout, post-merge, post-rewrite
  coderag hook install --pre-commit     only the pre-commit hook
  coderag hook install --strict         a failed indexing run stops the commit
  coderag hook uninstall                remove them, restoring hooks that were there before
  CODERAG_HOOK=0 git checkout main      skip the hooks for one command

pre-commit framework (.pre-commit-config.yaml):
  - repo: <URL of coderag's git repository>
    rev: <a tag or commit>
    hooks:
      - id: coderag-index
"""


class GitError(CoderagError):
    """A git command failed: not a repository, an unknown revision, git missing."""


# ------------------------------------------------------------------------------ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Keep the index in step with git: index what is staged before each commit, and "
        "refresh only the files that differ after a checkout, merge, rebase or amend."
    )
    p.epilog = EPILOG
    sub = p.add_subparsers(dest="hook_action", metavar="ACTION")
    sub.required = True
    raw = argparse.RawDescriptionHelpFormatter

    pi = sub.add_parser(
        "install",
        help="write git hooks (default: all four)",
        description="Write plain git hooks into `git rev-parse --git-path hooks`. A hook already "
        "there is moved to NAME.coderag-chained and run first; its exit status is honoured.",
        epilog="examples:\n  coderag hook install\n  coderag hook install --pre-commit "
        "--post-checkout\n  coderag hook install --strict --repo ~/src/project",
        formatter_class=raw,
    )
    for name in HOOKS:
        pi.add_argument(f"--{name}", action="store_true", help=f"install the {name} hook")
    pi.add_argument(
        "--strict",
        action="store_true",
        help="let a failed indexing run fail the hook (and so stop a commit)",
    )
    pi.add_argument("--repo", help="repository (default: the git repository around the cwd)")

    pu = sub.add_parser(
        "uninstall",
        help="remove coderag's git hooks, restoring chained ones",
        description="Remove the hooks `coderag hook install` wrote and put back the hooks they "
        "had moved aside.",
        epilog="examples:\n  coderag hook uninstall\n  coderag hook uninstall --repo ~/src/project",
        formatter_class=raw,
    )
    pu.add_argument("--repo", help="repository (default: the git repository around the cwd)")

    pr = sub.add_parser(
        "run",
        help="what an installed hook runs (also the pre-commit framework's entry)",
        description="Bring the index up to date for one git event. pre-commit: the staged "
        "files (or the given FILES, at their staged version); post-checkout OLD NEW FLAG: the "
        "files that differ between OLD and NEW; post-merge: ORIG_HEAD..HEAD; post-rewrite "
        "amend|rebase: the rewritten range. Failures warn and exit 0 unless --strict.",
        epilog="examples:\n  coderag hook run pre-commit\n"
        "  coderag hook run pre-commit -- src/app.py src/util.py\n"
        "  coderag hook run --json post-checkout -- HEAD@{1} HEAD 1\n"
        "  coderag hook run --vectors inline pre-commit   # embed before returning\n"
        "(options go before the hook name; what follows -- is passed through)",
        formatter_class=raw,
    )
    pr.add_argument("event", choices=HOOKS, help="the git hook being run")
    pr.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="what git passes this hook, or FILES for pre-commit (put them after --)",
    )
    pr.add_argument("--strict", action="store_true", help="exit 1 when indexing fails")
    pr.add_argument("--repo", help="repository (default: the repository around the cwd)")
    pr.add_argument("--no-server", action="store_true", help="index inline even if a server runs")
    pr.add_argument(
        "--vectors",
        choices=VECTOR_MODES,
        default=None,
        help="when new chunks get their vectors: background (default; the hook returns "
        f"without loading the model), inline, or later (env {VECTORS_ENV})",
    )
    pr.add_argument("--json", action="store_true", help="print what was done as one JSON object")
    pr.add_argument("-q", "--quiet", action="store_true", help="print nothing unless it fails")


def run(args) -> int:
    if args.hook_action == "run":
        return _run_event(args)
    root = git_toplevel(args.repo)
    if args.hook_action == "install":
        chosen = [h for h in HOOKS if getattr(args, h.replace("-", "_"))] or list(HOOKS)
        lines = install(root, chosen, strict=args.strict)
    else:
        lines = uninstall(root)
    for line in lines:
        print(line)
    return 0


def _run_event(args) -> int:
    t0 = time.perf_counter()
    strict = args.strict
    try:
        stdin = ""
        if args.event == "post-rewrite" and sys.stdin is not None and not sys.stdin.isatty():
            stdin = sys.stdin.read()
        vectors = args.vectors or os.environ.get(VECTORS_ENV) or "background"
        if vectors not in VECTOR_MODES:
            raise CoderagError(f"{VECTORS_ENV} must be one of {', '.join(VECTOR_MODES)}")
        result = sync(
            args.repo,
            args.event,
            args.args,
            stdin=stdin,
            use_server=not args.no_server,
            vectors=vectors,
        )
    except Exception as e:  # noqa: BLE001 - a hook reports, it does not crash the git command
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not isinstance(e, CoderagError):
            msg = f"{type(e).__name__}: {msg}"
        tail = "" if strict else "; carrying on (run `coderag index` later)"
        print(f"coderag: {args.event} hook: indexing failed: {escape(msg)}{tail}", file=sys.stderr)
        if args.json:
            print(json.dumps({"event": args.event, "via": "failed", "error": msg}))
        return 1 if strict else 0
    result["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(result))
    elif not args.quiet and result["via"] != "none":
        print(f"coderag: {escape(describe(result))}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------ git
def _git(root: Path | str, *args: str, input: bytes | None = None) -> bytes:
    """Run git in ``root``; stdout bytes, or :class:`GitError` with git's first line."""
    env = {**os.environ, "GIT_LITERAL_PATHSPECS": "1"}  # file names are names, not globs
    try:
        p = subprocess.run(
            ["git", *args], cwd=root, input=input, capture_output=True, env=env, timeout=120
        )
    except FileNotFoundError:
        raise GitError("git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {args[0]}` took over 120s") from None
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"`git {args[0]}` failed: {err[0] if err else f'exit {p.returncode}'}")
    return p.stdout


def git_toplevel(path=None) -> Path:
    where = Path(path).expanduser() if path else Path.cwd()
    if not where.is_dir():
        raise GitError(f"no such folder: {where}")
    out = _git(where, "rev-parse", "--show-toplevel").decode().strip()
    return Path(out).resolve()


def _split_z(out: bytes) -> list[str]:
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def _rel_paths(root: Path, files) -> list[str]:
    """User paths (absolute or cwd-relative) as POSIX paths relative to ``root``, as the
    index resolves them (``files.iter_paths``); paths outside ``root`` are dropped."""
    out = []
    for f in files:
        p = Path(f)
        p = (p if p.is_absolute() else Path.cwd() / p).resolve()
        try:
            rel = p.relative_to(root)
        except ValueError:
            continue
        out.append("." if not rel.parts else rel.as_posix())
    return out


def _read_blobs(root: Path, shas, max_bytes: int | None = None) -> dict[str, bytes]:
    """Blob bytes by object id, two git processes in all (``cat-file --batch``); blobs larger
    than ``max_bytes`` are left out rather than read into memory."""
    unique = list(dict.fromkeys(shas))
    if not unique:
        return {}
    if max_bytes is not None:
        check = _git(root, "cat-file", "--batch-check", input=("\n".join(unique) + "\n").encode())
        sizes = {}
        for line in check.decode().splitlines():
            parts = line.split()
            if len(parts) == 3:
                sizes[parts[0]] = int(parts[2])
        unique = [s for s in unique if s in sizes and sizes[s] <= max_bytes]
        if not unique:
            return {}
    out = _git(root, "cat-file", "--batch", input=("\n".join(unique) + "\n").encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        if len(header) != 3:  # "<id> missing"
            pos = nl + 1
            continue
        size = int(header[2])
        blobs[header[0].decode()] = out[nl + 1 : nl + 1 + size]
        pos = nl + 1 + size + 1
    return blobs


def staged_entries(root: Path, files=None) -> tuple[dict[str, str], list[str]]:
    """The staged state as ``(blob ids of regular files, other paths)``, without reading any
    blob; see :func:`staged_changes`."""
    shas: dict[str, str] = {}
    others: list[str] = []
    if files:
        rels = _rel_paths(root, files)
        for start in range(0, len(rels), 1000):  # stay far below the argument length limit
            part = rels[start : start + 1000]
            out = _git(root, "ls-files", "-s", "-z", "--", *part)
            for rec in out.split(b"\0"):
                meta, _, path = rec.partition(b"\t")
                if not path:
                    continue
                mode, sha, stage = meta.decode().split()
                rel = os.fsdecode(path)
                if stage != "0":
                    continue  # unmerged: nothing is committed until it is resolved
                if mode in _REGULAR:
                    shas[rel] = sha
                else:
                    others.append(rel)
            gone = _git(
                root, "diff", "--cached", "--name-only", "-z", "--no-renames", "--relative",
                "--diff-filter=D", "--", *part,
            )  # fmt: skip
            others.extend(_split_z(gone))
    else:
        out = _git(
            root, "diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev",
            "--relative", "--diff-filter=ACMRTD",
        )  # fmt: skip
        fields = out.split(b"\0")
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(b":"):
                continue
            _old_mode, new_mode, _old_sha, new_sha, _status = meta[1:].decode().split()
            rel = os.fsdecode(path)
            if new_mode in _REGULAR:
                shas[rel] = new_sha
            else:
                others.append(rel)  # deleted (000000), now a symlink or a submodule
    return shas, list(dict.fromkeys(others))


def staged_changes(
    root: Path | str, files=None, *, max_bytes: int | None = None
) -> tuple[dict[str, bytes], list[str]]:
    """What the next commit holds, as ``(contents, others)``.

    ``contents`` maps repo-relative POSIX paths to the staged bytes of regular files.
    ``others`` are paths to refresh from the working tree instead: staged deletions, files
    that became a symlink or submodule, blobs over ``max_bytes``. Without ``files``: every
    staged change (``git diff --cached``; on an unborn branch, everything staged). With
    ``files`` (absolute or cwd-relative; folders too): the staged version of exactly those
    files, changed or not, plus the staged deletions among them.
    """
    root = Path(root).resolve()
    shas, others = staged_entries(root, files)
    blobs = _read_blobs(root, shas.values(), max_bytes)
    contents = {rel: blobs[sha] for rel, sha in shas.items() if sha in blobs}
    others = others + [rel for rel in shas if rel not in contents]  # too large to read
    return contents, list(dict.fromkeys(others))


def staged_contents(root: Path | str, files: list[str] | None = None) -> dict[str, bytes]:
    """Staged bytes of staged added/copied/modified/renamed files (``files``: of those files),
    keyed by POSIX paths relative to ``root`` — the keys ``Index.refresh(contents=...)``
    looks up. Used by ``coderag index --staged``."""
    return staged_changes(root, files)[0]


def changed_between(root: Path | str, old: str, new: str) -> list[str]:
    """Paths (relative to ``root``) whose content differs between two commits, both sides
    of a rename included."""
    out = _git(root, "diff", "--name-only", "-z", "--no-renames", "--relative", old, new, "--")
    return _split_z(out)


def _staged_deletions(root: Path) -> list[str]:
    out = _git(
        root, "diff", "--cached", "--name-only", "-z", "--no-renames", "--relative",
        "--diff-filter=D",
    )  # fmt: skip
    return _split_z(out)


def _is_null(rev: str) -> bool:
    return not rev.strip("0")


def _empty_tree(root: Path) -> str:
    return _git(root, "hash-object", "-t", "tree", "/dev/null").decode().strip()


def _rev(root: Path, name: str) -> str | None:
    try:
        return _git(root, "rev-parse", "-q", "--verify", f"{name}^{{commit}}").decode().strip()
    except GitError:
        return None


# ------------------------------------------------------------------------------ events
def plan(
    root: Path, event: str, args=(), stdin: str = "", *, read_blobs: bool = True
) -> tuple[list[str], dict[str, bytes], str]:
    """Which paths an event touches, staged bytes for some of them (pre-commit, unless
    ``read_blobs`` is false: a server reads the working tree), and what they are."""
    args = list(args)
    if event == "pre-commit":
        # Given files (the pre-commit framework's way) never include deleted ones: add the
        # staged deletions, so a removed file leaves the index with the commit that removes it.
        gone = _staged_deletions(root) if args else []
        if not read_blobs:
            shas, others = staged_entries(root, args or None)
            return sorted({*shas, *others, *gone}), {}, "staged"
        contents, others = staged_changes(root, args or None, max_bytes=_max_bytes(root))
        return sorted({*contents, *others, *gone}), contents, "staged"
    if event == "post-checkout":
        old, new, flag = (args + ["", "", "1"])[:3]
        if flag == "0" or not new:
            return [], {}, "file checkout"  # `git checkout -- FILE`: git does not say which
        if old == new:
            return [], {}, "same commit"
        if _is_null(old):
            old = _empty_tree(root)  # a new clone or worktree: everything
        return changed_between(root, old, new), {}, f"{old[:10]}..{new[:10]}"
    if event == "post-merge":
        if args and args[0] == "1":  # --squash: HEAD stays; the merged changes are on disk
            out = _git(root, "diff", "--name-only", "-z", "--no-renames", "--relative", "HEAD")
            return _split_z(out), {}, "squash merge"
        orig = _rev(root, "ORIG_HEAD")
        if orig is None:
            return [], {}, "no ORIG_HEAD"
        return changed_between(root, orig, "HEAD"), {}, "ORIG_HEAD..HEAD"
    if event == "post-rewrite":
        old = None
        if args and args[0] == "amend":
            pairs = [ln.split() for ln in stdin.splitlines() if ln.strip()]
            old = pairs[0][0] if pairs and pairs[0] else None
        old = old or _rev(root, "ORIG_HEAD")
        if old is None:
            return [], {}, "no ORIG_HEAD"
        return changed_between(root, old, "HEAD"), {}, f"{old[:10]}..HEAD"
    raise CoderagError(f"unknown hook {event!r} (choose from {', '.join(HOOKS)})")


def _max_bytes(root: Path) -> int | None:
    try:
        from .config import load_config

        return load_config(root).max_file_bytes
    except CoderagError:
        return None


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
    from . import datadir
    from .server import find_server  # the runtime folder only: nothing in the repository

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
    from .index import Index  # only now: this is what pulls in torch

    idx = Index(root, embedder=embedder)
    stats = idx.refresh(
        [str(root / p) for p in paths],
        contents=contents or None,
        lexical_only=vectors != "inline",
    )
    if vectors == "background" and stats.chunks_pending:
        spawn_vectors(root)
        out["note"] = f"{what}; vectors for {stats.chunks_pending} chunk(s) in the background"
    return {**out, "via": "inline", "stats": stats.summary()}


def spawn_vectors(root: Path) -> int:
    """Start ``coderag index --vectors-only`` detached from the hook (its own session, no
    terminal), so git returns at once; it waits for the writer lock like any writer. Its
    error output goes to ``.coderag/background.log``."""
    from . import datadir

    args = ["index", "--vectors-only", "-q", "--repo", str(root)]
    return datadir.spawn(root, args, datadir.BACKGROUND_LOG)


def _root_here() -> Path:
    from .files import find_root

    return find_root(None)


def _hand_to_server(url, root: Path, paths: list[str]) -> dict | None:
    """``POST /refresh`` the paths and wait; None when nothing answers or what answers cannot
    prove it is that server (index inline then; nothing was sent to it). A server that
    answers with an error raises: it is there, so indexing beside it would only fight it
    for the lock."""
    from .server import ServerUnavailable, remote_refresh

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


# ------------------------------------------------------------------------------ install
def hooks_dir(root: Path) -> Path:
    """Where git looks for hooks (honours ``core.hooksPath`` and worktrees)."""
    out = _git(root, "rev-parse", "--git-path", "hooks").decode().strip()
    p = Path(out)
    return p if p.is_absolute() else root / p


def is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return MARKER.encode() in fh.read(1024)
    except OSError:
        return False


def hook_script(name: str, *, strict: bool = False, python: str | None = None) -> str:
    """The ``/bin/sh`` script for one hook: run a chained hook first, then coderag."""
    py = shlex.quote(python or sys.executable)
    flags = " --strict" if strict else ""
    # Without --strict the hook exits 0 whatever indexing does; a non-zero status can then
    # only mean coderag could not start at all (uninstalled from that environment, say),
    # and that must not stop a commit either.
    on_error = (
        "" if strict else f' || echo "coderag: the {name} hook could not run; carrying on" >&2'
    )
    missing = "return 1" if strict else "return 0"
    head = f"""#!/bin/sh
# coderag {name} hook, {MARKER}.
# Keeps the coderag index in step with git. `coderag hook uninstall` removes it and puts back
# the hook that was here before (kept meanwhile as {name}{CHAINED}, and run first).
chained="$(dirname "$0")/{name}{CHAINED}"
coderag_hook() {{
    if [ -x {py} ]; then
        {py} -m coderag hook run{flags} {name} -- "$@"{on_error}
    elif command -v coderag >/dev/null 2>&1; then
        coderag hook run{flags} {name} -- "$@"{on_error}
    else
        echo "coderag: not installed any more; {name} hook skipped (remove it: $0)" >&2
        {missing}
    fi
}}
"""
    if name == "pre-commit":  # a failing chained hook stops the commit; nothing to index then
        body = """if [ -x "$chained" ]; then
    "$chained" "$@" || exit $?
fi
coderag_hook "$@"
"""
    elif name == "post-rewrite":  # both read the rewritten commits from stdin
        body = """input=$(cat; echo x)
input=${input%x}
status=0
if [ -x "$chained" ]; then
    printf '%s' "$input" | "$chained" "$@" || status=$?
fi
printf '%s' "$input" | coderag_hook "$@"
rc=$?
[ "$status" -eq 0 ] && status=$rc
exit "$status"
"""
    else:
        body = """status=0
if [ -x "$chained" ]; then
    "$chained" "$@" || status=$?
fi
coderag_hook "$@"
rc=$?
[ "$status" -eq 0 ] && status=$rc
exit "$status"
"""
    return head + body


def install(
    root: Path, hooks=HOOKS, *, strict: bool = False, python: str | None = None
) -> list[str]:
    """Write the hooks; a foreign hook already in place is moved aside and chained."""
    d = hooks_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in hooks:
        if name not in HOOKS:
            raise CoderagError(f"unknown hook {name!r} (choose from {', '.join(HOOKS)})")
        path, chained = d / name, d / (name + CHAINED)
        note = ""
        if os.path.lexists(path) and not is_ours(path):
            if os.path.lexists(chained):
                raise CoderagError(
                    f"{path} is not coderag's and {chained.name} exists too; move one of them away"
                )
            os.replace(path, chained)
            note = f" (your hook is now {chained.name} and runs first)"
        elif os.path.lexists(chained):
            note = f" (chains {chained.name})"
        tmp = d / f".{name}.coderag-tmp"
        tmp.write_text(hook_script(name, strict=strict, python=python), encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, path)
        lines.append(f"installed {path}{note}")
    return lines


def uninstall(root: Path) -> list[str]:
    """Remove our hooks and restore the ones they chained; foreign hooks are left alone."""
    d = hooks_dir(root)
    lines = []
    for name in HOOKS:
        path, chained = d / name, d / (name + CHAINED)
        if os.path.lexists(path) and is_ours(path):
            path.unlink()
            if os.path.lexists(chained):
                os.replace(chained, path)
                lines.append(f"removed coderag's {name} hook; restored yours")
            else:
                lines.append(f"removed {path}")
        elif os.path.lexists(chained):
            lines.append(f"left {chained} alone: {name} is no longer coderag's hook")
    return lines or ["no coderag hooks installed"]
