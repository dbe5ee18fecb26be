"""Settings: defaults < ``.coderag.toml`` (or ``[tool.coderag]`` in pyproject.toml) < env < CLI.

Only plain data lives here; nothing in this module does I/O beyond reading the TOML file.
"""

from __future__ import annotations

import dataclasses
import math
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
    "static": "CODERAG_STATIC",
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
    #: the static vectors' list beside the model's once both cover the index (0 = the
    #: model's alone; measured: shipped set +0.023 NDCG@10 at 0.25, funcq tune -0.047 MRR)
    static_weight: float = 0.0
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
    #: static-embedding tier: "auto" (static vectors for every chunk, the dense half of a
    #: search until the model's vectors cover half the chunks), "only" (no model vectors:
    #: the fast tier alone), "off"
    static: str = "auto"

    #: settings whose value came from the repository's own settings file -> that file's path:
    #: untrusted input (a cloned repository chooses them), see :meth:`local_only`
    _from_repo: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def replace(self, **changes) -> Config:
        changes = {k: v for k, v in changes.items() if v is not None}
        new = dataclasses.replace(self, **changes)
        new._from_repo = {k: v for k, v in self._from_repo.items() if k not in changes}
        return new

    def repo_file(self, name: str) -> str | None:
        """The repository settings file that chose setting ``name``, or None (the default,
        the environment or the caller chose it)."""
        return self._from_repo.get(name)

    def local_only(self, name: str) -> str | None:
        """None when the model named by setting ``name`` (model, rerank_model) may be
        downloaded; else why not, for the error. A cloned repository's settings file may name a
        model that loads from local files (a folder, the Hugging Face cache), never one that
        makes coderag fetch from the network, unless the user allows it with
        CODERAG_ALLOW_DOWNLOAD=1 or names the model themselves."""
        where = self._from_repo.get(name)
        allowed = os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in _YES
        if where is None or getattr(self, name) == "auto" or allowed:
            return None
        flag = "--model / CODERAG_MODEL" if name == "model" else "--rerank-model / " + _ENV[name]
        return (
            f"{where} names it: models chosen by a repository's settings are downloaded only "
            f"with {ALLOW_DOWNLOAD_ENV}=1 (or choose it yourself with {flag})"
        )


_YES = ("1", "true", "yes", "on")
#: setting ``static``: "auto" = static vectors for every chunk, the dense half of a search
#: while the model's vectors are incomplete; "only" = no model vectors at all (the fast
#: tier alone); "off" = no static vectors
STATIC_MODES = ("auto", "only", "off")
_SWITCH = {"on": "on", "true": "on", "yes": "on", "1": "on", "off": "off", "false": "off",
           "no": "off", "0": "off", "auto": "auto"}  # fmt: skip

#: numeric settings: (type, smallest, largest) -- a repository's settings file is untrusted
#: input, so every value is checked here, not deep inside the code that uses it
_RANGES: dict[str, tuple[type, float, float]] = {
    "dim": (int, 1, 65_536),
    "max_tokens": (int, 1, 1_000_000),
    "max_file_bytes": (int, 1, 1 << 40),
    "rrf_k": (int, 1, 1_000_000),
    "dense_weight": (float, 0, 1_000),
    "lexical_weight": (float, 0, 1_000),
    "static_weight": (float, 0, 1_000),
    "candidates": (int, 1, 10_000),
    "rerank_depth": (int, 1, 10_000),
    "lock_timeout": (float, 0, 86_400),
    "embed_batch": (int, 1, 1_000_000),
    "debounce_ms": (int, 0, 3_600_000),
}
_TEXT = ("model", "device", "dtype", "rerank_model")
#: CODERAG_ALLOW_DOWNLOAD=1: models named by a repository's settings file may be downloaded
ALLOW_DOWNLOAD_ENV = "CODERAG_ALLOW_DOWNLOAD"


def _settings() -> set[str]:
    return {f.name for f in dataclasses.fields(Config) if not f.name.startswith("_")}


#: settings that take one of a few words
_CHOICES = {"fusion": ("relative", "rrf"), "static": STATIC_MODES}


