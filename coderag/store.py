"""LanceDB storage: the only module that imports lancedb.

One database per repository at ``<repo>/.coderag/db`` with four tables:

``chunks``      one row per chunk: metadata, original text, the text that was embedded, a
                code-aware ``search_text`` with a native full-text index, the vector (zeros
                until ``embedded`` is true) and the key of that vector in the cache.
``files``       one row per indexed file: path, content hash, size, mtime; written only
                after the file's chunk rows are committed, so an interrupted run never
                marks a file done that is not.
``embeddings``  the embedding cache: ``key`` = hash(model id, dim, embedded text) → vector.
                Renames, reverts and branch switches find their vectors here.
``meta``        key/value rows: schema version, model id, dimension, times, git commit.

Every write is one LanceDB commit (atomic: a reader sees a file's old rows or its new
rows, never both, never neither). Callers hold the writer lock (see ``index.WriterLock``).
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import json
import os
import re
import sys
import types
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np

from . import datadir
from .config import DATA_DIR
from .errors import CoderagError, DiskFull, IndexCorrupt, IndexMissing
from .globs import like_patterns
from .models.static import DIM as STATIC_DIM

SCHEMA_VERSION = 2
DB_DIR = "db"
#: the tables every built index has (``embeddings``, the vector cache, may be missing)
CORE_TABLES = frozenset({"chunks", "files", "meta"})
REBUILD_HINT = "run `coderag index --rebuild`"

#: every table's columns, said once: name → Arrow type ("vector"/"svector" are fixed-size
#: float32 lists of the model's / the static tier's dimension)
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "chunks": (
        ("id", "string"),
        ("path", "string"),
        ("language", "string"),
        ("kind", "string"),
        ("symbol", "string"),
        ("name", "string"),
        ("start_line", "int32"),
        ("end_line", "int32"),
        ("text", "string"),
        ("embed_text", "string"),
        ("search_text", "string"),
        ("embed_key", "string"),
        ("embedded", "bool"),
        ("priority", "float32"),
        ("vector", "vector"),
        ("svector", "svector"),
        ("sembedded", "bool"),
    ),
    "files": (
        ("path", "string"),
        ("hash", "string"),
        ("size", "int64"),
        ("mtime_ns", "int64"),
        ("chunks", "int32"),
        ("language", "string"),
    ),
    "embeddings": (("key", "string"), ("vector", "vector")),
    "meta": (("key", "string"), ("value", "string")),
}
#: the static tier's columns (added to older indexes by the first refresh that needs them)
STATIC_COLUMNS = ("svector", "sembedded")
#: the chunk columns a writer supplies (the static ones start empty and are filled later)
CHUNK_COLUMNS = tuple(n for n, _ in TABLES["chunks"] if n not in STATIC_COLUMNS)
#: what every index must have (an index from before the static tier lacks its columns)
EXPECTED_COLUMNS = {
    name: {n for n, _ in cols} - set(STATIC_COLUMNS) for name, cols in TABLES.items()
}
#: above this many chunks the vector columns get IVF-RQ indexes (RaBitQ, 1 bit a dimension):
#: an exhaustive search of 219k static vectors took ~150 ms on 2 cores. RQ builds in about a
#: second where IVF-PQ took 77 s at that size; the candidates are re-ranked exactly
#: (bench/scale.py measures recall@10 against the exhaustive search)
ANN_MIN_ROWS = 50_000
METADATA_CACHE_MIB = 64  # LanceDB's per-connection cache of table manifests
ANN_NPROBES = 50
ANN_REFINE = 10
#: training vectors per partition (LanceDB's default 256 held ~260 MB at 1M chunks)
ANN_SAMPLE_RATE = 128
#: MiB the full-text index build may hold (LanceDB's default grows with the table: ~1 GB
#: more peak memory at 1M chunks)
FTS_BUILD_MIB = 512
RESULT_COLUMNS = [
    "id",
    "path",
    "language",
    "kind",
    "symbol",
    "name",
    "start_line",
    "end_line",
    "text",
]


def _check_cpu() -> None:
    """LanceDB's prebuilt binaries need AVX2; without it they die with SIGILL. Say so first."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            info = fh.read(65536)
    except OSError:
        return
    if "flags" in info and " avx2" not in info and os.uname().machine in ("x86_64", "AMD64"):
        raise CoderagError(
            "this CPU lacks AVX2, which LanceDB's prebuilt binaries require; "
            "coderag cannot run on it"
        )


