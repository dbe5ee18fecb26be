"""Compare ranking settings on the peer benchmark and the shipped set, fast.

Retrieval (LanceDB full text, vectors, definitions by name) runs once per query and mode;
each variant then re-runs only the pure-Python ranking stack (``coderag.rank``) on the
cached candidates, so dozens of variants cost seconds. The peer benchmark is scored with its
own metric (``run_peer.score_task``), the shipped set with ``coderag.evaluate.score_query``.

    python bench/rank_sweep.py                               # defaults only
    python bench/rank_sweep.py --vary rrf_k=5,10,20 --vary dense=0.5,0.7,1.0
    python bench/rank_sweep.py --eval-repo /tmp/evalcorpus   # include the shipped set
    python bench/rank_sweep.py --repo none --funcq tune      # funcq's tune half only

``--funcq SPLIT`` adds bench/funcq (function-level MRR@10, hybrid, the index that
``bench/funcq_eval.py`` builds); tune on ``tune``, report ``heldout`` once.

A repository is searched in hybrid mode when all its chunks have vectors, else lexically
(the row says which). Needs the indexes of ``bench/peer_dev.py --index``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = HERE.parent.parent / "shared" / "peer-bench"
sys.path.insert(0, str(PEER))
sys.path.insert(0, str(HERE.parent))


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def collect(idx, queries: list[tuple[str, bool | None]], mode: str, depth: int = 100):
    """Candidates of each query, retrieved once (the expensive, variant-independent part)."""
    from coderag import rank

    # the static list too, when the index has both kinds of vector (variants weigh it)
    idx.weights = dataclasses.replace(idx.weights, static=1.0)
    store = idx._open_store().snapshot()
    meta = store.meta()
    out = []
    for q, code in queries:
        is_code = rank.looks_like_code(q) if code is None else code
        out.append((idx._candidates(store, meta, q, mode, is_code, depth, None, None), is_code))
    return out


FILES = False  # --files: rank files (``coderag search --files``) instead of chunks


def ranked_hits(cands, query: str, weights, k: int = 10) -> list[dict]:
    from coderag import rank

    c = cands[0]
    fused = rank.rank(
        c.lexical, c.dense, c.definitions, c.owners, query, weights, cands[1], c.static
    )
    pick = rank.by_file if FILES else rank.collapse
    return [dict(r, score=s) for r, s in pick(fused, k)]


def funcq_suite(emb, split: str):
    """bench/funcq's ``split`` half: hybrid candidates on its index, function-level MRR@10."""
    sys.path.insert(0, str(HERE / "funcq"))
    import funcq_eval
    import queryset
    import resolve

    from coderag import Index

    root = funcq_eval.index_root(False)
    qs = [q for q in resolve.resolve_all(root, queryset.load()) if q["split"] == split]
    idx = Index(root, embedder=emb)
    cands = collect(
        idx, [(q["query"], True if q["kind"] == "code" else None) for q in qs], "hybrid"
    )

    def fn_mrr(hits, q):
        return funcq_eval.score(hits, q["relevant"], funcq_eval.chunk_match)["fn_mrr"]

    return ("funcq", "hybrid", [(q["query"], q) for q in qs], cands, fn_mrr)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "peerbench-cache"))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "coderag-peerwork"))
    ap.add_argument("--repo", action="append", default=[])
    ap.add_argument("--eval-repo", help="an index of the shipped set's corpus (tests/eval)")
    ap.add_argument(
        "--vary", action="append", default=[], help="Weights field=v1,v2,... (grid over all)"
    )
    ap.add_argument("--funcq", choices=("tune", "heldout"), help="add bench/funcq's half")
    ap.add_argument("--per-repo", action="store_true")
    ap.add_argument("--files", action="store_true", help="score `search --files` rankings")
    args = ap.parse_args()
    global FILES
    FILES = args.files

    import run_peer

    from coderag import Index, rank
    from coderag.evaluate import score_query
    from coderag.models import load_embedder

    emb = load_embedder("auto")
    listed = Path(args.cache) / "manifest.json"
    manifest = json.loads(listed.read_text())["repos"] if listed.exists() else {}
    remaps = json.loads((PEER / "span_remap.json").read_text())
    published = json.loads((PEER / "published.json").read_text())["methods"]["semble-hybrid"][
        "repos"
    ]
    grid = [
        (f, [_value(v) for v in vals.split(",")]) for f, vals in (x.split("=") for x in args.vary)
    ]
    base = rank.Weights()
    variants = [
        dataclasses.replace(base, **dict(zip([f for f, _ in grid], combo, strict=True)))
        for combo in itertools.product(*[v for _, v in grid])
    ] or [base]

    suites = []  # (name, mode, tasks, candidates, scorer)
    for name in [r for r in args.repo if r != "none"] or ([] if args.repo else sorted(manifest)):
        info = manifest[name]
        work = Path(args.work) / name
        if not (work / ".coderag").is_dir():
            print(f"{name}: no index under {work} (run bench/peer_dev.py --index)", file=sys.stderr)
            continue
        idx = Index(work, embedder=emb)
        mode = "hybrid" if idx.status()["dense_coverage"] >= 1.0 else "lexical"
        tasks = run_peer.load_tasks(
            name, info["language"], remaps.get(name), Path(info["checkout_dir"])
        )
        cands = collect(idx, [(t.query, None) for t in tasks], mode)

        def peer_score(hits, t):
            got = [run_peer.Hit(h["path"], h["start_line"], h["end_line"]) for h in hits]
            return run_peer.score_task(t, got, None)["ndcg10"]

        suites.append((name, mode, [(t.query, t) for t in tasks], cands, peer_score))
        print(f"collected {name} ({mode}, {len(tasks)} queries)", file=sys.stderr, flush=True)
    if args.eval_repo:
        qs = [
            json.loads(line)
            for line in (HERE.parent / "tests" / "eval" / "queries.jsonl").read_text().splitlines()
            if line.strip()
        ]
        idx = Index(args.eval_repo, embedder=emb)
        for mode in ("hybrid", "lexical", "dense"):
            cands = collect(
                idx, [(q["query"], True if q.get("kind") == "code" else None) for q in qs], mode
            )
            suites.append(
                (
                    f"shipped-{mode}",
                    mode,
                    [(q["query"], q) for q in qs],
                    cands,
                    lambda hits, q: score_query(hits, q["relevant"])["ndcg@10"],
                )
            )

    if args.funcq:
        suites.append(funcq_suite(emb, args.funcq))

    for w in variants:
        label = ", ".join(f"{f}={getattr(w, f)}" for f, _ in grid) or "defaults"
        per = {}
        for name, _mode, items, cands, scorer in suites:
            scores = [
                scorer(ranked_hits(c, q, w), item)
                for (q, item), c in zip(items, cands, strict=True)
            ]
            per[name] = statistics.mean(scores)
        peer = [n for n, *_ in suites if not n.startswith("shipped-") and n != "funcq"]
        line = f"{label:40s}"
        if peer:
            line += f" peer mean {statistics.mean(per[n] for n in peer):.4f} ({len(peer)} repos)"
            pubs = [published[n]["ndcg10"] for n in peer if n in published]
            line += f" [semble {statistics.mean(pubs):.4f}]" if len(pubs) == len(peer) else ""
        if "funcq" in per:
            line += f"  funcq {args.funcq} fn MRR@10 {per['funcq']:.4f}"
        if "shipped-hybrid" in per:
            best_single = max(per["shipped-lexical"], per["shipped-dense"])
            line += (
                f"  shipped hybrid {per['shipped-hybrid']:.4f} "
                f"(lex {per['shipped-lexical']:.3f}, dense {per['shipped-dense']:.3f}, "
                f"x{per['shipped-hybrid'] / best_single:.3f})"
            )
        print(line, flush=True)
        if args.per_repo:
            for n in per:
                print(f"    {n:16s} {per[n]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
