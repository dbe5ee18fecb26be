"""Function-level retrieval on bench/funcq: coderag's three modes against naive baselines.

One run scores, on the tune and the heldout half of ``bench/funcq/queries.jsonl``:

* coderag ``hybrid`` (the default), ``lexical`` and ``dense`` (``Index.search``, k=10, no
  reranking), on an index of the funcq corpus built with the default CPU model (the
  bundled all-MiniLM-L6-v2);
* ``win-minilm``: 40-line windows of every kept file (stride 20, i.e. 50 % overlap; the
  file's path is the first line of what is embedded), embedded with the same MiniLM through
  ``coderag.models.load_embedder``, ranked by cosine;
* ``win-bm25``: plain-Python BM25 (k1 1.2, b 0.75) over the same windows, with identifiers
  kept whole and split into their camelCase/snake_case parts, lowercased.

Function level: a coderag hit counts when it is in the target's file and lies inside the
target definition's span (a docstring or one part of a split definition), contains it whole,
or carries the definition's own symbol; a window counts when it overlaps the span. File
level: the hits reduced to their files, first occurrence. Spans are resolved from the
fetched sources at run time (bench/funcq/resolve.py). MRR@10 and Recall@10 per method,
split, class (nl / docs / code2code) and language; the ratio hybrid / max(win-minilm,
win-bm25) on function MRR@10; for hybrid, what outranks the right definition when it is
not first. Raw results: bench/results/funcq.json; tables: bench/results/funcq.md.

    python bench/funcq_eval.py                 # fetch (cached), index (cached), score
    python bench/funcq_eval.py --rebuild       # re-index from scratch

The index and the window vectors are cached under ``$TMPDIR/coderag-funcq-index/<key>/``
(a refresh of an existing index only re-chunks what the chunker changed). Needs the
registries on the first run (see bench/funcq/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "funcq"))

import corpus as funcq_corpus  # noqa: E402  (bench/funcq/corpus.py)
import queryset  # noqa: E402
import resolve  # noqa: E402
from _common import cpu_name, say  # noqa: E402  (bench/, first on sys.path)

CODERAG_MODES = ("hybrid", "lexical", "dense")
WINDOW_METHODS = ("win-minilm", "win-bm25")
METHODS = (*CODERAG_MODES, *WINDOW_METHODS)
METRICS = ("fn_mrr", "fn_recall", "file_mrr", "file_recall")
LABELS = {
    "fn_mrr": "fn MRR@10",
    "fn_recall": "fn R@10",
    "file_mrr": "file MRR@10",
    "file_recall": "file R@10",
}
LANG_ORDER = ("python", "javascript", "typescript", "go", "rust")
CLASS_ORDER = ("nl", "docs", "code2code")


# ------------------------------------------------------------------ the corpus and its index
def work_dir() -> Path:
    base = os.environ.get("CODERAG_EVAL_CACHE") or tempfile.gettempdir()
    return Path(base) / "coderag-funcq-index" / funcq_corpus.cache_key()


def index_root(rebuild: bool, model: str = "auto") -> Path:
    """A private, writable copy of the corpus (the index lives in its .coderag folder), one
    per model coderag embeds with."""
    src = funcq_corpus.corpus_root()
    tag = "" if model == "auto" else "-" + hashlib.sha256(model.encode()).hexdigest()[:12]
    root = work_dir() / f"corpus{tag}"
    if rebuild and root.exists():
        shutil.rmtree(root)
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.with_name("corpus.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        tmp.rename(root)
    return root


def kept_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".coderag" not in p.relative_to(root).parts
    )


# ------------------------------------------------------------------ windows and BM25
def windows(root: Path, size: int, stride: int) -> list[dict]:
    out = []
    for rel in kept_files(root):
        lines = (root / rel).read_text("utf-8", errors="replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        start = 0
        while True:
            end = min(start + size, len(lines))
            body = "\n".join(lines[start:end])
            if body.strip():
                out.append({"path": rel, "start_line": start + 1, "end_line": max(end, 1)})
                out[-1]["text"] = f"{rel}\n{body}"
            if end >= len(lines):
                break
            start += stride
    return out


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def tokens(text: str) -> list[str]:
    """Identifiers whole and split at camelCase/snake_case boundaries, lowercased."""
    out = []
    for w in _WORD.findall(text):
        low = w.lower()
        out.append(low)
        parts = [p.lower() for p in _PARTS.findall(w)]
        if len(parts) > 1:
            out.extend(parts)
    return out


class BM25:
    def __init__(self, docs: list[list[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.len = [len(d) for d in docs]
        self.avg = sum(self.len) / max(len(docs), 1)
        df = Counter(t for tf in self.tf for t in tf)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, tf in enumerate(self.tf):
            for t in tf:
                self.postings[t].append(i)

    def top(self, query: list[str], k: int) -> list[int]:
        scores: dict[int, float] = defaultdict(float)
        for t in set(query):
            idf = self.idf.get(t)
            if idf is None:
                continue
            for i in self.postings[t]:
                f = self.tf[i][t]
                norm = self.k1 * (1 - self.b + self.b * self.len[i] / self.avg)
                scores[i] += idf * f * (self.k1 + 1) / (f + norm)
        return [i for i, _ in sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]]


def window_vectors(embedder, wins: list[dict]):
    """Window vectors, cached by (model, texts) under the work dir."""
    import numpy as np

    key = hashlib.sha256(
        json.dumps([embedder.model_id, embedder.max_tokens, [w["text"] for w in wins]]).encode()
    ).hexdigest()[:16]
    cache = work_dir() / f"windows-{key}.npy"
    if cache.is_file():
        vec = np.load(cache)
        if vec.shape[0] == len(wins):
            return vec
    t0 = time.perf_counter()
    vec = embedder.embed_documents([w["text"] for w in wins])
    say(f"embedded {len(wins)} windows in {time.perf_counter() - t0:.0f}s")
    np.save(cache, vec)
    return vec


# ------------------------------------------------------------------ scoring
def inside(hit: dict, span) -> bool:
    return span[0] <= hit["start_line"] and hit["end_line"] <= span[1]


def contains(hit: dict, span) -> bool:
    return hit["start_line"] <= span[0] and span[1] <= hit["end_line"]


def overlaps(hit: dict, span) -> bool:
    return hit["start_line"] <= span[1] and span[0] <= hit["end_line"]


def chunk_match(hit: dict, item: dict) -> bool:
    if hit["path"] != item["path"]:
        return False
    if hit.get("symbol") in item["defs"]:
        return True
    return any(inside(hit, s) or contains(hit, s) for s in item["spans"])


def window_match(hit: dict, item: dict) -> bool:
    return hit["path"] == item["path"] and any(overlaps(hit, s) for s in item["spans"])


def score(hits: list[dict], relevant: list[dict], match, k: int = 10) -> dict:
    hits = hits[:k]
    ranks = []
    for item in relevant:
        r = next((i for i, h in enumerate(hits, 1) if match(h, item)), None)
        ranks.append(r)
    found = [r for r in ranks if r is not None]
    files = list(dict.fromkeys(h["path"] for h in hits))
    want = list(dict.fromkeys(i["path"] for i in relevant))
    franks = [files.index(p) + 1 for p in want if p in files]
    return {
        "fn_rank": min(found) if found else None,
        "file_rank": min(franks) if franks else None,
        "fn_mrr": 1.0 / min(found) if found else 0.0,
        "fn_recall": len(found) / len(relevant),
        "file_mrr": 1.0 / min(franks) if franks else 0.0,
        "file_recall": len(franks) / len(want),
    }


def mean(rows: list[dict], metric: str) -> float:
    return statistics.fmean(r[metric] for r in rows) if rows else float("nan")


# ------------------------------------------------------------------ what outranks the target
def miss_category(q: dict, hits: list[dict], root: Path) -> str | None:
    """Why hybrid's first hit is not the target (None when it is)."""
    rec = q["methods"]["hybrid"]
    if rec["fn_rank"] == 1:
        return None
    if not hits:
        return "no hits"
    top = hits[0]
    paths = {i["path"] for i in q["relevant"]}
    target_is_doc = all(p.endswith(queryset.DOC_SUFFIXES) for p in paths)
    if top["path"] not in paths:
        if top["path"].endswith(queryset.DOC_SUFFIXES) and not target_is_doc:
            return "a Markdown/RST section in another file"
        if re.search(r"(^|::|\.)tests?(::|\.|$)", top.get("symbol") or ""):
            return "test code in another file"
        if top["path"].split("/")[0] in {p.split("/")[0] for p in paths}:
            return "code in another file of the same package"
        return "code in another package"
    # same file
    if top["kind"] == "doc" and not target_is_doc:
        return "a comment/doc chunk of the same file"
    if target_is_doc:
        return "another section of the same document"
    for item in q["relevant"]:
        if item["path"] != top["path"]:
            continue
        for a, b in item["spans"]:
            if top["start_line"] <= a and top["end_line"] < b and top["end_line"] >= a:
                return "a chunk that starts the definition but is not it"
            if top["kind"] == "class" and top["start_line"] < a and top["end_line"] >= a - 1:
                return "the enclosing class/impl header chunk"
    # an enclosing definition (class/impl) whose chunk sits elsewhere in its span
    for item in q["relevant"]:
        for s, kind, a, b in resolve.definitions(root, item["path"]):
            if s == top.get("symbol") and kind in ("class", "namespace"):
                if any(a <= sa and sb <= b for sa, sb in item["spans"]):
                    return "the enclosing class/impl header chunk"
    if top.get("kind") == "code":
        return "top-level code of the same file"
    return "a sibling definition in the same file"


