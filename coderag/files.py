"""Which files make up a repository, and how their bytes become text.

Walking honours ``.gitignore`` files at every level (pathspec, git's wildmatch rules),
``.coderagignore`` and a list of default ignores (VCS folders, virtualenvs, build output,
dependency folders, lock files, minified and binary files). Nothing here follows a
symbolic link, so link loops and links pointing out of the repository are never entered.

Reading never raises for a bad file: it returns a :class:`Skip` with a short reason that
ends up in the run's summary.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from .config import DATA_DIR, Config
from .errors import RepoNotFound

#: directories never entered, whatever the ignore files say
ALWAYS_SKIP_DIRS = frozenset({".git", DATA_DIR, ".hg", ".svn"})

DEFAULT_IGNORES = [
    # dependency and environment folders
    "node_modules/",
    "bower_components/",
    ".venv/",
    "venv/",
    ".tox/",
    ".nox/",
    "__pycache__/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".gradle/",
    ".idea/",
    ".vscode/",
    ".next/",
    ".nuxt/",
    ".cache/",
    # build output
    "build/",
    "dist/",
    "target/",
    "out/",
    "*.egg-info/",
    "_build/",
    # lock files: large, machine-written, never what a search is after
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "Cargo.lock",
    "Gemfile.lock",
    "composer.lock",
    "go.sum",
    "*.lock",
    # minified and generated bundles
    "*.min.js",
    "*.min.css",
    "*.map",
    "*.bundle.js",
    "*.pyc",
]

#: extensions that are never text worth indexing (checked before reading)
BINARY_EXTENSIONS = frozenset(
    """
    png jpg jpeg gif bmp ico icns webp tiff psd svgz pdf zip gz tgz bz2 xz zst 7z rar jar war ear
    class o a so dylib dll exe bin obj lib pyd pyo pyc whl egg wasm woff woff2 ttf otf eot mp3 mp4
    m4a wav ogg flac avi mov mkv webm sqlite sqlite3 db parquet arrow feather npy npz pkl pickle
    pt pth onnx safetensors h5 hdf5 lance idx pack DS_Store
    """.split()
)

SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file the walk found: path relative to the root (POSIX), size and mtime."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skip:
    """A file that was seen but not indexed, and why (one short phrase)."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Text:
    """A file's decoded text (``\\n`` line endings, no BOM) and the hash of its bytes."""

    text: str
    digest: str
    encoding: str


def find_root(path: str | os.PathLike | None = None) -> Path:
    """The repository root: ``path`` if given, else the git root around the cwd (or the cwd)."""
    if path is not None:
        root = Path(path).expanduser()
        if not root.exists():
            raise RepoNotFound(f"no such folder: {root}")
        if not root.is_dir():
            raise RepoNotFound(f"not a folder: {root}")
        return root.resolve()
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if (candidate / ".git").exists() or (candidate / DATA_DIR).is_dir():
            return candidate
    return cwd


