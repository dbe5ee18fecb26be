"""Fixtures for the model tests: the real MiniLM weights, and a tiny random Qwen3 with the real
tokenizer (its raw transformers model too, for computations by hand)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from coderag.models import Embedder, load_embedder  # noqa: E402

from ..tiny_models import build_tiny_qwen3  # noqa: E402

ENDOFTEXT_ID = 151643  # "<|endoftext|>": what Qwen3-Embedding appends and pools on

MIXED = [
    "def add(a, b):\n    return a + b\n",
    "x",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "Read the configuration file and return a dictionary of settings.",
    'fn main() { println!("hello"); }',
    "",
]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def qwen(tiny_qwen) -> Embedder:
    return load_embedder(str(tiny_qwen), device="cpu")


@pytest.fixture(scope="session")
def reference(tiny_qwen):
    """The raw HF model and tokenizer, for hand computations (Qwen's README recipe)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModel.from_pretrained(tiny_qwen, dtype=torch.float32).eval()

    def last_token_vector(text: str, max_content: int | None = None) -> np.ndarray:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if max_content is not None:
            ids = ids[:max_content]
        ids = ids + [ENDOFTEXT_ID]
        with torch.inference_mode():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        v = hidden.float().numpy()
        return v / np.linalg.norm(v)

    return tok, model, last_token_vector


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    return load_embedder("bundled", device="cpu")
