"""The light query encoder: a numpy-only forward pass of a BERT-family model.

A one-shot ``coderag search`` must not wait seconds for ``import torch``: when the index's
model is a BERT encoder (all-MiniLM-L6-v2), :func:`export_query_encoder` writes its weights as
``.npy`` files and its tokenizer under ``.coderag/``, and :func:`load_query_encoder` gives a
:class:`QueryEncoder` that embeds one query at a time with numpy and ``tokenizers`` alone,
to the same vector (cosine >= 0.999). torch is imported only by the export.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .embedder import QUERY_CACHE_SIZE, QUERY_KINDS, Embedder, check_query_kind, st_modules
from .tokens import counting_tokenizer

QUERY_ENCODER_FORMAT = 1
_QE_CONFIG = "query_encoder.json"
_QE_ACTS = {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu"}


# --------------------------------------------------------------------------------------------
# Export (torch) and load (numpy)
# --------------------------------------------------------------------------------------------


def _exportable(embedder: Embedder) -> bool:
    """A BERT encoder with absolute positions, a supported activation, mean or CLS pooling,
    and nothing after its Transformer but Pooling and Normalize."""
    _, Normalize, Pooling = st_modules()
    st = embedder.st_model
    config = st[0].auto_model.config
    return (
        getattr(config, "model_type", None) == "bert"
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and config.hidden_act in _QE_ACTS
        and embedder.pooling in ("mean", "cls")
        and all(isinstance(m, Pooling | Normalize) for m in list(st)[1:])
    )


def _save_bert_weights(state: dict[str, np.ndarray], layers: int, weights: Path) -> None:
    """One ``.npy`` per weight, laid out for ``x @ W`` (query, key and value fused)."""

    def save(name: str, array: np.ndarray) -> None:
        np.save(weights / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32))

    emb = "embeddings."
    save("word", state[emb + "word_embeddings.weight"])
    save("pos", state[emb + "position_embeddings.weight"])
    save("type0", state[emb + "token_type_embeddings.weight"][0])
    save("ln_w", state[emb + "LayerNorm.weight"])
    save("ln_b", state[emb + "LayerNorm.bias"])
    for i in range(layers):
        p = f"encoder.layer.{i}."
        qkv_w = np.concatenate(
            [state[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")], axis=0
        )
        qkv_b = np.concatenate(
            [state[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
        )
        save(f"l{i}_qkv_w", qkv_w.T)  # (hidden, 3*hidden): x @ W
        save(f"l{i}_qkv_b", qkv_b)
        save(f"l{i}_ao_w", state[p + "attention.output.dense.weight"].T)
        save(f"l{i}_ao_b", state[p + "attention.output.dense.bias"])
        save(f"l{i}_aln_w", state[p + "attention.output.LayerNorm.weight"])
        save(f"l{i}_aln_b", state[p + "attention.output.LayerNorm.bias"])
        save(f"l{i}_in_w", state[p + "intermediate.dense.weight"].T)
        save(f"l{i}_in_b", state[p + "intermediate.dense.bias"])
        save(f"l{i}_out_w", state[p + "output.dense.weight"].T)
        save(f"l{i}_out_b", state[p + "output.dense.bias"])
        save(f"l{i}_oln_w", state[p + "output.LayerNorm.weight"])
        save(f"l{i}_oln_b", state[p + "output.LayerNorm.bias"])


def export_query_encoder(embedder: Embedder, folder: Path) -> Path | None:
    """Write a torch-free copy of ``embedder``'s query path into ``folder``.

    Only BERT-family models (absolute positions, mean or CLS pooling, optional Normalize) are
    supported; for others nothing is written and None is returned (callers load the full model).
    The folder holds ``query_encoder.json``, ``tokenizer.json`` and one ``.npy`` per weight.
    """
    import torch

    if not _exportable(embedder):
        return None
    _, Normalize, _ = st_modules()
    st = embedder.st_model
    model = st[0].auto_model
    config = model.config
    folder = Path(folder)
    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).numpy() for k, v in model.state_dict().items()}
    _save_bert_weights(state, config.num_hidden_layers, weights)
    counting_tokenizer(embedder.tokenizer).save(str(folder / "tokenizer.json"))
    meta = {
        "format": QUERY_ENCODER_FORMAT,
        "arch": "bert",
        "model": embedder.model_id,
        "dim": embedder.dim,
        "native_dim": embedder.native_dim,
        "max_tokens": embedder.max_tokens,
        "seq_len": embedder.seq_len,
        "hidden": int(config.hidden_size),
        "heads": int(config.num_attention_heads),
        "layers": int(config.num_hidden_layers),
        "eps": float(config.layer_norm_eps),
        "act": config.hidden_act,
        "pooling": embedder.pooling,
        "normalize": any(isinstance(m, Normalize) for m in st),
        "query_prefix": {k: embedder.query_prefix(k) for k in QUERY_KINDS},
    }
    (folder / _QE_CONFIG).write_text(json.dumps(meta, indent=1))
    return folder


def load_query_encoder(folder: Path) -> QueryEncoder | None:
    """The encoder exported to ``folder``, or None when there is none (or it is unusable)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / _QE_CONFIG).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != QUERY_ENCODER_FORMAT or meta.get("arch") != "bert":
        return None
    if not (folder / "tokenizer.json").is_file() or not (folder / "weights" / "word.npy").is_file():
        return None
    try:
        return QueryEncoder(folder, meta)
    except (OSError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------------------------
# numpy pieces
# --------------------------------------------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.2e-7 absolute (Numerical Recipes erfc Chebyshev fit); numpy has no erf."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t
                            * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    r = 1.0 - t * np.exp(poly)
    return np.where(x >= 0, r, -r)


_BLAS_API: Any = None


def _openblas_thread_api(path: str) -> tuple[Any, Any] | None:
    """(get, set) thread-count functions of the OpenBLAS library at ``path``, else None."""
    import ctypes

    lib = ctypes.CDLL(path)
    for prefix in ("scipy_openblas", "openblas"):
        for suffix in ("64_", "_64_", ""):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                return get, put
    return None


def _blas_thread_api() -> tuple[Any, Any] | None:
    """(get, set) for the OpenBLAS that numpy loaded, found like threadpoolctl does; else None.

    A one-query forward pass is made of tiny matrix products: OpenBLAS threads only add
    hand-offs, and on a busy machine (an indexer running beside the CLI) they spin for tens of
    milliseconds per product. The encoder runs them on one thread.
    """
    global _BLAS_API
    if _BLAS_API is None:
        _BLAS_API = False
        try:
            with open("/proc/self/maps") as maps:
                libs = sorted({ln.split()[-1] for ln in maps if "openblas" in ln.lower()})
            for path in libs:
                api = _openblas_thread_api(path)
                if api is not None:
                    _BLAS_API = api
                    break
        except (OSError, ValueError, IndexError):
            pass
    return _BLAS_API or None


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------


class QueryEncoder:
    """Numpy forward pass of a BERT encoder for one query at a time (see export_query_encoder)."""

    def __init__(self, folder: Path, meta: dict) -> None:
        from tokenizers import Tokenizer

        self.folder = folder
        self.meta = meta
        self.model_id: str = meta["model"]
        self.dim: int = int(meta["dim"])
        self.max_tokens: int = int(meta["max_tokens"])
        self._prefix: dict[str, str] = meta["query_prefix"]
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=int(meta["seq_len"]))
        self._count_tok: Any = None
        w = folder / "weights"
        # memory-mapped: the 47 MB word-embedding table is only touched at the query's rows
        self._w = {p.stem: np.load(p, mmap_mode="r") for p in w.glob("*.npy")}
        self._h, self._heads, self._layers = meta["hidden"], meta["heads"], meta["layers"]
        self._eps = float(meta["eps"])
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def query_prefix(self, kind: str = "nl") -> str:
        check_query_kind(kind)
        return self._prefix[kind]

    def count(self, text: str) -> int:
        if self._count_tok is None:
            from tokenizers import Tokenizer

            self._count_tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            self._count_tok.no_truncation()
            self._count_tok.no_padding()
        return len(self._count_tok.encode(text, add_special_tokens=False).ids)

    def _ln(self, x: np.ndarray, name: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self._eps) * self._w[name + "_w"] + self._w[name + "_b"]

    def _act(self, x: np.ndarray) -> np.ndarray:
        act = self.meta["act"]
        if act == "gelu":
            return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))
        if act == "relu":
            return np.maximum(x, 0)
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))

    def encode_ids(self, ids: list[int]) -> np.ndarray:
        """The query vector for ready token ids (with special tokens), on one BLAS thread."""
        api = _blas_thread_api()
        if api is None:
            return self._encode_ids(ids)
        get, put = api
        before = get()
        put(1)
        try:
            return self._encode_ids(ids)
        finally:
            put(before)

    def _encode_ids(self, ids: list[int]) -> np.ndarray:
        w, h, nh = self._w, self._h, self._heads
        dh = h // nh
        n = len(ids)
        x = w["word"][np.asarray(ids)] + w["pos"][:n] + w["type0"]
        x = self._ln(x.astype(np.float32), "ln")
        scale = np.float32(1.0 / np.sqrt(dh))
        for i in range(self._layers):
            p = f"l{i}_"
            qkv = x @ w[p + "qkv_w"] + w[p + "qkv_b"]  # (n, 3h)
            q, k, v = (
                qkv[:, j * h : (j + 1) * h].reshape(n, nh, dh).transpose(1, 0, 2) for j in range(3)
            )
            scores = (q @ k.transpose(0, 2, 1)) * scale  # (nh, n, n)
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, h)
            x = self._ln(x + ctx @ w[p + "ao_w"] + w[p + "ao_b"], p + "aln")
            inter = self._act(x @ w[p + "in_w"] + w[p + "in_b"])
            x = self._ln(x + inter @ w[p + "out_w"] + w[p + "out_b"], p + "oln")
        vec = x.mean(0) if self.meta["pooling"] == "mean" else x[0]
        if self.meta.get("normalize", True):
            vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        vec = vec[: self.dim]
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)

    def embed_query(self, text: str, kind: str = "nl") -> np.ndarray:
        prefix = self.query_prefix(kind)
        key = (prefix, text)
        hit = self._cache.get(key)
        if hit is None:
            hit = self.encode_ids(self._tok.encode(prefix + text).ids)
            self._cache[key] = hit
            while len(self._cache) > QUERY_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit.copy()

    def info(self) -> dict:
        return {
            "model": self.model_id,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "device": "cpu",
            "dtype": "float32",
            "engine": "numpy",
        }
