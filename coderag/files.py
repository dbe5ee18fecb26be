"""Which files make up a repository, and how their bytes become text.

Walking honours ``.gitignore`` files at every level (pathspec, git's wildmatch rules),
``.coderagignore`` and a list of default ignores (VCS folders, virtualenvs, build output,
dependency folders, lock files, minified and binary files). Nothing here follows a
symbolic link, so link loops and links pointing out of the repository are never entered.

Reading never raises for a bad file: it returns a :class:`Skip` with a short reason that
ends up in the run's summary.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
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
#: the reason given for a symbolic link (never followed) wherever one is met
LINK_SKIPPED = "symbolic link (not followed)"


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
    """gitignore semantics over a tree: defaults, ``.coderagignore``, nested ``.gitignore``s.
    The rules alone; :class:`PathFilter` is what decides."""

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
        """Is ``rel`` (POSIX, relative to the root) ignored? Folders above it are not checked."""
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


class Refusal(StrEnum):
    """Why the :class:`PathFilter` passes over a path. Never reported: the user's rules (or
    the defaults) asked for it, unlike a :class:`Skip`."""

    VCS = "version control or coderag folder"
    IGNORED = "ignored (.gitignore, .coderagignore, the ignore setting or the defaults)"
    BINARY = "binary file type"
    VIRTUALENV = "virtualenv"


class PathFilter:
    """The one answer to "is this path indexable?", asked by the walk, by the index for paths
    named explicitly (``coderag index FILE``, git hooks, ``/refresh``), by the hooks before
    reading staged blobs, and by the watcher for every file event.

    Built once per walk, run or rule change from the config and the ignore files (defaults,
    ``.coderagignore``, the ``ignore`` setting, ``.gitignore`` at every level); build a new
    one when those change. A path is refused when a folder above it is (git cannot re-include
    a file below an excluded folder, so neither may we). Folder decisions are cached, so
    checking every file of a tree costs one rule match per file and per folder.

    Only names, the rules and a folder's ``pyvenv.cfg`` count here. What a path *is* (a link,
    a FIFO, too large, a name that is not UTF-8) is the walk's and :func:`check_path`'s to
    report, as a :class:`Skip`.
    """

    #: folder decisions kept before the cache starts over (a long-running watcher)
    CACHE_MAX = 100_000

    def __init__(self, root: Path, config: Config):
        self.root = root
        self._rules = IgnoreRules(root, config)
        self._folders: dict[str, Refusal | None] = {}

    def refusal(self, rel: str, *, is_dir: bool | None = False) -> Refusal | None:
        """Why ``rel`` (POSIX, relative to the root) is passed over, or None if it is indexable
        (a file) or entered (a folder). ``is_dir``: True for a folder, False for a file, None
        for a symbolic link, which is never looked through: refused when the rules refuse
        it as a file or as a folder."""
        rel = rel.strip("/")
        if not rel:
            return None  # the root itself
        if is_dir is True:
            return self._folder(rel)
        parent, _, name = rel.rpartition("/")
        return (self._folder(parent) if parent else None) or self._entry(rel, name, is_dir)

    def accepts(self, rel: str, *, is_dir: bool | None = False) -> bool:
        """``refusal(rel, is_dir=is_dir) is None``."""
        return self.refusal(rel, is_dir=is_dir) is None

    def _folder(self, rel: str) -> Refusal | None:
        try:
            return self._folders[rel]
        except KeyError:
            pass
        parent, _, name = rel.rpartition("/")
        why = (self._folder(parent) if parent else None) or self._entry(rel, name, True)
        if len(self._folders) >= self.CACHE_MAX:
            self._folders.clear()
        self._folders[rel] = why
        return why

    def _entry(self, rel: str, name: str, is_dir: bool | None) -> Refusal | None:
        """The path itself, its folders above already accepted."""
        if is_dir and (name in ALWAYS_SKIP_DIRS or name.startswith(DATA_DIR + ".")):
            return Refusal.VCS  # the index, and a folder coderag is making or removing
        rules = self._rules
        if rules.ignored(rel, bool(is_dir)) or (is_dir is None and rules.ignored(rel, True)):
            return Refusal.IGNORED
        if is_dir is False and _binary_extension(name):
            return Refusal.BINARY
        if is_dir and os.path.exists(self.root / rel / "pyvenv.cfg"):  # False if unreadable
            return Refusal.VIRTUALENV  # a virtualenv under any name
        return None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def link_on_path(root: Path, rel: str) -> str | None:
    """The first component of ``rel`` (a prefix of it, itself included) that is a symbolic
    link, or None. Paths named explicitly (watcher events, hook diffs, ``index FILE``,
    ``/refresh``) pass here so that a folder link never leads outside the tree."""
    parts = [p for p in rel.split("/") if p]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        try:
            if stat.S_ISLNK(os.lstat(root / prefix).st_mode):
                return prefix
        except OSError:
            return None  # gone: nothing below it can be read either
    return None


def is_real_dir(root: Path, rel: str) -> bool:
    """Is ``rel`` a folder reached without following any symbolic link?"""
    if link_on_path(root, rel) is not None:
        return False
    try:
        return stat.S_ISDIR(os.lstat(root / rel).st_mode)
    except OSError:
        return False


def walk(root: Path, config: Config, under: str = "") -> tuple[list[FileEntry], list[Skip]]:
    """Every indexable file under ``root`` (or its folder ``under``; sorted), and the files
    passed over with reasons. No symbolic link is followed, ``under``'s own included; a
    folder the :class:`PathFilter` refuses (``under`` too) is not entered."""
    wanted = PathFilter(root, config)
    found: list[FileEntry] = []
    skipped: list[Skip] = []
    under = under.strip("/")
    link = link_on_path(root, under) if under else None
    if link is not None:
        return found, [Skip(_printable(link), LINK_SKIPPED)]
    stack = [under] if not under or wanted.accepts(under, is_dir=True) else []
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = list(it)
        except OSError as e:
            skipped.append(Skip(rel_dir or ".", f"unreadable folder ({e.strerror or e})"))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            seen = _look(entry, rel, wanted, config.max_file_bytes)
            if isinstance(seen, FileEntry):
                found.append(seen)
            elif isinstance(seen, Skip):
                skipped.append(seen)
            elif seen is not None:
                stack.append(seen)
    found.sort(key=lambda f: f.path)
    return found, skipped


def _look(entry: os.DirEntry, rel: str, wanted: PathFilter, max_bytes: int):
    """One entry of a folder the walk lists: a :class:`FileEntry` to index, a :class:`Skip` to
    report, the entry's path when it is a folder to enter, or None (passed over quietly)."""
    bad_name = _bad_name(entry.name)
    if bad_name:
        return Skip(_printable(rel), bad_name)
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None  # vanished between listing and stat: nothing to index
    mode = st.st_mode
    # a link is never followed (no loops, nothing outside the root; a link to a file inside is
    # indexed under the file's own path), and reported unless the rules hide it either way
    kind = None if stat.S_ISLNK(mode) else stat.S_ISDIR(mode)
    if wanted.refusal(rel, is_dir=kind) is not None:
        return None
    if kind is None:
        return Skip(rel, LINK_SKIPPED)
    if kind:
        return rel
    if not stat.S_ISREG(mode):
        # a FIFO would block the reader forever; sockets and devices are not source
        return Skip(rel, f"not a regular file ({_kind(mode)})")
    if st.st_size > max_bytes:
        return Skip(rel, f"larger than {max_bytes:,} bytes")
    return FileEntry(rel, st.st_size, st.st_mtime_ns)


