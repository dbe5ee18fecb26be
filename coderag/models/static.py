"""The static-embedding tier: a chunk's vector is a weighted mean of per-token vectors.

Thousands of chunks a second on one CPU core (a table lookup per token, no neural network),
so every chunk has a dense vector moments after phase 1, while the transformer's vectors are
back-filled behind it. The token table is distilled once per machine from the bundled
transformer (:func:`distill_static`: each vocabulary token run through the model, reduced
to :data:`DIM` dimensions by PCA; the model2vec recipe without its training step) and cached
in the user's cache folder. Token weights are the repository's own inverse document
frequencies (:class:`DocFreq`, kept under ``.coderag/``): on the shipped set that lifted a
static-only NDCG@10 from 0.46 (model2vec's Zipf weights) to 0.56.

Only numpy and ``tokenizers`` are imported, except by :func:`distill_static` (torch and
sentence-transformers, inside it): a one-shot search that needs the static query vector never
imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelNotFound
from ..userdirs import cache_dir, write_private
from .load import BUNDLED_MODEL_ID, bundled_model_path, model_id_for_folder
from .tokens import counting_tokenizer

FORMAT = 1
DIM = 256
MAX_TOKENS = 512  # tokens of a chunk that count (the head of a very long chunk says enough)
TABLE = "vectors.npy"
SCALES = "scales.npy"  # per-row scales of an int8 table (the shipped one); absent: float32
TOKENIZER = "tokenizer.json"
CONFIG = "static.json"
DF_FILE = "static-df.npy"
#: the shipped table: the distillation of the bundled MiniLM trained on code so that a chunk's
#: static vector points where MiniLM's does (bench/static_train.py --ship; 8 MB, int8)
SHIPPED = Path(__file__).with_name("static_code")

log = logging.getLogger("coderag.models")


class StaticModel:
    """A distilled token table and its tokenizer."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        folder = Path(folder)
        meta = json.loads((folder / CONFIG).read_text("utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"static model format {meta.get('format')!r}")
        self.folder = folder
        self.source: str = meta["source"]
        self.model_id: str = meta["model_id"]
        self.table = np.load(folder / TABLE, mmap_mode="r")
        self.dim = int(self.table.shape[1])
        self.vocab = int(self.table.shape[0])
        self.scales = np.load(folder / SCALES) if (folder / SCALES).is_file() else None
        if self.scales is not None and self.scales.shape != (self.vocab,):
            raise ValueError(f"static model scales {self.scales.shape}, table {self.table.shape}")
        self._tok = Tokenizer.from_file(str(folder / TOKENIZER))
        self._tok.no_padding()
        self._tok.enable_truncation(MAX_TOKENS)

    def token_ids(
        self, texts: list[str], known: dict[str, list[int]] | None = None
    ) -> list[np.ndarray]:
        """Each text's token ids (no special tokens, at most MAX_TOKENS). ``known``: ids this
        same tokenizer gave some of the texts already (the chunker counted them)."""
        small = np.uint16 if self.vocab <= 1 << 16 else np.int32  # 2 bytes a token kept
        known = known or {}
        out: list = [known.get(t) for t in texts]
        todo = [i for i, ids in enumerate(out) if ids is None]
        encs = self._tok.encode_batch([texts[i] for i in todo], add_special_tokens=False)
        for i, e in zip(todo, encs, strict=True):
            out[i] = e.ids
        return [np.asarray(ids[:MAX_TOKENS], dtype=small) for ids in out]

    def same_tokenizer(self, counter) -> bool:
        """Does ``counter`` (what sized the chunks) tokenize as this table does? Its model
        is the one this table was distilled from, and it can hand its ids over."""
        return getattr(counter, "model_id", None) == self.source and hasattr(counter, "recall")

    def vectors(self, ids: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
        """L2-normalised weighted means, float32 (n, dim); a text with no tokens is zero."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        table = self.table
        if self.scales is not None:
            weights = weights * self.scales  # an int8 row times its scale is the real row
        for i, t in enumerate(ids):
            if len(t):
                out[i] = weights[t] @ table[t]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def embed(self, texts: list[str], weights: np.ndarray) -> np.ndarray:
        return self.vectors(self.token_ids(texts), weights)


class DocFreq:
    """How many chunks each token occurs in, over one repository: the source of the token
    weights (``log((N + 1) / (df + 1)) + 1``, so a token in every chunk still counts a little
    and an unseen one counts most)."""

    def __init__(self, vocab: int, df: np.ndarray | None = None, docs: int = 0):
        self.df = np.zeros(vocab, dtype=np.int64) if df is None else df
        self.docs = docs

    def add(self, ids: list[np.ndarray]) -> None:
        for t in ids:
            if len(t):
                self.df[np.unique(t)] += 1
        self.docs += len(ids)

    def weights(self) -> np.ndarray:
        return (np.log((self.docs + 1) / (self.df + 1)) + 1.0).astype(np.float32)

    def save(self, path: Path) -> None:
        arr = np.concatenate([[self.docs], self.df]).astype(np.int64)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, vocab: int) -> DocFreq | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fh:
                arr = np.load(fh, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if arr.ndim != 1 or len(arr) != vocab + 1 or arr.dtype != np.int64 or arr.min() < 0:
            return None
        return cls(vocab, arr[1:].copy(), int(arr[0]))


@functools.cache
def shipped_table() -> StaticModel | None:
    """The shipped table (:data:`SHIPPED`), read once per process; None, with one warning,
    when the install damaged it (then a distilled table serves)."""
    try:
        return StaticModel(SHIPPED)
    except Exception as e:  # noqa: BLE001 - any damage: the fallback serves
        log.warning("coderag: the shipped static table is unusable (%s); using a distilled one", e)
        return None


def load_static(source_id: str, distil: bool = False) -> StaticModel | None:
    """The static tier's table for chunks tokenized as ``source_id`` does: the shipped,
    code-trained one, else the one distilled on this machine, distilled now when ``distil``
    (imports torch; ~40 s once). None: neither is to be had."""
    shipped = shipped_table()
    if shipped is not None and shipped.source == source_id:
        return shipped
    model = load_cached(source_id)
    if model is None and distil and source_id == BUNDLED_MODEL_ID:
        distill_static()
        model = load_cached(source_id)
    return model


def distilled_id(source_id: str, dims: int = DIM) -> str:
    """The model id of the table :func:`distill_static` makes from ``source_id`` (what an
    index's static vectors came from before the index recorded it)."""
    return f"static:{source_id}:{dims}"


def cache_folder(source_id: str) -> Path:
    """Where the table distilled from ``source_id`` is kept (the user's cache folder)."""
    slug = hashlib.sha256(f"{FORMAT}:{DIM}:{source_id}".encode()).hexdigest()[:16]
    return cache_dir() / "static" / slug


def load_cached(source_id: str) -> StaticModel | None:
    """The table distilled from ``source_id`` if this machine has it (no torch needed)."""
    folder = cache_folder(source_id)
    try:
        return StaticModel(folder)
    except Exception:  # noqa: BLE001 - absent or unusable (missing files, another format)
        return None


# ------------------------------------------------------------------- distillation (torch)
def distill_static(source: str = "auto", *, batch: int = 1024) -> Path:
    """Distil the static tier's token table from a BERT-family sentence-transformers model
    (default: the bundled all-MiniLM-L6-v2) into the user's cache; returns the folder.

    Every vocabulary token is run through the model as ``[CLS] token [SEP]`` and mean-pooled;
    the vectors are centred and reduced to :data:`DIM` dimensions by PCA (the model2vec
    recipe, without its training step). Deterministic: the same model gives the same table.
    About 40 s for MiniLM's 30,522 tokens on two CPU cores; done once per machine."""
    path = bundled_model_path() if source == "auto" else Path(source)
    source_id = model_id_for_folder(path)
    folder = cache_folder(source_id)
    if load_cached(source_id) is not None:
        return folder
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    tok = st.tokenizer
    if tok.cls_token_id is None or tok.sep_token_id is None:
        raise ModelNotFound(f"{source_id}: a static table needs a BERT-style tokenizer")
    hidden = _token_vectors(st[0].auto_model.eval(), tok, batch)
    centred = hidden - hidden.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    dims = min(DIM, vt.shape[0])
    table = (centred @ vt[:dims].T).astype(np.float32)
    meta = {
        "format": FORMAT,
        "source": source_id,
        "model_id": distilled_id(source_id, dims),
        "dim": dims,
        "vocab": len(tok),
    }
    write_table(folder, table, tok, meta)
    return folder


def _token_vectors(model: Any, tok: Any, batch: int) -> np.ndarray:
    """float32 ``(vocab, hidden)``: each token run as ``[CLS] token [SEP]``, mean-pooled."""
    import torch

    n = len(tok)
    hidden = np.zeros((n, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, n, batch):
            ids = torch.arange(i, min(i + batch, n))
            inp = torch.stack(
                [
                    torch.full_like(ids, tok.cls_token_id),
                    ids,
                    torch.full_like(ids, tok.sep_token_id),
                ],
                1,
            )
            out = model(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            hidden[i : i + len(ids)] = out.mean(1).float().numpy()
    return hidden


def write_table(
    folder: Path, table: np.ndarray, tok: Any, meta: dict, *, int8: bool = False
) -> None:
    """Table, tokenizer (a transformers tokenizer's) and config into ``folder``, whole or
    not at all (a private temporary folder renamed into place). ``int8``: each row scaled
    to int8 (a quarter of the size; how the shipped table is kept)."""
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    try:
        if int8:
            scales = np.abs(table).max(1) / 127.0
            scales[scales == 0] = 1.0
            np.save(tmp / SCALES, scales.astype(np.float32))
            table = np.rint(table / scales[:, None]).astype(np.int8)
        np.save(tmp / TABLE, table)
        counting_tokenizer(tok).save(str(tmp / TOKENIZER))
        write_private(tmp / CONFIG, json.dumps(meta, indent=1).encode())
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