def compact(q: dict) -> dict:
    """One query's raw record: per method its ranks and recalls, hybrid's top 10 hits."""
    out = {k: q[k] for k in ("query", "kind", "lang", "split")}
    out["relevant"] = [
        {"path": r["path"], "symbol": r["symbol"], "spans": r["spans"]} for r in q["relevant"]
    ]
    out["methods"] = {
        m: {k: rec[k] for k in ("fn_rank", "file_rank", "fn_recall", "file_recall")}
        for m, rec in q["methods"].items()
    }
    out["hybrid_top"] = [
        [p, a, b, kind, sym] for p, a, b, kind, sym in q["methods"]["hybrid"]["top"]
    ]
    out["hybrid_miss"] = q["hybrid_miss"]
    return out


# ------------------------------------------------------------------ tables
def groups(q: dict) -> list[str]:
    return ["all", queryset.CLASS_NAMES[q["kind"]], q["lang"]]


def summarise(per_query: list[dict]) -> dict:
    """summary[split][group][method][metric] (+ queries count)."""
    out: dict = {}
    for split in queryset.SPLITS:
        qs = [q for q in per_query if q["split"] == split]
        bucket: dict[str, list[dict]] = defaultdict(list)
        for q in qs:
            for g in groups(q):
                bucket[g].append(q)
        out[split] = {}
        for g in ("all", *CLASS_ORDER, *LANG_ORDER):
            rows = bucket.get(g, [])
            out[split][g] = {"queries": len(rows)}
            for m in METHODS:
                out[split][g][m] = {
                    metric: mean([r["methods"][m] for r in rows], metric) for metric in METRICS
                }
                if m in CODERAG_MODES:
                    out[split][g][m]["fn_mrr_overlap_rule"] = mean(
                        [r["methods"][m]["overlap"] for r in rows], "fn_mrr"
                    )
    return out


