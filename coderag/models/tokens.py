"""The model's tokenizer alone (``tokenizers``, no torch): counts tokens exactly as the
:class:`~coderag.models.embedder.Embedder` does.

An index keeps a copy under ``.coderag/`` (:func:`export_token_counter`), so a refresh that
must not wait for the model (a git hook's) still sizes chunks into the rows the model's own
tokenizer gives. Only ``tokenizers`` is imported, and only inside functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TOKEN_COUNTER_FORMAT = 1
_TC_CONFIG = "token_counter.json"


def counting_tokenizer(tok: Any) -> Any:
    """A private copy of a transformers tokenizer's Rust tokenizer, without truncation or
    padding: what counting and the exported tokenizers use."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


class TokenCounterCopy:
    """The model's tokenizer alone (``tokenizers``, no torch): sizes chunks exactly as the
    :class:`~coderag.models.embedder.Embedder` does, for a refresh that must not wait for the
    model (a git hook)."""

    def __init__(self, folder: Path, meta: dict) -> None:
        from tokenizers import Tokenizer

        self.model_id: str = meta["model"]
        self.dim: int = int(meta["dim"])
        self.max_tokens: int = int(meta["max_tokens"])
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._memo: dict[str, list[int]] | None = None

    def count(self, text: str) -> int:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if self._memo is not None:
            self._memo[text] = ids
        return len(ids)

    def remember(self, on: bool) -> None:
        """Keep the token ids of the texts counted from now on (until :meth:`recall`), for
        a caller that needs them again: the static tier, when its tokenizer is this one."""
        self._memo = {} if on else None

    def recall(self) -> dict[str, list[int]]:
        """The ids of the texts counted since the last call (then forgotten)."""
        got = self._memo or {}
        if self._memo is not None:
            self._memo = {}
        return got


def bundled_token_counter() -> TokenCounterCopy:
    """The bundled model's tokenizer, read from its package folder without torch: a first
    build on a CPU that stores no model vectors (``--lexical-only``, ``static = only``) sizes
    its chunks with it instead of loading the model. Its identity is the model's: id, width
    (``hidden_size``; mean pooling, no projection) and token budget (``max_seq_length``, as the
    :class:`~coderag.models.embedder.Embedder` takes it)."""
    from .load import BUNDLED_MODEL_ID, bundled_model_path

    folder = bundled_model_path()
    config = json.loads((folder / "config.json").read_text())
    st = json.loads((folder / "sentence_bert_config.json").read_text())
    meta = {"model": BUNDLED_MODEL_ID, "dim": config["hidden_size"]}
    counter = TokenCounterCopy(folder, {**meta, "max_tokens": st["max_seq_length"]})
    counter.device, counter.dtype = "cpu", "float32"  # what the model loads as on a CPU
    return counter


def export_token_counter(embedder: Any, folder: Path) -> Path:
    """Write ``embedder``'s counting tokenizer and token budget into ``folder`` (any model,
    or a :class:`TokenCounterCopy`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(embedder, TokenCounterCopy):
        embedder._tok.save(str(folder / "tokenizer.json"))
    else:
        counting_tokenizer(embedder.tokenizer).save(str(folder / "tokenizer.json"))
    meta = {
        "format": TOKEN_COUNTER_FORMAT,
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
        return (
            TokenCounterCopy(folder, meta) if meta.get("format") == TOKEN_COUNTER_FORMAT else None
        )
    except Exception:  # noqa: BLE001 - missing, half written, foreign: the model will do
        return None