_NAMESPACE_CLIENT = "lance_namespace_urllib3_client"


class _LazyPackage(types.ModuleType):
    """A package whose ``__init__`` runs on the first access to a name it defines; its
    submodules import as usual meanwhile (``__path__`` is the real one)."""

    def __getattr__(self, name: str):
        spec = self.__dict__.get("__spec__")
        if name.startswith("__") or spec is None or self.__dict__.get("_coderag_loaded"):
            raise AttributeError(name)
        self.__dict__["_coderag_loaded"] = True
        spec.loader.exec_module(self)
        return getattr(self, name)


def _defer_namespace_client() -> None:
    """``import lancedb`` imports lance_namespace, which imports model classes from its REST
    client package, whose ``__init__`` imports the whole generated HTTP API: 0.45 s of a
    0.8 s import, for a local database that never talks HTTP. The package is registered
    lazily, so the models load and the API only if something asks for it."""
    if _NAMESPACE_CLIENT in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(_NAMESPACE_CLIENT)
    except (ImportError, ValueError):
        return
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    mod = _LazyPackage(_NAMESPACE_CLIENT)
    mod.__spec__ = spec
    mod.__path__ = list(spec.submodule_search_locations)
    mod.__file__ = spec.origin
    mod.__package__ = _NAMESPACE_CLIENT
    sys.modules[_NAMESPACE_CLIENT] = mod


def _import_lancedb():
    _check_cpu()
    os.environ.setdefault("LANCE_LOG", "error")  # no Rust WARN lines on the user's stderr
    _defer_namespace_client()
    import lancedb  # noqa: PLC0415  (heavy, imported on first use)

    return lancedb


