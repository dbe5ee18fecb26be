"""Git hooks that keep the index in step with commits, checkouts and merges.

A watcher follows the working tree; hooks follow git. Each hook touches only what git says
changed, so it stays cheap:

* ``pre-commit`` indexes what is *staged*: the blob bytes from the git index, so a partially
  staged file is indexed as it will be committed, not as it sits in the working tree.
* ``post-checkout`` (``git diff OLD NEW``), ``post-merge`` and ``post-rewrite``
  (``ORIG_HEAD..HEAD``) refresh only the files that differ. The embedding cache is keyed by
  chunk text, so switching back to a branch seen before embeds nothing.
* When a ``coderag serve`` runs for the repository (found in the user's private runtime
  folder, never through a file in the repository; it must prove it knows the secret it
  published there before any path is sent), the paths are handed to it and the hook
  process loads no model: the index and torch are imported only on the inline path, after
  that decision.
* A hook never stops a commit or a checkout because indexing failed: it warns on stderr and
  exits 0, unless installed with ``--strict``. Ignored files are never indexed: the
  :class:`~coderag.files.PathFilter` the walk uses decides, before any staged blob is read,
  and the index applies it again to every path it is given. Without an index yet, hooks do
  nothing: building one is ``coderag index``'s job, not a commit's.

``install`` writes small ``/bin/sh`` scripts (``hook.sh``, a resource file) into ``git
rev-parse --git-path hooks``. A hook that is already there is moved aside to
``NAME.coderag-chained``, run first, and its exit status honoured; ``uninstall`` puts it back.

Modules: :mod:`.git` (what git says changed), :mod:`.sync` (one event: plan, hand to a
server or refresh inline), :mod:`.install`. Only the standard library is imported here.
"""

from .git import (
    HOOKS,
    GitError,
    changed_between,
    git_toplevel,
    hooks_dir,
    staged_changes,
    staged_contents,
    staged_entries,
)
from .install import CHAINED, MARKER, hook_script, install, is_ours, uninstall
from .sync import DISABLE_ENV, VECTOR_MODES, VECTORS_ENV, describe, plan, spawn_vectors, sync

__all__ = [
    "CHAINED",
    "DISABLE_ENV",
    "HOOKS",
    "MARKER",
    "VECTORS_ENV",
    "VECTOR_MODES",
    "GitError",
    "changed_between",
    "describe",
    "git_toplevel",
    "hook_script",
    "hooks_dir",
    "install",
    "is_ours",
    "plan",
    "spawn_vectors",
    "staged_changes",
    "staged_contents",
    "staged_entries",
    "sync",
    "uninstall",
]
