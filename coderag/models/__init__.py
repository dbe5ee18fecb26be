"""The models: embedders, rerankers, and the torch-free pieces cut from them.

The only package that imports torch, transformers, sentence-transformers and tokenizers, and
it imports them inside functions, so ``import coderag.models`` costs no more than numpy.

* :mod:`~coderag.models.load` -- model names to loaded models, once per process:
  :func:`load_embedder`, :func:`load_reranker`, the bundled model, ``"auto"``, trust rules.
* :mod:`~coderag.models.embedder` -- :class:`Embedder` (sentence-transformers, Qwen3 specifics).
* :mod:`~coderag.models.reranker` -- :class:`Reranker` (cross-encoder or Qwen3 yes/no).
* :mod:`~coderag.models.light` -- :class:`QueryEncoder`, a numpy BERT forward pass for queries.
* :mod:`~coderag.models.tokens` -- the model's tokenizer alone, for sizing chunks without torch.
* :mod:`~coderag.models.static` -- the static tier: a distilled token table, IDF weights.
"""

from .embedder import Embedder
from .light import QueryEncoder, export_query_encoder, load_query_encoder
from .load import (
    BUNDLED_MODEL_ID,
    bundled_model_path,
    clear_cache,
    cuda_impossible,
    load_embedder,
    load_reranker,
)
from .reranker import Reranker
from .static import distill_static
from .tokens import (
    TokenCounterCopy,
    bundled_token_counter,
    export_token_counter,
    load_token_counter,
)

__all__ = [
    "BUNDLED_MODEL_ID",
    "Embedder",
    "QueryEncoder",
    "Reranker",
    "TokenCounterCopy",
    "bundled_model_path",
    "bundled_token_counter",
    "clear_cache",
    "cuda_impossible",
    "distill_static",
    "export_query_encoder",
    "export_token_counter",
    "load_embedder",
    "load_query_encoder",
    "load_reranker",
    "load_token_counter",
]
