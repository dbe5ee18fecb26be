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
        return _prose(sp, data, root, matches)
    return _code(sp, path, data, root, matches, split_lines)


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


def _dec(data: bytes, a: int, b: int) -> str:
    return data[a:b].decode("utf-8", "replace")


_WS = re.compile(rb"\s+")
_IMPL_TAIL = re.compile(r"\s*(?:\{|\bwhere\b.*|:|\bdo)\s*$")


def _code(sp: LanguageSpec, path: str, data: bytes, root, matches, split_lines: int):
    rfind = data.rfind

    def line_start(byte: int) -> int:
        return rfind(b"\n", 0, byte) + 1

    def starts_line(node) -> bool:
        b = node.start_byte
        s = rfind(b"\n", 0, b) + 1
        return s == b or not data[s:b].strip()

    # ---- collect matches -------------------------------------------------------------
    defs: dict[tuple[int, int], list] = {}  # name node range -> [def_node, capture, caps]
    comments = []  # (start_row, end_row, start_col, is_doc)
    attrs: dict[int, int] = {}  # end_row -> start_row of attribute/decorator blocks
    package = None
    for _pattern, caps in matches:
        dnode = None
        capture = None
        for cname, nodes in caps.items():
            if cname.startswith("definition."):
                dnode = nodes[0]
                capture = cname[11:]
                break
        if dnode is None:
            for cname, nodes in caps.items():
                if cname == "comment" or cname == "doc":
                    for n in nodes:
                        if starts_line(n):
                            comments.append(
                                (n.start_point[0], _end_row(n), n.start_point[1], cname == "doc")
                            )
                elif cname == "attribute":
                    for n in nodes:
                        if starts_line(n):
                            r = _end_row(n)
                            attrs[r] = min(attrs.get(r, r), n.start_point[0])
                elif cname == "package" and package is None:
                    n = nodes[0]
                    package = _dec(data, n.start_byte, n.end_byte).strip()
            continue
        names = caps.get("name")
        if not names:
            continue
        nn = names[0]
        key = (nn.start_byte, nn.end_byte)
        prev = defs.get(key)
        if prev is None:
            defs[key] = [dnode, capture, caps]
        else:
            pnode = prev[0]
            if dnode.end_byte - dnode.start_byte > pnode.end_byte - pnode.start_byte:
                prev[0] = dnode  # the widest node wins (decorators, export wrappers)
            if capture != prev[1] and prev[1] in ("function", "class"):
                prev[1] = capture  # the more specific capture wins (method, impl, ...)
            for k, v in caps.items():
                prev[2].setdefault(k, v)

    # ---- comment blocks: merge adjacent line comments at the same column ---------------
    comments.sort()
    blocks = []  # [start_row, end_row, col, is_doc, attached]
    for s, e, col, is_doc in comments:
        if blocks:
            b = blocks[-1]
            if s <= b[1]:  # nested/duplicate capture
                if e > b[1]:
                    b[1] = e
                continue
            if s == b[1] + 1 and col == b[2] and not is_doc and not b[3]:
                b[1] = e
                continue
        blocks.append([s, e, col, is_doc, False])
    block_by_end = {b[1]: b for b in blocks}

    # ---- build the definition tree -----------------------------------------------------
    items = sorted(defs.values(), key=lambda d: (d[0].start_byte, -d[0].end_byte))
    module = module_name(path) if sp.module_prefix else None
    if package:
        module = re.sub(r"\s+", "", package)
    top: list[Definition] = []
    stack: list[tuple[int, Definition]] = []  # (end_byte, def)
    spans: dict[int, tuple[int, int]] = {}  # id(def) -> node byte range
    for dnode, capture, caps in items:
        kind = KIND_OF_CAPTURE.get(capture, "class")
        sb, eb = dnode.start_byte, dnode.end_byte
        while stack and stack[-1][0] < eb:
            stack.pop()
        if len(stack) >= MAX_DEPTH:
            continue
        parent = stack[-1][1] if stack else None
        if parent is not None and parent.kind in ("function", "method"):
            # inside a function: part of its chunk, not a definition of its own
            stack.append((eb, parent))
            continue
        name_node = caps["name"][0]
        raw_name = data[name_node.start_byte : name_node.end_byte]
        if b"\n" in raw_name or b"  " in raw_name or b"\t" in raw_name:
            raw_name = _WS.sub(b" ", raw_name)
        name = raw_name.decode("utf-8", "replace")
        if kind == "function":
            if parent is not None and parent.kind == "class" and parent.capture != "module":
                kind = "method"
            elif sp.sep != "." and sp.sep in name:  # out-of-line C++ method: Matrix::Matrix
                kind = "method"
        if parent is not None:
            prefix, sep = parent.scope, sp.sep
        else:
            prefix, sep = module, (sp.package_sep or sp.sep)
        scope_name = name
        symbol_local = name
        if name_node.type == "member_expression":  # JS/TS `res.redirect = function () {}`
            symbol_local = scope_name = "".join(name.split())  # named by the left-hand side
            prop = name_node.child_by_field_name("property")
            if prop is not None:
                name = _dec(data, prop.start_byte, prop.end_byte)
        recv = caps.get("receiver")
        if recv:
            r = _dec(data, recv[0].start_byte, recv[0].end_byte).strip()
            base = r.lstrip("*&").split("[", 1)[0].strip()
            if r.startswith("*"):
                symbol_local = f"(*{base}).{name}"
            else:
                symbol_local = f"{base}.{name}"
            scope_name = symbol_local
        if prefix:
            symbol = f"{prefix}{sep}{symbol_local}"
            scope = f"{prefix}{sep}{scope_name}"
        else:
            symbol = symbol_local
            scope = scope_name
        start_point = dnode.start_point
        start_row = node_row = start_point[0]
        end_row = _end_row(dnode)
        # header: from the line of the name (or the node start) up to the body
        body = caps.get("body")
        body_node = body[0] if body else None
        if body_node is None:
            body_node = name_node.parent.child_by_field_name("body") if name_node.parent else None
            if body_node is None:
                body_node = dnode.child_by_field_name("body")
        hs = line_start(max(name_node.start_byte, sb))
        if body_node is not None and body_node.start_byte > hs:
            he = body_node.start_byte
        else:
            he = data.find(b"\n", name_node.end_byte)
            if he < 0:
                he = len(data)
        header = data[hs:he].decode("utf-8", "replace").strip()
        if len(header) > 400:
            header = header[:400]
        if capture == "impl":  # "impl Display for Point", "instance Show Stack", ...
            symbol_local = _IMPL_TAIL.sub("", " ".join(header.split()))[:120] or name
            symbol = f"{prefix}{sep}{symbol_local}" if prefix else symbol_local
        # docstring inside the definition
        doc = None
        dcap = caps.get("doc")
        if dcap:
            dn = dcap[0]
            doc = (dn.start_point[0] + 1, _end_row(dn) + 1)
        # attached doc comments / attributes right above the definition
        if starts_line(dnode):
            col = start_point[1]
            s = start_row
            while True:
                a = attrs.get(s - 1)
                if a is not None:
                    s = a
                    continue
                b = block_by_end.get(s - 1)
                if b is not None and b[2] == col and not b[4]:
                    b[4] = True
                    if doc is None or dcap is None:
                        doc = (b[0] + 1, doc[1] if doc else b[1] + 1)
                        if doc[0] > doc[1]:
                            doc = (b[0] + 1, b[1] + 1)
                    s = b[0]
                    continue
                break
            start_row = s
        d = Definition(
            kind=kind,
            capture=capture,
            name=name,
            symbol=symbol,
            scope=scope,
            start_line=start_row + 1,
            end_line=end_row + 1,
            node_line=node_row + 1,
            header=header,
            doc=doc,
        )
        if parent is not None:
            parent.children.append(d)
        else:
            top.append(d)
        stack.append((eb, d))
        spans[id(d)] = (sb, eb)

    if sp.merge_clauses:
        _merge_clauses(top, data, spans)

    docs = [(b[0] + 1, b[1] + 1, b[3]) for b in blocks if not b[4]]

    return ParsedFile(
        language=sp.name,
        module=module,
        definitions=top,
        docs=docs,
        boundaries=Boundaries(root, split_lines),
        sections=[],
        has_error=root.has_error,
    )


