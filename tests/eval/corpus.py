"""The evaluation corpus: three pinned third-party packages, fetched from their registries.

The labelled queries in ``queries.jsonl`` are about real code nobody here wrote, in three
languages, as shipped by the ordinary package registries:

* Python: ``requests`` 2.32.3, the sdist from PyPI (``pip download``);
* JavaScript: ``express`` 4.21.2, the tarball from npm (``npm pack``);
* Go: ``gorilla/mux`` 1.8.0, Debian bookworm's ``golang-github-gorilla-mux-dev`` 1.8.0-1
  (``apt-get download``; the package carries the Go sources).

Every artifact is checked against its pinned sha256, then the chosen files are laid out under
one corpus root (paths as in ``queries.jsonl``)::

    requests/README.md   requests/src/requests/{api,sessions,models,adapters,utils,auth,...}.py
    express/Readme.md    express/lib/**/*.js
    mux/README.md        mux/{mux,route,regexp,middleware}.go

Files are kept byte for byte as shipped; the only change is that Debian's gzipped
``README.md.gz`` is stored uncompressed. The laid-out tree is cached under
``$TMPDIR/coderag-eval-corpus/<key>/corpus`` (``<key>`` is a digest of the pins and the layout),
so the network is used once per machine; a cached tree is re-hashed against its manifest
before use and rebuilt if anything differs.

``RegistryUnreachable`` means a registry (or a tool to reach it) is not there: callers may
skip. Anything else that goes wrong (a checksum mismatch, a missing version, a failing client)
is a ``CorpusError``, a real failure.

Run it directly to fetch and print the corpus root, or to copy the corpus somewhere::

    python tests/eval/corpus.py                 # prints the cached corpus root
    python tests/eval/corpus.py /tmp/evalcorpus # a fresh copy there
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LAYOUT_VERSION = 2
COMMAND_TIMEOUT = 600  # seconds; a slow registry is not a reason to skip, so be generous
PROBE_TIMEOUT = 15


class CorpusError(RuntimeError):
    """The corpus could not be built although its registries answer: a real failure."""


class RegistryUnreachable(CorpusError):
    """A registry, or the client that reaches it, is not available here: callers may skip."""


@dataclass(frozen=True)
class Package:
    """One pinned artifact and the files taken from it."""

    name: str  # folder under the corpus root
    language: str
    registry: str  # "pypi" | "npm" | "debian"
    spec: str  # what the client is asked for
    filename: str  # the artifact the client writes
    sha256: str
    licence: str
    select: Callable[[str], str | None]  # archive member -> corpus path (None: not kept)


def _select_requests(member: str) -> str | None:
    top = "requests-2.32.3/"
    if not member.startswith(top):
        return None
    rel = member[len(top) :]
    if rel == "README.md" or rel in {f"src/requests/{m}.py" for m in _REQUESTS_MODULES}:
        return "requests/" + rel
    return None


# The modules that do the work; the exception classes, cookie jar, status-code table and
# compatibility shims are left out to keep the corpus small enough to embed in CI.
_REQUESTS_MODULES = (
    "_internal_utils",
    "adapters",
    "api",
    "auth",
    "hooks",
    "models",
    "sessions",
    "structures",
    "utils",
)


def _select_express(member: str) -> str | None:
    if not member.startswith("package/"):
        return None
    rel = member[len("package/") :]
    if rel == "Readme.md" or (rel.startswith("lib/") and rel.endswith(".js")):
        return "express/" + rel
    return None


def _select_mux(member: str) -> str | None:
    member = member.removeprefix("./")
    src = "usr/share/gocode/src/github.com/gorilla/mux/"
    if member == "usr/share/doc/golang-github-gorilla-mux-dev/README.md.gz":
        return "mux/README.md"
    if member.startswith(src):
        rel = member[len(src) :]
        if rel in ("mux.go", "route.go", "regexp.go", "middleware.go"):
            return "mux/" + rel
    return None


PACKAGES: tuple[Package, ...] = (
    Package(
        name="requests",
        language="python",
        registry="pypi",
        spec="requests==2.32.3",
        filename="requests-2.32.3.tar.gz",
        sha256="55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760",
        licence="Apache-2.0",
        select=_select_requests,
    ),
    Package(
        name="express",
        language="javascript",
        registry="npm",
        spec="express@4.21.2",
        filename="express-4.21.2.tgz",
        sha256="fc43a91e7dc7affb53c6ad7123a4f35485ed3c45226ae7a3847b7738e783e008",
        licence="MIT",
        select=_select_express,
    ),
    Package(
        name="mux",
        language="go",
        registry="debian",
        spec="golang-github-gorilla-mux-dev=1.8.0-1",
        filename="golang-github-gorilla-mux-dev_1.8.0-1_all.deb",
        sha256="0880a4019fe68496a0e0a749c2948c029e489f49edd448bed2fedaba33f848c2",
        licence="BSD-3-Clause",
        select=_select_mux,
    ),
)


# ------------------------------------------------------------------ reachability
def _proxy_for(url: str) -> str | None:
    scheme = urlsplit(url).scheme
    for var in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def _reachable(url: str) -> bool:
    """Can a TCP connection be opened to ``url``'s host (or to the proxy that reaches it)?"""
    target = _proxy_for(url) or url
    parts = urlsplit(target if "://" in target else "http://" + target)
    if parts.scheme == "file":
        return Path(parts.path).exists()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _registry_url(pkg: Package) -> str:
    if pkg.registry == "pypi":
        return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").split()[0]
    if pkg.registry == "npm":
        out = _run(["npm", "config", "get", "registry"], pkg, check=False)
        url = out.stdout.strip() if out.returncode == 0 else ""
        return url or "https://registry.npmjs.org/"
    return _apt_uri()


