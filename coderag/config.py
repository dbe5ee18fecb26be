"""Settings: defaults < ``.coderag.toml`` (or ``[tool.coderag]`` in pyproject.toml) < env < CLI.

Only plain data lives here; nothing in this module does I/O beyond reading the TOML file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CoderagError

DATA_DIR = ".coderag"

_ENV = {
    "model": "CODERAG_MODEL",
    "device": "CODERAG_DEVICE",
    "dtype": "CODERAG_DTYPE",
    "dim": "CODERAG_DIM",
    "max_tokens": "CODERAG_MAX_TOKENS",
    "max_file_bytes": "CODERAG_MAX_FILE_BYTES",
    "lock_timeout": "CODERAG_LOCK_TIMEOUT",
    "embed_batch": "CODERAG_EMBED_BATCH",
    "rerank": "CODERAG_RERANK",
    "rerank_model": "CODERAG_RERANK_MODEL",
}


@dataclass
class Config:
    """Everything that changes what gets indexed or how it is searched."""

    model: str = "auto"
    device: str | None = None
    dtype: str | None = None
    dim: int | None = None
    max_tokens: int | None = None
    #: files larger than this are skipped (reported, never read whole)
    max_file_bytes: int = 1_000_000
    #: extra gitignore-style patterns, on top of .gitignore and .coderagignore
    ignore: list[str] = field(default_factory=list)
    #: "relative": each retriever's scores min-max normalised, then weighted and summed;
    #: "rrf": reciprocal rank fusion, score = sum(weight / (rrf_k + rank))
    fusion: str = "relative"
    rrf_k: int = 10
    dense_weight: float = 1.5
    lexical_weight: float = 1.0
    #: how many candidates each retriever contributes before fusion
    candidates: int = 100
    #: second stage: "auto" (on when queries are embedded on a GPU), "on" or "off"
    rerank: str = "auto"
    #: reranker: "auto" (Qwen3-Reranker-4B on a GPU, ms-marco-MiniLM-L6-v2 on a CPU), an HF id or folder
    rerank_model: str = "auto"
    #: how many fused candidates the reranker re-orders
    rerank_depth: int = 30
    #: how long the writer lock is waited for before giving up (seconds)
    lock_timeout: float = 10.0
    #: chunks embedded per commit while back-filling vectors (smaller: finer resume points)
    embed_batch: int = 256
    #: watch mode: quiet period before a batch of changes is applied (milliseconds)
    debounce_ms: int = 200

    def replace(self, **changes) -> Config:
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)


_SWITCH = {"on": "on", "true": "on", "yes": "on", "1": "on", "off": "off", "false": "off",
           "no": "off", "0": "off", "auto": "auto"}  # fmt: skip


def _coerce(name: str, value):
    f = {f.name: f for f in dataclasses.fields(Config)}.get(name)
    if f is None:
        raise CoderagError(f"unknown setting {name!r} in coderag configuration")
    if name == "fusion" and str(value) not in ("relative", "rrf"):
        raise CoderagError(f"setting 'fusion' must be relative or rrf, not {value!r}")
    if name == "rerank":  # a switch: on / off / auto (TOML booleans too)
        word = str(value).strip().lower()
        if word not in _SWITCH:
            raise CoderagError(f"setting 'rerank' must be on, off or auto, not {value!r}")
        return _SWITCH[word]
    kind = str(f.type)
    try:
        if "int" in kind and not isinstance(value, list):
            return int(value)
        if "float" in kind:
            return float(value)
        if "list" in kind:
            return [str(v) for v in (value if isinstance(value, list) else [value])]
    except (TypeError, ValueError):
        raise CoderagError(f"setting {name!r} has an invalid value {value!r}") from None
    return value


def load_config(root: Path, **overrides) -> Config:
    """Read the repo's settings file, then the environment, then explicit overrides."""
    values: dict = {}
    toml_path = root / ".coderag.toml"
    pyproject = root / "pyproject.toml"
    try:
        if toml_path.is_file():
            values.update(tomllib.loads(toml_path.read_text("utf-8")))
        elif pyproject.is_file():
            values.update(
                tomllib.loads(pyproject.read_text("utf-8")).get("tool", {}).get("coderag", {})
            )
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise CoderagError(f"cannot read coderag settings: {e}") from None
    for name, env in _ENV.items():
        if os.environ.get(env):
            values[name] = os.environ[env]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**{k: _coerce(k, v) for k, v in values.items()})