def ratio(summary: dict, split: str, group: str = "all") -> float:
    s = summary[split][group]
    base = max(s["win-minilm"]["fn_mrr"], s["win-bm25"]["fn_mrr"])
    return s["hybrid"]["fn_mrr"] / base if base else float("nan")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def overall_table(summary: dict) -> str:
    header = ["method"] + [f"{sp} {LABELS[m]}" for sp in queryset.SPLITS for m in METRICS]
    rows = [
        [m] + [f"{summary[sp]['all'][m][x]:.3f}" for sp in queryset.SPLITS for x in METRICS]
        for m in METHODS
    ]
    return md_table(header, rows)


def breakdown_table(summary: dict, metric: str) -> str:
    header = ["group (n tune/heldout)"] + [
        f"{m} {sp[:4]}" for m in METHODS for sp in queryset.SPLITS
    ]
    rows = []
    for g in (*CLASS_ORDER, *LANG_ORDER):
        n = "/".join(str(summary[sp][g]["queries"]) for sp in queryset.SPLITS)
        rows.append(
            [f"{g} ({n})"]
            + [f"{summary[sp][g][m][metric]:.2f}" for m in METHODS for sp in queryset.SPLITS]
        )
    return md_table(header, rows)


def full_tables(summary: dict) -> str:
    parts = []
    for sp in queryset.SPLITS:
        for g in ("all", *CLASS_ORDER, *LANG_ORDER):
            s = summary[sp][g]
            parts.append(f"#### {sp} / {g} ({s['queries']} queries)\n")
            rows = [[m] + [f"{s[m][x]:.3f}" for x in METRICS] for m in METHODS]
            parts.append(md_table(["method", *(LABELS[x] for x in METRICS)], rows) + "\n")
    return "\n".join(parts)


