"""The language table: which files are which language, and where each grammar's query is.

No tree-sitter here (see :mod:`coderag.chunking.parse`): this module answers "what language
is this path?" (:func:`detect_language`, from extension, file name or shebang), "which
languages are there?" (:func:`supported_languages`) and "what is the query text of
``grammars/<name>.scm``?" (:func:`grammar_text`, with the ``; inherits:`` lines resolved).

Adding a language = one row in :data:`LANGUAGES`, one ``grammars/<name>.scm`` file, one
fixture, one grammar wheel dependency (see ``grammars/README.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# --------------------------------------------------------------------------------------
# The language table: one row per language. Adding a language = one row here, one
# grammars/<name>.scm file, one fixture, one grammar wheel dependency.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LanguageSpec:
    name: str  # language id used everywhere ("python", "tsx", "csharp", ...)
    module: str  # grammar wheel module, e.g. "tree_sitter_python"
    func: str = "language"  # function in that module returning the language pointer
    extensions: tuple[str, ...] = ()  # lower-case, with the dot
    interpreters: tuple[str, ...] = ()  # shebang interpreters (version suffix stripped)
    filenames: tuple[str, ...] = ()  # exact file names (no extension)
    sep: str = "."  # separator of qualified symbol parts
    package_sep: str | None = None  # separator inside a package/namespace prefix
    module_prefix: bool = False  # prefix symbols with the dotted file path (Python)
    prose: bool = False  # sections instead of definitions
    query: str | None = None  # grammars/<query>.scm when it is shared (tsx uses typescript)
    merge_clauses: bool = False  # adjacent same-name definitions are one (Haskell, Elixir)

    @property
    def query_name(self) -> str:
        """The grammars/<query_name>.scm file holding this language's query."""
        return self.query or self.name


LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec("python", "tree_sitter_python", extensions=(".py", ".pyi", ".pyw"),
                 interpreters=("python", "pypy"), module_prefix=True),
    LanguageSpec("javascript", "tree_sitter_javascript",
                 extensions=(".js", ".jsx", ".mjs", ".cjs"), interpreters=("node", "nodejs")),
    LanguageSpec("typescript", "tree_sitter_typescript", "language_typescript",
                 extensions=(".ts", ".mts", ".cts"), interpreters=("ts-node", "deno", "bun")),
    LanguageSpec("tsx", "tree_sitter_typescript", "language_tsx", extensions=(".tsx",),
                 query="typescript"),
    LanguageSpec("go", "tree_sitter_go", extensions=(".go",)),
    LanguageSpec("rust", "tree_sitter_rust", extensions=(".rs",), sep="::"),
    LanguageSpec("java", "tree_sitter_java", extensions=(".java",)),
    LanguageSpec("c", "tree_sitter_c", extensions=(".c", ".h")),
    LanguageSpec("cpp", "tree_sitter_cpp", sep="::",
                 extensions=(".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++",
                             ".ipp", ".inl", ".tpp", ".cu", ".cuh")),
    LanguageSpec("csharp", "tree_sitter_c_sharp", extensions=(".cs", ".csx")),
    LanguageSpec("ruby", "tree_sitter_ruby", extensions=(".rb", ".rake", ".gemspec", ".ru"),
                 interpreters=("ruby",), filenames=("Rakefile", "Gemfile", "Guardfile")),
    LanguageSpec("php", "tree_sitter_php", "language_php", extensions=(".php", ".phtml"),
                 interpreters=("php",), sep="::", package_sep="\\"),
    LanguageSpec("kotlin", "tree_sitter_kotlin", extensions=(".kt", ".kts")),
    LanguageSpec("swift", "tree_sitter_swift", extensions=(".swift",)),
    LanguageSpec("scala", "tree_sitter_scala", extensions=(".scala", ".sc"),
                 interpreters=("scala",)),
    LanguageSpec("bash", "tree_sitter_bash", extensions=(".sh", ".bash", ".zsh", ".ksh"),
                 interpreters=("sh", "bash", "zsh", "ksh", "dash", "ash"),
                 filenames=(".bashrc", ".bash_profile", ".profile", ".zshrc")),
    LanguageSpec("lua", "tree_sitter_lua", extensions=(".lua",), interpreters=("lua", "luajit")),
    LanguageSpec("haskell", "tree_sitter_haskell", extensions=(".hs",),
                 interpreters=("runhaskell", "runghc", "stack"), merge_clauses=True),
    LanguageSpec("elixir", "tree_sitter_elixir", extensions=(".ex", ".exs"),
                 interpreters=("elixir",), merge_clauses=True),
    LanguageSpec("zig", "tree_sitter_zig", extensions=(".zig",)),
    LanguageSpec("markdown", "tree_sitter_markdown", extensions=(".md", ".markdown", ".mdx"),
                 prose=True),
    LanguageSpec("rst", "tree_sitter_rst", extensions=(".rst", ".rest"), prose=True),
)  # fmt: skip

