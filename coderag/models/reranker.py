"""Rerankers: score (query, document) pairs jointly, for the top of a fused result list.

Build one with :func:`coderag.models.load_reranker`. Two kinds, told apart by the model's
config: a sequence-classification *cross-encoder* (sentence-transformers' ``CrossEncoder``,
sigmoid of its logit), or a causal-LM *yes/no reranker* such as Qwen3-Reranker (its
model-card prompt, left padding, P("yes") from the last position's "yes"/"no" logits).
torch is imported inside methods only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelNotFound
from .embedder import check_query_kind, plan_batches

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


def qwen_rerank_text(query: str, document: str, instruction: str) -> str:
    """The user turn of a Qwen3-Reranker prompt (between the fixed prefix and suffix)."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


class Reranker:
    """Scores (query, document) pairs; higher is more relevant, in (0, 1).

    ``kind`` is "cross-encoder" or "yes-no" (see the module's text). Build it with
    :func:`coderag.models.load_reranker`.
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
        check_query_kind(kind)
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
        ids = self.pair_ids(query, documents, instruction)
        scores = np.zeros(len(ids), dtype=np.float32)
        for batch in plan_batches([len(x) for x in ids], self.token_budget, max_pad_fraction=0.25):
            p_yes = self._p_yes([ids[i] for i in batch])
            for row, i in enumerate(batch):
                scores[i] = p_yes[row]
        return scores

    def _p_yes(self, batch_ids: list[list[int]]) -> np.ndarray:
        """P("yes") for one left-padded batch of prompts."""
        import torch

        width = max(len(x) for x in batch_ids)
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        input_ids = torch.full((len(batch_ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, x in enumerate(batch_ids):  # left padding: the last position is real
            input_ids[row, width - len(x) :] = torch.tensor(x)
            mask[row, width - len(x) :] = 1
        with torch.inference_mode():
            logits = self._model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                logits_to_keep=1,
            ).logits[:, -1, :]
        pair = torch.stack([logits[:, self._no], logits[:, self._yes]], dim=1).float()
        return torch.log_softmax(pair, dim=1)[:, 1].exp().cpu().numpy()

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