# ------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild", action="store_true", help="index the corpus from scratch")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--window", type=int, default=40, help="window length in lines (40)")
    ap.add_argument("--stride", type=int, default=20, help="window stride in lines (20)")
    ap.add_argument("--out", default=str(HERE / "results" / "funcq"), help="output stem")
    ap.add_argument(
        "--model",
        default="auto",
        help="coderag's embedding model (a local folder); the windows keep the bundled MiniLM",
    )
    args = ap.parse_args()

    import numpy as np

    from coderag import Index
    from coderag.models import load_embedder

    t_start = time.perf_counter()
    root = index_root(args.rebuild, args.model)
    queries = resolve.resolve_all(root, queryset.load())
    say(f"{len(queries)} queries, every label resolved in {root}")

    embedder = load_embedder("auto", device="cpu")  # the windows' (the baseline's)
    model = embedder if args.model == "auto" else load_embedder(args.model, device="cpu")
    idx = Index(root, embedder=model, model=args.model)
    t0 = time.perf_counter()
    stats = idx.refresh(rebuild=args.rebuild)
    index_s = time.perf_counter() - t0
    status = idx.status()
    say(f"index: {stats.summary()} ({index_s:.0f}s); {status['chunks']} chunks")

    per_query = [
        {k: q[k] for k in ("query", "kind", "lang", "split")}
        | {"relevant": q["relevant"], "methods": {}}
        for q in queries
    ]
    hybrid_hits = []
    for mode in CODERAG_MODES:
        t0 = time.perf_counter()
        for q, rec in zip(queries, per_query, strict=True):
            hits = [
                h.to_dict()
                for h in idx.search(
                    q["query"],
                    k=args.k,
                    mode=mode,
                    code=True if q["kind"] == "code" else None,
                    rerank=False,
                )
            ]
            s = score(hits, q["relevant"], chunk_match, args.k)
            s["overlap"] = score(hits, q["relevant"], window_match, args.k)
            s["top"] = [
                [h["path"], h["start_line"], h["end_line"], h["kind"], h["symbol"]] for h in hits
            ]
            rec["methods"][mode] = s
            if mode == "hybrid":
                hybrid_hits.append(hits)
        say(f"{mode}: {len(queries)} queries in {time.perf_counter() - t0:.1f}s")

    wins = windows(root, args.window, args.stride)
    vec = window_vectors(embedder, wins)
    bm25 = BM25([tokens(w["text"]) for w in wins])
    for q, rec in zip(queries, per_query, strict=True):
        qv = embedder.embed_query(q["query"], kind="code" if q["kind"] == "code" else "nl")
        sims = vec @ np.asarray(qv, dtype=np.float32).reshape(-1)
        top = np.argsort(-sims, kind="stable")[: args.k]
        for name, order in (
            ("win-minilm", top),
            ("win-bm25", bm25.top(tokens(q["query"]), args.k)),
        ):
            hits = [wins[i] for i in order]
            s = score(hits, q["relevant"], window_match, args.k)
            s["top"] = [[h["path"], h["start_line"], h["end_line"]] for h in hits]
            rec["methods"][name] = s

    for rec, hits in zip(per_query, hybrid_hits, strict=True):
        rec["hybrid_miss"] = miss_category(rec, hits, root)

    summary = summarise(per_query)
    misses = {
        sp: Counter(
            q["hybrid_miss"] for q in per_query if q["split"] == sp and q["hybrid_miss"]
        ).most_common()
        for sp in queryset.SPLITS
    }
    repeats = {
        sp: sum(
            1
            for q in per_query
            if q["split"] == sp
            for i, t in enumerate(q["methods"]["hybrid"]["top"])
            if t[4] and (t[0], t[4]) in {(u[0], u[4]) for u in q["methods"]["hybrid"]["top"][:i]}
        )
        for sp in queryset.SPLITS
    }
    machine = f"{cpu_name()}, {os.cpu_count()} cores"
    head = (
        f"funcq: {len(queries)} queries (tune {sum(q['split'] == 'tune' for q in queries)}, "
        f"heldout {sum(q['split'] == 'heldout' for q in queries)}), "
        f"{status['files']} files, {status['chunks']} chunks, {len(wins)} windows "
        f"({args.window} lines, stride {args.stride}); model {status['model']}; {machine}"
    )
    ratios = {sp: ratio(summary, sp) for sp in queryset.SPLITS}
    text = [
        head,
        "",
        overall_table(summary),
        "",
        "Function-level MRR@10 by class and language:",
        "",
        breakdown_table(summary, "fn_mrr"),
        "",
        "hybrid / max(win-minilm, win-bm25), function MRR@10: "
        + ", ".join(f"{sp} {r:.3f}" for sp, r in ratios.items()),
        "",
        "What ranks first when hybrid's first hit is not the target:",
    ]
    for sp, counts in misses.items():
        n_miss = sum(n for _c, n in counts)
        n_sp = sum(q["split"] == sp for q in per_query)
        text.append(f"  {sp} ({n_miss} of {n_sp}): " + "; ".join(f"{c} {n}" for c, n in counts))
    text.append(
        "hybrid top-10 slots repeating a (file, symbol) already shown (parts of one split "
        "definition): " + ", ".join(f"{sp} {n}" for sp, n in repeats.items())
    )
    printed = "\n".join(text)
    print(printed)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = [
        "# funcq: function-level retrieval, coderag vs 40-line windows",
        "",
        "Written by `python bench/funcq_eval.py` (see bench/funcq/README.md).",
        "",
        printed,
        "",
        "## Function-level Recall@10 by class and language",
        "",
        breakdown_table(summary, "fn_recall"),
        "",
        "## File-level MRR@10 by class and language",
        "",
        breakdown_table(summary, "file_mrr"),
        "",
        "## Every group, every metric",
        "",
        full_tables(summary),
    ]
    Path(f"{out}.md").write_text("\n".join(md) + "\n", "utf-8")
    raw = {
        "machine": machine,
        "model": status["model"],
        "files": status["files"],
        "chunks": status["chunks"],
        "windows": len(wins),
        "window_lines": args.window,
        "window_stride": args.stride,
        "k": args.k,
        "index_seconds": round(index_s, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "summary": summary,
        "ratio_hybrid_over_best_window_fn_mrr": ratios,
        "hybrid_miss_categories": misses,
        "hybrid_repeated_symbol_slots": repeats,
        "queries": [compact(q) for q in per_query],
    }
    Path(f"{out}.json").write_text(json.dumps(raw, separators=(",", ":")) + "\n", "utf-8")
    say(f"wrote {out}.json and {out}.md ({time.perf_counter() - t_start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
