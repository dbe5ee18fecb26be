"""Experiment: fine-tune the bundled MiniLM on (docstring -> code) pairs, on this CPU.

The pairs come from the Python standard library of this interpreter (no download): every
function, method and class with a docstring of at least four words; the question side is the
docstring's first paragraph, the code side is the definition's source with the docstring
removed, under the context header coderag's chunker writes (``path (python) symbol``). None
of bench/funcq's packages is in the standard library, so its questions stay unseen.

Training: in-batch negatives (MultipleNegativesRankingLoss: cross-entropy over the cosine
similarities x 20), AdamW, linear warm-up, one pass, plain torch (no trainer dependencies).

    python bench/tune_model.py --out /tmp/minilm-code            # ~15 min on 2 cores
    python bench/tune_model.py --out /tmp/m --limit 2000 --epochs 1
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SKIP_TOP = {"site-packages", "test", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip"}


def stdlib_pairs(min_words: int = 4) -> list[tuple[str, str]]:
    """(question, code) for every documented definition of the standard library."""
    std = Path(sysconfig.get_paths()["stdlib"])
    pairs: list[tuple[str, str]] = []
    for p in sorted(std.rglob("*.py")):
        rel = p.relative_to(std)
        if rel.parts[0] in SKIP_TOP or "tests" in rel.parts or "test" in rel.parts:
            continue
        try:
            src = p.read_text("utf-8")
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = src.splitlines()
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    continue
                name = f"{prefix}{child.name}"
                stack.append((child, f"{name}."))
                doc = ast.get_docstring(child)
                if not doc:
                    continue
                question = " ".join(doc.strip().split("\n\n")[0].split())
                if len(question.split()) < min_words:
                    continue
                body = child.body[0]  # the docstring expression: cut its lines out
                start, end = child.lineno - 1, child.end_lineno or child.lineno
                if child.decorator_list:
                    start = child.decorator_list[0].lineno - 1
                keep = (
                    lines[start : body.lineno - 1] + lines[(body.end_lineno or body.lineno) : end]
                )
                code = "\n".join(keep)
                if sum(1 for ln in keep if ln.strip()) < 2:
                    continue
                module = ".".join(rel.with_suffix("").parts)
                header = f"{rel.as_posix()} (python) {module}.{name}"
                pairs.append((question[:600], f"{header}\n{code}"))
    return pairs


def train(
    pairs, out: Path, epochs: int, batch: int, lr: float, seed: int, code_tokens: int
) -> dict:
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    from coderag.models.load import bundled_model_path

    torch.manual_seed(seed)
    random.seed(seed)
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    model.max_seq_length = 256
    tok = model.tokenizer
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * (len(pairs) // batch)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / max(1, steps - warm))
    )

    def encode(texts, max_len):
        f = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return model({"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]})[
            "sentence_embedding"
        ]

    model.train()
    t0 = time.perf_counter()
    losses = []
    step = 0
    for _ in range(epochs):
        order = pairs[:]
        random.shuffle(order)
        for i in range(0, len(order) - batch + 1, batch):
            part = order[i : i + batch]
            q = F.normalize(encode([a for a, _ in part], 64), dim=-1)
            d = F.normalize(encode([b for _, b in part], code_tokens), dim=-1)
            logits = 20.0 * q @ d.T
            target = torch.arange(len(part))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 20 == 0:
                rate = step * batch / (time.perf_counter() - t0)
                print(
                    f"step {step}/{steps} loss {sum(losses[-20:]) / 20:.3f} ({rate:.0f} pairs/s)",
                    flush=True,
                )
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return {"pairs": len(pairs), "steps": step, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0, help="at most this many pairs (0: all)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--code-tokens", type=int, default=128, help="code side cut to this")
    args = ap.parse_args()
    pairs = stdlib_pairs()
    random.Random(args.seed).shuffle(pairs)
    if args.limit:
        pairs = pairs[: args.limit]
    print(f"{len(pairs)} pairs from the standard library", flush=True)
    info = train(pairs, args.out, args.epochs, args.batch, args.lr, args.seed, args.code_tokens)
    (args.out / "coderag_tuning.json").write_text(json.dumps({**info, **vars(args)}, default=str))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
