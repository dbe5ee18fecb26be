"""CPU benchmark of coderag.models (the Embedder) with the bundled all-MiniLM-L6-v2.

Input: real code, the .py files of an installed package (default: sentence_transformers itself),
cut at line boundaries into pieces of about 200 tokens (by the model's own tokenizer).

For each token budget it measures
  * pipeline: ``Embedder.embed_documents(texts)`` end to end (tokenise, sort, batch, pad, forward,
    pool, normalise, copy to numpy);
  * raw: the bare Hugging Face forward pass (``AutoModel(**features)``) on the very same padded
    token batches, built beforehand and not timed;
and reports chunks/s, tokens/s (real tokens, padding excluded), the ratio raw/pipeline time
(the goal is >= 0.9), padding (padded / computed tokens) and peak RSS. A plain
``SentenceTransformer.encode(batch_size=32)`` run is shown for reference.

    .venv/bin/python bench/embed.py [--limit 800] [--budgets 2048,4096,8192,16384] [--package NAME]

Prints a Markdown table; writes JSON to $OUT/bench_embed.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def code_pieces(package: str, count, target: int = 200, limit: int = 800) -> list[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package!r} not found")
    root = Path(next(iter(spec.submodule_search_locations)))
    pieces: list[str] = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        cur: list[str] = []
        n = 0
        for line in lines:
            k = count(line)
            if cur and n + k > target:
                pieces.append("".join(cur))
                cur, n = [], 0
            cur.append(line)
            n += k
        if cur and n >= target // 4:
            pieces.append("".join(cur))
        if len(pieces) >= limit:
            break
    return pieces[:limit]


def run(limit: int, budgets: list[int], package: str, repeats: int) -> dict:
    import torch

    from coderag import models
    from coderag.models.embedder import plan_batches

    t0 = time.perf_counter()
    import sentence_transformers  # noqa: F401  (import time measured separately from load)

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = models.load_embedder("bundled", device="cpu")
    t_load = time.perf_counter() - t0
    texts = code_pieces(package, base.count, limit=limit)
    n_tokens_content = sum(base.count(t) for t in texts)
    rows = []
    for budget in budgets:
        emb = models.load_embedder("bundled", device="cpu", token_budget=budget)
        emb.embed_documents(texts[:64])  # warm-up
        # the very same batches for the raw forward, built (untimed) the way the pipeline does
        ids = emb.tokenize(texts)
        batches = plan_batches([len(x) for x in ids], emb.token_budget)
        feats = [emb.collate([ids[i] for i in b]) for b in batches]
        auto_model = emb.st_model[0].auto_model
        # interleave pipeline and raw runs (the machine may be shared), keep the best of each
        best_pipe = best_raw = float("inf")
        for _ in range(repeats):
            emb.reset_stats()
            t0 = time.perf_counter()
            vecs = emb.embed_documents(texts)
            best_pipe = min(best_pipe, time.perf_counter() - t0)
            info = emb.info()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for f in feats:
                    auto_model(input_ids=f["input_ids"], attention_mask=f["attention_mask"])
            best_raw = min(best_raw, time.perf_counter() - t0)
        assert vecs.shape == (len(texts), emb.dim)
        assert info["batches"] == len(batches)
        real = info["real_tokens"]
        rows.append(
            {
                "budget": budget,
                "chunks": len(texts),
                "batches": len(batches),
                "real_tokens": real,
                "computed_tokens": info["computed_tokens"],
                "padding_fraction": info["padding_fraction"],
                "pipeline_s": best_pipe,
                "raw_s": best_raw,
                "chunks_per_s": len(texts) / best_pipe,
                "tokens_per_s": real / best_pipe,
                "raw_tokens_per_s": real / best_raw,
                "raw_over_pipeline": best_raw / best_pipe,
            }
        )
    # reference: plain sentence-transformers encode, fixed batch of 32
    st = base.st_model
    st.encode(texts[:64], batch_size=32)
    t0 = time.perf_counter()
    st.encode(texts, batch_size=32, normalize_embeddings=True)
    t_st = time.perf_counter() - t0
    return {
        "load_average_1m": os.getloadavg()[0],
        "model": base.model_id,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "package": package,
        "chunks": len(texts),
        "content_tokens": n_tokens_content,
        "mean_tokens_per_chunk": n_tokens_content / max(1, len(texts)),
        "import_sentence_transformers_s": t_import,
        "load_s": t_load,
        "rows": rows,
        "st_encode_bs32_s": t_st,
        "st_encode_bs32_chunks_per_s": len(texts) / t_st,
        "peak_rss_mb": peak_rss_mb(),
    }


def markdown(res: dict) -> str:
    out = [
        f"CPU, {res['threads']} threads, {res['model']}; {res['chunks']} chunks of real code from "
        f"`{res['package']}` (mean {res['mean_tokens_per_chunk']:.0f} content tokens/chunk); "
        f"load {res['load_s']:.2f} s (+ import {res['import_sentence_transformers_s']:.2f} s); "
        f"peak RSS {res['peak_rss_mb']:.0f} MB; load average {res['load_average_1m']:.1f}",
        "",
        "| token budget | batches | padding | pipeline chunks/s | pipeline tokens/s | raw forward tokens/s | raw/pipeline |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        out.append(
            f"| {r['budget']} | {r['batches']} | {100 * r['padding_fraction']:.1f}% | "
            f"{r['chunks_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['raw_tokens_per_s']:.0f} | "
            f"{r['raw_over_pipeline']:.3f} |"
        )
    out.append("")
    out.append(
        f"Reference: `SentenceTransformer.encode(batch_size=32)` on the same chunks: "
        f"{res['st_encode_bs32_chunks_per_s']:.1f} chunks/s."
    )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=800, help="number of ~200-token chunks")
    ap.add_argument("--budgets", default="2048,4096,8192,16384")
    ap.add_argument("--package", default="sentence_transformers")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    budgets = [int(x) for x in args.budgets.split(",")]
    res = run(args.limit, budgets, args.package, args.repeats)
    print(markdown(res))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "bench_embed.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
