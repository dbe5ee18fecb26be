"""Size policy: structural split-then-merge (cAST), Chunk records and embedding text.

Input: a decoded file (``\\n`` line endings) and a :class:`TokenCounter` whose
``max_tokens`` is the embedder's input limit. Output: :class:`Chunk` records whose ``text``
is exactly lines ``start_line..end_line`` of the file and whose ``embed_text`` (a short
context header + the text) never exceeds ``counter.max_tokens`` tokens.

Policy
* Every function, method and class gets its own chunk however small. Functions nested in a
  function stay inside it. A class chunk holds the class header, docstring and fields up to
  its first member; the member signatures are appended to its embed text; the members are
  chunks of their own. Namespaces only prefix symbols.
* A definition over budget is split at child-statement boundaries (the shallowest syntax
  boundaries first), each part's embed text carrying the enclosing signatures.
* Lines between definitions (imports, constants, top-level calls) are merged into ``code``
  chunks up to the budget; a lone closing line (``}``, ``end``) joins the chunk before it.
* Doc strings / doc comments attached to a definition are also ``doc`` chunks carrying the
  definition's symbol; standalone comment blocks of 3+ lines are ``doc`` chunks.
* Markdown / reStructuredText: one ``doc`` chunk per section, symbol = heading path.
  Plain text and files without a grammar: paragraph-aware line windows.
* Last resort: a single line over budget is cut by characters (same line numbers).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path, PurePosixPath
from typing import Protocol

from . import languages, parse

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Chunk:
    path: str  # POSIX, relative to the repo root
    language: str  # "python", "markdown", "text", ...
    kind: str  # "function" | "method" | "class" | "code" | "doc"
    symbol: str | None  # qualified name; doc chunks carry their symbol or heading path
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    text: str  # the original lines start_line..end_line
    embed_text: str  # short context header + text: what the embedder sees


class TokenCounter(Protocol):
    max_tokens: int

    def count(self, text: str) -> int: ...


PROSE_EXTENSIONS = frozenset(
    {"", ".txt", ".text", ".adoc", ".asciidoc", ".org", ".rdoc", ".pod", ".tex", ".textile"}
)
MIN_COMMENT_BLOCK = 3  # standalone comment blocks of at least this many lines are doc chunks
_CLOSER = re.compile(
    r"[\s)\]};,.>]*(?:end|fi|done|esac|endif|endfunction)?[\s)\]};,.>]*"
    r"(?:(?://|#|--|/\*).*)?"
)  # a line that only closes blocks, possibly with a trailing comment
_BLANK_DEPTH = 60  # a line after a blank line: an acceptable, not preferred, cut


def chunk_file(path: str, text: str, language: str | None, counter: TokenCounter) -> list[Chunk]:
    """Chunk one file. ``language`` from :func:`coderag.chunking.detect_language` (None = text)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not any(ln.strip() for ln in lines):
        return []
    c = _Chunker(path, language or "text", lines, counter)
    sp = languages.spec(language) if language else None
    if sp is None:
        ext = PurePosixPath(path).suffix.lower()
        c.windows("doc" if (language is None and ext in PROSE_EXTENSIONS) else "code")
        return c.result()
    try:
        parsed = parse.parse(path, text, language, split_lines=c.split_lines)
        if parsed is not None:
            if sp.prose:
                c.prose(parsed)
            else:
                c.code(parsed)
            return c.result()
    except Exception as exc:  # noqa: BLE001 - never lose a file to a parser/chunker bug
        log.warning("coderag: chunking %s failed (%r); chunked by line windows", path, exc)
        c = _Chunker(path, language, lines, counter)
    c.windows("doc" if sp.prose else "code")
    return c.result()


@dataclass(slots=True)
class _Record:
    """A chunk as emitted, before :meth:`_Chunker.result` drops repeats and sorts."""

    kind: str
    symbol: str | None
    start: int
    end: int
    header: str  # the context header its embed text starts with
    text: str  # lines start..end, or a slice of line start when ``cut``
    extra: str | None = None  # appended to the embed text: a class's member signatures
    cut: bool = False  # a piece of a line over budget on its own


