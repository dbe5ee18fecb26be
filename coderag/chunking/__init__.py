"""From a file's text to chunks: language detection, tree-sitter parsing, the size policy.

* :mod:`.languages`: the language table, :func:`detect_language`, :func:`supported_languages`
  and the grammar query files (no tree-sitter);
* :mod:`.parse`: the only module importing ``tree_sitter``: grammar loading and one
  generic query loop turning a file into a neutral ``ParsedFile``;
* :mod:`.chunk`: the size policy (split/merge), :class:`Chunk` records, embedding text.

Importing this package imports no tree-sitter: grammars load on the first parse.
"""

from .chunk import Chunk, TokenCounter, chunk_file, chunker_version
from .languages import LANGUAGES, LanguageSpec, detect_language, supported_languages
from .parse import grammar_available

__all__ = [
    "LANGUAGES",
    "Chunk",
    "LanguageSpec",
    "TokenCounter",
    "chunk_file",
    "chunker_version",
    "detect_language",
    "grammar_available",
    "supported_languages",
]
