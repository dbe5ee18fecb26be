"""The static-embedding tier: how soon a repository is searchable with dense vectors, and
what those vectors are worth.

1. Speed, on real code that every machine with Python has (a copy of this interpreter's
   standard library, ~20-30k chunks), each run a fresh ``coderag index`` process timed from
   outside, in one run so the ratios compare like with like:
   * ``--lexical-only`` with ``CODERAG_STATIC=off``: the baseline (walk, chunk, store, FTS);
   * ``CODERAG_STATIC=only``: the same plus a static vector for every chunk (phase 1b):
     the time until dense search covers the whole repository;
   * the model's rate (all-MiniLM-L6-v2 on this CPU, a 512-chunk sample) and the time it
     would need for the same chunks, for the ratio.
   The one-time distillation of the token table is timed separately (it is cached per
   machine; it is only the fallback now: the indexes use the shipped, code-trained table).
2. Quality on the shipped set (tests/eval): lexical, dense and hybrid with the model's
   vectors, dense and hybrid with static vectors only.

    python bench/static_tier.py            # prints a table; raw figures in bench/results/
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import cpu_name, say  # noqa: E402

STDLIB_DIRS = (
    "asyncio email json http logging concurrent importlib unittest xml urllib "
    "multiprocessing ctypes sqlite3 tomllib wsgiref zipfile idlelib lib2to3 pydoc_data"
).split()


def stdlib_corpus(dest: Path) -> Path:
    src = Path(sysconfig.get_paths()["stdlib"])
    dest.mkdir(parents=True)
    for name in STDLIB_DIRS:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for f in src.glob("*.py"):
        shutil.copy2(f, dest / f.name)
    return dest


def index(path: Path, *extra: str, static: str) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "coderag", "index", str(path), "--json", "-q", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CODERAG_STATIC": static},
    )
    if r.returncode != 0:
        raise SystemExit(f"coderag index failed: {r.stderr.strip()}")
    out = json.loads(r.stdout)
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    return out


def model_rate(root: Path, n: int = 512) -> float:
    from coderag.models import load_embedder
    from coderag.store import Store

    texts = [r["embed_text"] for r in Store(root).all_chunk_rows(["embed_text"])[:n]]
    emb = load_embedder("auto", device="cpu")
    emb.embed_documents(texts[:32])  # warm up
    t0 = time.perf_counter()
    emb.embed_documents(texts)
    return len(texts) / (time.perf_counter() - t0)


def quality() -> dict:
    sys.path.insert(0, str(HERE.parent / "tests" / "eval"))
    import corpus  # tests/eval/corpus.py

    from coderag import Index
    from coderag.evaluate import evaluate, load_queries

    root = Path(tempfile.mkdtemp(prefix="coderag-static-q-")) / "corpus"
    shutil.copytree(corpus.corpus_root(), root)
    Index(root).refresh()
    queries = load_queries(HERE.parent / "tests" / "eval" / "queries.jsonl")
    out = {}
    for static in ("off", "only"):
        idx = Index(root, static=static)
        modes = ["dense", "hybrid"] + (["lexical"] if static == "off" else [])
        for mode, res in evaluate(idx, queries, modes).items():
            name = (
                mode
                if mode == "lexical"
                else f"{mode} ({'model' if static == 'off' else 'static'})"
            )
            out[name] = res
    shutil.rmtree(root.parent, ignore_errors=True)
    return out


def main() -> None:
    from coderag.models import BUNDLED_MODEL_ID, distill_static, static

    results: dict = {"machine": f"{cpu_name()}, {os.cpu_count()} cores"}
    folder = static.cache_folder(BUNDLED_MODEL_ID)
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    distill_static()
    results["distill_s"] = round(time.perf_counter() - t0, 1)
    say(f"distilled the token table in {results['distill_s']} s (once per machine)")

    work = Path(tempfile.mkdtemp(prefix="coderag-static-"))
    try:
        a = stdlib_corpus(work / "a")
        b = work / "b"
        shutil.copytree(a, b)
        base = index(a, "--lexical-only", static="off")
        fast = index(b, static="only")
        rate = model_rate(b)
        chunks = fast["chunks_pending"]
        results["speed"] = {
            "chunks": chunks,
            "lexical_only_s": base["wall_s"],
            "static_only_s": fast["wall_s"],
            "static_pass_s": fast["static_seconds"],
            "static_chunks_per_s": round(chunks / max(fast["static_seconds"], 1e-9)),
            "model_chunks_per_s": round(rate, 1),
            "model_would_need_s": round(chunks / rate),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s = results["speed"]
    say(
        f"{s['chunks']:,} chunks: lexical-only {s['lexical_only_s']} s, with static vectors "
        f"{s['static_only_s']} s (static pass {s['static_pass_s']} s, "
        f"{s['static_chunks_per_s']:,} chunks/s); the model at {s['model_chunks_per_s']} "
        f"chunks/s would need {s['model_would_need_s']:,} s"
    )
    results["quality"] = quality()
    metrics = ("ndcg@10", "mrr@10", "recall@10", "file_ndcg@10", "p50_ms")
    print(f"| shipped set | {' | '.join(metrics)} |")
    print("|---|" + "---|" * len(metrics))
    for name, res in results["quality"].items():
        print(f"| {name} | " + " | ".join(f"{res[m]:.3f}" for m in metrics) + " |")
    out = HERE / "results" / "static_tier.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    say(f"raw figures: {out}")


if __name__ == "__main__":
    main()