@dataclass(slots=True)
class _Scope:
    """Lines lo..hi of a scope (the file, or a class body after its header chunk) and the
    definitions that own chunks in it."""

    owner: parse.Definition | None  # None = the file
    lo: int
    hi: int
    members: list[parse.Definition]
    context: list[str]  # signatures of the enclosing definitions


class _PartSizes:
    """Where a part of lines lo..hi should end for its embed text to fit: prefix sums of the
    line lengths and a tokens-per-character ratio, raised by :meth:`learn` when a part
    comes out over budget (it stays raised for the next parts of the same region)."""

    __slots__ = ("lo", "pref", "ratio", "header_tokens", "avail")

    def __init__(self, chunker: _Chunker, lo: int, hi: int, header: str):
        lines = chunker.lines
        self.lo = lo
        self.pref = list(accumulate(len(lines[i]) + 1 for i in range(lo - 1, hi)))
        self.ratio = chunker.ratio
        self.header_tokens = int(len(header) * self.ratio) + 1
        self.avail = max(1, chunker.budget - chunker.base - self.header_tokens)

    def end(self, s: int) -> int:
        """Estimated last line of a part starting at line s (< s: not even line s fits)."""
        lo, pref = self.lo, self.pref
        before = pref[s - lo - 1] if s > lo else 0
        return lo + bisect_right(pref, before + self.avail * 0.92 / self.ratio, s - lo) - 1

    def learn(self, tokens: int, ps: int, pe: int) -> None:
        """Lines ps..pe came to ``tokens`` (header included, special tokens not)."""
        lo, pref = self.lo, self.pref
        chars = pref[pe - lo] - (pref[ps - lo - 1] if ps > lo else 0)
        self.ratio = max(self.ratio, (tokens - self.header_tokens) / max(1, chars))


