"""Ranking pieces that need no model and no database: tokenisation, fusion, boosts, collapsing.

Code-aware tokenisation: an identifier such as ``parseHTTPResponse2`` or ``max_retry_count``
is indexed whole *and* as its parts (``parse http response 2``), so a query may name the
identifier exactly or describe it in words. The same expansion is applied to queries.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

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
    find show me logic defined define definition
    """.split()
)


def split_identifier(word: str) -> list[str]:
    """``getHTTPResponse_v2`` → ``['get', 'http', 'response', 'v', '2']`` (lower case)."""
    return list(_parts(word))


@functools.lru_cache(maxsize=1 << 16)
def _parts(word: str) -> tuple[str, ...]:
    """:func:`split_identifier`, remembered: indexing splits the same names again and again
    (22k chunks: 0.9M calls, 3 s before)."""
    parts: list[str] = []
    for piece in re.split(r"[_$\-]+", word):
        if piece:
            parts.extend(p.lower() for p in _CAMEL.findall(piece))
    return tuple(parts)


def expand(text: str) -> list[str]:
    """Every word of ``text``, each identifier followed by its parts when it has several."""
    out: list[str] = []
    for w in _WORD.findall(text):
        out.append(w)
        parts = _parts(w)
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


@functools.cache
def stored_text_version() -> str:
    """A fingerprint of the code that computes stored columns (``search_text``, ``name``):
    when it changes, an index's rows are recomputed on the next full refresh."""
    h = hashlib.blake2b(digest_size=8)
    for fn in (_parts, expand, search_text, symbol_name):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()


def query_terms(query: str) -> str:
    """A safe full-text query: plain words only (no operators, quotes or field syntax)."""
    terms: list[str] = []
    for w in expand(query):
        lw = w.lower()
        if lw in _QUERY_STOP or len(lw) < 2:  # single letters and digits match everywhere
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


def symbol_name(symbol: str | None) -> str:
    """The last component of a qualified symbol: ``pkg.mod.Class.method`` → ``method``,
    ``(*Server).Serve`` → ``Serve``, ``impl Display for Point`` → ``Point``."""
    if not symbol:
        return ""
    parts = [p for p in re.split(r"[.:#>/\\\s()*&]+", symbol) if p]
    return parts[-1] if parts else ""


# ------------------------------------------------------------------ query kinds
_SYMBOL_QUERY = re.compile(
    r"^(?:[A-Za-z_$][\w$]*(?:(?:::|\.|->|#|\\)[A-Za-z_$][\w$]*)+"  # qualified: a.b, A::B, a->b
    r"|_\w*"  # _private
    r"|[A-Za-z][A-Za-z0-9]*[A-Z_][\w]*"  # camelCase, snake_case, CONSTANT
    r"|[A-Z][A-Za-z0-9]*)$"  # PascalCase
)
_EMBEDDED_SYMBOL = re.compile(r"\b(?:[A-Z][a-z]\w*[A-Z]\w*|[a-z]\w*[A-Z]\w+|[a-z]+_[a-z_0-9]+)\b")


def is_symbol_query(query: str) -> bool:
    """A bare identifier or qualified name (``Mux``, ``parse_config``, ``Sinatra::Base``)."""
    return _SYMBOL_QUERY.match(query.strip()) is not None


def query_symbols(query: str) -> tuple[set[str], float]:
    """Names whose definitions the query asks for, and how strongly (1 = the query is a
    symbol, 0.5 = identifiers embedded in a sentence)."""
    q = query.strip()
    if is_symbol_query(q):
        names = {symbol_name(q)}
        return {n for n in names if n}, 1.0
    return set(_EMBEDDED_SYMBOL.findall(q)), 0.5