_ADORN = re.compile(r"^([!-/:-@\[-`{-~])\1+\s*$")


def _prose(sp: LanguageSpec, data: bytes, root, matches) -> ParsedFile:
    heads = []
    for _pattern, caps in matches:
        for cname, nodes in caps.items():
            if cname.startswith("definition."):
                n = nodes[0]
                names = caps.get("name")
                heads.append((n, names[0] if names else n))
                break
    heads.sort(key=lambda h: h[0].start_byte)
    sections: list[Section] = []
    rst_levels: dict[tuple[str, bool], int] = {}
    last_end = -1
    for n, nm in heads:
        s_row = n.start_point[0]
        e_row = n.end_point[0]
        if n.end_point[1] == 0 and e_row > s_row:
            e_row -= 1
        if s_row <= last_end:
            continue
        last_end = e_row
        raw = _dec(data, n.start_byte, n.end_byte)
        title = " ".join(_dec(data, nm.start_byte, nm.end_byte).split())
        if sp.name == "markdown":
            stripped = raw.lstrip()
            if stripped.startswith("#"):
                level = len(stripped) - len(stripped.lstrip("#"))
                title = title.strip().rstrip("#").strip() or title
            else:
                under = raw.rstrip().rsplit("\n", 1)[-1].strip()
                level = 1 if under.startswith("=") else 2
                title = " ".join(t for t in title.split("\n"))
        else:
            lines = raw.rstrip("\n").split("\n")
            over = bool(lines) and bool(_ADORN.match(lines[0])) and len(lines) >= 3
            under_line = lines[-1] if lines else ""
            ch = under_line.strip()[:1] or "="
            key = (ch, over)
            level = rst_levels.setdefault(key, len(rst_levels) + 1)
            body = [ln for ln in lines if not _ADORN.match(ln)]
            if body:
                title = " ".join(" ".join(body).split())
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
