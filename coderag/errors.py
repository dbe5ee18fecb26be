"""The one user-facing error type, and the exit codes it maps to.

Every failure a user can cause or fix (a missing repository, a model that cannot be
loaded, a lock held by another process, a damaged index) is raised as a
:class:`CoderagError`. The CLI prints ``coderag: <message>`` on one line and exits with
``exit_code``; nothing else ever reaches the user as a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2


class CoderagError(Exception):
    """A failure with a one-line, user-facing message."""

    exit_code = EXIT_USER


class RepoNotFound(CoderagError):
    """The folder to index or search does not exist or is not a directory."""


class IndexMissing(CoderagError):
    """There is no index yet where one is needed."""


class IndexCorrupt(CoderagError):
    """The .coderag/ folder is damaged, foreign or of an unknown schema."""


class DiskFull(CoderagError):
    """A write failed for lack of space (or quota); what was committed before is kept."""


class ModelNotFound(CoderagError):
    """The embedding model could not be loaded from any place that was tried."""


class ModelMismatch(CoderagError):
    """The index was built with another model or dimension than the one asked for."""


class LockHeld(CoderagError):
    """Another process holds the writer lock of this index."""


class UsageError(CoderagError):
    """Arguments that cannot work together (the CLI maps it to exit code 2)."""

    exit_code = EXIT_USAGE