# ------------------------------------------------------------------ named constants
#: path priors (multiplicative): tests and fixtures, examples/compat/benchmarks, package
#: barrels (``__init__.py``), TypeScript declaration files
TEST_PATH_PRIOR = 0.35
AUX_PATH_PRIOR = 0.35
BARREL_PRIOR = 0.5
DECLARATION_PRIOR = 0.7
#: top-level code between definitions (imports, constants, module statements) against a
#: definition that matches as well. bench/funcq tune fn MRR@10 with the other steps as
#: shipped: 1.0 → 0.704, 0.9 → 0.710, 0.8 → 0.718, 0.7 → 0.719, 0.5 → 0.721 (flat below
#: 0.8); peer bench (lexical) 0.7946 → 0.7953, shipped set hybrid NDCG@10 0.815 → 0.819
#: (bench/RESULTS.md, "Function-level ranking")
LOOSE_CODE_PRIOR = 0.8
#: a definition named by the query: exact spelling, or only case-insensitively; times this
#: when the file or folder is named like the symbol too
EXACT_NAME = 1.0
CASELESS_NAME = 0.6
NAMED_FILE_BONUS = 1.5
#: share of the query's words a path must contain before it earns a path boost
PATH_MATCH_MIN_SHARE = 0.1
#: chunks shorter than this are not collapsed as copies of each other (``pass``, ``}``)
COPY_MIN_CHARS = 80
#: file ranking: the best chunk's score plus this share of the file's other chunks
FILE_EXTRA_SHARE = 0.25

_TEST_PATH = re.compile(
    r"(?:^|/)(?:tests?|__tests__|spec|specs|testing|testdata|fixtures?)(?:/|$)"
    r"|(?:^|/)(?:test_[^/]*|[^/]*_test|[^/]*_spec|[^/]*\.(?:test|spec))\.\w+$"
    r"|(?:^|/)[^/]*(?:Tests?|Spec|Suite)\.(?:java|kt|scala|swift|cs|php)$"
)
#: a test module inside a source file (Rust's ``mod tests``, a ``tests`` namespace): its
#: chunks get TEST_PATH_PRIOR like a test file (bench/funcq tune fn MRR@10 +0.004, no change
#: elsewhere: those chunks only compete in Rust crates)
_TEST_SYMBOL = re.compile(r"(?:^|::|\.)tests?(?:::|\.|$)")
_AUX_PATH = re.compile(
    r"(?:^|/)(?:compat|_compat|legacy|examples?|_examples?|docs?_src|benchmarks?)(?:/|$)"
)
_BARREL_FILES = frozenset({"__init__.py", "package-info.java"})


# ------------------------------------------------------------------ path priors
def path_prior(path: str) -> float:
    """Multiplicative prior: tests, examples, compat shims and re-export files are rarely
    where the code that does X lives, though they mention X often."""
    w = 1.0
    if _TEST_PATH.search(path):
        w *= TEST_PATH_PRIOR
    if _AUX_PATH.search(path):
        w *= AUX_PATH_PRIOR
    name = path.rsplit("/", 1)[-1]
    if name in _BARREL_FILES:
        w *= BARREL_PRIOR
    elif name.endswith(".d.ts"):
        w *= DECLARATION_PRIOR
    return w


def chunk_prior(row: dict) -> float:
    """Multiplicative prior of one chunk: its path's (:func:`path_prior`), times
    LOOSE_CODE_PRIOR for top-level code, times TEST_PATH_PRIOR for a test module inside a
    source file."""
    w = path_prior(row["path"])
    if row["kind"] == "code":
        w *= LOOSE_CODE_PRIOR
    sym = row.get("symbol") or ""
    if _TEST_SYMBOL.search(sym) and not _TEST_PATH.search(row["path"]):
        w *= TEST_PATH_PRIOR
    return w


def path_words(path: str) -> set[str]:
    """Words of a file's stem and its folder: ``src/http/RequestParser.java`` → request, parser, http."""
    parts = path.split("/")
    stem = parts[-1].split(".")[0]
    words = set(split_identifier(stem)) | {stem.lower()}
    if len(parts) > 1:
        words |= set(split_identifier(parts[-2])) | {parts[-2].lower()}
    return {w for w in words if w}


