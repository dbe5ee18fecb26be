"""Ranking pieces that need no model and no database: tokenisation, fusion, boosts, collapsing.

Code-aware tokenisation: an identifier such as ``parseHTTPResponse2`` or ``max_retry_count``
is indexed whole *and* as its parts (``parse http response 2``), so a query may name the
identifier exactly or describe it in words. The same expansion is applied to queries.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*|[0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_MAX_TERMS = 64

# words that say nothing about code in a question ("where is the code that ...")
_QUERY_STOP = frozenset(
    """
    a an the and or of to in on for with by from at as is are was were be been it its this that
    these those there here where which what who whom whose how why when do does did done can could
    should would will shall may might must i we you they he she me my our your their us them
    code function functions method methods class classes implementation implemented implement
    find show me logic file files defined define definition handle handles handled handling
    """.split()
)


def split_identifier(word: str) -> list[str]:
    """``getHTTPResponse_v2`` → ``['get', 'http', 'response', 'v', '2']`` (lower case)."""
    parts: list[str] = []
    for piece in re.split(r"[_$\-]+", word):
        if piece:
            parts.extend(p.lower() for p in _CAMEL.findall(piece))
    return parts


def expand(text: str) -> list[str]:
    """Every word of ``text``, each identifier followed by its parts when it has several."""
    out: list[str] = []
    for w in _WORD.findall(text):
        out.append(w)
        parts = split_identifier(w)
        if len(parts) > 1:
            out.extend(parts)
    return out


def search_text(text: str, path: str, symbol: str | None) -> str:
    """The column the full-text index is built on: path and symbol words, then the text."""
    head = expand(path.replace("/", " ").replace(".", " "))
    if symbol:
        sym = expand(symbol)
        head.extend(sym + sym)  # a chunk is about its own name: count it more than a mention
    return " ".join(head) + "\n" + " ".join(expand(text))


def query_terms(query: str) -> str:
    """A safe full-text query: plain words only (no operators, quotes or field syntax)."""
    terms: list[str] = []
    for w in expand(query):
        lw = w.lower()
        if lw in _QUERY_STOP or len(lw) < 2 and not lw.isdigit():
            continue
        terms.append(lw)
    seen = dict.fromkeys(terms)
    return " ".join(list(seen)[:_MAX_TERMS])


_CODE_HINTS = re.compile(
    r"(\bdef |\bfunc |\bfn |\bclass |\bimport |\breturn\b|=>|->|::|[{};]|\w\(|\)\s*[:{]|==|!=|\+=|&&|\|\|)"
)


def looks_like_code(query: str) -> bool:
    """A heuristic: several lines, or syntax that prose rarely has."""
    q = query.strip()
    if "\n" in q and len(q.splitlines()) >= 2:
        return True
    hits = len(_CODE_HINTS.findall(q))
    words = len(q.split())
    return hits >= 2 or (hits >= 1 and words <= 4)


def identifiers_in(query: str) -> set[str]:
    """Words in the query that look like identifiers (snake, camel, dotted): symbol boost keys."""
    out = set()
    for w in re.findall(r"[A-Za-z_][A-Za-z0-9_.:]*", query):
        for part in re.split(r"[.:]+", w):
            if len(part) >= 3 and (
                "_" in part or re.search(r"[a-z][A-Z]", part) or part[0].isupper()
            ):
                out.add(part.lower())
    return out


def rrf(
    lists: Sequence[Sequence[dict]], weights: Sequence[float], k: int = 60
) -> list[tuple[dict, float]]:
    """Reciprocal rank fusion of ranked row lists keyed by ``id``."""
    score: dict[str, float] = defaultdict(float)
    rows: dict[str, dict] = {}
    for lst, w in zip(lists, weights, strict=True):
        for rank, row in enumerate(lst):
            score[row["id"]] += w / (k + rank + 1)
            rows.setdefault(row["id"], row)
    return sorted(((rows[i], s) for i, s in score.items()), key=lambda t: -t[1])


def boost(
    fused: list[tuple[dict, float]], query: str, *, symbol_bonus: float, path_bonus: float
) -> list[tuple[dict, float]]:
    """Raise chunks that define a symbol named in the query, or whose path the query names."""
    idents = identifiers_in(query)
    words = {w.lower() for w in _WORD.findall(query) if len(w) >= 3} - _QUERY_STOP
    if not idents and not words:
        return fused
    out = []
    for row, s in fused:
        sym = (row.get("symbol") or "").lower()
        last = re.split(r"[.:#>\s]+", sym)[-1] if sym else ""
        if last and (last in idents or (last in words and len(last) >= 4)):
            s += symbol_bonus
        path = row["path"].lower()
        stem_parts = set(re.split(r"[/._\-]+", path))
        if words & stem_parts:
            s += path_bonus
        out.append((row, s))
    out.sort(key=lambda t: -t[1])
    return out


def collapse(fused: Iterable[tuple[dict, float]], limit: int) -> list[tuple[dict, float]]:
    """Drop hits that overlap a better hit of the same file, so each hit is its own place."""
    kept: list[tuple[dict, float]] = []
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, s in fused:
        a, b = row["start_line"], row["end_line"]
        if any(a <= y and x <= b for x, y in spans[row["path"]]):
            continue
        spans[row["path"]].append((a, b))
        kept.append((row, s))
        if len(kept) >= limit:
            break
    return kept


def by_file(fused: Iterable[tuple[dict, float]], limit: int) -> list[tuple[dict, float]]:
    """Rank files: best chunk score plus a damped share of the rest (a file of many hits wins ties)."""
    best: dict[str, tuple[dict, float]] = {}
    extra: dict[str, float] = defaultdict(float)
    for row, s in fused:
        p = row["path"]
        if p not in best:
            best[p] = (row, s)
        else:
            extra[p] += s
    ranked = [(row, s + 0.25 * extra[p]) for p, (row, s) in best.items()]
    ranked.sort(key=lambda t: -t[1])
    return ranked[:limit]