def content_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class IgnoreRules:
    """gitignore semantics over a tree: defaults, ``.coderagignore``, nested ``.gitignore``s."""

    def __init__(self, root: Path, config: Config):
        self.root = root
        top = list(DEFAULT_IGNORES)
        for name in (".coderagignore",):
            top.extend(_read_lines(root / name))
        top.extend(config.ignore)
        self._base = pathspec.GitIgnoreSpec.from_lines(top)
        self._per_dir: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _spec_for(self, rel_dir: str) -> pathspec.GitIgnoreSpec | None:
        if rel_dir not in self._per_dir:
            lines = _read_lines(self.root / rel_dir / ".gitignore")
            self._per_dir[rel_dir] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._per_dir[rel_dir]

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Is ``rel`` (POSIX, relative to the root) ignored? Parents are checked by the walk."""
        probe = rel + "/" if is_dir else rel
        result = self._base.match_file(probe)
        # .gitignore files from the root down to the file's folder; deeper files win
        parts = rel.split("/")
        for depth in range(len(parts)):
            rel_dir = "/".join(parts[:depth])
            spec = self._spec_for(rel_dir)
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            check = spec.check_file(sub)
            if check.include is not None:
                result = check.include
        return bool(result)

    def excluded(self, rel: str) -> bool:
        """Is a file excluded, by itself or by any folder above it? (explicit file lists)"""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if parts[depth - 1] in ALWAYS_SKIP_DIRS or self.ignored(folder, True):
                return True
        return self.ignored(rel, False)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def walk(root: Path, config: Config) -> tuple[list[FileEntry], list[Skip]]:
    """Every indexable file under ``root`` (sorted), and the files passed over with reasons."""
    rules = IgnoreRules(root, config)
    found: list[FileEntry] = []
    skipped: list[Skip] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = list(it)
        except OSError as e:
            skipped.append(Skip(rel_dir or ".", f"unreadable folder ({e.strerror or e})"))
            continue
        for entry in entries:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                if "\udcff" in rel or _not_utf8(name):
                    skipped.append(Skip(_printable(rel), "file name is not valid UTF-8"))
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat: nothing to index
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                continue  # never followed: no loops, nothing outside the root
            if stat.S_ISDIR(mode):
                if name in ALWAYS_SKIP_DIRS or rules.ignored(rel, True):
                    continue
                if (root / rel / "pyvenv.cfg").exists():
                    continue  # a virtualenv under any name
                stack.append(rel)
            elif stat.S_ISREG(mode):
                if rules.ignored(rel, False):
                    continue
                ext = name.rsplit(".", 1)[-1] if "." in name else ""
                if ext in BINARY_EXTENSIONS or ext.lower() in BINARY_EXTENSIONS:
                    continue
                if st.st_size > config.max_file_bytes:
                    skipped.append(Skip(rel, f"larger than {config.max_file_bytes:,} bytes"))
                    continue
                found.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.path)
    return found, skipped


def _not_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _printable(rel: str) -> str:
    return rel.encode("utf-8", "backslashreplace").decode("utf-8")


def stat_entry(root: Path, rel: str) -> FileEntry | None:
    """Stat one path (for explicit file lists); None if it is gone or not a regular file."""
    try:
        st = os.lstat(root / rel)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileEntry(rel, st.st_size, st.st_mtime_ns)


def read_bytes(root: Path, rel: str, max_bytes: int) -> bytes | Skip:
    try:
        with open(root / rel, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        return Skip(rel, "vanished before it could be read")
    except IsADirectoryError:
        return Skip(rel, "is a folder")
    except OSError as e:
        return Skip(rel, f"unreadable ({e.strerror or e})")
    if len(data) > max_bytes:
        return Skip(rel, f"larger than {max_bytes:,} bytes")
    return data


def decode(rel: str, data: bytes) -> Text | Skip:
    """Bytes → text with ``\\n`` endings, or a Skip for binary and minified content."""
    digest = content_digest(data)
    encoding = "utf-8"
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        encoding = "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            return Skip(rel, "invalid UTF-16")
        return _finish(rel, text, digest, "utf-16")
    if b"\x00" in data[:SNIFF_BYTES]:
        return Skip(rel, "binary (NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Legacy 8-bit source (Latin-1 and friends) is still source: keep it, say so.
        text = data.decode("latin-1")
        encoding = "latin-1"
    if "\x00" in text:
        return Skip(rel, "binary (NUL bytes)")
    return _finish(rel, text, digest, encoding)


def _finish(rel: str, text: str, digest: str, encoding: str) -> Text | Skip:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _looks_minified(text):
        return Skip(rel, "minified or generated (very long lines)")
    return Text(text, digest, encoding)


def _looks_minified(text: str) -> bool:
    n = len(text)
    if n < 20_000:
        return False
    lines = text.count("\n") + 1
    # a bundle: huge average line length, or one line holding most of the file
    return n / lines > 1_000 or max(map(len, text.split("\n", 64)[:64])) > 0.5 * n


def git_head(root: Path) -> str | None:
    """The commit checked out in ``root`` (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def iter_paths(root: Path, paths: list[str]) -> Iterator[str]:
    """Normalise user-given paths to POSIX paths relative to ``root``; skip ones outside it."""
    for p in paths:
        ap = Path(p)
        ap = (ap if ap.is_absolute() else Path.cwd() / ap).resolve()
        try:
            rel = ap.relative_to(root)
        except ValueError:
            continue
        yield rel.as_posix()