def _prefix_overlap(a: str, b: str) -> bool:
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 3 and long_.startswith(short)


# ------------------------------------------------------------------ the pipeline
@dataclass
class Weights:
    """Knobs of the ranking stack (defaults chosen by measurement, see README)."""

    rrf_k: int = 10
    fusion: str = "relative"  # "relative" (min-max normalised scores) or "rrf" (ranks)
    dense: float = 1.5
    lexical: float = 1.0
    symbol_query_dense: float = 0.4  # a bare identifier leans on exact matching
    code_query_dense: float = 0.3  # code snippets: identifiers beat MiniLM's sense of code
    definition: float = 3.0  # × best score, for chunks defining a queried symbol
    path_match: float = 1.0  # × best score × share of query words found in the path
    file_coherence: float = 0.2  # × best score × the file's share of the candidate mass
    saturation: float = 0.5  # per extra hit from a file already listed
    priors: bool = True
    plural_paths: bool = True  # path word "impls" also matches "implementations"
    #: the static tier's list beside the model's when both kinds of vector exist (0: the
    #: model's list alone); scaled like ``dense`` for identifiers and code snippets
    static: float = 0.0


_DEFINITION_KINDS = frozenset({"function", "method", "class"})


class Candidates(NamedTuple):
    """What the retrievers found for one query (rows of the chunks table, best first)."""

    lexical: Sequence[dict]
    dense: Sequence[dict]
    #: chunks defining a symbol the query names, fetched by name
    definitions: Sequence[dict] = ()
    #: definition chunks owning doc chunks among the candidates
    owners: Sequence[dict] = ()
    #: nearest chunks by static vector, when they are searched beside the model's
    static: Sequence[dict] = ()


#: chunk id → score, and chunk id → row: what every step below reads and changes
Scores = dict[str, float]
Rows = dict[str, dict]


def rank(
    lexical: Sequence[dict],
    dense: Sequence[dict],
    definitions: Sequence[dict],
    owners: Sequence[dict],
    query: str,
    w: Weights,
    code: bool = False,
    static: Sequence[dict] = (),
) -> list[tuple[dict, float]]:
    """Fuse the candidate lists and apply boosts and priors; best first.

    ``definitions`` are chunks that define a symbol named in the query, fetched by name
    whether or not a retriever found them; ``owners`` are the definition chunks of doc
    chunks among the candidates (a docstring hit is shown as its function); ``static`` is a
    second dense list (static vectors) weighted by ``w.static``. Every step after
    :func:`fuse` sees one entry per definition.
    """
    names, strength = query_symbols(query)
    lists = [(lexical, w.lexical), (dense, dense_weight(w, strength, code))]
    if static and w.static > 0:
        lists.append((static, dense_weight(w, strength, code, w.static)))
    score, rows = fuse(
        lists,
        w.fusion,
        w.rrf_k,
        extra=(*definitions, *owners),  # candidates only by name or ownership: no score yet
    )
    if not score:
        return []
    top = max(score.values()) or 1.0 / w.rrf_k
    if names:
        boost_definitions(score, rows, names, top * w.definition * strength)
    if strength < 1.0:
        boost_path_matches(score, rows, query, top * w.path_match, w.plural_paths)
    boost_file_coherence(score, rows, top * w.file_coherence)
    drop_copies(score, rows)
    return saturate(apply_priors(score, rows) if w.priors else score, rows, w.saturation)


def dense_weight(w: Weights, strength: float, code: bool, base: float | None = None) -> float:
    """A dense list's weight (``base``, default ``w.dense``): lower for a bare identifier and
    for a code snippet."""
    weight = (w.dense if base is None else base) * (
        w.symbol_query_dense if strength == 1.0 else 1.0
    )
    return weight * (w.code_query_dense if code else 1.0)