def _coerce(name: str, value, where: str = "coderag configuration", typed: bool = False):
    """The value of setting ``name``, checked; a one-line CoderagError naming the setting and
    ``where`` it came from (a file, an environment variable, the arguments) otherwise.
    ``typed``: a settings file, where numbers must be TOML numbers (the environment is text)."""
    if name not in _settings():
        raise CoderagError(f"unknown setting {_show(name)} in {where}")
    if name == "rerank":
        checked, want = _switch(value)
    elif name in _CHOICES:
        checked, want = (value if value in _CHOICES[name] else None), ", ".join(_CHOICES[name])
    elif name in _TEXT:
        checked, want = _text(value), "a non-empty string"
    elif name == "ignore":
        checked, want = _strings(value), "a list of strings"
    else:
        checked, want = _number(value, *_RANGES[name], typed=typed)
    if checked is None:
        raise CoderagError(f"setting {name!r} in {where} must be {want}, not {_show(value)}")
    return checked


def _switch(value):
    """on / off / auto (TOML booleans too); None when it is none of them."""
    word = str(value).strip().lower() if isinstance(value, (str, bool)) else None
    return _SWITCH.get(word), "on, off or auto"


def _text(value) -> str | None:
    ok = isinstance(value, str) and value.strip() and "\x00" not in value
    return value if ok else None


def _strings(value) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return list(value) if ok else None


def _number(value, kind: type, low, high, typed: bool):
    """An int or float setting within [low, high]; text is parsed only from the environment
    (``typed`` False), a TOML file must give a number."""
    want = f"{'an integer' if kind is int else 'a number'} from {low:,} to {high:,}"
    number = value
    if isinstance(value, str) and not typed:
        try:
            number = int(value.strip()) if kind is int else float(value.strip())
        except ValueError:
            return None, want
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None, want
    if kind is int and not isinstance(number, int):
        return None, want
    if not (math.isfinite(number) and low <= number <= high):
        return None, want
    return kind(number), want


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_config(root: Path, **overrides) -> Config:
    """Read the repo's settings file, then the environment, then explicit overrides."""
    values: dict = {}
    where: dict[str, str] = {}
    source = None
    toml_path = root / ".coderag.toml"
    pyproject = root / "pyproject.toml"
    try:
        source = next((p for p in (toml_path, pyproject) if p.is_file()), None)
        table = tomllib.loads(source.read_text("utf-8")) if source is not None else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise CoderagError(f"cannot read coderag settings from {source or root}: {e}") from None
    if source == pyproject:
        table = table.get("tool", {})
        table = table.get("coderag", {}) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            raise CoderagError(f"[tool.coderag] in {pyproject} must be a table")
    values.update(table)
    where.update(dict.fromkeys(table, str(source)))
    from_file = set(values)
    for name, env in _ENV.items():
        if os.environ.get(env):
            values[name] = os.environ[env]
            where[name] = f"environment variable {env}"
    explicit = {k: v for k, v in overrides.items() if v is not None}
    values.update(explicit)
    where.update(dict.fromkeys(explicit, "the arguments"))
    repo = {k: where[k] for k in from_file if where.get(k) == str(source)}
    cfg = Config(**{k: _coerce(k, v, where[k], k in repo) for k, v in values.items()})
    cfg._from_repo = repo
    for name in ("model", "rerank_model"):
        if name in repo:
            _refuse_model_inside(root, name, getattr(cfg, name), repo[name])
    return cfg


def _refuse_model_inside(root: Path, name: str, value: str, where: str) -> None:
    """A model folder the repository itself brings is untrusted code and weights
    (``modules.json`` names classes to import, weights may be pickles): a repository's
    settings may not choose one; the user may, by naming it themselves."""
    try:
        base = Path(root).resolve()
        path = (base / Path(value).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError):
        return
    if (path == base or base in path.parents) and path.exists():
        flag = "--model / CODERAG_MODEL" if name == "model" else "--rerank-model / " + _ENV[name]
        raise CoderagError(
            f"setting {name!r} in {where} names a model inside the repository ({value}); "
            f"coderag loads a repository's own model only when you name it yourself ({flag})"
        )
