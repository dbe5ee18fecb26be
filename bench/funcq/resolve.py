"""Map funcq labels (a qualified symbol or a heading path) to line spans in the fetched corpus.

The query file names its targets, never their lines, so that a label survives a re-layout
and cannot drift from the code. The spans are worked out here, at run time, from the
fetched files:

* a ``symbol`` is looked up among the file's definitions as tree-sitter sees them
  (``coderag.chunking.parse.parse``: the whole definition, attached doc comments and decorators
  included, whatever the chunker later does with it). A label matches a definition when
  it is the definition's qualified symbol or a trailing part of it (``Specifier.contains``
  matches ``packaging.src.packaging.specifiers.Specifier.contains``); when several
  definitions carry the symbol (a Rust type's ``fmt`` in two trait impls, TypeScript
  overload signatures), each of them is a target;
* in a Markdown/RST file the symbol is a heading path (``"Markers > Usage"``, the form
  coderag gives doc chunks), looked up among the file's sections; its span runs from the
  heading to the line before the next heading of the same or a higher level.

A definition whose symbol equals the label exactly wins over ones it is only a suffix of
(Go's function ``URLParam`` vs the method ``(*Context).URLParam``).

``python bench/funcq/resolve.py ROOT [PATH...]`` lists every definition and section with
its span (what labels were written from).
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


DOC_SUFFIXES = (".md", ".rst", ".markdown")


class LabelError(ValueError):
    """A label that names nothing, or a file that is not there."""


def symbol_matches(defined: str, label: str) -> bool:
    """Is ``label`` the qualified symbol ``defined`` or a trailing part of it?"""
    return defined == label or defined.endswith(("." + label, "::" + label, ")." + label))


@cache
def _parsed(root: str, rel: str):
    from coderag.chunking import detect_language
    from coderag.chunking.parse import parse

    f = Path(root) / rel
    if not f.is_file():
        raise LabelError(f"{rel}: no such file in the corpus")
    text = f.read_text("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    lang = detect_language(rel, text[:256])
    parsed = parse(rel, text, lang) if lang else None
    if parsed is None:
        raise LabelError(f"{rel}: not parsed (language {lang!r})")
    return parsed, text.count("\n") + (0 if text.endswith("\n") else 1)


def definitions(root: str | Path, rel: str) -> list[tuple[str, str, int, int]]:
    """(symbol, kind, start_line, end_line) of every definition in the file, nested ones too."""
    parsed, _ = _parsed(str(root), rel)
    out = []
    todo = list(parsed.definitions)
    while todo:
        d = todo.pop(0)
        out.append((d.symbol, d.kind, d.start_line, d.end_line))
        todo[0:0] = d.children
    return out


def sections(root: str | Path, rel: str) -> list[tuple[str, int, int]]:
    """(heading path, start_line, end_line) of every Markdown/RST section in the file."""
    parsed, n_lines = _parsed(str(root), rel)
    secs = parsed.sections
    out = []
    stack: list[tuple[int, str]] = []
    for i, s in enumerate(secs):
        while stack and stack[-1][0] >= s.level:
            stack.pop()
        stack.append((s.level, s.title))
        end = next((t.start_line - 1 for t in secs[i + 1 :] if t.level <= s.level), n_lines)
        out.append((" > ".join(t for _, t in stack), s.start_line, end))
    return out


def targets(root: str | Path, item: dict) -> list[tuple[str, int, int]]:
    """(symbol or heading path, start_line, end_line) of the definitions or sections that one
    relevant item of a funcq query names (1-based, inclusive)."""
    rel, label = item["path"], item.get("symbol")
    if not label:
        raise LabelError(f"{rel}: an item needs a symbol (a heading path for a doc file)")
    if rel.endswith(DOC_SUFFIXES):
        found = [(h, a, b) for h, a, b in sections(root, rel) if h == label]
        what = f"heading {label!r}"
    else:
        defs = definitions(root, rel)
        found = [(s, a, b) for s, _k, a, b in defs if s == label] or [
            (s, a, b) for s, _k, a, b in defs if symbol_matches(s, label)
        ]
        what = f"symbol {label!r}"
    if not found:
        raise LabelError(f"{rel}: no {what}")
    return sorted(set(found), key=lambda t: (t[1], t[2], t[0]))


def resolve(root: str | Path, item: dict) -> list[tuple[int, int]]:
    """The line spans of one relevant item (see :func:`targets`)."""
    return sorted({(a, b) for _s, a, b in targets(root, item)})


def resolve_all(root: str | Path, queries: list[dict]) -> list[dict]:
    """Copies of ``queries`` whose relevant items carry ``spans`` and ``defs`` (the matched
    definitions' own symbols); every label is checked, all failures reported together."""
    out, errors = [], []
    for q in queries:
        rel = []
        for item in q["relevant"]:
            try:
                found = targets(root, item)
            except LabelError as e:
                errors.append(f"{q['query'][:60]!r}: {e}")
                continue
            spans = sorted({(a, b) for _s, a, b in found})
            rel.append({**item, "spans": spans, "defs": sorted({s for s, _a, _b in found})})
        out.append({**q, "relevant": rel})
    if errors:
        raise LabelError("labels that do not resolve:\n  " + "\n  ".join(errors))
    return out


def _dump(root: Path, paths: list[str]) -> None:
    from coderag.chunking import detect_language

    if not paths:
        paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    for rel in paths:
        if ".coderag" in rel or not detect_language(rel):
            continue
        try:
            defs = definitions(root, rel)
            secs = sections(root, rel)
        except LabelError as e:
            print(f"# {e}")
            continue
        print(f"== {rel}")
        for s, k, a, b in defs:
            print(f"  {a:5}-{b:<5} {k:8} {s}")
        for h, a, b in secs:
            print(f"  {a:5}-{b:<5} section  {h}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: resolve.py CORPUS_ROOT [PATH...]")
    _dump(Path(sys.argv[1]), sys.argv[2:])