def sql_str(value: str) -> str:
    """A SQL string literal for a LanceDB filter; rejects what cannot be quoted safely."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: a non-UTF-8 argv, a JSON "\ud800"
        raise CoderagError("filter values must be valid UTF-8 text") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise CoderagError("filter values may not contain control characters")
    if len(value) > 4096:
        raise CoderagError("filter value too long (over 4096 characters)")
    return "'" + value.replace("'", "''") + "'"


def where_clause(
    language: str | None = None, kind: str | None = None, path: str | None = None
) -> str | None:
    """The SQL filter of a search: a language, a chunk kind, a ``--path`` glob (as LIKE
    patterns: the glob, or a folder named by it); None when there is nothing to filter."""
    parts = []
    if language:
        parts.append(f"language = {sql_str(language)}")
    if kind:
        parts.append(f"kind = {sql_str(kind)}")
    if path:
        likes = [f"path LIKE {sql_str(p)} ESCAPE '\\'" for p in like_patterns(path)]
        parts.append(f"({' OR '.join(likes)})")
    return " AND ".join(parts) or None


def chunk_row(
    chunk, *, id: str, name: str, search_text: str, embed_key: str, priority: float
) -> dict:
    """A new ``chunks`` row for a :class:`~coderag.chunk.Chunk` (no vector yet)."""
    return {
        "id": id,
        "path": chunk.path,
        "language": chunk.language,
        "kind": chunk.kind,
        "symbol": chunk.symbol,
        "name": name,
        "start_line": chunk.start_line,
        "end_line": chunk.end_line,
        "text": chunk.text,
        "embed_text": chunk.embed_text,
        "search_text": search_text,
        "embed_key": embed_key,
        "embedded": False,
        "priority": priority,
        "vector": None,
    }


def _arrow_schema(table: str, dim: int, static_dim: int):
    import pyarrow as pa

    types_ = {
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        "float32": pa.float32(),
        "vector": pa.list_(pa.float32(), dim),
        "svector": pa.list_(pa.float32(), static_dim),
    }
    return pa.schema([(name, types_[kind]) for name, kind in TABLES[table]])


def data_dir(root: Path) -> Path:
    return root / DATA_DIR


class Store:
    """The index of one repository."""

    def __init__(self, root: Path, *, create: bool = False, fresh_reads: bool = False):
        self.root = root
        self.dir = data_dir(root)
        self.fresh_reads = fresh_reads
        # a link, another user's folder, one this user's coderag did not make: refused
        if datadir.check(root, create=create) is None:
            raise IndexMissing(f"no index at {self.dir}; run `coderag index` first")
        db_path = self.dir / DB_DIR
        if db_path.is_symlink() or (db_path.exists() and not db_path.is_dir()):
            raise IndexCorrupt(f"{db_path} is not a folder; {REBUILD_HINT}")
        if not create and not db_path.is_dir():
            raise IndexMissing(f"no index at {self.dir}; run `coderag index` first")
        lancedb = _import_lancedb()
        try:
            self.db = lancedb.connect(
                str(db_path),
                read_consistency_interval=timedelta(0) if fresh_reads else None,
                # the metadata cache (1 GiB by default) keeps the manifest of every version
                # a first build commits: 150-250 MB of peak RSS at 300k chunks
                session=lancedb.Session(metadata_cache_size_bytes=METADATA_CACHE_MIB << 20),
            )
            self._names = set(self._table_names())
        except Exception as e:  # noqa: BLE001 - any failure here means a damaged folder
            raise IndexCorrupt(
                f"cannot open the index at {self.dir} ({e}); {REBUILD_HINT}"
            ) from None
        self._tables: dict[str, object] = {}
        self._pinned = False
        self._ann: set[str] | None = None
        # row counts by table versions, shared with snapshots (a search asks for them once,
        # a warm server on every search: at 1M chunks four counts cost ~20 ms)
        self._counted: dict = {}

    def snapshot(self) -> Store:
        """This store with every table pinned at the version it has when first used: all
        queries of one search read one commit, whatever writers commit meanwhile. (Only a
        fresh-reads store needs it; the others never move after opening.)"""
        if not self.fresh_reads:
            return self
        snap = object.__new__(Store)
        snap.__dict__.update(self.__dict__)
        snap._tables = {}
        snap._pinned = True
        return snap

    def _table_names(self) -> list[str]:
        res = self.db.list_tables()
        return list(getattr(res, "tables", res))

    # ---------------------------------------------------------------- tables
    def _table(self, name: str):
        t = self._tables.get(name)
        if t is None:
            if name not in self._names:
                self._names = set(self._table_names())
                if name not in self._names:
                    self.require_complete()  # the others are there: it was deleted
                    raise IndexMissing(f"the index at {self.dir} is empty; run `coderag index`")
            try:
                t = self.db.open_table(name)
                if self._pinned:
                    t.checkout(t.version)
                columns = set(t.schema.names)
            except Exception as e:  # noqa: BLE001
                raise IndexCorrupt(
                    f"index table {name!r} is damaged ({_short(e)}); {REBUILD_HINT}"
                ) from None
            missing = EXPECTED_COLUMNS.get(name, set()) - columns
            if missing:
                raise IndexCorrupt(
                    f"index table {name!r} was not written by coderag (no {min(missing)!r} "
                    f"column); {REBUILD_HINT}"
                )
            self._tables[name] = t
        return t

    def exists(self) -> bool:
        return CORE_TABLES <= self._names

    def partial(self) -> set[str]:
        """The core tables a built index lacks (deleted by hand or by a broken copy); empty
        for a complete index and for none at all."""
        if not self._names & CORE_TABLES:
            return set()
        return CORE_TABLES - self._names

    def require_complete(self) -> None:
        """Raise IndexCorrupt when core tables were deleted (never answer from half an index)."""
        lost = self.partial()
        if lost:
            raise IndexCorrupt(
                f"the index at {self.dir} is damaged (its {', '.join(map(repr, sorted(lost)))} "
                f"table is missing); run `coderag index` to repair it, or {REBUILD_HINT[4:]}"
            )

    def drop_content(self) -> None:
        """Drop the chunk and file tables (the embedding cache and meta stay): every file is
        then chunked again, and vectors of texts seen before come from the cache. Without
        meta the cache's model is unknown, so it goes too."""
        names = ["chunks", "files"] + ([] if "meta" in self._names else ["embeddings"])
        for name in names:
            if name in self._names:
                self.db.drop_table(name)
            self._tables.pop(name, None)
        self._names = set(self._table_names())
        self._counted.clear()  # new tables start their versions again

    def create_tables(self, dim: int, static_dim: int = STATIC_DIM) -> None:
        for name in TABLES:
            if name not in self._names:
                schema = _arrow_schema(name, dim, static_dim)
                self.db.create_table(name, schema=schema, exist_ok=True)
        self._names = set(self._table_names())
        self.build_fts()

    # ------------------------------------------------------------------ meta
    def meta(self) -> dict:
        if "meta" not in self._names:
            return {}
        try:
            rows = self._table("meta").to_arrow().to_pylist()
        except CoderagError:
            raise
        except Exception as e:  # noqa: BLE001
            raise IndexCorrupt(f"index metadata unreadable ({e}); {REBUILD_HINT}") from None
        out = {}
        for r in rows:
            try:
                out[r["key"]] = json.loads(r["value"])
            except (TypeError, ValueError):
                raise IndexCorrupt(f"index metadata damaged; {REBUILD_HINT}") from None
        return out

    def set_meta(self, **values) -> None:
        rows = [{"key": k, "value": json.dumps(v)} for k, v in values.items()]
        (
            self._table("meta")
            .merge_insert("key")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )

    # ----------------------------------------------------------------- files
    def file_rows(self) -> dict[str, dict]:
        t = self._table("files").to_arrow()
        return {r["path"]: r for r in t.to_pylist()}

    def upsert_files(self, rows: list[dict]) -> None:
        if rows:
            (
                self._table("files")
                .merge_insert("path")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows)
            )

    def delete_files(self, paths: Sequence[str]) -> None:
        """Remove files and their chunks: chunks first, so a crash leaves a file to redo."""
        for part in _batches(list(paths), 500):
            where = f"path IN ({', '.join(sql_str(p) for p in part)})"
            self._table("chunks").delete(where)
            self._table("files").delete(where)

    # ---------------------------------------------------------------- chunks
    def add_chunks(self, rows: list[dict]) -> None:
        """Append chunk rows that are new for certain (a first build: no id can match, so
        the merge of :meth:`replace_chunks`, which joins on every row, is skipped)."""
        if rows:
            self._table("chunks").add(self._chunk_table(rows))

    def replace_chunks(self, paths: Sequence[str], rows: list[dict]) -> None:
        """Make ``rows`` the chunks of ``paths`` in one commit (unchanged ids stay untouched)."""
        if not paths:
            return
        where = f"path IN ({', '.join(sql_str(p) for p in paths)})"
        t = self._table("chunks")
        if not rows:
            t.delete(where)
            return
        (
            t.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(where)
            .execute(self._chunk_table(rows))
        )

    def _chunk_table(self, rows: list[dict]):
        """New chunk rows as Arrow. A row's static vector is its ``svector``, when it has
        one; the others start as zeros with ``sembedded`` false (the static pass fills them)."""
        import pyarrow as pa

        schema = self._table("chunks").schema
        cols = {name: [r[name] for r in rows] for name in CHUNK_COLUMNS if name != "vector"}
        dim = schema.field("vector").type.list_size
        vecs = np.zeros((len(rows), dim), dtype=np.float32)
        for i, r in enumerate(rows):
            v = r.get("vector")
            if v is not None:
                vecs[i] = v
        arrays = [pa.array(cols[n], type=schema.field(n).type) for n in CHUNK_COLUMNS[:-1]]
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim))
        names = list(CHUNK_COLUMNS)
        if "svector" in schema.names:
            sdim = schema.field("svector").type.list_size
            svecs = np.zeros((len(rows), sdim), dtype=np.float32)
            have = [False] * len(rows)
            for i, r in enumerate(rows):
                v = r.get("svector")
                if v is not None and len(v) == sdim:
                    svecs[i] = v
                    have[i] = True
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(svecs.ravel()), sdim))
            arrays.append(pa.array(have, type=pa.bool_()))
            names += list(STATIC_COLUMNS)
        return pa.Table.from_arrays(arrays, schema=pa.schema([schema.field(n) for n in names]))

    # ------------------------------------------------------------ static tier
    def static_dim(self) -> int | None:
        """The static vectors' dimension, or None for an index without the static columns."""
        schema = self._table("chunks").schema
        return schema.field("svector").type.list_size if "svector" in schema.names else None

    def add_static_columns(self, dim: int) -> None:
        """Give an index made before the static tier its (empty) static columns."""
        import pyarrow as pa

        if self.static_dim() is not None:
            return
        t = self._table("chunks")
        schema = _arrow_schema("chunks", 1, dim)
        t.add_columns(pa.schema([schema.field(n) for n in STATIC_COLUMNS]))
        self._tables.pop("chunks", None)

    def iter_static_pending(self, size: int, everything: bool = False):
        """``id`` and ``embed_text`` of the chunks without a static vector (or of all),
        ``size`` rows at a time, streamed from the version the scan starts on (vectors
        written meanwhile make new versions; the scan is not disturbed)."""
        q = self._table("chunks").search()
        if not everything:
            q = q.where("sembedded IS NOT TRUE")
        q = q.select(["id", "embed_text"]).limit(None)
        pending: list[dict] = []
        for batch in q.to_batches(size):
            pending.extend(batch.to_pylist())
            while len(pending) >= size:
                yield pending[:size]
                pending = pending[size:]
        if pending:
            yield pending

    def count_static_pending(self) -> int:
        if self.static_dim() is None:
            return self.count_chunks()
        return self._table("chunks").count_rows("sembedded IS NOT TRUE")

    def clear_static(self) -> None:
        """Mark every static vector as missing (made with another token table): the static
        pass makes them all again."""
        self._table("chunks").update(where="sembedded", values={"sembedded": False})

    def set_static(self, ids: list[str], vectors: np.ndarray) -> None:
        """Fill in static vectors of existing chunks (deleted ones are not resurrected)."""
        self._fill("svector", "sembedded", ids, vectors)

    def indexed_columns(self) -> dict[str, str]:
        """Every indexed column of the chunks table and its index type (``BTree``,
        ``IvfRq``, ``FTS``...)."""
        return {
            c: str(i.index_type) for i in self._table("chunks").list_indices() for c in i.columns
        }

    def ann_columns(self) -> set[str]:
        """Vector columns with a nearest-neighbour index (looked up once per handle)."""
        if self._ann is None:
            try:
                indices = self._table("chunks").list_indices()
                self._ann = {c for i in indices if "Ivf" in str(i.index_type) for c in i.columns}
            except CoderagError:
                raise
            except Exception:  # noqa: BLE001 - no index information: search exhaustively
                self._ann = set()
        return self._ann

    def ensure_indexes(self) -> list[str]:
        """Give a large table its indexes: B-trees on ``path`` and ``id`` (file and row
        lookups: a docstring's owner fell from ~20 to ~7 ms at 219k chunks) and IVF-RQ on
        each vector column once every row has a vector there (rows of zeros would train it
        badly). Returns the vector columns indexed now. Rows added later are folded in by
        :meth:`optimize`, and searched exhaustively until then."""
        from lancedb.index import BTree, IvfRq

        t = self._table("chunks")
        n = t.count_rows()
        if n < ANN_MIN_ROWS:
            return []
        have = {c for i in t.list_indices() for c in i.columns}
        for column in ("path", "id"):
            if column not in have:
                t.create_index(column, config=BTree())
        made = []
        for column, flag in (("svector", "sembedded"), ("vector", "embedded")):
            if column in have or column not in t.schema.names:
                continue
            if t.count_rows(f"{flag} IS NOT TRUE"):
                continue
            config = IvfRq(
                distance_type="cosine",
                num_partitions=max(16, int(n**0.5)),
                sample_rate=ANN_SAMPLE_RATE,
            )
            t.create_index(column, config=config)  # with a config the first argument is the column
            made.append(column)
        if made:
            self._tables.pop("chunks", None)
            self._ann = None
        return made

    def static_dense(
        self, vector: np.ndarray, k: int, where: str | None, *, exact: bool = False
    ) -> list[dict]:
        """Nearest chunks by static vector (cosine), among those that have one; ``exact``
        scans every vector instead of using the index (what the index is measured against)."""
        return self._nearest("svector", "sembedded", vector, k, where, exact=exact)

    def pending(self, limit: int) -> list[dict]:
        """Chunks still without a vector, most useful first (``limit`` 0 = all of them)."""
        t = self._table("chunks")
        keys = (
            t.search()
            .where("embedded = false")
            .select(["id", "priority"])
            .limit(None)
            .to_arrow()
            .to_pylist()
        )
        keys.sort(key=lambda r: (-r["priority"], r["id"]))
        if limit:
            keys = keys[:limit]
        out: list[dict] = []
        for part in _batches([k["id"] for k in keys], 500):
            where = f"id IN ({', '.join(sql_str(i) for i in part)})"
            out.extend(
                t.search()
                .where(where)
                .select(["id", "embed_text", "embed_key", "priority"])
                .limit(None)
                .to_arrow()
                .to_pylist()
            )
        out.sort(key=lambda r: (-r["priority"], r["id"]))
        return out

    def count_chunks(self) -> int:
        return self._table("chunks").count_rows()

    def chunk_paths(self) -> set[str]:
        """Every path with chunk rows (finds chunks whose file row was never written)."""
        t = self._table("chunks").search().select(["path"]).limit(None).to_arrow()
        return set(t.column("path").to_pylist())

    def count_pending(self) -> int:
        return self._table("chunks").count_rows("embedded = false")

    def set_vectors(self, ids: list[str], vectors: np.ndarray) -> None:
        """Fill in vectors of existing chunks; chunks deleted meanwhile are not resurrected."""
        self._fill("vector", "embedded", ids, vectors)

    def _fill(self, column: str, flag: str, ids: list[str], vectors: np.ndarray) -> None:
        """Set ``column`` (and ``flag`` true) of the chunks ``ids`` that still exist."""
        import pyarrow as pa

        if not ids:
            return
        src = _vector_table("id", ids, vectors).rename_columns(["id", column])
        src = src.append_column(flag, pa.array([True] * len(ids)))
        self._table("chunks").merge_insert("id").when_matched_update_all().execute(src)

    # ------------------------------------------------------------- the cache
    def cached_vectors(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, np.ndarray] = {}
        if not keys or "embeddings" not in self._names:
            return out
        t = self._table("embeddings")
        for part in _batches(keys, 1000):
            where = f"key IN ({', '.join(sql_str(k) for k in part)})"
            res = t.search().where(where).select(["key", "vector"]).limit(None).to_arrow()
            if res.num_rows:
                vecs = res.column("vector").combine_chunks().flatten().to_numpy()
                vecs = vecs.reshape(res.num_rows, -1)
                for k, v in zip(res.column("key").to_pylist(), vecs, strict=True):
                    out[k] = v
        return out

    def put_cached_vectors(self, keys: list[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        src = _vector_table("key", keys, vectors)
        self._table("embeddings").merge_insert("key").when_not_matched_insert_all().execute(src)

    # ---------------------------------------------------------------- search
    def build_fts(self) -> None:
        """(Re)build the full-text index over ``search_text`` in one bulk pass (a first
        build, or a repair when :meth:`fts_ok` says it does not answer)."""
        from lancedb.index import FTS

        t = self._table("chunks")
        t.create_index(
            "search_text",
            config=FTS(
                base_tokenizer="simple",
                lower_case=True,
                stem=True,
                remove_stop_words=True,
                ascii_folding=True,
                max_token_length=48,
                memory_limit=FTS_BUILD_MIB,
            ),
            replace=True,
        )

    def fts_ok(self) -> bool:
        """Does the full-text index answer? (False when its files are missing or damaged.)"""
        try:
            t = self._table("chunks")
            t.search("probe", query_type="fts", fts_columns="search_text").limit(1).to_arrow()
        except Exception:  # noqa: BLE001
            return False
        return True

    def optimize(self) -> None:
        """Compact fragments and fold new rows into the indices (after a batch of writes)."""
        for name in ("chunks", "files", "embeddings", "meta"):
            if name in self._names:
                try:
                    self._table(name).optimize(cleanup_older_than=timedelta(minutes=10))
                except Exception:  # noqa: BLE001 - optimisation is best-effort
                    pass

    def dense(
        self, vector: np.ndarray, k: int, where: str | None, *, exact: bool = False
    ) -> list[dict]:
        """Nearest chunks by the model's vector (cosine), among those that have one."""
        return self._nearest("vector", "embedded", vector, k, where, exact=exact)

    def _nearest(
        self, column: str, flag: str, vector, k: int, where: str | None, exact: bool = False
    ) -> list[dict]:
        # the flag filter only when some row lacks a vector there (this snapshot's cached
        # counts say): it cost ~10 of 23 ms of an exhaustive search over 22k chunks
        missing = self.counts()["pending" if column == "vector" else "static_pending"]
        flts = ([f"{flag} = true"] if missing else []) + ([f"({where})"] if where else [])
        q = (
            self._table("chunks")
            .search(vector.astype(np.float32), vector_column_name=column)
            .distance_type("cosine")
            .select([*RESULT_COLUMNS, "_distance"])
            .limit(k)
        )
        if flts:
            q = q.where(" AND ".join(flts), prefilter=True)
        if exact:
            q = q.bypass_vector_index()
        elif column in self.ann_columns():  # rows added since the index are scanned too
            q = q.nprobes(ANN_NPROBES).refine_factor(ANN_REFINE)
        rows = q.to_arrow().to_pylist()
        for r in rows:
            r["_score"] = 1.0 - float(r.pop("_distance"))
        return rows

    def lexical(self, terms: str, k: int, where: str | None) -> list[dict]:
        if not terms.strip():
            return []
        q = (
            self._table("chunks")
            .search(terms, query_type="fts", fts_columns="search_text")
            .select([*RESULT_COLUMNS, "_score"])
            .limit(k)
        )
        if where:
            q = q.where(where, prefilter=True)
        rows = q.to_arrow().to_pylist()
        for r in rows:
            r["_score"] = float(r.get("_score") or 0.0)
        return rows

    def definitions(self, names: Iterable[str], k: int, where: str | None) -> list[dict]:
        """Definition chunks whose symbol's last component is one of ``names`` (any case)."""
        names = sorted({n.lower() for n in names if n})[:16]
        if not names:
            return []
        flt = (
            f"lower(name) IN ({', '.join(sql_str(n) for n in names)})"
            " AND kind IN ('function', 'method', 'class')"
        )
        if where:
            flt += f" AND ({where})"
        return self.rows_for(flt)[:k]

    def owners(self, docs: Sequence[dict]) -> list[dict]:
        """The definition chunks that doc chunks (docstrings, doc comments) belong to."""
        keys = {(d["path"], d["symbol"]) for d in docs if d["kind"] == "doc" and d.get("symbol")}
        if not keys:
            return []
        paths = sorted({p for p, _ in keys})[:200]
        flt = (
            f"path IN ({', '.join(sql_str(p) for p in paths)})"
            " AND kind IN ('function', 'method', 'class')"
        )
        # the symbols too, not only the paths: a file's other definitions (their whole texts)
        # were most of a hybrid search's owner lookup. A symbol that cannot be quoted (a
        # hostile file's control characters) leaves the lookup by path; the pairs decide below.
        try:
            flt += f" AND symbol IN ({', '.join(sql_str(s) for s in sorted({s for _, s in keys}))})"
        except CoderagError:
            pass
        return [r for r in self.rows_for(flt) if (r["path"], r["symbol"]) in keys]

    def rows_for(self, where: str, columns: list[str] | None = None) -> list[dict]:
        return (
            self._table("chunks")
            .search()
            .where(where)
            .select(columns or RESULT_COLUMNS)
            .limit(None)
            .to_arrow()
            .to_pylist()
        )

    # ---------------------------------------------------------------- status
    def counts(self) -> dict:
        """Files, chunks, and chunks without a model / a static vector (counted again only
        when a table has a new version)."""
        chunks, files = self._table("chunks"), self._table("files")
        versions = (chunks.version, files.version)
        if self._counted.get("versions") == versions:
            return dict(self._counted["counts"])
        total = chunks.count_rows()
        counts = {
            "files": files.count_rows(),
            "chunks": total,
            "pending": chunks.count_rows("embedded = false") if total else 0,
            "static_pending": self.count_static_pending() if total else 0,
        }
        self._counted.update(versions=versions, counts=counts)
        return dict(counts)

    def size_bytes(self) -> int:
        total = 0
        for dirpath, _dirs, names in os.walk(self.dir):
            for n in names:
                try:
                    total += os.path.getsize(os.path.join(dirpath, n))
                except OSError:
                    pass
        return total

    def all_chunk_rows(self, columns: list[str]) -> list[dict]:
        return self._table("chunks").search().select(columns).limit(None).to_arrow().to_pylist()


def _short(e: BaseException) -> str:
    """The first line of a LanceDB error without its Rust source location, at most 200 chars."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return re.sub(r",?\s*/\S+\.rs:\d+:\d+", "", line)[:200]


def _out_of_space(e: BaseException) -> bool:
    """Did a write fail for lack of space or quota (an OSError, or LanceDB's Rust error
    carrying the OS message)?"""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return (
        "No space left on device" in text or "Disk quota exceeded" in text or "os error 28" in text
    )


def _guarded(fn):
    """Any failure below a public Store method that is not already a CoderagError (LanceDB
    reading random bytes, a missing data file, a foreign table) becomes one IndexCorrupt
    with the rebuild hint: one line for the user, never a traceback."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except CoderagError:
            raise
        except Exception as e:  # noqa: BLE001
            if _out_of_space(e):
                raise DiskFull(
                    f"no space left on the disk that holds {self.dir} ({_short(e)}); free some "
                    "and run `coderag index` again: what was indexed before is kept"
                ) from e
            raise IndexCorrupt(
                f"the index at {self.dir} is damaged ({_short(e)}); {REBUILD_HINT}"
            ) from e

    return wrapper


for _name, _fn in list(vars(Store).items()):
    if not _name.startswith("_") and callable(_fn) and _name != "snapshot":
        setattr(Store, _name, _guarded(_fn))


def _vector_table(key: str, keys: list[str], vectors: np.ndarray):
    """An Arrow table of string keys and fixed-size float32 vectors (for merge_insert)."""
    import pyarrow as pa

    flat = pa.array(vectors.astype(np.float32).ravel())
    return pa.table(
        {
            key: pa.array(keys, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        }
    )


def _batches(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]
