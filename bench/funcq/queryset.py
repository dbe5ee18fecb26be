"""The funcq query file: loading, the deterministic tune/heldout split, integrity checks.

Each line of ``queries.jsonl``::

    {"query": "...", "kind": "nl" | "doc" | "code", "lang": "python",
     "relevant": [{"path": "packaging/src/packaging/utils.py", "symbol": "utils.canonicalize_name"}],
     "split": "tune" | "heldout"}

``kind`` is coderag's vocabulary for the three query classes: ``nl`` (a behaviour question),
``doc`` (the "docs" class: answered by a Markdown/RST section, the symbol is its heading
path) and ``code`` (the "code2code" class: a snippet whose answer is the definition).

The split rule (``assign_splits``): queries are grouped by (lang, kind); the groups are
taken in sorted order, numbered g = 0, 1, ...; inside a group the queries are ordered by
the sha256 of their text, and the i-th one goes to ``tune`` when (i + g) is even, else to
``heldout``. Each (lang, kind) cell is therefore split half and half (an odd cell gives its
extra query to alternating sides), and the split of a query never depends on line order.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERIES = HERE / "queries.jsonl"
KINDS = ("nl", "doc", "code")
CLASS_NAMES = {"nl": "nl", "doc": "docs", "code": "code2code"}
SPLITS = ("tune", "heldout")
FIELDS = {"query", "kind", "lang", "relevant", "split"}
DOC_SUFFIXES = (".md", ".rst", ".markdown")


def load(path: str | Path = QUERIES) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assign_splits(queries: list[dict]) -> dict[str, str]:
    """query text -> split name, by the rule in the module docstring."""
    groups: dict[tuple[str, str], list[str]] = {}
    for q in queries:
        groups.setdefault((q["lang"], q["kind"]), []).append(q["query"])
    out = {}
    for g, key in enumerate(sorted(groups)):
        for i, text in enumerate(sorted(groups[key], key=_digest)):
            out[text] = SPLITS[(i + g) % 2]
    return out


def last_name(symbol: str) -> str:
    """The identifier a label ends with (``Specifier._compare_equal`` -> ``_compare_equal``,
    ``(*Mux).Mount`` -> ``Mount``, ``Word<'a>::break_apart`` -> ``break_apart``); for a
    heading path, its last heading."""
    if " > " in symbol or not re.search(r"[.:()]", symbol):
        return symbol.split(" > ")[-1]
    return re.split(r"::|\.|\)", symbol)[-1]


def leaks(query: dict) -> list[str]:
    """Target names an nl/doc question pastes verbatim (it must describe behaviour instead):
    an identifier as a whole word, case-sensitive; a heading title case-insensitively."""
    if query["kind"] == "code":
        return []
    out = []
    for r in query["relevant"]:
        name = last_name(r["symbol"])
        if r["path"].endswith(DOC_SUFFIXES):
            if name.lower() in query["query"].lower():
                out.append(name)
        elif re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", query["query"]):
            out.append(name)
    return out


def problems(queries: list[dict], languages: dict[str, str]) -> list[str]:
    """Everything wrong with the query file (empty when it is sound). ``languages`` maps a
    corpus folder to its language."""
    out = []
    seen = set()
    want_split = assign_splits(queries) if all("lang" in q and "kind" in q for q in queries) else {}
    for n, q in enumerate(queries, 1):
        where = f"line {n} ({q.get('query', '')[:50]!r})"
        if set(q) != FIELDS:
            out.append(f"{where}: fields {sorted(q)}, want {sorted(FIELDS)}")
            continue
        if not q["query"].strip():
            out.append(f"{where}: empty query")
        if q["query"] in seen:
            out.append(f"{where}: duplicate query")
        seen.add(q["query"])
        if q["kind"] not in KINDS:
            out.append(f"{where}: kind {q['kind']!r}")
        if q["split"] != want_split.get(q["query"]):
            out.append(
                f"{where}: split {q['split']!r}, the rule says {want_split.get(q['query'])!r}"
            )
        if not q["relevant"]:
            out.append(f"{where}: no relevant items")
        for r in q["relevant"]:
            if set(r) != {"path", "symbol"} or not all(
                isinstance(v, str) and v for v in r.values()
            ):
                out.append(f"{where}: item {r} needs exactly a path and a symbol")
                continue
            if languages.get(r["path"].split("/")[0]) != q["lang"]:
                out.append(f"{where}: {r['path']} is not in a {q['lang']} package")
            is_doc = r["path"].endswith(DOC_SUFFIXES)
            if is_doc != (q["kind"] == "doc"):
                out.append(f"{where}: a {q['kind']} query labelled with {r['path']}")
            if re.search(r"\b\d+\b", r["symbol"]) and not is_doc:
                out.append(f"{where}: symbol {r['symbol']!r} looks like a line number")
        for name in leaks(q):
            out.append(f"{where}: the question pastes the target's name {name!r}")
    return out