def fuse(
    lists: Iterable[tuple[Sequence[dict], float]],
    fusion: str,
    rrf_k: int,
    extra: Iterable[dict] = (),
) -> tuple[Scores, Rows]:
    """Weighted fusion of ranked lists, one entry per definition.

    Each list's scores are min-max normalised onto the scale of RRF's rank 1
    (``fusion="relative"``) or replaced by reciprocal ranks (``"rrf"``). The chunks of one
    definition (the parts of a split function, its doc comment: :func:`definition_parts`)
    count once per list, with the best of their scores, and the definition is one entry,
    shown as its best-scoring part (its first part when only its doc comment was found).
    ``extra`` rows join without a score of their own. ``rows`` holds every chunk seen.
    """
    rows: Rows = {}
    found: list[dict[str, float]] = []  # per list: chunk id → weighted, normalised score
    for lst, weight in lists:
        got: dict[str, float] = {}
        if fusion == "relative" and lst:
            raw = [float(r.get("_score") or 0.0) for r in lst]
            lo, hi = min(raw), max(raw)
            values = [(x - lo) / (hi - lo) if hi > lo else 1.0 for x in raw]
        else:
            values = [(rrf_k + 1) / (rrf_k + i + 1) for i in range(len(lst))]
        for row, v in zip(lst, values, strict=True):
            got[row["id"]] = max(got.get(row["id"], 0.0), weight * v / (rrf_k + 1))
            rows.setdefault(row["id"], row)
        found.append(got)
    for row in extra:
        rows.setdefault(row["id"], row)
    part_of = definition_parts(rows)
    own: Scores = defaultdict(float)  # each chunk's own score: picks the part shown
    total: Scores = defaultdict(float)  # each definition's
    for got in found:
        best: dict[str, float] = {}
        for i, v in got.items():
            own[i] += v
            best[part_of[i]] = max(best.get(part_of[i], 0.0), v)
        for key, v in best.items():
            total[key] += v
    shown: dict[str, str] = {}
    for i, row in rows.items():
        j = shown.get(part_of[i])
        if j is None or _show_key(row, own[i]) > _show_key(rows[j], own[j]):
            shown[part_of[i]] = i
    return {i: total[key] for key, i in shown.items()}, rows


def _show_key(row: dict, own: float) -> tuple[bool, float, int]:
    """Which chunk of a definition is shown: a part of the code before its doc comment, the
    best-scoring one, the first one."""
    return row["kind"] in _DEFINITION_KINDS, own, -int(row["start_line"])


def definition_parts(rows: Rows) -> dict[str, str]:
    """Chunk id → the definition it is part of: ``path``, ``symbol`` of a function, method or
    class (every part of a split definition carries both), which a doc chunk with that
    symbol in that file belongs to as well; any other chunk is its own entry (its id)."""
    defined = {
        (r["path"], r["symbol"])
        for r in rows.values()
        if r["kind"] in _DEFINITION_KINDS and r.get("symbol")
    }
    out = {}
    for i, r in rows.items():
        key = (r["path"], r.get("symbol"))
        if key in defined and (r["kind"] in _DEFINITION_KINDS or r["kind"] == "doc"):
            out[i] = f"{key[0]}\0{key[1]}"
        else:
            out[i] = i
    return out


def boost_definitions(score: Scores, rows: Rows, names: set[str], boost: float) -> None:
    """Definitions of the symbols the query names (``boost`` = best score × weight × how
    surely the query names symbols)."""
    lower = {n.lower() for n in names}
    for i in score:
        row = rows[i]
        if row["kind"] not in _DEFINITION_KINDS:
            continue
        nm = symbol_name(row.get("symbol"))
        if nm in names or nm.lower() in lower:
            exact = EXACT_NAME if nm in names else CASELESS_NAME
            named_file = NAMED_FILE_BONUS if lower & path_words(row["path"]) else 1.0
            score[i] += boost * exact * named_file


