"""The embedder: a loaded sentence-transformers model, with the Qwen3-Embedding specifics.

Build one with :func:`coderag.models.load_embedder`. torch and sentence-transformers are
imported inside methods only, so importing this module costs no more than numpy.

* :class:`Embedder` tokenises once, sorts texts by token length and forms batches under a
  token budget whose padded tokens stay at most 10 % of the tokens computed
  (:func:`plan_batches`), then runs the sentence-transformers module pipeline
  (Transformer -> Pooling -> Normalize) on them. Matryoshka truncation (``dim``) is followed
  by L2 normalisation. A CUDA out-of-memory error halves the batch and retries.
* Instruction models (Qwen3-Embedding) get ``Instruct: {task}\\nQuery:{query}`` on queries
  only, left padding with last-token pooling, and an EOS token appended by the tokenizer
  (:func:`ensure_eos` installs it when the tokenizer does not add one).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import CoderagError, ModelNotFound, UsageError
from .tokens import counting_tokenizer

log = logging.getLogger(__name__)

#: Default input budget of decoder (last-token pooling) models such as Qwen3-Embedding.
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
#: ``model_type`` values of decoder models: last-token pooling, left padding, an EOS to pool on.
DECODER_TYPES = frozenset(
    {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3_text", "phi3"}
)
#: Padded tokens may be at most this fraction of the tokens computed in a batch.
MAX_PAD_FRACTION = 0.10
CPU_TOKEN_BUDGET = 8192
GPU_TOKEN_BUDGET = 32768
MAX_BATCH_TEXTS = 512
#: Texts tokenised, sorted and batched together (bounds the memory of token-id lists).
WINDOW_TEXTS = 8192
QUERY_CACHE_SIZE = 512


def check_query_kind(kind: str) -> None:
    """Raise :class:`~coderag.errors.UsageError` unless ``kind`` is one of :data:`QUERY_KINDS`."""
    if kind not in QUERY_KINDS:
        raise UsageError(f"unknown query kind {kind!r}; use 'nl' or 'code'")


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
    """A loaded embedding model. Build it with :func:`coderag.models.load_embedder`.

    Public attributes beside the settings: ``st_model``, the sentence-transformers pipeline
    it runs, and ``tokenizer``, that pipeline's (transformers) tokenizer as configured here
    (padding side, EOS post-processor).
    """

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
        self.st_model = st_model
        self.model_id = model_id
        self.source = source
        self.device = device
        self.dtype = dtype
        tok = st_model.tokenizer
        self.tokenizer = tok
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
        self.pooling = pooling_mode(st_model)
        self.is_decoder = self.pooling == "lasttoken"
        if self.is_decoder:
            tok.padding_side = "left"
            self.eos_token, self.eos_added = ensure_eos(tok)
        else:
            self.eos_token, self.eos_added = None, False
        self.n_special = int(tok.num_special_tokens_to_add(pair=False))
        self._set_max_tokens(max_tokens)
        self._set_prompts(instructions)
        self.token_budget = int(
            token_budget or (GPU_TOKEN_BUDGET if device.startswith("cuda") else CPU_TOKEN_BUDGET)
        )
        self._count_tok = counting_tokenizer(tok)
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._run_lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._stats = {"texts": 0, "batches": 0, "real_tokens": 0, "computed_tokens": 0}
        self._oom_splits = 0

    def _set_max_tokens(self, max_tokens: int) -> None:
        """``max_tokens`` and ``seq_len``, capped to the model's position table."""
        max_pos = max_positions(self.st_model)
        if max_pos is not None and max_tokens + self.n_special > max_pos:
            log.warning(
                "coderag: max_tokens=%d is more than %s accepts; using %d",
                max_tokens,
                self.model_id,
                max_pos - self.n_special,
            )
            max_tokens = max_pos - self.n_special
        self.max_tokens = int(max_tokens)
        self.seq_len = self.max_tokens + self.n_special
        self.st_model.max_seq_length = self.seq_len

    def _set_prompts(self, instructions: dict[str, str] | None) -> None:
        """The model's saved prompts, and whether queries get a Qwen3 instruction instead."""
        prompts = dict(getattr(self.st_model, "prompts", None) or {})
        query_prompt = prompts.get("query") or ""
        self.instruct = query_prompt.startswith("Instruct:") or (
            not query_prompt and model_type(self.st_model) == "qwen3"
        )
        self.instructions = dict(DEFAULT_INSTRUCTIONS)
        if instructions:
            unknown = set(instructions) - set(QUERY_KINDS)
            if unknown:
                raise UsageError(f"unknown query kind(s) {sorted(unknown)}; use 'nl' or 'code'")
            self.instructions.update(instructions)
        self._query_prompt = query_prompt
        self._document_prompt = prompts.get("document") or ""

    # ---- TokenCounter protocol ---------------------------------------------------------------

    def count(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer, without special tokens."""
        return len(self._count_tok.encode(text, add_special_tokens=False).ids)

    # ---- prompts -----------------------------------------------------------------------------

    def query_prefix(self, kind: str = "nl") -> str:
        """The text put before a query of this kind (empty for models without prompts)."""
        check_query_kind(kind)
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
        enc = self.tokenizer(
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
            vecs, computed = self.forward([ids[i] for i in batch])
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
        vecs, computed = self.forward(batch_ids)
        return vecs.cpu().numpy(), computed

    def forward(self, batch_ids: list[list[int]]) -> tuple[Any, int]:
        """Like :meth:`forward_ids`, but the vectors stay on the device as a torch tensor (no
        synchronisation). Every batch of :meth:`embed_documents` and :meth:`embed_query` goes
        through here; a ``torch.OutOfMemoryError`` from it makes the batch split in halves."""
        import torch
        import torch.nn.functional as F
        from sentence_transformers.util import batch_to_device

        features = self.collate(batch_ids)
        computed = int(features["input_ids"].numel())
        features = batch_to_device(features, self.st_model.device)
        with torch.inference_mode():
            emb = self.st_model(features)["sentence_embedding"]
            emb = F.normalize(emb[:, : self.dim].float(), p=2, dim=-1)
        return emb, computed

    def collate(self, batch_ids: list[list[int]]) -> dict[str, Any]:
        """Padded (or, with flash-attention, flattened) tensors for ``batch_ids``.

        Padding follows the tokenizer (``padding_side``, ``pad_token_id``) exactly like
        ``tokenizer.pad`` does, but fills numpy arrays instead of Python lists (it is on the
        critical path between GPU batches).
        """
        import torch

        module = self.st_model[0]
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
        left = self.tokenizer.padding_side == "left"
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
            "padding_side": self.tokenizer.padding_side,
            "eos_token": self.eos_token,
            "eos_added_by_coderag": self.eos_added,
            "query_prefix_nl": self.query_prefix("nl"),
            "query_prefix_code": self.query_prefix("code"),
            "token_budget": self.token_budget,
            "attn_implementation": getattr(
                getattr(self.st_model[0], "config", None), "_attn_implementation", None
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


def st_modules() -> tuple[Any, Any, Any]:
    """(Transformer, Normalize, Pooling) across sentence-transformers 6.x layouts."""
    try:
        from sentence_transformers.base.modules import Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # pragma: no cover - older layout
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return Transformer, Normalize, Pooling


def pooling_mode(st_model: Any) -> str:
    """The pipeline's pooling ("mean", "cls", "lasttoken", ...), or "none" without a Pooling."""
    Pooling = st_modules()[2]
    for module in st_model:
        if isinstance(module, Pooling):
            mode = module.pooling_mode
            return mode if isinstance(mode, str) else "+".join(mode)
    return "none"


def model_type(st_model: Any) -> str | None:
    """The transformers ``model_type`` of the pipeline's first module (e.g. "bert", "qwen3")."""
    config = getattr(st_model[0], "config", None)
    return getattr(config, "model_type", None)


def max_positions(st_model: Any) -> int | None:
    config = getattr(st_model[0], "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def default_max_tokens(st_model: Any) -> int:
    """Input tokens when none are asked for: :data:`QWEN_DEFAULT_MAX_TOKENS` for decoder models
    (their saved ``max_seq_length`` is their whole context), else the saved one (or 512)."""
    if pooling_mode(st_model) == "lasttoken" or model_type(st_model) in DECODER_TYPES:
        return QWEN_DEFAULT_MAX_TOKENS
    return int(st_model.max_seq_length or 512)


def ensure_eos(tok: Any) -> tuple[str, bool]:
    """Make the tokenizer append the end-of-text token; return (token, whether we installed it).

    Qwen3-Embedding pools the hidden state of a trailing ``<|endoftext|>`` (id 151643), which is
    the tokenizer's *pad* token, not its ``eos_token`` (``<|im_end|>``, 151645): we look it up by
    name first. A tokenizer that already appends it is left alone.
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