_BY_NAME = {s.name: s for s in LANGUAGES}
_BY_EXT = {e: s.name for s in LANGUAGES for e in s.extensions}
_BY_FILENAME = {f: s.name for s in LANGUAGES for f in s.filenames}
_BY_INTERP = {i: s.name for s in LANGUAGES for i in s.interpreters}
_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def spec(language: str) -> LanguageSpec | None:
    """The table row of ``language`` (None = not a language of the table)."""
    return _BY_NAME.get(language)


def supported_languages() -> list[str]:
    """Languages with an entry in the table (whether or not their grammar loads here)."""
    return [s.name for s in LANGUAGES]


def detect_language(path: str, head: str = "") -> str | None:
    """Language id for ``path`` from its extension, file name or shebang; None = plain text."""
    name = PurePosixPath(path.replace("\\", "/")).name
    lang = _BY_FILENAME.get(name)
    if lang:
        return lang
    dot = name.rfind(".")
    if dot > 0 or (dot == 0 and name.count(".") > 1):
        lang = _BY_EXT.get(name[dot:].lower())
        if lang:
            return lang
    if head.startswith("#!"):
        return _shebang_language(head.split("\n", 1)[0])
    return None


def _shebang_language(line: str) -> str | None:
    parts = line[2:].strip().split()
    if not parts:
        return None
    prog = parts[0].rsplit("/", 1)[-1]
    if prog == "env":
        rest = [p for p in parts[1:] if not p.startswith("-") and "=" not in p]
        if not rest:
            return None
        prog = rest[0].rsplit("/", 1)[-1]
    lang = _BY_INTERP.get(prog)
    if lang is None:
        lang = _BY_INTERP.get(_VERSION_SUFFIX.sub("", prog))
    return lang


def grammar_text(name: str) -> str:
    """The query text of ``grammars/<name>.scm``, the patterns of the files its first lines
    name (``; inherits: ecmascript``, as nvim-treesitter writes it) put before its own.

    ``name`` is a query file name: a language's :attr:`LanguageSpec.query_name`, or a shared
    file such as ``ecmascript``. Raises OSError when the file is missing.
    """
    return _with_inherited(name, ())


def _with_inherited(name: str, seen: tuple[str, ...]) -> str:
    text = _grammar_file(name)
    parents: list[str] = []
    for line in text.splitlines():
        if not line.startswith("; inherits:"):
            break
        parents += [p.strip() for p in line.split(":", 1)[1].split(",") if p.strip()]
    if name in seen:
        raise ValueError(f"grammars/{name}.scm inherits itself")
    inherited = "".join(_with_inherited(p, (*seen, name)) + "\n" for p in parents)
    return inherited + text


def _grammar_file(name: str) -> str:
    """Installed wheels carry grammars/ as the package ``coderag.grammars``; a source
    checkout reads the folder at the repository root."""
    try:
        from importlib.resources import files

        res = files("coderag.grammars").joinpath(f"{name}.scm")
        if res.is_file():
            return res.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
        pass
    path = Path(__file__).resolve().parent.parent.parent / "grammars" / f"{name}.scm"
    return path.read_text(encoding="utf-8")
