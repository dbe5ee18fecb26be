"""``coderag eval``: measure retrieval quality on a labelled query file, per search mode.

Query file: JSON Lines, one object per line::

    {"query": "where are redirects followed", "kind": "nl",
     "relevant": [{"path": "src/requests/sessions.py", "symbol": "resolve_redirects"},
                  {"path": "README.md", "start_line": 10, "end_line": 24}]}

A hit matches a relevant item when the paths are equal and, if the item names a
``symbol``, the hit's symbol is that name (or ends with it as its last component); if it
gives ``start_line``/``end_line``, the spans overlap; with neither, any hit in the file
matches. ``kind`` (``nl``, ``code`` or ``doc``) is optional; ``code`` queries are searched
as code.

Metrics, chunk level (ranked hits as returned) and file level (hits reduced to their
files, first occurrence): Recall@1/5/10 (share of a query's relevant items found in the
top k), MRR@10 (reciprocal rank of the first relevant hit) and NDCG@10 (binary gains, each
relevant item counted once). Latency is wall time per search, median and 95th percentile.

Optional query fields: ``lang`` (the JSON output then has means per language under
``by_lang``, as it has per ``kind`` under ``by_kind``) and ``split`` (``--split NAME`` keeps
only the queries of that split, e.g. the tune or heldout half of bench/funcq).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

from .display import escape
from .errors import CoderagError, UsageError

METRICS = (
    "recall@1",
    "recall@5",
    "recall@10",
    "mrr@10",
    "ndcg@10",
    "file_recall@10",
    "file_mrr@10",
    "file_ndcg@10",
)


def load_queries(path: str | Path) -> list[dict]:
    """Read and check a JSONL query file; errors name the line."""
    try:
        lines = Path(path).read_text("utf-8").splitlines()
    except OSError as e:
        raise CoderagError(f"cannot read {path}: {e.strerror or e}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            q = json.loads(line)
        except ValueError as e:
            raise CoderagError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(q, dict) or not isinstance(q.get("query"), str):
            raise CoderagError(f'{path}:{n}: needs a "query" string')
        rel = q.get("relevant")
        if (
            not isinstance(rel, list)
            or not rel
            or not all(isinstance(r, dict) and isinstance(r.get("path"), str) for r in rel)
        ):
            raise CoderagError(f'{path}:{n}: needs a non-empty "relevant" list of {{"path": ...}}')
        out.append(q)
    if not out:
        raise CoderagError(f"{path}: no queries")
    return out


def _last(symbol: str | None) -> str:
    from .rank import symbol_name

    return symbol_name(symbol)


def matches(hit: dict, item: dict) -> bool:
    if hit["path"] != item["path"].lstrip("./"):
        return False
    sym = item.get("symbol")
    if sym:
        hs = hit.get("symbol") or ""
        same = hs == sym or hs.endswith(("." + sym, "::" + sym, ")." + sym))
        # a bare label ("send") matches any symbol ending in it; a qualified one must agree
        if not same and (_last(sym) != sym or _last(hs) != sym):
            return False
    if item.get("start_line") is not None and item.get("end_line") is not None:
        if hit["end_line"] < item["start_line"] or hit["start_line"] > item["end_line"]:
            return False
    return True


def _ndcg(ranks: list[int], n_relevant: int, k: int) -> float:
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, n_relevant)))
    return dcg / ideal if ideal else 0.0


def score_query(hits: list[dict], relevant: list[dict], k: int = 10) -> dict[str, float]:
    """Metrics of one ranked hit list against its relevant items."""
    ranks = []
    for item in relevant:
        r = next((i for i, h in enumerate(hits[:k], 1) if matches(h, item)), None)
        if r is not None:
            ranks.append(r)
    n = len(relevant)
    files = list(dict.fromkeys(h["path"] for h in hits))[:k]
    want = list(dict.fromkeys(i["path"].lstrip("./") for i in relevant))
    franks = [files.index(p) + 1 for p in want if p in files]
    return {
        "recall@1": sum(r <= 1 for r in ranks) / n,
        "recall@5": sum(r <= 5 for r in ranks) / n,
        "recall@10": sum(r <= 10 for r in ranks) / n,
        "mrr@10": 1.0 / min(ranks) if ranks else 0.0,
        "ndcg@10": _ndcg(ranks, n, 10),
        "file_recall@10": len(franks) / len(want),
        "file_mrr@10": 1.0 / min(franks) if franks else 0.0,
        "file_ndcg@10": _ndcg(franks, len(want), 10),
    }


BREAKDOWN = ("kind", "lang")  # query fields whose values get their own means in the JSON


def breakdown(queries: list[dict], per_query: list[dict], field: str) -> dict[str, dict]:
    """Mean metrics per value of ``field`` (queries without it count as "nl" for ``kind``)."""
    groups: dict[str, list[dict]] = {}
    for q, s in zip(queries, per_query, strict=True):
        groups.setdefault(str(q.get(field, "nl" if field == "kind" else "?")), []).append(s)
    return {
        value: {**{m: sum(s[m] for s in ss) / len(ss) for m in METRICS}, "queries": len(ss)}
        for value, ss in sorted(groups.items())
    }


def select_split(queries: list[dict], split: str | None) -> list[dict]:
    """The queries whose ``split`` field is ``split`` (all of them when ``split`` is None)."""
    if split is None:
        return queries
    out = [q for q in queries if q.get("split") == split]
    if not out:
        names = sorted({str(q["split"]) for q in queries if "split" in q})
        raise UsageError(
            f"no queries in split {split!r}"
            + (f" (splits in the file: {', '.join(names)})" if names else " (no split fields)")
        )
    return out


def evaluate(
    index, queries: list[dict], modes: list[str], k: int = 10
) -> dict[str, dict[str, float]]:
    """Mean metrics and latency per mode over ``queries``.

    A mode is ``hybrid``, ``dense`` or ``lexical``, optionally with ``+rerank`` (e.g.
    ``hybrid+rerank``: the same candidates re-ordered by the reranker); the plain modes
    never rerank, whatever the ``rerank`` setting says, so they stay comparable."""
    out: dict[str, dict[str, float]] = {}
    if any(m != "lexical" for m in modes):
        # embed every query once, untimed: each mode then pays the same (cached) query vector
        for q in queries:
            index.search(
                q["query"],
                k=1,
                mode="dense",
                code=True if q.get("kind") == "code" else None,
                rerank=False,
            )
    for mode in modes:
        base, _, extra = mode.partition("+")
        totals = dict.fromkeys(METRICS, 0.0)
        lat = []
        per_query = []
        for q in queries:
            t0 = time.perf_counter()
            hits = index.search(
                q["query"],
                k=k,
                mode=base,
                code=True if q.get("kind") == "code" else None,
                rerank=extra == "rerank",
            )
            lat.append((time.perf_counter() - t0) * 1000)
            hd = [h.to_dict() for h in hits]
            s = score_query(hd, q["relevant"], k)
            per_query.append(s)
            for m in METRICS:
                totals[m] += s[m]
        res = {m: totals[m] / len(queries) for m in METRICS}
        for field in BREAKDOWN:
            if any(field in q for q in queries):
                res[f"by_{field}"] = breakdown(queries, per_query, field)
        lat.sort()
        res["p50_ms"] = statistics.median(lat)
        res["p95_ms"] = lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)]
        res["queries"] = len(queries)
        out[mode] = res
    return out


def format_table(results: dict[str, dict[str, float]]) -> str:
    modes = list(results)
    rows = [["metric", *modes]]
    for m in (*METRICS, "p50_ms", "p95_ms"):
        rows.append(
            [
                m,
                *(
                    f"{results[md][m]:.3f}" if "ms" not in m else f"{results[md][m]:.1f}"
                    for md in modes
                ),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------ the face
def add_arguments(p) -> None:
    p.description = "Measure retrieval quality (Recall@1/5/10, MRR@10, NDCG@10 at chunk and file level, latency) on a labelled JSONL query file."
    p.epilog = (
        "examples:\n  coderag eval queries.jsonl\n"
        "  coderag eval queries.jsonl --repo ~/src/project --mode dense,lexical,hybrid --json\n"
        "  coderag eval queries.jsonl --mode hybrid,hybrid+rerank --rerank-model ./reranker\n"
        "  coderag eval bench/funcq/queries.jsonl --repo /tmp/funcq --split heldout --json\n\n"
        'query file lines: {"query": "...", "relevant": [{"path": "a.py", "symbol": "f"}]}'
    )
    p.add_argument("queries", help="JSONL file of labelled queries")
    p.add_argument("--repo", help="repository root (default: git root around the current folder)")
    p.add_argument(
        "--mode",
        default="dense,lexical,hybrid",
        help="comma-separated modes to compare; add '+rerank' to rerank one (hybrid+rerank)",
    )
    p.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument(
        "--split",
        metavar="NAME",
        help='only the queries whose "split" field is NAME (e.g. tune, heldout)',
    )
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--model", help="embedding model (default: the index's)")
    p.add_argument(
        "--rerank-model",
        help="reranker for '+rerank' modes: 'auto', a folder or a Hugging Face id",
    )


def run(args) -> int:
    from .index import Index
    from .vocabulary import MODES

    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    bad = [m for m in modes if m.removesuffix("+rerank") not in MODES]
    if bad or not modes:
        raise UsageError(
            f"unknown mode {', '.join(bad) or '(none)'} (choose from {', '.join(MODES)}, "
            "each optionally with +rerank)"
        )
    queries = select_split(load_queries(args.queries), args.split)
    overrides = {"model": args.model, "rerank_model": args.rerank_model}
    idx = Index(args.repo, **{k: v for k, v in overrides.items() if v})
    results = evaluate(idx, queries, modes, args.k)
    if args.json:
        print(json.dumps(results))
    else:
        print(
            f"{len(queries)} queries, {idx.status()['chunks']} chunks, "
            f"model {escape(idx.status()['model'])}"
        )
        print(format_table(results))
    sys.stdout.flush()
    return 0