def _apt_uri() -> str:
    """The first http(s) archive in apt's sources (deb822 ``URIs:`` or one-line ``deb``)."""
    files = [Path("/etc/apt/sources.list")]
    files += sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for f in files:
        if f.suffix not in (".list", ".sources") or not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "URIs:" and words[1].startswith("http"):
                return words[1]
            if len(words) >= 2 and words[0] == "deb":
                uri = next((w for w in words[1:] if w.startswith("http")), None)
                if uri:
                    return uri
    return "http://deb.debian.org/debian"


def _run(cmd: list[str], pkg: Package, cwd: Path | None = None, check: bool = True):
    if shutil.which(cmd[0]) is None and not os.path.isabs(cmd[0]):
        raise RegistryUnreachable(f"{pkg.registry}: `{cmd[0]}` is not installed here")
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise CorpusError(f"`{' '.join(cmd)}` ran over {COMMAND_TIMEOUT}s") from None
    if check and done.returncode != 0:
        raise CorpusError(
            f"`{' '.join(cmd)}` failed ({done.returncode}):\n{(done.stderr or done.stdout)[-2000:]}"
        )
    return done


# ------------------------------------------------------------------ fetching
def _download(pkg: Package, dest: Path) -> Path:
    """Fetch ``pkg``'s artifact into ``dest`` with its registry's own client."""
    url = _registry_url(pkg)
    if not _reachable(url):
        raise RegistryUnreachable(f"{pkg.registry} registry {url} is unreachable")
    try:
        if pkg.registry == "pypi":
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    pkg.spec.split("==")[0],  # the sdist (sources as published), no wheel
                    "--disable-pip-version-check",
                    pkg.spec,
                    "-d",
                    str(dest),
                ],
                pkg,
            )
        elif pkg.registry == "npm":
            _run(["npm", "pack", pkg.spec, "--pack-destination", str(dest)], pkg, cwd=dest)
        else:
            _apt_download(pkg, dest)
    except CorpusError:
        if not _reachable(url):
            raise RegistryUnreachable(f"{pkg.registry} registry {url} became unreachable") from None
        raise
    path = dest / pkg.filename
    if not path.is_file():
        raise CorpusError(f"{pkg.registry}: {pkg.spec} did not produce {pkg.filename}")
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != pkg.sha256:
        raise CorpusError(f"{pkg.filename}: sha256 {got}, expected {pkg.sha256}")
    return path


