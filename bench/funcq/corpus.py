"""The funcq corpus: thirteen pinned packages in five languages, fetched from their registries.

A second labelled set (``queries.jsonl`` next to this file) for function-level retrieval
quality. The fetching, checksum, layout and cache machinery is the shipped set's
(``tests/eval/corpus.py``); only the pins and the kept files differ:

* Python: ``packaging`` 24.1 and ``click`` 8.1.7, sdists from PyPI (``pip download``);
* JavaScript: ``qs`` 6.13.0 and ``marked`` 4.3.0, tarballs from npm (``npm pack``);
* TypeScript: ``immer`` 10.1.1, ``@preact/signals-core`` 1.8.0 and
  ``@tanstack/query-core`` 5.59.0, tarballs from npm (their ``src/`` is shipped);
* Go: ``go-chi/chi`` 5.0.7, ``dustin/go-humanize`` 1.0.0, ``cenkalti/backoff`` 4.1.3 and
  ``hashicorp/golang-lru`` 0.5.4, Debian bookworm ``golang-*-dev`` packages (``apt-get
  download``; they carry the Go sources);
* Rust: ``semver`` 1.0.14, ``textwrap`` 0.16.0 and ``humantime`` 2.1.0, Debian bookworm
  ``librust-*-dev`` packages (they carry the crate sources as published on crates.io;
  crates.io itself is not reachable from the machines this was built on).

Every artifact is checked against its pinned sha256. Files are kept byte for byte; the
tree is cached under ``$TMPDIR/coderag-funcq-corpus/<key>/corpus`` (``CODERAG_EVAL_CACHE``
moves it) and re-hashed against its manifest before use.

    python bench/funcq/corpus.py                 # prints the cached corpus root
    python bench/funcq/corpus.py /tmp/funcq      # a fresh copy there
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.eval import corpus as _shipped  # noqa: E402  (needs the repo root on sys.path)

CorpusError = _shipped.CorpusError
RegistryUnreachable = _shipped.RegistryUnreachable
Package = _shipped.Package
stats = _shipped.stats

__all__ = [
    "PACKAGES",
    "CorpusError",
    "RegistryUnreachable",
    "cache_dir",
    "corpus_root",
    "fresh_copy",
    "stats",
]

LAYOUT_VERSION = 1


def _pick(prefix: str, folder: str, keep) -> callable:
    """A ``select`` for ``Package``: archive members under ``prefix`` whose relative path
    passes ``keep`` go to ``folder/<relative path>``."""

    def select(member: str) -> str | None:
        member = member.removeprefix("./")
        if not member.startswith(prefix):
            return None
        rel = member[len(prefix) :]
        return f"{folder}/{rel}" if keep(rel) else None

    return select


def _in(*names: str):
    wanted = set(names)
    return lambda rel: rel in wanted


def _go_sources(rel: str) -> bool:
    # the package's own .go files, no tests, no examples, no test data
    return rel.endswith(".go") and not rel.endswith("_test.go") and not rel.startswith("_")


_PACKAGING = (
    "README.rst",
    *(
        f"src/packaging/{m}.py"
        for m in (
            "_elffile",
            "_manylinux",
            "_musllinux",
            "_parser",
            "_structures",
            "_tokenizer",
            "markers",
            "requirements",
            "specifiers",
            "tags",
            "utils",
            "version",
        )
    ),
    *(
        f"docs/{d}.rst"
        for d in ("version", "specifiers", "markers", "requirements", "tags", "utils")
    ),
)

_CLICK = (
    *(
        f"src/click/{m}.py"
        for m in ("_textwrap", "_termui_impl", "formatting", "parser", "termui", "types", "utils")
    ),
    *(f"docs/{d}.rst" for d in ("arguments", "prompts", "utils")),
)

_QUERY_CORE = tuple(
    f"src/{m}.ts"
    for m in (
        "focusManager",
        "hydration",
        "infiniteQueryBehavior",
        "notifyManager",
        "onlineManager",
        "query",
        "queryCache",
        "removable",
        "retryer",
        "subscribable",
        "thenable",
        "utils",
    )
)

_GOCODE = "usr/share/gocode/src/github.com/"
_CARGO = "usr/share/cargo/registry/"


def _rust(rel: str) -> bool:
    return rel == "README.md" or (rel.startswith("src/") and rel.endswith(".rs"))


PACKAGES: tuple[Package, ...] = (
    Package(
        name="packaging",
        language="python",
        registry="pypi",
        spec="packaging==24.1",
        filename="packaging-24.1.tar.gz",
        sha256="026ed72c8ed3fcce5bf8950572258698927fd1dbda10a5e981cdf0ac37f4f002",
        licence="Apache-2.0 OR BSD-2-Clause",
        select=_pick("packaging-24.1/", "packaging", _in(*_PACKAGING)),
    ),
    Package(
        name="click",
        language="python",
        registry="pypi",
        spec="click==8.1.7",
        filename="click-8.1.7.tar.gz",
        sha256="ca9853ad459e787e2192211578cc907e7594e294c7ccc834310722b41b9ca6de",
        licence="BSD-3-Clause",
        select=_pick("click-8.1.7/", "click", _in(*_CLICK)),
    ),
    Package(
        name="qs",
        language="javascript",
        registry="npm",
        spec="qs@6.13.0",
        filename="qs-6.13.0.tgz",
        sha256="abffeabbdedc8e466c1bd75227e14ceb76e77f61be475dfcee0d3bbe6dd608fd",
        licence="BSD-3-Clause",
        select=_pick(
            "package/",
            "qs",
            lambda r: r == "README.md" or (r.startswith("lib/") and r.endswith(".js")),
        ),
    ),
    Package(
        name="marked",
        language="javascript",
        registry="npm",
        spec="marked@4.3.0",
        filename="marked-4.3.0.tgz",
        sha256="bc795399d6e7c096521080d66ce6ca96a00875b4bb0df36e0f041815484f633b",
        licence="MIT",
        select=_pick(
            "package/",
            "marked",
            lambda r: r == "README.md" or (r.startswith("src/") and r.endswith(".js")),
        ),
    ),
    Package(
        name="immer",
        language="typescript",
        registry="npm",
        spec="immer@10.1.1",
        filename="immer-10.1.1.tgz",
        sha256="946cc79684ad1e080b09d4f2da14247b272aa667f3aaa100f35846148689f08f",
        licence="MIT",
        select=_pick(
            "package/",
            "immer",
            lambda r: r == "readme.md" or (r.startswith("src/") and r.endswith(".ts")),
        ),
    ),
    Package(
        name="signals-core",
        language="typescript",
        registry="npm",
        spec="@preact/signals-core@1.8.0",
        filename="preact-signals-core-1.8.0.tgz",
        sha256="0436934304fd2f7b137fbf974b25cc3d3d6e0b08469d4c6947c67ba4836feedc",
        licence="MIT",
        select=_pick("package/", "signals-core", _in("README.md", "src/index.ts")),
    ),
    Package(
        name="query-core",
        language="typescript",
        registry="npm",
        spec="@tanstack/query-core@5.59.0",
        filename="tanstack-query-core-5.59.0.tgz",
        sha256="2586579316ffc0957be3c4c33e2f9dfa7732b55c15013b7139244d2ab60d27fc",
        licence="MIT",
        select=_pick("package/", "query-core", _in(*_QUERY_CORE)),
    ),
    Package(
        name="chi",
        language="go",
        registry="debian",
        spec="golang-github-go-chi-chi-dev=5.0.7-1",
        filename="golang-github-go-chi-chi-dev_5.0.7-1_all.deb",
        sha256="70beea5ca4f20af122e8083c91b56b6055df895595c7d9dcf286fadd4ad26f9b",
        licence="MIT",
        select=_pick(
            _GOCODE + "go-chi/chi/",
            "chi",
            lambda r: _go_sources(r) and (r.count("/") == 0 or r.startswith("middleware/")),
        ),
    ),
    Package(
        name="humanize",
        language="go",
        registry="debian",
        spec="golang-github-dustin-go-humanize-dev=1.0.0-3",
        filename="golang-github-dustin-go-humanize-dev_1.0.0-3_all.deb",
        sha256="b4d1a9d00e0c8af421a30e683bf36e14ba99fa621d3f698220f9af0420bd330c",
        licence="MIT",
        select=_pick(_GOCODE + "dustin/go-humanize/", "humanize", _go_sources),
    ),
    Package(
        name="backoff",
        language="go",
        registry="debian",
        spec="golang-github-cenkalti-backoff-dev=4.1.3-1",
        filename="golang-github-cenkalti-backoff-dev_4.1.3-1_all.deb",
        sha256="0f7167d17d137f392a013df93dcecc8ba737a373d6e8cb485f4b01f817dd334e",
        licence="MIT",
        select=_pick(_GOCODE + "cenkalti/backoff/", "backoff", _go_sources),
    ),
    Package(
        name="golang-lru",
        language="go",
        registry="debian",
        spec="golang-github-hashicorp-golang-lru-dev=0.5.4-2",
        filename="golang-github-hashicorp-golang-lru-dev_0.5.4-2_all.deb",
        sha256="060ce36c6213ec4084c0604440ba0a62ebd66a64902dbb71d3422f5eb5719141",
        licence="MPL-2.0",
        select=lambda m: (
            "golang-lru/README.md"
            if m.removeprefix("./")
            == "usr/share/doc/golang-github-hashicorp-golang-lru-dev/README.md"
            else _pick(_GOCODE + "hashicorp/golang-lru/", "golang-lru", _go_sources)(m)
        ),
    ),
    Package(
        name="semver",
        language="rust",
        registry="debian",
        spec="librust-semver-dev=1.0.14-1",
        filename="librust-semver-dev_1.0.14-1_amd64.deb",
        sha256="bf3719b7aac4b7f16f0d68a7037306dbc1532758fe7a5dea01254e85cecaca8c",
        licence="MIT OR Apache-2.0",
        select=_pick(_CARGO + "semver-1.0.14/", "semver", _rust),
    ),
    Package(
        name="textwrap",
        language="rust",
        registry="debian",
        spec="librust-textwrap-dev=0.16.0-2",
        filename="librust-textwrap-dev_0.16.0-2_amd64.deb",
        sha256="6cb30f1426dbbbb492ac932e26df3a255d7a44d074f1e63f21e3d37c31f591c1",
        licence="MIT",
        select=_pick(_CARGO + "textwrap-0.16.0/", "textwrap", _rust),
    ),
    Package(
        name="humantime",
        language="rust",
        registry="debian",
        spec="librust-humantime-dev=2.1.0-1+b1",
        filename="librust-humantime-dev_2.1.0-1+b1_amd64.deb",
        sha256="d01ead7ee394866cb24ce6fedb4615e2ff4580b1337a1e314e2fbeab86d1666f",
        licence="MIT OR Apache-2.0",
        select=_pick(_CARGO + "humantime-2.1.0/", "humantime", _rust),
    ),
)

LANGUAGE = {p.name: p.language for p in PACKAGES}  # corpus folder -> language


def cache_key() -> str:
    pins = [(p.name, p.registry, p.spec, p.sha256) for p in PACKAGES]
    return hashlib.sha256(json.dumps(["funcq", LAYOUT_VERSION, pins]).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("CODERAG_EVAL_CACHE") or tempfile.gettempdir()
    return Path(base) / "coderag-funcq-corpus" / cache_key()


def corpus_root() -> Path:
    """The laid-out corpus (fetched and cached on first use). Treat it as read-only."""
    return _shipped.corpus_root(cache_dir(), PACKAGES)


def fresh_copy(dest: str | os.PathLike) -> Path:
    """A private, writable copy of the corpus at ``dest`` (which must not exist)."""
    dest = Path(dest)
    shutil.copytree(corpus_root(), dest)
    return dest


if __name__ == "__main__":
    try:
        path = fresh_copy(sys.argv[1]) if len(sys.argv) > 1 else corpus_root()
    except CorpusError as e:
        sys.exit(f"corpus: {e}")
    print(path)
