"""What git says: the repository's top level, where its hooks live, what a commit will hold
(the staged state, blob bytes included) and which files differ between two commits.

Every call runs ``git`` with ``GIT_LITERAL_PATHSPECS=1`` (file names are names, not globs)
and turns a failure into :class:`GitError` with git's first line. Standard library only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import CoderagError

#: the git hooks coderag installs and follows
HOOKS = ("pre-commit", "post-checkout", "post-merge", "post-rewrite")
_REGULAR = ("100644", "100755")  # git modes of regular files (symlinks, submodules are not)
_ARGS_PER_CALL = 1000  # paths per git command: far below the argument length limit


class GitError(CoderagError):
    """A git command failed: not a repository, an unknown revision, git missing."""


def git(root: Path | str, *args: str, input: bytes | None = None) -> bytes:
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
    out = git(where, "rev-parse", "--show-toplevel").decode().strip()
    return Path(out).resolve()


def hooks_dir(root: Path) -> Path:
    """Where git looks for hooks (honours ``core.hooksPath`` and worktrees)."""
    out = git(root, "rev-parse", "--git-path", "hooks").decode().strip()
    p = Path(out)
    return p if p.is_absolute() else root / p


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


def _blob_sizes(root: Path, shas: list[str]) -> dict[str, int]:
    check = git(root, "cat-file", "--batch-check", input=("\n".join(shas) + "\n").encode())
    sizes = {}
    for line in check.decode().splitlines():
        parts = line.split()
        if len(parts) == 3:
            sizes[parts[0]] = int(parts[2])
    return sizes


def read_blobs(root: Path, shas: Iterable[str], max_bytes: int | None = None) -> dict[str, bytes]:
    """Blob bytes by object id, two git processes in all (``cat-file --batch``); blobs larger
    than ``max_bytes`` are left out rather than read into memory."""
    unique = list(dict.fromkeys(shas))
    if unique and max_bytes is not None:
        sizes = _blob_sizes(root, unique)
        unique = [s for s in unique if s in sizes and sizes[s] <= max_bytes]
    if not unique:
        return {}
    out = git(root, "cat-file", "--batch", input=("\n".join(unique) + "\n").encode())
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


def _staged_files(root: Path, rels: list[str], shas: dict[str, str], others: list[str]) -> None:
    """The staged entries of exactly ``rels`` (changed or not), and their staged deletions."""
    for start in range(0, len(rels), _ARGS_PER_CALL):
        part = rels[start : start + _ARGS_PER_CALL]
        out = git(root, "ls-files", "-s", "-z", "--", *part)
        for rec in out.split(b"\0"):
            meta, _, path = rec.partition(b"\t")
            if not path:
                continue
            mode, sha, stage = meta.decode().split()
            if stage != "0":
                continue  # unmerged: nothing is committed until it is resolved
            rel = os.fsdecode(path)
            if mode in _REGULAR:
                shas[rel] = sha
            else:
                others.append(rel)
        gone = git(
            root, "diff", "--cached", "--name-only", "-z", "--no-renames", "--relative",
            "--diff-filter=D", "--", *part,
        )  # fmt: skip
        others.extend(_split_z(gone))


def _staged_diff(root: Path, shas: dict[str, str], others: list[str]) -> None:
    """Every staged change (``git diff --cached``; on an unborn branch, everything staged)."""
    out = git(
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


def staged_entries(root: Path, files=None) -> tuple[dict[str, str], list[str]]:
    """The staged state as ``(blob ids of regular files, other paths)``, without reading any
    blob; see :func:`staged_changes`."""
    shas: dict[str, str] = {}
    others: list[str] = []
    if files:
        _staged_files(root, _rel_paths(root, files), shas, others)
    else:
        _staged_diff(root, shas, others)
    return shas, list(dict.fromkeys(others))


def staged_changes(
    root: Path | str,
    files=None,
    *,
    max_bytes: int | None = None,
    accept: Callable[[str], bool] | None = None,
) -> tuple[dict[str, bytes], list[str]]:
    """What the next commit holds, as ``(contents, others)``.

    ``contents`` maps repo-relative POSIX paths to the staged bytes of regular files.
    ``others`` are paths to refresh from the working tree instead: staged deletions, files
    that became a symlink or submodule, blobs over ``max_bytes``, and paths ``accept`` (a
    :meth:`files.PathFilter.accepts`) refuses, whose bytes are never read: the index only
    removes those. Without ``files``: every staged change (``git diff --cached``; on an
    unborn branch, everything staged). With ``files`` (absolute or cwd-relative; folders
    too): the staged version of exactly those files, changed or not, plus the staged
    deletions among them.
    """
    root = Path(root).resolve()
    shas, others = staged_entries(root, files)
    wanted = {rel: sha for rel, sha in shas.items() if accept is None or accept(rel)}
    blobs = read_blobs(root, wanted.values(), max_bytes)
    contents = {rel: blobs[sha] for rel, sha in wanted.items() if sha in blobs}
    others = others + [rel for rel in shas if rel not in contents]  # refused or too large
    return contents, list(dict.fromkeys(others))


def staged_contents(root: Path | str, files: list[str] | None = None) -> dict[str, bytes]:
    """Staged bytes of staged added/copied/modified/renamed files (``files``: of those files),
    keyed by POSIX paths relative to ``root`` — the keys ``Index.refresh(contents=...)``
    looks up."""
    return staged_changes(root, files)[0]


def staged_deletions(root: Path) -> list[str]:
    out = git(
        root, "diff", "--cached", "--name-only", "-z", "--no-renames", "--relative",
        "--diff-filter=D",
    )  # fmt: skip
    return _split_z(out)


def changed_between(root: Path | str, old: str, new: str) -> list[str]:
    """Paths (relative to ``root``) whose content differs between two commits, both sides
    of a rename included."""
    out = git(root, "diff", "--name-only", "-z", "--no-renames", "--relative", old, new, "--")
    return _split_z(out)


def changed_since_head(root: Path) -> list[str]:
    """Paths that differ between HEAD and the working tree (a squash merge's changes)."""
    out = git(root, "diff", "--name-only", "-z", "--no-renames", "--relative", "HEAD")
    return _split_z(out)


def is_null(rev: str) -> bool:
    """git's all-zero object id: no commit (a fresh clone's "old" side)."""
    return not rev.strip("0")


def empty_tree(root: Path) -> str:
    return git(root, "hash-object", "-t", "tree", "/dev/null").decode().strip()


def rev(root: Path, name: str) -> str | None:
    """The commit ``name`` resolves to, or None."""
    try:
        return git(root, "rev-parse", "-q", "--verify", f"{name}^{{commit}}").decode().strip()
    except GitError:
        return None
