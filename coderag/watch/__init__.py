"""``coderag watch``: keep the index equal to the working tree while files change.

How it works, and why:

* **Reconcile, then follow.** The file watch starts *before* the start-up reconcile (a full
  ``Index.refresh()``), so nothing changed during the reconcile is missed; events that
  arrive meanwhile are applied right after it.
* **Filter, coalesce, debounce.** Events under ``.git/``, ``.coderag/``, ignored paths,
  binary files and virtualenvs are dropped at once, by the walk's own
  :class:`~coderag.files.PathFilter` (our own LanceDB writes never wake the worker). The rest become a set of repo-relative paths. A batch is applied after a quiet
  period (``debounce_ms``, default from ``Config.debounce_ms``) or at the latest
  ``MAX_LATENCY_S`` after its first event, so a storm (``git checkout``, a rebase) becomes a
  few large batches; above ``STORM_PATHS`` paths a batch is a full reconcile instead of a
  path list. A change to ``.gitignore`` / ``.coderagignore`` reloads the rules and
  reconciles the whole tree. Every batch goes through ``Index.refresh`` (one writer at a
  time: it takes the writer lock), which re-uses cached vectors, so moves embed nothing.
* **Lexical first, vectors behind.** Batches are stored with ``lexical_only=True``:
  searchable by full text at once. When nothing is pending, vectors are back-filled with
  ``Index.embed_pending`` in small steps, so a fresh edit never waits long behind them.
* **Never stop.** If the OS cannot watch the tree (inotify watch limit reached, the watch
  of some folder missing, repeated queue overflows), the watcher says so once and falls back
  to rescanning the tree every few seconds. Errors while applying a batch are logged and the
  batch is retried.
* **One watcher per repository.** ``.coderag/watch.lock`` is held (``flock``) for the
  watcher's lifetime; a second one is refused naming the first one's pid.

Modules, by job: :mod:`.events` (the watchdog observer and what its events mean; the only
module that imports watchdog, and only inside functions), :mod:`.queue` (coalescing,
debouncing, storms, retries, flush markers), :mod:`.polling` (rescans), :mod:`.runner`
(batches and back-fill steps through the index) and :mod:`.watcher` (the public API and
the worker thread). The command line is ``coderag.cli.watch``.
"""

from .runner import log_to_stderr
from .watcher import Watcher

__all__ = ["Watcher", "log_to_stderr"]
