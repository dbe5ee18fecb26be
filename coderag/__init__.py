"""coderag: find the code that does X.

Library first; the ``coderag`` command is a thin layer over this API::

    from coderag import Index

    idx = Index("~/src/project")
    idx.refresh()
    for hit in idx.search("where do we retry failed uploads", k=5):
        print(hit.path, hit.start_line, hit.end_line, hit.symbol, hit.score)
"""

from .config import Config, load_config
from .errors import CoderagError
from .index import Hit, Index, RefreshStats

__all__ = ["CoderagError", "Config", "Hit", "Index", "RefreshStats", "load_config"]
