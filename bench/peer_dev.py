"""Fast iteration on ranking against the peer benchmark in ../shared/peer-bench.

The official runner (``run_peer.py``) indexes a fresh copy of each repository cold and calls
the CLI once per query: right for the recorded number, slow for trying ranking ideas. This
script keeps one persistent index per repository (incremental refresh, so only changed
chunks are re-embedded), runs the queries in-process and scores them with the peer's own
metric code (imported from ``run_peer.py``, not re-implemented).

    python bench/peer_dev.py --index            # build/refresh the indexes (slow the first time)
    python bench/peer_dev.py --modes hybrid,lexical,dense
    python bench/peer_dev.py --repo chi --show  # per-query detail

Numbers it prints are for development; the number to quote comes from ``run_peer.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = HERE.parent.parent / "shared" / "peer-bench"
sys.path.insert(0, str(PEER))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--cache",
        default=os.environ.get(
            "PEERBENCH_CACHE", str(Path(tempfile.gettempdir()) / "peerbench-cache")
        ),
    )
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "coderag-peerwork"))
    ap.add_argument("--repo", action="append", default=[])
    ap.add_argument("--index", action="store_true", help="refresh the indexes first")
    ap.add_argument("--lexical-only", action="store_true", help="with --index: skip embedding")
    ap.add_argument("--modes", default="hybrid")
    ap.add_argument("--show", action="store_true", help="print each query's top files")
    ap.add_argument("--files", action="store_true", help="search with files=True (--files)")
    ap.add_argument("--out", help="write per-repo results as JSON")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. rrf_k=10")
    args = ap.parse_args()

    import run_peer  # the peer's own loader and metric

    from coderag import Index

    manifest = json.loads((Path(args.cache) / "manifest.json").read_text())["repos"]
    published = json.loads((PEER / "published.json").read_text())["methods"]["semble-hybrid"][
        "repos"
    ]
    remaps = json.loads((PEER / "span_remap.json").read_text())
    names = args.repo or sorted(manifest)
    modes = args.modes.split(",")
    emb = None
    table = []
    for name in names:
        info = manifest[name]
        bench_dir = Path(info["benchmark_dir"])
        work = Path(args.work) / name
        if not work.exists():
            shutil.copytree(bench_dir, work, symlinks=True)
        if emb is None and not (args.index and args.lexical_only):
            from coderag.models import load_embedder

            emb = load_embedder("auto")
        overrides = dict(kv.split("=", 1) for kv in args.set)
        idx = Index(work, embedder=emb, **overrides)
        if args.index:
            t0 = time.perf_counter()
            st = idx.refresh(lexical_only=args.lexical_only)
            print(
                f"{name}: indexed {st.files_indexed} files, {st.chunks_embedded} embedded, "
                f"{idx.status()['chunks']} chunks, {time.perf_counter() - t0:.1f}s",
                file=sys.stderr,
            )
        tasks = run_peer.load_tasks(
            name, info["language"], remaps.get(name), Path(info["checkout_dir"])
        )
        row = {
            "repo": name,
            "lang": info["language"],
            "q": len(tasks),
            "pub": published.get(name, {}).get("ndcg10"),
        }
        for mode in modes:
            scores, lats = [], []
            for t in tasks:
                t0 = time.perf_counter()
                hits = idx.search(t.query, k=10, mode=mode, files=args.files)
                lats.append((time.perf_counter() - t0) * 1000)
                res = run_peer.score_task(
                    t, [run_peer.Hit(h.path, h.start_line, h.end_line) for h in hits], None
                )
                scores.append(res["ndcg10"])
                if args.show:
                    top = [h.path for h in hits]
                    want = [x.path for x in t.all_relevant]
                    print(f"  [{mode}] {res['ndcg10']:.2f} {t.query!r} want={want} got={top[:5]}")
            row[mode] = statistics.mean(scores) if scores else 0.0
            row[mode + "_p50ms"] = statistics.median(lats) if lats else 0.0
        table.append(row)
        print(
            f"{name:15s} {info['language']:10s} "
            + " ".join(f"{m}={row[m]:.3f}" for m in modes)
            + (f"  pub:semble={row['pub']:.3f}" if row["pub"] else ""),
            flush=True,
        )
    print()
    for m in modes:
        print(
            f"mean {m}: {statistics.mean(r[m] for r in table):.3f}  (p50 {statistics.mean(r[m + '_p50ms'] for r in table):.0f} ms)"
        )
    pubs = [r["pub"] for r in table if r["pub"]]
    if pubs:
        print(f"mean pub:semble over the same repos: {statistics.mean(pubs):.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