def _bad_name(name: str) -> str | None:
    """Why a file name cannot be indexed, or None. Names that are not UTF-8 cannot be
    stored as text; control characters (a newline in a name) cannot be quoted in a filter."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "file name has control characters"
    return None


def _binary_extension(name: str) -> bool:
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    return ext in BINARY_EXTENSIONS or ext.lower() in BINARY_EXTENSIONS


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _printable(rel: str) -> str:
    """A name for messages: undecodable bytes as ``\\xNN``, control characters escaped."""
    raw = os.fsencode(rel)
    out = raw.decode("utf-8", "backslashreplace")
    return "".join(c if 32 <= ord(c) != 127 else c.encode("unicode_escape").decode() for c in out)


def check_path(root: Path, rel: str, max_bytes: int | None) -> FileEntry | Skip | None:
    """One explicitly named path (a watcher event, ``coderag index FILE``): a FileEntry to
    index, a Skip to report (it exists but cannot be indexed), or None when it is gone or
    is a folder (nothing to report; a row under that path is to be removed)."""
    bad = _bad_name(rel)
    if bad:
        return Skip(_printable(rel), bad)
    link = link_on_path(root, rel)
    if link is not None and link != rel:
        return Skip(rel, f"inside the symbolic link {link} (not followed)")
    try:
        st = os.lstat(root / rel)
    except OSError:
        return None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return Skip(rel, LINK_SKIPPED)
    if not stat.S_ISREG(mode):
        return Skip(rel, f"not a regular file ({_kind(mode)})")
    if max_bytes is not None and st.st_size > max_bytes:
        return Skip(rel, f"larger than {max_bytes:,} bytes")
    return FileEntry(rel, st.st_size, st.st_mtime_ns)


def open_beneath(root: Path, rel: str) -> int:
    """A read-only descriptor of ``root/rel`` opened one component at a time with
    ``O_NOFOLLOW``: a link anywhere on the way (even one swapped in while we look) fails the
    open with ELOOP/ENOTDIR instead of leading outside the tree. FIFOs do not block it."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(errno.EINVAL, "not a path inside the repository", rel)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = nxt
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        return os.open(parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)


