"""Tree-sitter front end: grammar loading, one generic query loop.

This is the only module that imports ``tree_sitter``. It turns a file into a neutral
:class:`ParsedFile` (plain dataclasses and a read-only mapping; no tree-sitter API leaks)
that :mod:`coderag.chunking.chunk` consumes:

* ``definitions``: a tree of :class:`Definition` (kind, name, qualified symbol, line spans,
  signature header, attached doc span), found by the tags-style query in
  ``grammars/<language>.scm`` (see ``grammars/README.md`` for the capture vocabulary);
* ``docs``: standalone doc/comment blocks that are not attached to a definition;
* ``boundaries``: line -> depth of the shallowest syntax node starting on that line, the
  child-statement boundaries used to split oversized regions (lower depth = better cut);
  a :class:`Boundaries` mapping computed on first use, since most files never split;
* ``sections``: for prose languages, one :class:`Section` per heading.

``parse`` returns ``None`` when the language has no usable grammar, the file is too big,
parsing ran past its time limit, or the tree holds a syntax error so wide that querying it
would stall; the caller then falls back to line windows.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import languages
from .languages import LanguageSpec

log = logging.getLogger(__name__)

# Chunk kinds for each definition capture suffix (``@definition.<suffix>``).
KIND_OF_CAPTURE = {
    "function": "function",
    "method": "method",
    "class": "class",
    "struct": "class",
    "interface": "class",
    "trait": "class",
    "enum": "class",
    "impl": "class",
    "module": "class",
    "object": "class",
    "protocol": "class",
    "union": "class",
    "type": "class",
    "record": "class",
    "extension": "class",
    "namespace": "namespace",  # scope only: prefixes symbols, owns no chunk
    "section": "doc",  # prose headings
}

MAX_PARSE_BYTES = 4 * 1024 * 1024  # bigger files are chunked by line windows
PARSE_TIMEOUT_S = 2.0  # per file (+1 s per MB); past it the file falls back to line windows
MAX_DEPTH = 200  # cap on nesting walked for definitions / boundaries


# --------------------------------------------------------------------------------------
# Neutral structure handed to chunk.py
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Definition:
    kind: str  # "function" | "method" | "class" | "namespace"
    capture: str  # capture suffix: function, method, class, struct, impl, module, ...
    name: str
    symbol: str  # qualified display symbol ("pkg.mod.Class.meth", "impl Display for Point")
    scope: str  # qualified prefix handed to children ("Point" for a Rust impl)
    start_line: int  # 1-based, inclusive; includes attached doc comments / attributes
    end_line: int  # 1-based, inclusive
    node_line: int  # line where the definition node itself starts
    header: str  # signature line(s), e.g. "def f(x: int) -> str:" (no body)
    doc: tuple[int, int] | None = None  # docstring or attached doc-comment lines
    children: list[Definition] = field(default_factory=list)


@dataclass(slots=True)
class Section:
    level: int  # 1 = top
    title: str
    start_line: int  # heading line (first line of an over-lined RST title)
    heading_end: int  # last line of the heading (underline)


class Boundaries:
    """Read-only mapping: line (1-based) -> depth of the shallowest syntax node starting on it.

    Child-statement boundaries, for splitting oversized regions (lower depth = better
    cut). Only the children of nodes spanning more than ``split_lines`` lines are listed,
    since smaller nodes are never split. Computed on first use: most files never need a
    split. The syntax tree it walks stays private to this module and is dropped once
    walked.
    """

    __slots__ = ("_root", "_split_lines", "_map")

    def __init__(self, root, split_lines: int):
        self._root = root
        self._split_lines = split_lines
        self._map: dict[int, int] | None = None

    def _build(self) -> dict[int, int]:
        out: dict[int, int] = {}
        k = self._split_lines
        todo = [(self._root, 0)]
        while todo:
            node, depth = todo.pop()
            d1 = depth + 1
            for ch in node.named_children:
                r0 = ch.start_point[0] + 1
                if out.get(r0, MAX_DEPTH + 1) > d1:
                    out[r0] = d1
                if ch.end_point[0] + 1 - r0 > k and d1 < MAX_DEPTH:
                    todo.append((ch, d1))
        self._root = None
        self._map = out
        return out

    def mapping(self) -> dict[int, int]:
        return self._map if self._map is not None else self._build()

    def get(self, line: int, default: int | None = None) -> int | None:
        m = self._map if self._map is not None else self._build()
        return m.get(line, default)

    def __getitem__(self, line: int) -> int:
        m = self._map if self._map is not None else self._build()
        return m[line]

    def __contains__(self, line: object) -> bool:
        m = self._map if self._map is not None else self._build()
        return line in m


@dataclass(slots=True)
class ParsedFile:
    language: str
    module: str | None  # dotted module / package prefix, if any
    definitions: list[Definition]  # top level; nested ones under .children (not inside
    # functions: a function's inner definitions are part of its chunk)
    docs: list[tuple[int, int, bool]]  # standalone doc blocks: (start, end, is_doc_node)
    boundaries: Boundaries | dict[int, int]  # line -> depth of the shallowest node there
    sections: list[Section]
    has_error: bool


# --------------------------------------------------------------------------------------
# Grammar loading (cached per process; failures reported once)
# --------------------------------------------------------------------------------------

_lock = threading.Lock()
_loaded: dict[str, tuple[object, object] | None] = {}  # name -> (Language, Query) | None
_tls = threading.local()


def _load(name: str):
    """(Language, Query) for ``name``, or None (reported once) when it cannot be loaded."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    with _lock:
        if name in _loaded:
            return _loaded[name]
        result = None
        sp = languages.spec(name)
        if sp is not None:
            try:
                import tree_sitter as ts

                mod = importlib.import_module(sp.module)
                lang = ts.Language(getattr(mod, sp.func)())
                query = ts.Query(lang, languages.grammar_text(sp.query_name))
                result = (lang, query)
            except Exception as exc:  # noqa: BLE001 - any failure means "no grammar"
                msg = f"coderag: grammar for {name!r} unavailable ({type(exc).__name__}: {exc}); its files are chunked by line windows"
                log.warning(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
        _loaded[name] = result
        return result


def grammar_available(language: str) -> bool:
    """Does ``language``'s grammar load here, with its query? (a failure is reported once)"""
    return _load(language) is not None


def forget_grammar(language: str) -> None:
    """Drop what was loaded (or found missing) for ``language``: the next parse loads its
    grammar again and reports a failure again, e.g. once a grammar wheel is installed."""
    with _lock:
        _loaded.pop(language, None)
    getattr(_tls, "parsers", {}).pop(language, None)


def _parser(name: str, lang):
    parsers = getattr(_tls, "parsers", None)
    if parsers is None:
        parsers = _tls.parsers = {}
    p = parsers.get(name)
    if p is None:
        import tree_sitter as ts

        p = parsers[name] = ts.Parser(lang)
    return p


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def module_name(path: str) -> str:
    """``pkg/util.py`` -> ``pkg.util``; ``src/pkg/__init__.py`` -> ``pkg``."""
    parts = list(PurePosixPath(path.replace("\\", "/")).parts)
    if parts and parts[0] in ("src", "lib") and len(parts) > 1:
        parts = parts[1:]
    if not parts:
        return ""
    last = parts[-1]
    dot = last.rfind(".")
    if dot > 0:
        last = last[:dot]
    parts[-1] = last
    if last == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(p for p in parts if p not in ("", "."))


class ParseTimeout(Exception):
    pass


def _tree(name: str, lang, data: bytes, deadline: float):
    parser = _parser(name, lang)
    step = 1 << 14  # small slices: error recovery re-reads the same offsets many times

    def read(offset, _point):
        return data[offset : offset + step]

    def progress(*_args):
        return time.monotonic() > deadline

    try:
        tree = parser.parse(read, progress_callback=progress)
    except ValueError as exc:  # halted by the progress callback
        parser.reset()
        raise ParseTimeout(str(exc)) from exc
    if tree is None:
        parser.reset()
        raise ParseTimeout("no tree")
    return tree


def parse(
    path: str,
    text: str,
    language: str,
    *,
    split_lines: int = 8,
    timeout_s: float | None = None,
) -> ParsedFile | None:
    """Parse ``text`` (``\\n`` line endings) as ``language``.

    ``split_lines``: nodes spanning more lines than this get their children's start lines
    recorded in ``boundaries`` (smaller nodes are never split, so walking them is wasted).
    Returns None when there is no grammar, the file is too big or parsing timed out.
    """
    loaded = _load(language)
    if loaded is None:
        return None
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_PARSE_BYTES:
        log.info("coderag: %s is %d bytes; chunked by line windows", path, len(data))
        return None
    lang, query = loaded
    if timeout_s is None:  # healthy grammars parse several MB/s; pathological input does not
        timeout_s = PARSE_TIMEOUT_S + len(data) / 1e6
    deadline = time.monotonic() + timeout_s
    try:
        tree = _tree(language, lang, data, deadline)
    except ParseTimeout:
        log.warning("coderag: parsing %s timed out; chunked by line windows", path)
        return None
    sp = languages.spec(language)
    root = tree.root_node
    import tree_sitter as ts

    if root.has_error and _wide_error(root, len(data)):
        # Query time grows with the square of an error node's width (thousands of
        # unclosed brackets); QueryCursor's progress_callback is not safe to use in
        # py-tree-sitter 0.26, so such files go to line windows up front.
        log.warning("coderag: %s has a huge syntax error; chunked by line windows", path)
        return None
    matches = ts.QueryCursor(query).matches(root)
    if sp.prose:
        return _prose(sp, _Source(data), root, matches)
    return _code(sp, path, _Source(data), root, matches, split_lines)


WIDE_ERROR_CHILDREN = 5000


def _wide_error(root, size: int) -> bool:
    """Is there an erroneous node with more than WIDE_ERROR_CHILDREN children?

    Such a node spans more bytes than it has children, so probing the erroneous path at
    every 2 KiB of the file finds it; subtrees without errors are never entered.
    """
    cursor = root.walk()
    for b in range(0, max(size, 1), 2048):
        cursor.reset(root)
        for _ in range(MAX_DEPTH):
            n = cursor.node
            if not n.has_error:
                break
            if n.child_count > WIDE_ERROR_CHILDREN:
                return True
            if cursor.goto_first_child_for_byte(b) is None:
                break
    return False


def _end_row(node) -> int:
    """Last row holding text of ``node`` (a node ending with its newline ends at column 0)."""
    r, c = node.end_point
    if c == 0 and r > node.start_point[0]:
        return r - 1
    return r


class _Source:
    """The file's bytes, read through syntax nodes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def text(self, node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def line_start(self, byte: int) -> int:
        return self.data.rfind(b"\n", 0, byte) + 1

    def starts_line(self, node) -> bool:
        """Is ``node`` the first thing on its line (only blanks before it)?"""
        b = node.start_byte
        s = self.line_start(b)
        return s == b or not self.data[s:b].strip()


def _definition_capture(caps: dict) -> tuple[object, str] | None:
    """(node, capture suffix) of a match's ``@definition.<suffix>``; None when it has none."""
    for cname, nodes in caps.items():
        if cname.startswith("definition."):
            return nodes[0], cname[11:]
    return None


# --------------------------------------------------------------------------------------
# Code: the query's matches -> a tree of Definition
#
#   _collect            matches -> definition matches (by @name node), comment spans,
#                       attribute blocks, the package statement
#   _comment_blocks     comment spans -> blocks (adjacent line comments at one column)
#   _definition_tree    definition matches in file order -> nested Definition records,
#                       each described by _definition (name, kind, symbol, header, and
#                       the attributes and doc comment right above it: _Attachments)
#   _merge_clauses      Haskell/Elixir equations of one function -> one Definition
# --------------------------------------------------------------------------------------

_WS = re.compile(rb"\s+")
_IMPL_TAIL = re.compile(r"\s*(?:\{|\bwhere\b.*|:|\bdo)\s*$")


@dataclass(slots=True)
class _DefinitionMatch:
    """One definition as the query matched it. Matches naming the same ``@name`` node are
    one definition (decorators, ``export`` and ``template<>`` wrappers match again)."""

    node: object  # the definition node: the widest of the matches
    capture: str  # suffix of ``@definition.<capture>``: the most specific of the matches
    captures: dict[str, list]  # capture name -> nodes; the first match's captures win

    def merge(self, node, capture: str, captures: dict[str, list]) -> None:
        if node.end_byte - node.start_byte > self.node.end_byte - self.node.start_byte:
            self.node = node  # the widest node wins (decorators, export wrappers)
        if capture != self.capture and self.capture in ("function", "class"):
            self.capture = capture  # the more specific capture wins (method, impl, ...)
        for k, v in captures.items():
            self.captures.setdefault(k, v)

    def first(self, name: str):
        """The first node of capture ``@name``, or None."""
        nodes = self.captures.get(name)
        return nodes[0] if nodes else None


@dataclass(slots=True)
class _CommentBlock:
    """Comment rows (0-based, inclusive) that start their lines: a block comment, a doc
    node, or a run of adjacent line comments at one column."""

    start_row: int
    end_row: int
    col: int
    is_doc: bool  # a ``@doc`` node: never merged with its neighbours
    attached: bool = False  # a definition right below owns it (else a standalone doc)

    def absorb(self, nxt: _CommentBlock) -> bool:
        """Extend this block by ``nxt`` (the next span in line order) if they are one."""
        if nxt.start_row <= self.end_row:  # nested or duplicate capture
            self.end_row = max(self.end_row, nxt.end_row)
            return True
        if (
            nxt.start_row == self.end_row + 1
            and nxt.col == self.col
            and not nxt.is_doc
            and not self.is_doc
        ):
            self.end_row = nxt.end_row
            return True
        return False


@dataclass(slots=True)
class _Found:
    """What the query found in a code file, before nesting."""

    definitions: dict[tuple[int, int], _DefinitionMatch] = field(default_factory=dict)
    # ^ keyed by the @name node's byte range
    comments: list[_CommentBlock] = field(default_factory=list)  # one per comment node
    attributes: dict[int, int] = field(default_factory=dict)  # end row -> start row
    package: str | None = None  # text of the first @package


@dataclass(slots=True)
class _Attachments:
    """What may sit right above a definition and belong to it: attribute / decorator blocks
    (end row -> start row) and comment blocks (by end row)."""

    attributes: dict[int, int]
    comments: dict[int, _CommentBlock]

    def above(
        self, row: int, col: int, docstring: tuple[int, int] | None
    ) -> tuple[int, tuple[int, int] | None]:
        """(first row, doc lines) of a definition starting its line at ``row``, ``col``.

        It extends upwards over the attribute blocks and the unattached comment blocks at
        its column that end right above it; those comments are its doc unless it has a
        docstring of its own. Each comment block taken is marked attached.
        """
        doc = docstring
        while True:
            start = self.attributes.get(row - 1)
            if start is not None:
                row = start
                continue
            block = self.comments.get(row - 1)
            if block is None or block.col != col or block.attached:
                return row, doc
            block.attached = True
            if docstring is None:  # the comment blocks above, up to the last one taken
                doc = (block.start_row + 1, doc[1] if doc is not None else block.end_row + 1)
                if doc[0] > doc[1]:
                    doc = (block.start_row + 1, block.end_row + 1)
            row = block.start_row


def _code(sp: LanguageSpec, path: str, src: _Source, root, matches, split_lines: int):
    found = _collect(src, matches)
    blocks = _comment_blocks(found.comments)
    module = module_name(path) if sp.module_prefix else None
    if found.package:
        module = re.sub(r"\s+", "", found.package)
    attachments = _Attachments(found.attributes, {b.end_row: b for b in blocks})
    top, spans = _definition_tree(sp, src, module, found.definitions, attachments)
    if sp.merge_clauses:
        _merge_clauses(top, src.data, spans)
    return ParsedFile(
        language=sp.name,
        module=module,
        definitions=top,
        docs=[(b.start_row + 1, b.end_row + 1, b.is_doc) for b in blocks if not b.attached],
        boundaries=Boundaries(root, split_lines),
        sections=[],
        has_error=root.has_error,
    )


def _collect(src: _Source, matches) -> _Found:
    found = _Found()
    for _pattern, caps in matches:
        definition = _definition_capture(caps)
        if definition is None:
            _collect_context(src, caps, found)
            continue
        names = caps.get("name")
        if not names:
            continue
        key = (names[0].start_byte, names[0].end_byte)
        node, capture = definition
        prev = found.definitions.get(key)
        if prev is None:
            found.definitions[key] = _DefinitionMatch(node, capture, caps)
        else:
            prev.merge(node, capture, caps)
    return found


def _collect_context(src: _Source, caps: dict, found: _Found) -> None:
    """The comments, docs, attributes and package statement of a match with no definition."""
    for cname, nodes in caps.items():
        if cname == "comment" or cname == "doc":
            found.comments += [
                _CommentBlock(n.start_point[0], _end_row(n), n.start_point[1], cname == "doc")
                for n in nodes
                if src.starts_line(n)
            ]
        elif cname == "attribute":
            for n in nodes:
                if src.starts_line(n):
                    r = _end_row(n)
                    found.attributes[r] = min(found.attributes.get(r, r), n.start_point[0])
        elif cname == "package" and found.package is None:
            found.package = src.text(nodes[0]).strip()


def _comment_blocks(spans: list[_CommentBlock]) -> list[_CommentBlock]:
    spans.sort(key=lambda c: (c.start_row, c.end_row, c.col, c.is_doc))
    blocks: list[_CommentBlock] = []
    for span in spans:
        if not (blocks and blocks[-1].absorb(span)):
            blocks.append(span)
    return blocks


def _definition_tree(
    sp: LanguageSpec,
    src: _Source,
    module: str | None,
    matched: dict[tuple[int, int], _DefinitionMatch],
    attachments: _Attachments,
) -> tuple[list[Definition], dict[int, tuple[int, int]]]:
    """Top-level definitions (nested ones under ``children``) and each one's node byte
    range by ``id()``. A definition inside a function is part of the function's chunk."""
    top: list[Definition] = []
    spans: dict[int, tuple[int, int]] = {}
    stack: list[tuple[int, Definition]] = []  # open definitions: (end byte, definition)
    for m in sorted(matched.values(), key=lambda m: (m.node.start_byte, -m.node.end_byte)):
        end = m.node.end_byte
        while stack and stack[-1][0] < end:
            stack.pop()
        if len(stack) >= MAX_DEPTH:
            continue
        parent = stack[-1][1] if stack else None
        if parent is not None and parent.kind in ("function", "method"):
            stack.append((end, parent))  # not a definition of its own
            continue
        d = _definition(sp, src, m, parent, module, attachments)
        (parent.children if parent is not None else top).append(d)
        stack.append((end, d))
        spans[id(d)] = (m.node.start_byte, end)
    return top, spans


def _definition(
    sp: LanguageSpec,
    src: _Source,
    m: _DefinitionMatch,
    parent: Definition | None,
    module: str | None,
    attachments: _Attachments,
) -> Definition:
    name_node = m.first("name")
    name = _name(src, name_node)
    kind = _kind(sp, m.capture, name, parent)
    if parent is not None:
        prefix, sep = parent.scope, sp.sep
    else:
        prefix, sep = module, (sp.package_sep or sp.sep)
    name, local, scope_local = _local_names(src, name_node, name, m.first("receiver"))
    header = _header(src, m, name_node)
    if m.capture == "impl":  # "impl Display for Point", "instance Show Stack", ...
        local = _IMPL_TAIL.sub("", " ".join(header.split()))[:120] or name
    node_row, col = m.node.start_point
    start_row, doc = node_row, _docstring(m)
    if src.starts_line(m.node):
        start_row, doc = attachments.above(node_row, col, doc)
    return Definition(
        kind=kind,
        capture=m.capture,
        name=name,
        symbol=_qualified(prefix, sep, local),
        scope=_qualified(prefix, sep, scope_local),
        start_line=start_row + 1,
        end_line=_end_row(m.node) + 1,
        node_line=node_row + 1,
        header=header,
        doc=doc,
    )


def _name(src: _Source, node) -> str:
    """The text of a name node, runs of whitespace collapsed."""
    raw = src.data[node.start_byte : node.end_byte]
    if b"\n" in raw or b"  " in raw or b"\t" in raw:
        raw = _WS.sub(b" ", raw)
    return raw.decode("utf-8", "replace")


def _kind(sp: LanguageSpec, capture: str, name: str, parent: Definition | None) -> str:
    kind = KIND_OF_CAPTURE.get(capture, "class")
    if kind != "function":
        return kind
    if parent is not None and parent.kind == "class" and parent.capture != "module":
        return "method"
    if sp.sep != "." and sp.sep in name:  # out-of-line C++ method: Matrix::Matrix
        return "method"
    return kind


def _local_names(src: _Source, name_node, name: str, receiver) -> tuple[str, str, str]:
    """(name, symbol part, scope part handed to children) of a definition."""
    local = scope_local = name
    if name_node.type == "member_expression":  # JS/TS `res.redirect = function () {}`
        local = scope_local = "".join(name.split())  # named by the left-hand side
        prop = name_node.child_by_field_name("property")
        if prop is not None:
            name = src.text(prop)
    if receiver is not None:  # Go: `func (s *Server) Serve()` -> (*Server).Serve
        r = src.text(receiver).strip()
        base = r.lstrip("*&").split("[", 1)[0].strip()
        local = scope_local = f"(*{base}).{name}" if r.startswith("*") else f"{base}.{name}"
    return name, local, scope_local


def _qualified(prefix: str | None, sep: str, local: str) -> str:
    return f"{prefix}{sep}{local}" if prefix else local


def _header(src: _Source, m: _DefinitionMatch, name_node) -> str:
    """The signature: from the line of the name (or of the node start) up to the body."""
    data = src.data
    start = src.line_start(max(name_node.start_byte, m.node.start_byte))
    body = _body(m, name_node)
    if body is not None and body.start_byte > start:
        end = body.start_byte
    else:
        end = data.find(b"\n", name_node.end_byte)
        if end < 0:
            end = len(data)
    return data[start:end].decode("utf-8", "replace").strip()[:400]


def _body(m: _DefinitionMatch, name_node):
    body = m.first("body")
    if body is None and name_node.parent is not None:
        body = name_node.parent.child_by_field_name("body")
    if body is None:
        body = m.node.child_by_field_name("body")
    return body


def _docstring(m: _DefinitionMatch) -> tuple[int, int] | None:
    """Lines of the ``@doc`` inside the definition (Python docstring, Elixir @moduledoc)."""
    node = m.first("doc")
    return None if node is None else (node.start_point[0] + 1, _end_row(node) + 1)


def _merge_clauses(top: list[Definition], data: bytes, spans: dict) -> None:
    """Merge runs of same-name definitions separated only by whitespace (equations)."""
    todo = [top]
    while todo:
        defs = todo.pop()
        out: list[Definition] = []
        for d in defs:
            prev = out[-1] if out else None
            if (
                prev is not None
                and prev.name == d.name
                and prev.kind == d.kind
                and d.start_line == d.node_line  # nothing attached between the clauses
                and not data[spans[id(prev)][1] : spans[id(d)][0]].strip()
            ):
                prev.end_line = max(prev.end_line, d.end_line)
                prev.children.extend(d.children)
                spans[id(prev)] = (spans[id(prev)][0], spans[id(d)][1])
                continue
            out.append(d)
        defs[:] = out
        todo.extend(d.children for d in out if d.children)


# --------------------------------------------------------------------------------------
# Prose: headings -> sections
# --------------------------------------------------------------------------------------

_ADORN = re.compile(r"^([!-/:-@\[-`{-~])\1+\s*$")


def _prose(sp: LanguageSpec, src: _Source, root, matches) -> ParsedFile:
    heads = []  # (heading node, title node)
    for _pattern, caps in matches:
        definition = _definition_capture(caps)
        if definition is not None:
            names = caps.get("name")
            heads.append((definition[0], names[0] if names else definition[0]))
    heads.sort(key=lambda h: h[0].start_byte)
    sections: list[Section] = []
    rst_levels: dict[tuple[str, bool], int] = {}
    last_end = -1
    for node, title_node in heads:
        s_row = node.start_point[0]
        e_row = _end_row(node)
        if s_row <= last_end:
            continue
        last_end = e_row
        raw = src.text(node)
        title = " ".join(src.text(title_node).split())
        if sp.name == "markdown":
            level, title = _markdown_heading(raw, title)
        else:
            level, title = _rst_heading(raw, title, rst_levels)
        sections.append(Section(level, title or "(untitled)", s_row + 1, e_row + 1))
    return ParsedFile(
        language=sp.name,
        module=None,
        definitions=[],
        docs=[],
        boundaries={},
        sections=sections,
        has_error=root.has_error,
    )


def _markdown_heading(raw: str, title: str) -> tuple[int, str]:
    """(level, title): ATX ``## Title`` or setext (a ``===`` / ``---`` underline)."""
    stripped = raw.lstrip()
    if stripped.startswith("#"):
        level = len(stripped) - len(stripped.lstrip("#"))
        return level, title.strip().rstrip("#").strip() or title
    under = raw.rstrip().rsplit("\n", 1)[-1].strip()
    return (1 if under.startswith("=") else 2), title


def _rst_heading(raw: str, title: str, levels: dict[tuple[str, bool], int]) -> tuple[int, str]:
    """(level, title) of a reStructuredText title. Levels follow the order in which each
    adornment style (underline character, over-lined or not) first appears in the file."""
    lines = raw.rstrip("\n").split("\n")
    over = bool(_ADORN.match(lines[0])) and len(lines) >= 3
    char = lines[-1].strip()[:1] or "="
    level = levels.setdefault((char, over), len(levels) + 1)
    body = [ln for ln in lines if not _ADORN.match(ln)]
    if body:
        title = " ".join(" ".join(body).split())
    return level, title
