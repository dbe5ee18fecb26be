"""Experiment: a code-trained static table (tokenlearn-style) against the plain distillation.

1. Corpus: a subset of this interpreter's standard library (the one bench/static_tier.py
   uses), chunked by coderag (``--lexical-only``, ``static = off``); no funcq package is in it.
2. Teacher: the bundled MiniLM's vectors of ``--sample`` of those chunks' embed texts
   (cached beside the corpus).
3. Student: the distilled token table (model2vec recipe, ``coderag.models.distill_static``),
   trained so that each chunk's static vector (IDF-weighted sum of its tokens' rows,
   normalised) points where the teacher's vector does, projected onto the table's own PCA
   basis (cosine loss, Adam, a pull back toward the distilled rows).
4. Score: static dense search alone (exhaustive cosine over every funcq chunk, weights from
   the funcq index's own document frequencies) on funcq's tune half, old table vs new, and
   the heldout half only with ``--heldout``.

    python bench/static_train.py --work /tmp/static-train            # ~10 min the first time
    python bench/static_train.py --work /tmp/static-train --epochs 16 --lr 0.03 --ship
                                        # (re)writes coderag's shipped table, as it was made
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "funcq"))


def corpus_texts(work: Path) -> list[str]:
    import static_tier

    from coderag.store import Store

    root = work / "stdlib"
    if not (root / ".coderag").is_dir():
        if root.exists():
            import shutil

            shutil.rmtree(root)
        static_tier.stdlib_corpus(root)
        static_tier.index(root, "--lexical-only", static="off")
    return [r["embed_text"] for r in Store(root).all_chunk_rows(["embed_text"])]


def teacher(work: Path, texts: list[str]) -> np.ndarray:
    cache = work / f"teacher-{len(texts)}.npy"
    if cache.is_file():
        return np.load(cache)
    from coderag.models import load_embedder

    emb = load_embedder("auto", device="cpu")
    t0 = time.perf_counter()
    vec = np.asarray(emb.embed_documents(texts), dtype=np.float32)
    print(f"teacher: {len(texts)} chunks in {time.perf_counter() - t0:.0f}s", flush=True)
    np.save(cache, vec)
    return vec


def pca_basis(work: Path):
    """The distillation's centre and PCA basis (recomputed: the cache keeps only the table)."""
    cache = work / "basis.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["mean"], z["vt"]
    from sentence_transformers import SentenceTransformer

    from coderag.models.load import bundled_model_path
    from coderag.models.static import DIM, _token_vectors

    st = SentenceTransformer(str(bundled_model_path()), device="cpu")
    hidden = _token_vectors(st[0].auto_model.eval(), st.tokenizer, 1024)
    mean = hidden.mean(0)
    _, _, vt = np.linalg.svd(hidden - mean, full_matrices=False)
    np.savez(cache, mean=mean, vt=vt[:DIM])
    return mean, vt[:DIM]