def read_bytes(root: Path, rel: str, max_bytes: int) -> bytes | Skip:
    """The bytes of one file, or a Skip. Safe against the file changing under us: a path
    that became a link is not followed (``O_NOFOLLOW``), and one that became a FIFO does not
    block the open (``O_NONBLOCK``) and is refused after an ``fstat``."""
    try:
        fd = open_beneath(root, rel)
    except FileNotFoundError:
        return Skip(rel, "vanished before it could be read")
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and link_on_path(root, rel):
            return Skip(rel, LINK_SKIPPED)
        return Skip(rel, f"unreadable ({e.strerror or e})")
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return Skip(rel, "is a folder")
        if not stat.S_ISREG(mode):
            return Skip(rel, f"not a regular file ({_kind(mode)})")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        return Skip(rel, f"unreadable ({e.strerror or e})")
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return Skip(rel, f"larger than {max_bytes:,} bytes")
    return data


#: byte order marks, longest first (a UTF-32 LE mark starts like a UTF-16 LE one)
_BOMS = (
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32"),
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8"),
    (b"\xff\xfe", "utf-16-le", "UTF-16"),
    (b"\xfe\xff", "utf-16-be", "UTF-16"),
)
#: C0 and C1 control characters other than the whitespace ones (tab, LF, VT, FF, CR) and ESC
_CONTROL = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")


def decode(rel: str, data: bytes) -> Text | Skip:
    """Bytes → text with ``\\n`` endings, or a Skip for binary and minified content.

    UTF-8 (BOM stripped); UTF-16 and UTF-32 with a BOM; UTF-8 with a few invalid bytes keeps
    its text (the bad bytes become U+FFFD); otherwise a legacy 8-bit file is read as
    Windows-1252, or Latin-1 where that fails. NUL bytes or a high share of control
    characters mean binary.
    """
    digest = content_digest(data)
    encoding = "utf-8"
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            if codec == "utf-8-sig":
                data = data[len(bom) :]
                encoding = codec
                break
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                return Skip(rel, f"invalid {label}")
            if "\x00" in text or _mostly_control(text):
                return Skip(rel, "binary (NUL bytes)")
            return _finish(rel, text, digest, codec)
    if b"\x00" in data[:SNIFF_BYTES]:
        return Skip(rel, "binary (NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text, encoding = _legacy(data)
    if "\x00" in text:
        return Skip(rel, "binary (NUL bytes)")
    if _mostly_control(text):
        return Skip(rel, "binary (control characters)")
    return _finish(rel, text, digest, encoding)


def _legacy(data: bytes) -> tuple[str, str]:
    """Text of bytes that are not valid UTF-8, and the encoding that was used."""
    loose = data.decode("utf-8", "replace")
    replaced = loose.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    if len(_NON_ASCII.findall(loose)) > replaced:
        # mostly UTF-8 with a few stray bytes: keep the valid text
        return loose, "utf-8 (invalid bytes replaced)"
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _mostly_control(text: str) -> bool:
    head = text[:SNIFF_BYTES]
    return len(head) >= 32 and len(_CONTROL.findall(head)) > 0.1 * len(head)


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
    """Normalise user-given paths to POSIX paths relative to ``root``; skip ones outside it.

    The folders on the way are resolved (``root`` is), the last component is not: a link
    stays a link (it is reported, never followed), and a link loop cannot raise."""
    for p in paths:
        ap = Path(os.fsdecode(p))
        if not ap.is_absolute():
            ap = Path.cwd() / ap
        try:
            if ap.name in ("", ".", ".."):
                full = ap.resolve()
            else:
                full = ap.parent.resolve() / ap.name
        except (OSError, RuntimeError):  # a loop among the folders on the way
            continue
        try:
            rel = full.relative_to(root)
        except ValueError:
            continue
        if rel.parts:
            yield rel.as_posix()