def _apt_download(pkg: Package, dest: Path) -> None:
    """``apt-get download``; on a fresh machine without package lists, update them first."""
    if shutil.which("dpkg-deb") is None:
        raise RegistryUnreachable("debian: `dpkg-deb` is not installed here")
    first = _run(["apt-get", "download", pkg.spec], pkg, cwd=dest, check=False)
    if first.returncode == 0:
        return
    if os.geteuid() != 0:
        raise CorpusError(
            f"`apt-get download {pkg.spec}` failed and updating the package lists needs root:\n"
            f"{first.stderr[-2000:]}"
        )
    _run(["apt-get", "update"], pkg)
    _run(["apt-get", "download", pkg.spec], pkg, cwd=dest)


def _deb_members(artifact: Path):
    out = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(artifact)],
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if out.returncode != 0:
        raise CorpusError(f"dpkg-deb --fsys-tarfile {artifact.name} failed: {out.stderr[-500:]!r}")
    with tarfile.open(fileobj=io.BytesIO(out.stdout), mode="r:") as tar:
        for m in tar:
            if m.isfile():
                yield m.name, tar.extractfile(m).read()


def _lay_out(pkg: Package, artifact: Path, root: Path) -> list[str]:
    members = _deb_members(artifact) if pkg.registry == "debian" else _tar_members(artifact)
    kept = []
    for name, data in members:
        rel = pkg.select(name)
        if rel is None:
            continue
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        out = root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        kept.append(rel)
    if not kept:
        raise CorpusError(f"{artifact.name}: no files selected (layout changed?)")
    return kept


def _tar_members(artifact: Path):
    with tarfile.open(artifact, "r:*") as tar:
        for m in tar:
            if m.isfile():
                yield m.name, tar.extractfile(m).read()


# ------------------------------------------------------------------ the cache
def cache_key() -> str:
    pins = [(p.name, p.registry, p.spec, p.sha256) for p in PACKAGES]
    return hashlib.sha256(json.dumps([LAYOUT_VERSION, pins]).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("CODERAG_EVAL_CACHE") or tempfile.gettempdir()
    return Path(base) / "coderag-eval-corpus" / cache_key()


def _manifest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _cached(where: Path) -> Path | None:
    try:
        want = json.loads((where / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    root = where / "corpus"
    return root if root.is_dir() and _manifest(root) == want else None


def corpus_root(where: Path | None = None, packages: tuple[Package, ...] = PACKAGES) -> Path:
    """The laid-out corpus (fetched and cached on first use). Treat it as read-only.

    ``where`` and ``packages`` let another labelled set (bench/funcq) reuse this machinery
    with its own pins and cache folder."""
    where = cache_dir() if where is None else where
    root = _cached(where)
    if root is not None:
        return root
    where.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{where.name}.tmp-", dir=where.parent))
    try:
        downloads = work / "downloads"
        downloads.mkdir()
        for pkg in packages:
            _lay_out(pkg, _download(pkg, downloads), work / "corpus")
        shutil.rmtree(downloads)
        (work / "manifest.json").write_text(json.dumps(_manifest(work / "corpus"), indent=1))
        if _cached(where) is None:  # absent, stale or damaged (another process may have won)
            shutil.rmtree(where, ignore_errors=True)
            try:
                work.rename(where)
            except OSError:  # another process finished first
                pass
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone already if it was renamed
    root = _cached(where)
    if root is None:
        raise CorpusError(f"the corpus cached at {where} does not match its manifest")
    return root


def fresh_copy(dest: str | os.PathLike) -> Path:
    """A private, writable copy of the corpus at ``dest`` (which must not exist)."""
    dest = Path(dest)
    shutil.copytree(corpus_root(), dest)
    return dest


def stats(root: Path) -> dict[str, dict[str, int]]:
    """Files and lines per package folder."""
    out: dict[str, dict[str, int]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".coderag" not in p.parts:
            d = out.setdefault(p.relative_to(root).parts[0], {"files": 0, "lines": 0})
            d["files"] += 1
            d["lines"] += p.read_bytes().count(b"\n")
    return out


if __name__ == "__main__":
    try:
        path = fresh_copy(sys.argv[1]) if len(sys.argv) > 1 else corpus_root()
    except CorpusError as e:
        sys.exit(f"corpus: {e}")
    print(path)