class _Chunker:
    def __init__(self, path: str, language: str, lines: list[str], counter: TokenCounter):
        self.path = path
        self.language = language
        self.lines = lines
        self.n = len(lines)
        self.counter = counter
        self.budget = max(8, int(counter.max_tokens))
        self.base = counter.count("")  # special tokens the counter adds to every text
        self._tok_cache: dict[str, int] = {}
        self._seen_chars = 0  # exact counts so far, for the tokens-per-character estimate
        self._seen_tokens = 0
        self.split_lines = max(3, self.budget // 32)
        self.records: list[_Record] = []
        self.boundaries: dict[int, int] = {}
        self.isblank = [not ln.strip() for ln in lines]

    # ---- token helpers ------------------------------------------------------------------

    @property
    def ratio(self) -> float:
        """Tokens per character, from this file's exact counts (0.5 until there are some)."""
        if self._seen_chars < 400:
            return 0.5
        return max(0.02, self._seen_tokens / self._seen_chars)

    def count(self, s: str) -> int:
        t = self.counter.count(s)
        self._seen_chars += len(s)
        self._seen_tokens += t - self.base
        return t

    def tok(self, s: str) -> int:
        """Tokens of a short string (headers, signatures), without special tokens; cached."""
        v = self._tok_cache.get(s)
        if v is None:
            v = self._tok_cache[s] = self.count(s) - self.base
        return v

    def measure(self, s: str) -> tuple[bool, int]:
        """(fits the budget, tokens) for an embed text, counting only when it matters.

        Accepts without counting when an upper bound fits (a token covers at least one
        byte, plus a word-boundary marker at most), rejects without counting when the
        estimate is well over the budget (a split then verifies every part exactly);
        otherwise counts.
        """
        n = len(s)
        budget = self.budget - self.base
        if n <= budget:  # cheap cases of the upper bound first
            nb = n if s.isascii() else len(s.encode("utf-8"))
            if 2 * nb <= budget:
                return True, 2 * nb + self.base
            ub = nb + len(s.split())
            if ub <= budget:
                return True, ub + self.base
        est = int(n * self.ratio) + self.base
        if est > 1.5 * self.budget:
            return False, est
        t = self.count(s)
        return t <= self.budget, t

    def blank(self, i: int) -> bool:
        return self.isblank[i - 1]

    def span_text(self, s: int, e: int) -> str:
        return "\n".join(self.lines[s - 1 : e])

    def make_header(self, symbol: str | None, context: list[str]) -> str:
        """Context header: ``path (language) symbol`` + enclosing signatures.

        Capped at about a third of the budget by estimate (outermost signatures go first):
        the embed text as a whole is checked exactly, so no count is needed here.
        """
        head = f"{self.path} ({self.language})"
        if symbol:
            head = f"{head} {symbol}"
        cap = max(4, self.budget // 3) / self.ratio  # in characters
        ctx = [c for c in context if c]
        while True:
            h = "\n".join([head, *ctx])
            if len(h) <= cap:
                break
            if not ctx:
                h = head[: max(8, int(cap))]
                break
            ctx.pop(0)
        if not self.measure(h)[0]:  # the estimate was far off: keep room for the text
            h = h[: max(8, int(self.budget * 0.3))]
        return h

    def embed(self, header: str, text: str) -> str:
        return f"{header}\n{text}" if header else text

    def fits(self, header: str, text: str) -> bool:
        return self.measure(self.embed(header, text))[0]

    # ---- emitting -----------------------------------------------------------------------

    def add(self, kind, symbol, s, e, header, text, cut=False):
        self.records.append(_Record(kind, symbol, s, e, header, text, cut=cut))

    def trim(self, s: int, e: int) -> tuple[int, int]:
        blank = self.isblank
        while s <= e and blank[s - 1]:
            s += 1
        while e >= s and blank[e - 1]:
            e -= 1
        return s, e

    def emit(
        self,
        kind: str,
        symbol: str | None,
        s: int,
        e: int,
        context: list[str],
        split_context: list[str] | None = None,
    ):
        """Emit lines s..e (trimmed) as one chunk, or split them to fit the budget.

        ``split_context``: the enclosing signatures the parts of a split carry (a split
        function's parts also carry its own signature).
        """
        s, e = self.trim(s, e)
        if s > e:
            return
        header = self.make_header(symbol, context)
        text = self.span_text(s, e)
        if self.measure(self.embed(header, text))[0]:
            self.add(kind, symbol, s, e, header, text)
            return
        if split_context is not None:
            header = self.make_header(symbol, split_context)
        for ps, pe, ptext in self.pack(s, e, header):
            if ptext is None:
                self.add(kind, symbol, ps, pe, header, self.span_text(ps, pe))
            else:  # a piece of an overlong line
                self.add(kind, symbol, ps, pe, header, ptext, cut=True)

    def pack(self, lo: int, hi: int, header: str):
        """Split lines lo..hi into parts whose embed text fits, cutting at boundaries.

        Part sizes come from a tokens-per-character estimate (no count per line); every
        part is verified with a real count and, when the estimate was optimistic, shrunk
        in proportion to the overshoot.
        """
        if self._seen_chars < 400:  # no exact count yet in this file: sample the region
            self.count("\n".join(self.lines[lo - 1 : hi])[:2000])
        sizes = _PartSizes(self, lo, hi, header)
        bounds = self.boundaries
        if isinstance(bounds, parse.Boundaries):
            bounds = bounds.mapping()
        out = []
        s = lo
        while s <= hi:
            while s <= hi and self.isblank[s - 1]:
                s += 1
            if s > hi:
                break
            e = sizes.end(s)
            if e < s and not self.fits(header, self.lines[s - 1]):
                out.extend(self.cut_line(s, header))  # line s alone is over budget
                s += 1
                continue
            cut, ps, pe, ok = self.part(s, max(e, s), hi, header, bounds, sizes)
            if not ok and ps == pe:
                out.extend(self.cut_line(ps, header))
            elif ps <= pe:
                out.append((ps, pe, None))
            s = cut
        return out

    def part(self, s: int, e: int, hi: int, header: str, bounds, sizes: _PartSizes):
        """The part starting at line s, cut at the best boundary up to about e and shrunk
        while its embed text is over budget: (next part's start, start, end, fits)."""
        while True:
            cut = hi + 1 if e >= hi else self.best_cut(s, e, bounds)
            ps, pe = self.trim(s, cut - 1)
            ok, t = self.measure(self.embed(header, self.span_text(ps, pe)))
            if ok or pe <= ps:
                return cut, ps, pe, ok
            # the estimate was optimistic: learn the local ratio, shrink, choose again
            sizes.learn(t - self.base, ps, pe)
            e = max(s, min(sizes.end(s), pe - 1))

    def best_cut(self, s: int, e: int, bounds: dict[int, int]) -> int:
        """Start line of the next part, in (s, e+1]: shallowest boundary, late rather than early."""
        lo = s + 1 + (e - s) // 4
        best = None
        best_d = 1 << 30
        get = bounds.get
        for c in range(e + 1, lo - 1, -1):
            d = get(c)
            if d is None:
                if c > 1 and self.blank(c - 1) and not self.blank(c):
                    d = _BLANK_DEPTH
                else:
                    continue
            if d < best_d:
                best_d = d
                best = c
        return best if best is not None else e + 1

    def cut_line(self, i: int, header: str):
        """A line over budget on its own: consecutive character slices that fit."""
        line = self.lines[i - 1]
        avail = max(1, self.budget - self.base - int(len(header) * self.ratio) - 1)
        step = max(1, int(avail / self.ratio * 0.9))
        pos = 0
        out = []
        while pos < len(line):
            size = step
            while True:
                piece = line[pos : pos + size]
                ok, t = self.measure(self.embed(header, piece))
                if ok or size <= 1:
                    break
                size = max(1, min(int(size * 0.7), int(size * self.budget / max(1, t) * 0.95)))
            if piece.strip():
                out.append((i, i, piece))
            pos += size
        return out

    # ---- whole-file strategies ----------------------------------------------------------

    def windows(self, kind: str):
        """Paragraph-aware line windows (plain text, no grammar, parse timed out)."""
        self.windows_bounds()
        self.emit(kind, None, 1, self.n, [])

    def prose(self, parsed: parse.ParsedFile):
        self.windows_bounds()
        secs = parsed.sections
        if not secs:
            self.emit("doc", None, 1, self.n, [])
            return
        if secs[0].start_line > 1:
            self.emit("doc", None, 1, secs[0].start_line - 1, [])
        path: list[tuple[int, str]] = []
        pending = None  # start line of a heading-only section merged forward
        for k, sec in enumerate(secs):
            while path and path[-1][0] >= sec.level:
                path.pop()
            path.append((sec.level, sec.title))
            end = secs[k + 1].start_line - 1 if k + 1 < len(secs) else self.n
            start = pending if pending is not None else sec.start_line
            body_s, _ = self.trim(sec.heading_end + 1, end)
            if body_s > end and k + 1 < len(secs):
                pending = start
                continue
            pending = None
            self.emit("doc", " > ".join(t for _, t in path), start, end, [])

    def windows_bounds(self):
        bounds = self.boundaries
        for i in range(2, self.n + 1):
            if self.blank(i - 1) and not self.blank(i):
                bounds[i] = 1

    def code(self, parsed: parse.ParsedFile):
        self.boundaries = parsed.boundaries
        docs = sorted(parsed.docs)
        todo = [_Scope(None, 1, self.n, _owned(parsed.definitions), [])]
        while todo:
            todo.extend(self.scope(todo.pop(), parsed.module, docs))

    def scope(self, scope: _Scope, module: str | None, docs) -> list[_Scope]:
        """Chunk one scope: its members and the gaps between them. Returns the scopes of
        the classes in it that have members of their own, still to chunk."""
        symbol = scope.owner.symbol if scope.owner is not None else module
        ctx = scope.context
        nested = []
        cursor = scope.lo
        for m in scope.members:
            ms = max(m.start_line, cursor)
            me = min(m.end_line, scope.hi)
            if me < ms:
                continue
            if ms > cursor:
                self.gap(cursor, ms - 1, symbol, ctx, docs)
            inner = self.member(m, ms, me, ctx)
            if inner is not None:
                nested.append(inner)
            cursor = me + 1
        if cursor <= scope.hi:
            self.gap(cursor, scope.hi, symbol, ctx, docs)
        return nested

    def member(self, m: parse.Definition, ms: int, me: int, ctx: list[str]) -> _Scope | None:
        """Chunk a definition on lines ms..me (its doc too); a class with members returns
        the scope of its body, after its header chunk."""
        if m.doc is not None:
            self.emit("doc", m.symbol, m.doc[0], m.doc[1], ctx)
        if m.kind != "class":
            self.emit(m.kind, m.symbol, ms, me, ctx, [*ctx, m.header])
            return None
        inner = _owned(m.children)
        first = next((c.start_line for c in inner if c.start_line > ms and c.end_line <= me), None)
        if first is None:
            self.emit_class(m, ms, me, ctx, [])
            return None
        self.emit_class(m, ms, first - 1, ctx, inner)
        return _Scope(m, first, me, inner, [*ctx, m.header])

    def emit_class(self, m, s, e, ctx, inner):
        n0 = len(self.records)
        self.emit("class", m.symbol, s, e, ctx)
        if not inner or len(self.records) - n0 != 1:
            return
        rec = self.records[n0]
        used = self.measure(self.embed(rec.header, rec.text))[1]
        sigs = []
        for ch in inner:
            sig = ch.header.split("\n", 1)[0].strip()
            if not sig:
                continue
            t = len(sig) + len(sig.split()) + 1  # upper bound; verified below
            if used + t > self.budget:
                break
            used += t
            sigs.append(sig)
        if sigs:
            extra = "\n".join(sigs)
            if self.measure(self.embed(rec.header, rec.text) + "\n" + extra)[0]:
                rec.extra = extra

    def gap(self, lo, hi, symbol, ctx, docs):
        """Lines between definitions: merged ``code`` (+ ``doc`` for standalone doc blocks)."""
        lo, hi = self.trim(lo, hi)
        if lo > hi:
            return
        covered = set()
        for ds, de, is_doc in docs:
            if de < lo:
                continue
            if ds > hi:
                break
            if de > hi or (not is_doc and de - ds + 1 < MIN_COMMENT_BLOCK):
                continue
            self.emit("doc", symbol, ds, de, ctx)
            covered.update(range(ds, de + 1))
        if any(i not in covered and not self.blank(i) for i in range(lo, hi + 1)):
            self.code_gap(lo, hi, symbol, ctx)

    def code_gap(self, lo, hi, symbol, ctx):
        lo, hi = self.trim(lo, hi)
        if lo > hi:
            return
        if self.records and all(
            _CLOSER.fullmatch(self.lines[i - 1]) for i in range(lo, hi + 1) if not self.blank(i)
        ):
            prev = self.records[-1]
            if not prev.cut and prev.extra is None and prev.end < lo:
                between = range(prev.end + 1, lo)
                if all(self.blank(i) for i in between):
                    text = self.span_text(prev.start, hi)
                    if self.fits(prev.header, text):
                        prev.end = hi
                        prev.text = text
                        return
        self.emit("code", symbol, lo, hi, ctx)

    def result(self) -> list[Chunk]:
        """The records as chunks, each (start, end, text) once, sorted by position.

        A docstring over budget is split into parts both as ``doc`` chunks and inside its
        split definition; parts that come out identical would be stored and embedded
        twice. The definition's part wins: its embed text carries the signatures.
        """
        out: dict[tuple[int, int, str], Chunk] = {}
        path, lang = self.path, self.language
        for r in self.records:
            key = (r.start, r.end, r.text)
            prev = out.get(key)
            if prev is not None and (r.kind == "doc" or prev.kind != "doc"):
                continue
            et = self.embed(r.header, r.text)
            if r.extra:
                et = f"{et}\n{r.extra}"
            out[key] = Chunk(path, lang, r.kind, r.symbol, r.start, r.end, r.text, et)
        return sorted(out.values(), key=lambda c: (c.start_line, -c.end_line))


def _owned(defs: list[parse.Definition]) -> list[parse.Definition]:
    """Definitions that own chunks at this level: namespaces are transparent."""
    out = []
    todo = list(reversed(defs))
    while todo:
        d = todo.pop()
        if d.kind == "namespace":
            todo.extend(reversed(d.children))
        else:
            out.append(d)
    out.sort(key=lambda d: d.start_line)
    return out


@functools.cache
def chunker_version() -> str:
    """A fingerprint of everything that decides a file's chunks: this module, ``parse``, the
    language table and every grammar query file (see ``Index.refresh``: an index written
    under another one is re-chunked, reusing the vectors of chunk texts seen before)."""
    h = hashlib.blake2b(digest_size=8)
    for module in (__file__, parse.__file__, languages.__file__):
        h.update(Path(module).read_bytes())
    for name in sorted({sp.query_name for sp in languages.LANGUAGES}):
        try:
            h.update(name.encode() + b"\0" + languages.grammar_text(name).encode())
        except OSError:
            h.update(name.encode() + b"\0missing")
    return h.hexdigest()