def train(table, ids, weights, targets, epochs: int, lr: float, pull: float) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    init = torch.tensor(np.asarray(table), dtype=torch.float32)
    emb = torch.nn.EmbeddingBag(init.shape[0], init.shape[1], mode="sum")
    emb.weight.data.copy_(init)
    opt = torch.optim.Adam(emb.parameters(), lr=lr)
    y = F.normalize(torch.tensor(targets), dim=-1)
    w = torch.tensor(weights)
    n = len(ids)
    order = np.arange(n)
    rng = np.random.default_rng(0)
    for ep in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for i in range(0, n, 256):
            part = order[i : i + 256]
            flat = np.concatenate([ids[j] for j in part]).astype(np.int64)
            offsets = np.cumsum([0] + [len(ids[j]) for j in part[:-1]])
            t = torch.from_numpy(flat)
            v = emb(t, torch.from_numpy(offsets), per_sample_weights=w[t])
            loss = (1 - (F.normalize(v, dim=-1) * y[part]).sum(-1)).mean()
            loss = loss + pull * ((emb.weight[t] - init[t]) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(part)
        print(f"epoch {ep + 1}: loss {total / n:.4f}", flush=True)
    return emb.weight.detach().numpy().astype(np.float32)


def funcq_static_dense(tables: dict, split: str) -> dict:
    """fn MRR@10 of static dense search alone on funcq's ``split``, per table."""
    import funcq_eval
    import queryset
    import resolve

    from coderag.models import static
    from coderag.store import Store

    root = funcq_eval.index_root(False)
    qs = [q for q in resolve.resolve_all(root, queryset.load()) if q["split"] == split]
    rows = Store(root).all_chunk_rows(
        ["path", "start_line", "end_line", "kind", "symbol", "embed_text"]
    )
    df = static.DocFreq.load(root / ".coderag" / static.DF_FILE, 30522)
    model = static.load_cached("sentence-transformers/all-MiniLM-L6-v2")
    ids = model.token_ids([r["embed_text"] for r in rows])
    out = {}
    for name, table in tables.items():
        model.table, model.scales = table if isinstance(table, tuple) else (table, None)
        vec = model.vectors(ids, df.weights())
        scores = []
        for q in qs:
            qv = model.embed([q["query"]], df.weights())[0]
            top = np.argsort(-(vec @ qv), kind="stable")[:10]
            hits = [rows[i] for i in top]
            scores.append(funcq_eval.score(hits, q["relevant"], funcq_eval.chunk_match)["fn_mrr"])
        out[name] = round(float(np.mean(scores)), 4)
    return out


def ship(trained: np.ndarray, args) -> object:
    """The trained table, int8, as coderag's shipped static table (coderag/models/static_code)."""
    from sentence_transformers import SentenceTransformer

    from coderag.models import BUNDLED_MODEL_ID, static
    from coderag.models.load import bundled_model_path

    tok = SentenceTransformer(str(bundled_model_path()), device="cpu").tokenizer
    meta = {
        "format": static.FORMAT,
        "source": BUNDLED_MODEL_ID,
        "model_id": f"{static.distilled_id(BUNDLED_MODEL_ID)}:code1",
        "dim": int(trained.shape[1]),
        "vocab": len(tok),
        "trained_on": f"{args.sample} chunks of this interpreter's standard library "
        f"(Python {sys.version.split()[0]}), teacher {BUNDLED_MODEL_ID} (Apache-2.0)",
        "recipe": f"python bench/static_train.py --work DIR --sample {args.sample} "
        f"--epochs {args.epochs} --lr {args.lr} --pull {args.pull} --ship",
    }
    static.write_table(static.SHIPPED, trained, tok, meta, int8=True)
    for f in static.SHIPPED.iterdir():
        f.chmod(0o644)  # package data, not a private cache
    static.SHIPPED.chmod(0o755)
    return static.StaticModel(static.SHIPPED)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sample", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--pull", type=float, default=0.0)
    ap.add_argument("--heldout", action="store_true")
    ap.add_argument("--save", type=Path, help="write the trained table (.npy) here")
    ap.add_argument(
        "--ship", action="store_true", help="write it (int8) as coderag's shipped static table"
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    from coderag.models import static

    texts = corpus_texts(args.work)
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(texts), min(args.sample, len(texts)), replace=False))
    texts = [texts[i] for i in pick]
    y = teacher(args.work, texts)
    mean, vt = pca_basis(args.work)
    targets = ((y - mean) @ vt.T).astype(np.float32)

    static.distill_static()
    model = static.load_cached("sentence-transformers/all-MiniLM-L6-v2")
    ids = model.token_ids(texts)
    df = static.DocFreq(model.vocab)
    df.add(ids)
    t0 = time.perf_counter()
    trained = train(
        np.asarray(model.table), ids, df.weights(), targets, args.epochs, args.lr, args.pull
    )
    print(f"trained in {time.perf_counter() - t0:.0f}s", flush=True)
    if args.save:
        np.save(args.save, trained)
    tables = {"distilled": np.asarray(model.table), "trained": trained}
    if args.ship:
        shipped = ship(trained, args)
        tables["shipped (int8)"] = (np.asarray(shipped.table), shipped.scales)
    result = {"tune": funcq_static_dense(tables, "tune")}
    if args.heldout:
        result["heldout"] = funcq_static_dense(tables, "heldout")
    print(json.dumps({**result, "args": {k: str(v) for k, v in vars(args).items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
