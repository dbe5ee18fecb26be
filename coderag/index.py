"""The front door: :class:`Index` refreshes a repository's index and searches it.

Refresh is incremental and runs in two phases (progressive indexing):

1. **Store.** Walk the tree (stat first: a file whose size and mtime match its row is not
   read), chunk every new or changed file, and write its chunks in one commit per batch
   of files. Chunks whose embedding text was embedded before (by any file, any branch)
   get their vector from the cache at once; the rest are stored without one. A file's
   row in ``files`` is written only after its chunks are, so an interrupted run redoes
   it and never leaves it half done. Each chunk row also gets its static vector as it is
   written (the fast tier; an index without them gets them from a catch-up pass, 1b).
   Lexical and static dense search work from here on.
2. **Embed.** Chunks without a vector are embedded, most useful first, in batches, each
   batch committed to the cache and the chunks table. Interrupting loses at most the
   batch in flight; the next run continues with what is missing.

Only one process writes at a time (``WriterLock``); any number may search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import datadir, rank
from .config import STATIC_MODES, Config, load_config
from .errors import (
    CoderagError,
    IndexCorrupt,
    IndexMissing,
    ModelMismatch,
    ModelNotFound,
    UsageError,
)
from .files import (
    FileEntry,
    PathFilter,
    Skip,
    Text,
    check_path,
    decode,
    find_root,
    git_head,
    is_real_dir,
    iter_paths,
    read_bytes,
    walk,
)
from .globs import compile_glob
from .vocabulary import Hit, check

Progress = Callable[..., None]
log = logging.getLogger("coderag.index")

STATIC_SOURCE = "sentence-transformers/all-MiniLM-L6-v2"  # models.BUNDLED_MODEL_ID
STATIC_BATCH = 4096
#: chunks whose document frequencies make a first build's static token weights (the rest
#: get their vectors as they are stored; a rebuild counts them afresh)
STATIC_SAMPLE = 50_000
#: the dense weight when static vectors answer (shipped set, hybrid NDCG@10: 0.76 at 0.1-0.5,
#: 0.73 at 0.75, 0.66 at the model's 1.5; lexical alone 0.756)
STATIC_DENSE_WEIGHT = 0.25
#: the model's vectors answer once they cover this share of the chunks
MODEL_COVERAGE = 0.5
FILE_BATCH = 200  # files per commit in phase 1
EMBED_BATCH = 256  # chunks per commit in phase 2
MAX_QUERY_CHARS = 20_000
QUERY_ENCODER_DIR = datadir.QUERY_ENCODER
TOKEN_COUNTER_DIR = datadir.TOKENIZER

_KIND_PRIORITY = {"function": 3.0, "method": 3.0, "class": 2.5, "doc": 2.0, "code": 1.0}


@dataclass
class RefreshStats:
    """What a refresh did. ``summary()`` has the stable keys of ``coderag index --json``."""

    files_indexed: int = 0
    files_skipped: int = 0
    files_removed: int = 0
    files_unchanged: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_pending: int = 0
    #: chunks given a static vector, and how long that took
    chunks_static: int = 0
    static_seconds: float = 0.0
    seconds: float = 0.0
    skipped: list[Skip] = field(default_factory=list)
    #: things the user should hear about (the CLI prints them on stderr)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "files_indexed": self.files_indexed,
            "files_skipped": self.files_skipped,
            "files_removed": self.files_removed,
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "seconds": round(self.seconds, 3),
            "files_unchanged": self.files_unchanged,
            "chunks_pending": self.chunks_pending,
            "chunks_static": self.chunks_static,
            "static_seconds": round(self.static_seconds, 3),
            "skipped_reasons": _reason_counts(self.skipped),
        }


def _reason_counts(skips: list[Skip]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in skips:
        key = s.reason.split(" (")[0]
        out[key] = out.get(key, 0) + 1
    return out


class WriterLock(datadir.FileLock):
    """The index's writer lock (``.coderag/lock``): one writer at a time, released by the
    kernel if the holder dies. ``data_dir`` is the ``.coderag`` folder."""

    def __init__(self, data_dir: Path, timeout: float):
        super().__init__(
            Path(data_dir).parent,
            datadir.WRITER_LOCK,
            timeout=timeout,
            busy="another coderag process{who} is writing this index; "
            f"waited {timeout:.0f}s, try again when it is done",
        )


def _remove(path: Path) -> None:
    """Remove a file, link or folder tree, whatever is there (readable or not)."""
    import shutil

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _batches(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _growing_batches(items: list, first: int, most: int):
    """Small batches first (the first commit, and so the first search answer, comes fast),
    then doubling up to ``most`` (fewer, larger commits for the bulk)."""
    i, n = 0, first
    while i < len(items):
        yield items[i : i + n]
        i += n
        n = min(most, n * 2)


@dataclass
class _Batch:
    """One commit of phase 1: chunk rows, file rows, files whose chunks they replace, and
    files that went away (now unreadable)."""

    rows: list[dict] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)


class _StaticVectors:
    """Phase 1's static vectors: a chunk row gets its vector as it is stored (no second pass
    over the texts, no rewrite of stored rows). The token weights are the index's document
    frequencies; a first build counts them over its first :data:`STATIC_SAMPLE` chunks,
    stored meanwhile without vectors and filled in (one merge) once the weights are known."""

    def __init__(self, model, df_path: Path, df, stats: RefreshStats):
        from .models import static

        self.model, self.df_path, self.stats = model, df_path, stats
        self.weights = None if df is None else df.weights()
        self.df = df if df is not None else static.DocFreq(model.vocab)
        self.sample: list[tuple[list[str], list]] = []  # (row ids, token ids) awaiting weights
        self.sampled = 0
        self.shared = None  # the chunker's counter, when it hands its token ids over

    def sharing(self, counter):
        """``counter`` (a function returning what sizes chunks), set to keep the token ids
        it counts when its tokenizer is this table's: the chunker has tokenized almost
        every chunk text already (22k chunks: ~1.7 s of a ~10 s build saved)."""

        def get():
            c = counter()
            if self.shared is None:
                self.shared = c if self.model.same_tokenizer(c) else False
                if self.shared:
                    c.remember(True)
            return c

        return get

    def fill(self, rows: list[dict]) -> None:
        known = self.shared.recall() if self.shared else None
        if not rows:
            return
        t0 = time.perf_counter()
        ids = self.model.token_ids([r["embed_text"] for r in rows], known)
        if self.weights is None:
            self.df.add(ids)
            self.sample.append(([r["id"] for r in rows], ids))
            self.sampled += len(rows)
        else:
            for r, v in zip(rows, self.model.vectors(ids, self.weights), strict=True):
                r["svector"] = v
            self.stats.chunks_static += len(rows)
        self.stats.static_seconds += time.perf_counter() - t0

    def settle(self, store, done: bool) -> None:
        """Once the sample is counted (or phase 1 ends first): save the weights and give the
        sampled rows their vectors."""
        if self.weights is not None or not self.sampled:
            return
        if not done and self.sampled < STATIC_SAMPLE:
            return
        t0 = time.perf_counter()
        self.df.save(self.df_path)
        self.weights = self.df.weights()
        keys = [k for ks, _ in self.sample for k in ks]
        ids = [i for _, idl in self.sample for i in idl]
        self.sample.clear()
        store.set_static(keys, self.model.vectors(ids, self.weights))
        self.stats.chunks_static += len(keys)
        self.stats.static_seconds += time.perf_counter() - t0


def _static_source(meta: dict) -> str:
    """The token table an index's static vectors were made with (before indexes recorded
    it, they all came from the table distilled from :data:`STATIC_SOURCE`)."""
    from .models.static import distilled_id

    return str(meta.get("static_model") or distilled_id(STATIC_SOURCE))


def _made_with(meta: dict, model) -> bool:
    """Were an index's static vectors made with ``model``'s token table (so its query
    vectors can be compared with them)?"""
    return model is not None and _static_source(meta) == model.model_id


def _release_memory() -> None:
    """Hand freed heap back to the system after a phase (glibc keeps it otherwise: phase 1's
    Python objects and Arrow buffers would count against the next phase's peak)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _chunker_fingerprint() -> str:
    from .chunking import chunker_version

    return f"{chunker_version()}-{rank.stored_text_version()}"


def _digest(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _coverage(counts: dict, pending: str) -> float:
    """Share of the chunks that have a vector: ``pending`` is "pending" (the model's) or
    "static_pending" (the static tier's); an empty index counts as covered."""
    return 1.0 - counts[pending] / counts["chunks"] if counts["chunks"] else 1.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _LazyModels:
    """What one refresh may need from a model, each loaded on first need (a no-op refresh
    loads nothing): the embedder, and what sizes chunks. ``light``: a torch-free counter
    that stands in for the model on a new index that stores no model vectors."""

    def __init__(self, index: Index, meta: dict, say: Progress, light=None):
        self._index, self._meta, self._say = index, meta, say
        self.loaded = None  # the embedder, once loaded
        self.light = light
        self._light: list = [] if light is None else [light]

    def embedder(self):
        if self.loaded is None:
            emb = self._index.embedder
            self._index._check_meta(self._meta, emb)
            self._say("model", model=emb.model_id, device=emb.device, dtype=emb.dtype, dim=emb.dim)
            self.loaded = emb
        return self.loaded

    def profile(self):
        """What a new index records of its model (id, dim, device, dtype)."""
        return self.light if self.loaded is None and self.light is not None else self.embedder()

    def identity(self) -> tuple[str, int]:
        """(model id, dimension): the loaded embedder's, else the index's."""
        if self.loaded is not None:
            return self.loaded.model_id, self.loaded.dim
        if not self._meta and self.light is not None:
            return self.light.model_id, self.light.dim
        return self._meta["model"], self._meta["dim"]

    def counter(self):
        """The loaded embedder, else the same tokenizer from the index's torch-free copy (a
        hook's few files need no torch); looked up once."""
        if self.loaded is not None:
            return self.loaded
        if not self._light:
            self._light.append(self._index._light_counter(self._meta))
        return self._light[0] or self.embedder()


class Index:
    """The index of one repository: ``refresh()`` keeps it equal to the files, ``search()`` reads it."""

    def __init__(self, root=None, config: Config | None = None, embedder=None, **overrides):
        self.root = find_root(root)
        self.config = config or load_config(self.root, **overrides)
        self._embedder = embedder
        self._store = None
        self._query_encoder = None
        self._static = None  # the static tier's token table, loaded on first need
        self._weights_cache: tuple = (None, None)  # (file stamp, the static token weights)
        self._threads = None  # the lexical half's thread, started by the first hybrid search
        self.last_dense_tier: str | None = None
        self._reranker = None
        self._auto_rerank_failed = False
        self.last_dense_coverage: float | None = None
        self._writes = 0  # rows written since the last compaction
        self.weights = rank.Weights(
            fusion=self.config.fusion,
            rrf_k=self.config.rrf_k,
            dense=self.config.dense_weight,
            lexical=self.config.lexical_weight,
            static=self.config.static_weight,
        )

    # ------------------------------------------------------------ plumbing
    @property
    def data_dir(self) -> Path:
        from .config import DATA_DIR

        return self.root / DATA_DIR

    def _open_store(self, create: bool = False, fresh: bool = False):
        from .store import Store

        if self._store is None or create or fresh:
            self._store = Store(self.root, create=create, fresh_reads=fresh)
        return self._store

    def read_fresh(self) -> None:
        """From now on every search sees the commits other processes make (a long-lived
        reader, e.g. a server whose watcher is another process). No index yet: the first
        search opens it."""
        try:
            self._open_store(fresh=True)
        except CoderagError:
            pass

    def _writer_store(self, create: bool = True):
        """A writer's own handle on the database. Searches running meanwhile (other threads:
        a server, a watcher) keep theirs, so none of them reads a half-written refresh."""
        from .store import Store

        return Store(self.root, create=create)

    def _model_spec(self, meta: dict) -> str:
        """Which model to load: the one named in config, else the one the index was built with."""
        if self.config.model != "auto":
            return self.config.model
        return meta.get("model") or "auto"

    @property
    def embedder_loaded(self) -> bool:
        """Has this index loaded its embedding model (a static-tier or lexical search does
        not)?"""
        return self._embedder is not None

    @property
    def reranker_loaded(self) -> bool:
        """Has this index loaded a reranker (only a search that reranks does)?"""
        return self._reranker is not None

    @property
    def embedder(self):
        if self._embedder is None:
            from . import models

            store_meta = {}
            try:
                store_meta = self._open_store().meta()
            except CoderagError:
                pass
            spec = self._model_spec(store_meta)
            dim = self.config.dim
            if spec != "auto":  # the index's own model: at the index's dimension
                dim = dim or store_meta.get("dim")
            self._embedder = models.load_embedder(
                spec,
                device=self.config.device,
                dtype=self.config.dtype,
                dim=dim,
                max_tokens=self.config.max_tokens,
                local_only=self.config.local_only("model"),  # a repository's choice: no download
            )
        return self._embedder

    def _check_meta(self, meta: dict, emb) -> None:
        from .store import SCHEMA_VERSION

        if not meta:
            return
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise IndexCorrupt(
                f"the index at {self.data_dir} has schema version {meta.get('schema_version')!r}, "
                f"this coderag writes {SCHEMA_VERSION}; run `coderag index --rebuild`"
            )
        if emb is None:
            return
        if meta.get("model") and (meta["model"] != emb.model_id or meta.get("dim") != emb.dim):
            raise ModelMismatch(
                f"the index was built with {meta['model']} ({meta.get('dim')} dims), not "
                f"{emb.model_id} ({emb.dim} dims); run `coderag index --rebuild` to switch models"
            )

    # ------------------------------------------------------------- refresh
    def refresh(
        self,
        paths: list[str] | None = None,
        *,
        progress: Progress | None = None,
        lexical_only: bool = False,
        rebuild: bool = False,
        contents: dict[str, bytes] | None = None,
    ) -> RefreshStats:
        """Bring the index up to date with the files (all, or only ``paths``).

        ``contents`` maps paths to bytes to index instead of the working-tree file (the
        git index's blobs, for ``--staged``).
        """
        t0 = time.perf_counter()
        say = progress or (lambda *a, **k: None)
        stats = RefreshStats()
        if rebuild:
            self._replace_if_foreign()
        with WriterLock(self.data_dir, self.config.lock_timeout):
            store, meta = self._store_for_writing(rebuild, stats)
            lazy = _LazyModels(self, meta, say, self._light_start(meta, lexical_only))
            if lazy.light is not None:
                pass  # a new index that stores no model vectors: the model is not loaded
            elif not meta or self.config.model != "auto" or self._embedder is not None:
                lazy.embedder()  # a new index, or a model named explicitly: check it now
            else:
                self._check_meta(meta, None)
            model_id, dim = lazy.identity()
            first_build = not store.exists()
            if first_build:
                self._create_tables(store, lazy.profile())
            statics = self._static_model(distil=not lexical_only)  # phase 1 makes them too
            if not first_build:
                self._static_table_check(store, meta, statics, stats)
            chunker = _chunker_fingerprint()
            # an index chunked by other code: every file is chunked again (the cache keeps
            # the vectors of texts that did not change); only a full refresh marks it done
            rechunk = bool(meta) and meta.get("chunker") != chunker
            if rechunk and paths is None:
                stats.notes.append(
                    "coderag's chunking changed since this index was built; chunking every "
                    "file again (vectors of unchanged chunks are reused)"
                )
            self._phase_store(
                store,
                lazy.counter,
                (model_id, dim),
                paths,
                contents,
                stats,
                say,
                force=rechunk,
                first=first_build,
            )
            _release_memory()
            if first_build or not store.fts_ok():
                store.build_fts()  # one bulk build beats folding in row by row; or a repair
            self._phase_static(store, stats, say, distil=not lexical_only)
            if statics is not None and store.static_dim() is not None:
                if meta.get("static_model") != statics.model_id:
                    store.set_meta(static_model=statics.model_id)
            if not lexical_only and self._static_mode() != "only" and store.count_pending():
                self._phase_embed(store, lazy.embedder(), stats, say)
            if lazy.loaded is not None:
                self._export_query_encoder(lazy.loaded)
            elif lazy.light is not None:
                self._export_token_counter(lazy.light)
            stats.chunks_pending = store.count_pending()
            changed = bool(stats.files_indexed or stats.files_removed or stats.chunks_embedded)
            self._record(store, meta, model_id, dim, force=changed or first_build or rebuild)
            if rechunk and paths is None:
                store.set_meta(chunker=chunker)
            self._maintain(store, stats, full=changed and paths is None)
            if self._store is None or not self._store.fresh_reads:
                self._store = store  # later searches here see what was just written
        stats.seconds = time.perf_counter() - t0
        say("done", stats=stats)
        return stats

    def _replace_if_foreign(self) -> None:
        """``--rebuild``: a ``.coderag`` that is a link, a file or another user's folder is
        replaced (never written through)."""
        try:
            datadir.check(self.root)
        except CoderagError:
            self._store = None
            datadir.replace(self.root)

    def _store_for_writing(self, rebuild: bool, stats: RefreshStats):
        """The writer's store and the index's meta; an index to start over (``--rebuild``, a
        schema older than this coderag's) comes back empty, lost tables dropped."""
        from .store import SCHEMA_VERSION

        if rebuild:
            self._store = None
            _remove(self.data_dir / "db")  # whatever is there: damaged, foreign, a file
        store = self._writer_store()
        lost = store.partial()
        if lost:  # tables deleted by hand: never a silently empty index
            stats.notes.append(
                f"the index had lost its {', '.join(sorted(lost))} table(s); indexing "
                "every file again (cached vectors are reused)"
            )
            store.drop_content()
        meta = store.meta() if store.exists() or lost else {}
        old = meta.get("schema_version")
        if isinstance(old, int) and old < SCHEMA_VERSION:
            stats.notes.append(
                f"the index was written by an older coderag (schema {old}, this one writes "
                f"{SCHEMA_VERSION}); rebuilding it"
            )
            self._store = None
            _remove(self.data_dir / "db")
            return self._writer_store(), {}
        return store, meta

    def _create_tables(self, store, emb) -> None:
        from .store import SCHEMA_VERSION

        store.create_tables(emb.dim)
        store.set_meta(
            schema_version=SCHEMA_VERSION,
            model=emb.model_id,
            dim=emb.dim,
            device=emb.device,
            dtype=emb.dtype,
            created_at=_now_iso(),
            chunker=_chunker_fingerprint(),
        )

    def _record(self, store, meta: dict, model_id: str, dim: int, force: bool) -> None:
        """Stamp the index with what it now holds: time, commit, model (when anything moved)."""
        from .store import SCHEMA_VERSION

        commit = git_head(self.root)
        if force or meta.get("commit") != commit:
            store.set_meta(
                indexed_at=_now_iso(),
                commit=commit,
                model=model_id,
                dim=dim,
                schema_version=SCHEMA_VERSION,
            )

    def _maintain(self, store, stats: RefreshStats, full: bool) -> None:
        """Compaction folds small commits together (a watcher's many small batches pay for it
        only every so often) and large tables get their nearest-neighbour indexes."""
        self._writes += stats.files_indexed + stats.files_removed + stats.chunks_embedded
        if self._writes >= 64 or full:
            store.optimize()  # also folds new rows into the vector indexes
            self._writes = 0
            _release_memory()  # compaction's buffers, before an index build needs its own
        made = store.ensure_indexes()
        if made:
            stats.notes.append(
                f"{store.count_chunks():,} chunks: built a nearest-neighbour index on "
                f"{' and '.join(made)} (IVF-RQ) for fast vector search"
            )

    def _plan(self, store, paths, contents, stats, force: bool = False):
        """Which files to (re)chunk and which rows to remove."""
        known = store.file_rows()
        # chunks whose file row was never written (a run killed between a batch's two commits);
        # the cheap count check first, the path scan only when the counts disagree
        stranded: set[str] = set()
        if store.count_chunks() != sum(int(r["chunks"] or 0) for r in known.values()):
            stranded = store.chunk_paths() - set(known)
        if paths is None:
            entries, skipped = walk(self.root, self.config)
            stats.skipped.extend(skipped)
            present = {e.path for e in entries}
            removed = [p for p in known if p not in present] + sorted(stranded - present)
        else:
            entries, removed = self._named(paths, set(known) | stranded, contents, stats)
        todo = []
        for e in entries:
            row = known.get(e.path)
            same_stat = row and row["size"] == e.size and row["mtime_ns"] == e.mtime_ns
            if same_stat and e.mtime_ns >= 0 and not force:
                stats.files_unchanged += 1
                continue
            todo.append((e, row))
        return todo, removed

    def _named(self, paths, indexed: set[str], contents, stats):
        """The files behind explicitly named paths (folders walked), and which of the
        ``indexed`` paths they show are gone or no longer indexable."""
        wanted = PathFilter(self.root, self.config)
        entries, removed = [], []
        for rel in dict.fromkeys(iter_paths(self.root, paths)):
            if rel in ("", ".") or is_real_dir(self.root, rel):
                # a folder: its files on disk, and whatever the index holds under it
                found, skipped = walk(self.root, self.config, under="" if rel == "." else rel)
                stats.skipped.extend(skipped)
                entries.extend(found)
                prefix = "" if rel in ("", ".") else rel.rstrip("/") + "/"
                on_disk = {e.path for e in found}
                removed.extend(p for p in indexed if p.startswith(prefix) and p not in on_disk)
                continue
            entry = self._named_file(rel, wanted, contents, stats)
            if entry is not None:
                entries.append(entry)
            elif rel in indexed:
                removed.append(rel)
        return entries, removed

    def _named_file(self, rel: str, wanted, contents, stats) -> FileEntry | None:
        """One named file to index (its staged bytes when ``contents`` has them), or None:
        not indexable (a skip with a reason is recorded), or gone."""
        if not wanted.accepts(rel):
            return None
        limit = self.config.max_file_bytes
        if contents is not None and rel in contents:
            if len(contents[rel]) > limit:
                stats.skipped.append(Skip(rel, f"larger than {limit:,} bytes"))
                return None
            return FileEntry(rel, len(contents[rel]), -1)  # -1: never the stat shortcut
        e = check_path(self.root, rel, limit)
        if isinstance(e, FileEntry):
            return e
        if e is not None:  # it exists but cannot be indexed: say why
            stats.skipped.append(e)
        return None

    def _light_start(self, meta: dict, lexical_only: bool):
        """The bundled model's torch-free tokenizer, when a new index is made on a machine
        where ``model = auto`` is the bundled model for certain and this refresh computes no
        model vectors (saves ~5 s and ~300 MB of loading torch and the model); else None."""
        from . import models

        c = self.config
        if meta or self._embedder is not None or c.model != "auto":
            return None
        if not (lexical_only or self._static_mode() == "only"):
            return None
        if c.device not in (None, "cpu") or (c.device is None and not models.cuda_impossible()):
            return None
        try:
            light = models.bundled_token_counter()
        except (CoderagError, OSError, ValueError, KeyError):
            return None  # the normal path says what is wrong
        if c.dim not in (None, light.dim) or c.max_tokens not in (None, light.max_tokens):
            return None
        return light

    def _light_counter(self, meta: dict):
        """A torch-free copy of the index model's tokenizer (the query encoder of a BERT-family
        model, or the exported tokenizer of any model) when it counts tokens exactly as the
        model does (same model, dimension and token budget); else None."""
        if self._embedder is not None or not meta:
            return None
        if self.config.model not in ("auto", meta.get("model")):
            return None
        if self._query_encoder is None:
            from . import models

            qdir = self.data_dir / QUERY_ENCODER_DIR
            self._query_encoder = models.load_query_encoder(qdir) if qdir.is_dir() else None

        def fits(enc) -> bool:
            return (
                enc is not None
                and (enc.model_id, enc.dim) == (meta.get("model"), meta.get("dim"))
                and self.config.max_tokens in (None, enc.max_tokens)
            )

        if fits(self._query_encoder):
            return self._query_encoder
        tdir = self.data_dir / TOKEN_COUNTER_DIR
        if tdir.is_dir():
            from . import models

            enc = models.load_token_counter(tdir)  # any model, tokenizer only
            if fits(enc):
                return enc
        return None

    def _phase_store(
        self, store, counter, key, paths, contents, stats, say, force=False, first=False
    ) -> None:
        """Phase 1: chunk new and changed files, store their chunks and files rows.

        ``counter()`` returns what sizes the chunks (the model's tokenizer), obtained only if
        a file needs chunking; ``key`` = (model id, dim) goes into every chunk's cache key.
        ``first``: a first build (rows are appended; files go in a hashed order, so the
        chunks that count the static tier's weights are a fair sample of the repository)."""
        todo, removed = self._plan(store, paths, contents, stats, force)
        if removed:
            store.delete_files(removed)
            stats.files_removed += len(removed)
        if first:
            todo.sort(key=lambda job: _digest(job[0].path))
        statics = self._static_writer(stats, first)
        if statics is not None:
            counter = statics.sharing(counter)
        say("parse", total=len(todo))
        for jobs in _growing_batches(todo, first=16, most=FILE_BATCH):
            batch = _Batch()
            for entry, known_row in jobs:
                n = self._chunk_file(entry, known_row, batch, counter, key, contents, stats, force)
                say("parsed", files=1, chunks=n)
            self._reuse_vectors(store, batch.rows, stats)
            if statics is not None:
                statics.fill(batch.rows)
            if batch.gone:
                store.delete_files(batch.gone)
                stats.files_removed += len(batch.gone)
            if first:
                store.add_chunks(batch.rows)
            else:
                store.replace_chunks(batch.replace, batch.rows)
            store.upsert_files(batch.files)  # only now are these files done
            if statics is not None:
                statics.settle(store, done=False)
        if statics is not None:
            statics.settle(store, done=True)
            if statics.shared:
                statics.shared.remember(False)  # the counter may serve on: it stops keeping ids
        stats.files_skipped = len(stats.skipped)

    def _chunk_file(self, entry, known_row, batch, counter, key, contents, stats, force) -> int:
        """Read, decode and chunk one file into ``batch``; the number of chunks it got."""
        from .chunking import chunk_file, detect_language
        from .store import chunk_row

        if contents is not None and entry.path in contents:
            data = contents[entry.path]
        else:
            data = read_bytes(self.root, entry.path, self.config.max_file_bytes)
        text = data if isinstance(data, Skip) else decode(entry.path, data)
        if isinstance(text, Skip):
            stats.skipped.append(text)
            if known_row:
                batch.gone.append(entry.path)
            return 0
        assert isinstance(text, Text)
        if known_row and known_row["hash"] == text.digest and not force:
            # touched, not changed: only the stat fields move
            batch.files.append({**known_row, "mtime_ns": entry.mtime_ns, "size": entry.size})
            stats.files_unchanged += 1
            return 0
        language = detect_language(entry.path, text.text[:256])
        try:
            chunks = chunk_file(entry.path, text.text, language, counter())
        except RecursionError:
            stats.skipped.append(Skip(entry.path, "too deeply nested to parse"))
            return 0
        batch.files.append(
            {
                "path": entry.path,
                "hash": text.digest,
                "size": entry.size,
                "mtime_ns": entry.mtime_ns,
                "chunks": len(chunks),
                "language": language or "text",
            }
        )
        batch.replace.append(entry.path)
        size_factor = 1.0 / (1.0 + entry.size / 20_000)
        for c in chunks:
            # The cache key is the chunk's own text, not its path header: a rename or a
            # move re-uses the vector (its header names the old path until the text changes).
            ckey = _digest(key[0], key[1], c.kind, c.text)
            batch.rows.append(
                chunk_row(
                    c,
                    id=_digest(c.path, c.start_line, c.end_line, c.kind, c.symbol, ckey),
                    name=rank.symbol_name(c.symbol),
                    search_text=rank.search_text(c.text, c.path, c.symbol),
                    embed_key=ckey,
                    priority=_KIND_PRIORITY.get(c.kind, 1.0) + size_factor,
                )
            )
        stats.files_indexed += 1
        return len(chunks)

    @staticmethod
    def _reuse_vectors(store, rows: list[dict], stats: RefreshStats) -> None:
        """The cache: every text embedded before, under any path or branch."""
        cached = store.cached_vectors(r["embed_key"] for r in rows)
        for r in rows:
            v = cached.get(r["embed_key"])
            if v is not None:
                r["vector"] = v
                r["embedded"] = True
                stats.chunks_reused += 1

    def _static_writer(self, stats: RefreshStats, first: bool) -> _StaticVectors | None:
        """Static vectors made as chunks are stored, when this index has (or, on a first
        build, is about to count) its token weights; else the static pass catches up."""
        from .models import static

        model = self._static_model(distil=False) if self._static_mode() != "off" else None
        if model is None:
            return None
        df_path = self.data_dir / static.DF_FILE
        df = static.DocFreq.load(df_path, model.vocab)
        if df is None and not first:
            return None  # weights are counted over the whole index by the static pass
        return _StaticVectors(model, df_path, df, stats)

    # ------------------------------------------------------------ static tier
    def _static_mode(self) -> str:
        mode = self.config.static  # checked again: a Config may be built without load_config
        if mode not in STATIC_MODES:
            raise UsageError(f"setting 'static' must be one of {', '.join(STATIC_MODES)}")
        return mode

    def _static_model(self, distil: bool):
        """The static tier's token table: the shipped one, else one distilled on this machine
        (on first need when ``distil``: that imports torch, ~40 s once); None when off or not
        to be had."""
        if self._static is None and self._static_mode() != "off":
            from .models import static

            try:
                self._static = static.load_static(STATIC_SOURCE, distil)
            except (CoderagError, OSError) as e:
                log.warning("coderag: no static vectors: %s", e)
        return self._static

    def _static_table_check(self, store, meta: dict, model, stats: RefreshStats) -> None:
        """Static vectors made with another token table (an index from an older coderag, or
        the shipped table unusable here) cannot be searched with this one: all are marked
        for remaking and their token weights counted again (thousands of chunks a second)."""
        from .models import static

        if model is None or store.static_dim() is None:
            return
        if _made_with(meta, model) or not store.count_chunks():
            return
        store.clear_static()
        (self.data_dir / static.DF_FILE).unlink(missing_ok=True)
        stats.notes.append("the static token table changed; remaking every static vector")

    def _static_weights(self, model):
        """Token weights from this index's document frequencies (None before the first
        static pass); read again only when the file changes."""
        from .models import static

        path = self.data_dir / static.DF_FILE
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, model.vocab)
        except OSError:
            stamp = None
        if stamp is None or self._weights_cache[0] != stamp:
            df = static.DocFreq.load(path, model.vocab)
            self._weights_cache = (stamp, None if df is None else df.weights())
        return self._weights_cache[1]

    def _phase_static(self, store, stats, say, distil: bool) -> None:
        """Phase 1b: a static vector for every chunk that lacks one (thousands a second).
        The first pass over an index counts its document frequencies (the token weights);
        later refreshes keep them, so vectors stay comparable."""
        from .models import static

        model = self._static_model(distil)
        if model is None or not store.count_chunks():
            return
        store.add_static_columns(model.dim)
        df_path = self.data_dir / static.DF_FILE
        df = static.DocFreq.load(df_path, model.vocab)
        total = store.count_static_pending() if df is not None else store.count_chunks()
        if not total:
            return
        say("static", total=total)
        t0 = time.perf_counter()
        # texts are read and tokenised a batch at a time; only compact token ids (2 bytes a
        # token) are kept, and only on a first pass, which counts the weights before any
        # vector can be made
        kept: list[tuple[list[str], list]] = []
        first = df is None
        if first:
            df = static.DocFreq(model.vocab)
        weights = None if first else df.weights()
        for batch in store.iter_static_pending(STATIC_BATCH, everything=first):
            ids = model.token_ids([r["embed_text"] for r in batch])
            keys = [r["id"] for r in batch]
            if first:
                df.add(ids)
                kept.append((keys, ids))
            else:
                store.set_static(keys, model.vectors(ids, weights))
                stats.chunks_static += len(keys)
        if first:
            df.save(df_path)
            weights = df.weights()
            while kept:
                keys, ids = kept.pop(0)
                store.set_static(keys, model.vectors(ids, weights))
                stats.chunks_static += len(keys)
        stats.static_seconds += time.perf_counter() - t0
        say("static_done", chunks=stats.chunks_static)

    @contextmanager
    def backfill_turn(self):
        """Hold ``.coderag/backfill.lock`` (waiting for it) around a whole back-fill run, so
        back-to-back git hooks start one model-loading process after another, never two at
        once; the writer lock is still taken per batch."""
        if not self.data_dir.is_dir():
            raise IndexMissing(f"no index at {self.data_dir}; run `coderag index` first")
        with datadir.FileLock(self.root, datadir.BACKFILL_LOCK, timeout=None, busy=""):
            yield

    def embed_pending(self, limit: int = EMBED_BATCH, *, progress: Progress | None = None) -> int:
        """Embed up to ``limit`` chunks still without a vector (0 = all); returns how many.

        For background back-fill (watch, serve): each call takes the writer lock briefly,
        so fresh edits are never stuck behind a long embedding run.
        """
        stats = RefreshStats()
        with WriterLock(self.data_dir, self.config.lock_timeout):
            store = self._writer_store(create=False)
            if not store.exists():
                return 0
            emb = self.embedder
            self._check_meta(store.meta(), emb)
            self._phase_embed(store, emb, stats, progress or (lambda *a, **k: None), limit)
            if self._store is None or not self._store.fresh_reads:
                self._store = store
        return stats.chunks_embedded + stats.chunks_reused

    def _phase_embed(self, store, emb, stats, say, limit: int = 0) -> None:
        import numpy as np

        pending = store.pending(limit)
        if not pending:
            return
        by_key: dict[str, list[str]] = {}
        texts: dict[str, str] = {}
        for r in pending:
            by_key.setdefault(r["embed_key"], []).append(r["id"])
            texts.setdefault(r["embed_key"], r["embed_text"])
        # a chunk whose text another chunk already has a cached vector for
        cached = store.cached_vectors(by_key)
        if cached:
            ids = [i for k in cached for i in by_key[k]]
            vecs = np.stack([cached[k] for k in cached for _ in by_key[k]])
            store.set_vectors(ids, vecs)
            stats.chunks_reused += len(ids)
            for k in cached:
                by_key.pop(k)
        keys = list(by_key)
        say("embed", total=len(keys))
        step = max(1, self.config.embed_batch)
        for start in range(0, len(keys), step):
            part = keys[start : start + step]
            vecs = emb.embed_documents([texts[k] for k in part])
            store.put_cached_vectors(part, vecs)  # the cache first: a crash here loses nothing
            ids = [i for k in part for i in by_key[k]]
            rows = np.repeat(vecs, [len(by_key[k]) for k in part], axis=0)
            store.set_vectors(ids, rows)
            stats.chunks_embedded += len(part)
            say("embedded", chunks=len(part))

    # -------------------------------------------------------------- search
    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        lang: str | None = None,
        path: str | None = None,
        kind: str | None = None,
        code: bool | None = None,
        files: bool = False,
        rerank: bool | None = None,
    ) -> list[Hit]:
        """Ranked hits for a natural-language or code query.

        ``rerank``: re-order the top ``rerank_depth`` fused candidates with the reranker
        (None: the ``rerank`` setting; "auto" reranks when the query ran on a GPU).
        The keywords are :class:`~coderag.vocabulary.SearchRequest`'s, with the library's
        limits (``k`` up to :data:`~coderag.vocabulary.MAX_K`)."""
        check(k=k, mode=mode, kind=kind)
        query = query.replace("\x00", " ")
        # lone surrogates (a non-UTF-8 argv, a JSON "\ud800") must not reach the tokenizer
        query = query.encode("utf-8", "replace").decode("utf-8")
        if len(query) > MAX_QUERY_CHARS:
            query = query[:MAX_QUERY_CHARS]
        if not query.strip():
            raise UsageError("empty query")
        store = self._open_store().snapshot()  # every query of this search reads one commit
        store.require_complete()
        meta = store.meta()
        if not meta:
            raise CoderagError(f"the index at {self.data_dir} is empty; run `coderag index`")
        self._check_meta(meta, None)
        from .store import where_clause

        where = where_clause(lang, kind, path)
        counts = store.counts()
        self.last_dense_coverage = _coverage(counts, "pending")
        is_code = rank.looks_like_code(query) if code is None else code
        depth = max(self.config.candidates, k * 3)
        cands = self._candidates(store, meta, query, mode, is_code, depth, where, kind, counts)
        weights = self.weights
        if self.last_dense_tier == "static":  # a weaker dense half: it leans less (measured)
            weights = dataclasses.replace(weights, dense=STATIC_DENSE_WEIGHT)
        fused = rank.rank(
            cands.lexical,
            cands.dense,
            cands.definitions,
            cands.owners,
            query,
            weights,
            is_code,
            cands.static,
        )
        if path:
            keep = compile_glob(path)  # linear time, whatever the pattern
            fused = [(r, s) for r, s in fused if keep(r["path"])]
        if self._rerank_wanted(rerank):
            auto = rerank is None and self.config.rerank == "auto"
            fused = self._rerank(query, fused, "code" if is_code else "nl", k, auto=auto)
        picked = rank.by_file(fused, k) if files else rank.collapse(fused, k)
        return [
            Hit(
                path=r["path"],
                start_line=int(r["start_line"]),
                end_line=int(r["end_line"]),
                kind=r["kind"],
                language=r["language"],
                symbol=r["symbol"],
                score=round(float(s), 6),
                text=r["text"],
            )
            for r, s in picked
        ]

    def _candidates(
        self, store, meta, query, mode, is_code, depth, where, kind, counts=None
    ) -> rank.Candidates:
        """What each retriever finds for ``query``: the input of :func:`rank.rank`. In hybrid
        mode the lexical half runs in a second thread while the dense half runs here (both
        spend their time in LanceDB's native code, outside the GIL)."""

        # a docstring hit is shown as its definition, unless docs are what was asked for;
        # each half looks up the owners of its own doc hits (in its own thread)
        def owners_of(rows: list[dict]) -> list[dict]:
            return store.owners(rows) if kind is None else []

        def lexical_half():
            if mode not in ("hybrid", "lexical"):
                return [], [], []
            names, _ = rank.query_symbols(query)
            lexical = store.lexical(rank.query_terms(query), depth, where)
            return lexical, store.definitions(names, depth, where), owners_of(lexical)

        other = self._pool().submit(lexical_half) if mode == "hybrid" else None
        dense: list[dict] = []
        static: list[dict] = []
        dense_owners: list[dict] = []
        try:
            if mode in ("hybrid", "dense"):
                dense, static = self._dense_half(store, meta, query, is_code, depth, where, counts)
                dense_owners = owners_of(dense + static)
        finally:
            lexical, definitions, owners = other.result() if other is not None else lexical_half()
        seen = {r["id"] for r in owners}
        owners += [r for r in dense_owners if r["id"] not in seen]
        return rank.Candidates(lexical, dense, definitions, owners, static)

    def _dense_half(
        self, store, meta, query, is_code, depth, where, counts
    ) -> tuple[list[dict], list[dict]]:
        """The dense list, and the static list searched beside it when both tiers answer
        (``weights.static`` > 0 and every chunk has a static vector). Sets
        :attr:`last_dense_tier`: "model", "static" or "both"."""
        counts = counts or store.counts()
        alone = self._static_answers(counts)
        both = not alone and self.weights.static > 0 and not counts["static_pending"]
        usable = self._static_usable(store, meta) if alone or both else None
        self.last_dense_tier = "model"
        if alone and usable is not None:
            self.last_dense_tier = "static"
            self.last_dense_coverage = _coverage(counts, "static_pending")
            return self._static_search(usable, store, query, depth, where), []
        dense = store.dense(
            self._query_vector(query, "code" if is_code else "nl", meta), depth, where
        )
        if both and usable is not None:
            self.last_dense_tier = "both"
            return dense, self._static_search(usable, store, query, depth, where)
        return dense, []

    @staticmethod
    def _static_search(usable, store, query, depth, where) -> list[dict]:
        model, weights = usable
        return store.static_dense(model.embed([query], weights)[0], depth, where)

    def _pool(self):
        if self._threads is None:
            from concurrent.futures import ThreadPoolExecutor

            self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coderag-lexical")
        return self._threads

    def _static_usable(self, store, meta: dict):
        """The static model and this index's token weights when the index has static vectors
        they can query (made with this table), else None."""
        if self._static_mode() == "off" or store.static_dim() is None:
            return None
        model = self._static_model(distil=False)
        if not _made_with(meta, model):
            return None
        weights = self._static_weights(model)
        if weights is None or model.dim != store.static_dim():
            return None
        return model, weights

    def _static_answers(self, counts: dict) -> bool:
        """Should the static vectors answer the dense half alone (when usable)? With
        ``static = only``; with ``auto`` while the model's vectors cover less than
        MODEL_COVERAGE of the chunks and fewer chunks than the static ones."""
        mode = self._static_mode()
        if mode != "auto":
            return mode == "only"
        model_share = _coverage(counts, "pending")
        return model_share < MODEL_COVERAGE and counts["pending"] > counts["static_pending"]

    def _rerank_wanted(self, rerank: bool | None) -> bool:
        if rerank is not None:
            return bool(rerank)
        if self.config.rerank != "auto":
            return self.config.rerank == "on"
        if self._auto_rerank_failed:
            return False
        device = getattr(self._embedder, "device", None) or self.config.device or ""
        return str(device).startswith("cuda")

    @property
    def reranker(self):
        """The second-stage model, loaded on first use (one per process, shared)."""
        if self._reranker is None:
            from . import models

            self._reranker = models.load_reranker(
                self.config.rerank_model,
                device=self.config.device or getattr(self._embedder, "device", None),
                dtype=self.config.dtype,
                local_only=self.config.local_only("rerank_model"),
            )
        return self._reranker

    def _rerank(self, query: str, fused: list, kind: str, k: int, auto: bool = False) -> list:
        """Order the top candidates by the reranker's score; the rest follow, below them."""
        n = min(len(fused), max(self.config.rerank_depth, k))
        if n == 0:
            return fused
        try:
            model = self.reranker
        except ModelNotFound as exc:
            if not auto:
                raise
            self._auto_rerank_failed = True  # "auto" on a GPU: say it once, search on without
            log.warning("coderag: not reranking: %s", exc)
            return fused
        scores = model.score(query, [rank.rerank_text(row) for row, _ in fused[:n]], kind)
        return rank.rerank_head(fused, [float(x) for x in scores])

    def _export_query_encoder(self, emb) -> None:
        """Keep a torch-free copy of the query path under .coderag/ (BERT-family models), so a
        one-shot `coderag search` answers without importing torch. Best effort."""
        import shutil

        from . import models

        self._export_token_counter(emb)
        qdir = self.data_dir / QUERY_ENCODER_DIR
        current = models.load_query_encoder(qdir) if qdir.is_dir() else None
        if current is not None and (current.model_id, current.dim) == (emb.model_id, emb.dim):
            return
        shutil.rmtree(qdir, ignore_errors=True)
        tmp = qdir.with_name(qdir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if models.export_query_encoder(emb, tmp) is not None:
                tmp.rename(qdir)  # complete or absent, never half written
        except Exception:  # noqa: BLE001 - an optimisation: the full model still works
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _export_token_counter(self, emb) -> None:
        """Keep the model's tokenizer and token budget under .coderag/ (any model), so a git
        hook sizes chunks without loading the model. Best effort, never half written."""
        import shutil

        from . import models

        tdir = self.data_dir / TOKEN_COUNTER_DIR
        cur = models.load_token_counter(tdir) if tdir.is_dir() else None
        if cur is not None and (cur.model_id, cur.dim, cur.max_tokens) == (
            emb.model_id,
            emb.dim,
            emb.max_tokens,
        ):
            return
        tmp = tdir.with_name(tdir.name + ".tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            models.export_token_counter(emb, tmp)
            shutil.rmtree(tdir, ignore_errors=True)
            tmp.rename(tdir)
        except Exception:  # noqa: BLE001 - an optimisation: the full model still works
            shutil.rmtree(tmp, ignore_errors=True)

    def _query_vector(self, query: str, kind: str, meta: dict):
        wanted = self.config.model in ("auto", meta.get("model"))
        if self._embedder is None and self._query_encoder is None and wanted:
            from . import models

            qdir = self.data_dir / QUERY_ENCODER_DIR
            enc = models.load_query_encoder(qdir) if qdir.is_dir() else None
            if enc is not None and (enc.model_id, enc.dim) == (meta.get("model"), meta.get("dim")):
                self._query_encoder = enc
        if self._query_encoder is not None:
            return self._query_encoder.embed_query(query, kind)
        emb = self.embedder
        self._check_meta(meta, emb)
        return emb.embed_query(query, kind)

    # -------------------------------------------------------------- status
    def status(self) -> dict:
        """What the index holds now, including other processes' writes (a hook's background
        back-fill, a watcher): read from a fresh view, not this object's cached one."""
        from .store import Store

        store = Store(self.root, fresh_reads=True)
        store.require_complete()
        meta = store.meta()
        if not meta or not store.exists():
            raise CoderagError(f"the index at {self.data_dir} is empty; run `coderag index`")
        counts = store.counts()
        chunks = counts["chunks"]
        has_static = store.static_dim() is not None
        static_share = _coverage(counts, "static_pending")
        if not has_static or not _made_with(meta, self._static_model(distil=False)):
            static_share = 0.0  # none, or made with a table this coderag does not have
        return {
            "root": str(self.root),
            "files": counts["files"],
            "chunks": chunks,
            "model": meta.get("model"),
            "dim": meta.get("dim"),
            "indexed_at": meta.get("indexed_at"),
            "bytes": store.size_bytes(),
            "dense_coverage": round(_coverage(counts, "pending"), 4),
            "static_coverage": round(static_share, 4),
            "static_model": _static_source(meta) if has_static else None,
            "commit": meta.get("commit"),
            "device": meta.get("device"),
            "schema_version": meta.get("schema_version"),
        }