def boost_path_matches(
    score: Scores, rows: Rows, query: str, boost: float, plural_paths: bool = True
) -> None:
    """A natural-language query naming the file or its folder lifts that file's chunks by
    ``boost`` × the share of the query's words found in the path."""
    words = {x.lower() for x in _WORD.findall(query) if len(x) > 2 and x.lower() not in _QUERY_STOP}
    if not words:
        return
    share: dict[str, float] = {}
    for i in score:
        p = rows[i]["path"]
        if p not in share:
            pw = path_words(p)
            if plural_paths:
                pw |= {y[:-1] for y in pw if len(y) > 3 and y.endswith("s")}
            hits = sum(1 for x in words if x in pw or any(_prefix_overlap(x, y) for y in pw))
            share[p] = hits / len(words)
        if share[p] >= PATH_MATCH_MIN_SHARE:
            score[i] += boost * share[p]


def boost_file_coherence(score: Scores, rows: Rows, boost: float) -> None:
    """Files with many good chunks: lift their best chunk by ``boost`` × the file's share of
    the largest file's candidate mass."""
    per_file: dict[str, float] = defaultdict(float)
    best: dict[str, str] = {}
    for i, s in score.items():
        p = rows[i]["path"]
        per_file[p] += s
        if p not in best or s > score[best[p]]:
            best[p] = i
    mass = max(per_file.values()) or 1.0
    for p, i in best.items():
        score[i] += boost * per_file[p] / mass


def drop_copies(score: Scores, rows: Rows) -> None:
    """One copy of identical code: a chunk that also exists in other files (a vendored or
    generated copy) is listed once, at its least nested path, with the best copy's score."""
    by_text: dict[str, str] = {}
    for i in sorted(
        score, key=lambda i: (rows[i]["path"].count("/"), len(rows[i]["path"]), rows[i]["path"])
    ):
        t = rows[i].get("text")
        if t is None or len(t) < COPY_MIN_CHARS:
            continue
        if t in by_text and rows[by_text[t]]["path"] != rows[i]["path"]:
            score[by_text[t]] = max(score[by_text[t]], score[i])
            del score[i]
        else:
            by_text.setdefault(t, i)


def apply_priors(score: Scores, rows: Rows) -> Scores:
    """Each score times its chunk's prior (:func:`chunk_prior`)."""
    return {i: s * chunk_prior(rows[i]) for i, s in score.items()}


def saturate(score: Scores, rows: Rows, saturation: float) -> list[tuple[dict, float]]:
    """Diminishing returns: the n-th hit of a file (best first) is scored × ``saturation``ⁿ;
    the result, best first."""
    ranked = sorted(((rows[i], s) for i, s in score.items()), key=lambda t: -t[1])
    seen: dict[str, int] = defaultdict(int)
    out = []
    for row, s in ranked:
        out.append((row, s * saturation ** seen[row["path"]]))
        seen[row["path"]] += 1
    out.sort(key=lambda t: -t[1])
    return out


def rerank_text(row: dict, limit: int = 4000) -> str:
    """What a reranker reads for a candidate: the chunk's ``path (language) symbol`` header
    (as the embedder saw it) and its text, cut to ``limit`` characters."""
    head = f"{row['path']} ({row['language']})"
    if row.get("symbol"):
        head = f"{head} {row['symbol']}"
    return f"{head}\n{row['text'][:limit]}"


def rerank_head(fused: Sequence[tuple[dict, float]], scores: Sequence[float]):
    """The first ``len(scores)`` candidates ordered by a reranker's ``scores`` (ties keep the
    fused order) and scored by them; the rest follow in their fused order, scored below
    every reranked hit (halving from the lowest reranker score)."""
    n = len(scores)
    if n == 0:
        return list(fused)
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    out = [(fused[i][0], scores[i]) for i in order]
    floor = min(scores)
    out += [(row, floor * 0.5 ** (j + 1)) for j, (row, _) in enumerate(fused[n:])]
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
    ranked = [(row, s + FILE_EXTRA_SHARE * extra[p]) for p, (row, s) in best.items()]
    ranked.sort(key=lambda t: -t[1])
    return ranked[:limit]
