"""``coderag.store``: the LanceDB index of one repository, through its public surface, on a real
LanceDB in a tmp folder (no model: rows and vectors are made by hand).

* ``TABLES`` is the one schema: ``create_tables`` makes exactly it, and the column lists the
  rest of the code uses (``CHUNK_COLUMNS``, ``EXPECTED_COLUMNS``) derive from it;
* ``chunk_row`` makes exactly the columns a writer supplies;
* ``where_clause`` quotes and escapes what a user types, and a real store honours it;
* the full-text index is built, checked and repaired (``build_fts``, ``fts_ok``);
* chunk and file rows round-trip through ``replace_chunks``, ``upsert_files``,
  ``delete_files`` and ``file_rows``.

Damaged and foreign indexes met through the CLI are in test_reliability.py and test_damage.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from coderag.chunking import Chunk
from coderag.errors import CoderagError, IndexCorrupt
from coderag.store import (
    CHUNK_COLUMNS,
    CORE_TABLES,
    DB_DIR,
    EXPECTED_COLUMNS,
    RESULT_COLUMNS,
    STATIC_COLUMNS,
    TABLES,
    Store,
    chunk_row,
    where_clause,
)

DIM = 4  # the model's vectors
SDIM = 8  # the static tier's


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    return r


@pytest.fixture
def store(root: Path) -> Store:
    st = Store(root, create=True)
    st.create_tables(DIM, SDIM)
    return st


def make_chunk(
    path: str, start: int = 1, *, language="python", kind="function", symbol="f", text=None
) -> Chunk:
    text = text if text is not None else f"def f():\n    return {path!r}"
    return Chunk(
        path=path,
        language=language,
        kind=kind,
        symbol=symbol,
        start_line=start,
        end_line=start + text.count("\n"),
        text=text,
        embed_text=f"{path}\n{text}",
    )


def make_row(c: Chunk, *, search_text: str | None = None, vector=None) -> dict:
    row = chunk_row(
        c,
        id=f"{c.path}:{c.start_line}:{c.kind}",
        name=(c.symbol or "").rsplit(".", 1)[-1],
        search_text=c.text if search_text is None else search_text,
        embed_key=f"key:{c.text}",
        priority=1.5,
    )
    if vector is not None:
        row["vector"] = np.asarray(vector, dtype=np.float32)
        row["embedded"] = True
    return row


def file_row(path: str, digest: str = "h1", chunks: int = 1) -> dict:
    return {
        "path": path,
        "hash": digest,
        "size": 10,
        "mtime_ns": 1_700_000_000_000_000_000,
        "chunks": chunks,
        "language": "python",
    }


def add(store: Store, rows: list[dict]) -> None:
    """Rows as a refresh writes them: chunks (one commit per file set), then file rows."""
    paths = sorted({r["path"] for r in rows})
    store.replace_chunks(paths, rows)
    store.upsert_files([file_row(p, chunks=sum(r["path"] == p for r in rows)) for p in paths])


def chunks_of(store: Store, path: str | None = None) -> list[dict]:
    rows = store.all_chunk_rows(["id", "path", "start_line", "text", "embedded"])
    return sorted((r for r in rows if path is None or r["path"] == path), key=lambda r: r["id"])


# ----------------------------------------------------------------------------- the schema
def _arrow_type(kind: str):
    return {
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        "float32": pa.float32(),
        "vector": pa.list_(pa.float32(), DIM),
        "svector": pa.list_(pa.float32(), SDIM),
    }[kind]


def test_create_tables_makes_exactly_the_tables_of_TABLES(store: Store):
    listed = store.db.list_tables()
    assert set(getattr(listed, "tables", listed)) == set(TABLES)
    assert CORE_TABLES <= set(TABLES) and store.exists() and store.partial() == set()
    for name, columns in TABLES.items():
        schema = store.db.open_table(name).schema
        assert [(f.name, f.type) for f in schema] == [
            (column, _arrow_type(kind)) for column, kind in columns
        ], name
    assert store.static_dim() == SDIM
    store.create_tables(DIM, SDIM)  # again: nothing changes
    assert store.db.open_table("chunks").schema.names == [n for n, _ in TABLES["chunks"]]


def test_the_column_lists_derive_from_TABLES():
    chunk_columns = [n for n, _ in TABLES["chunks"]]
    assert set(STATIC_COLUMNS) <= set(chunk_columns)
    assert CHUNK_COLUMNS == tuple(n for n in chunk_columns if n not in STATIC_COLUMNS)
    assert CHUNK_COLUMNS[-1] == "vector"  # the writer appends the vector column last
    assert EXPECTED_COLUMNS == {
        name: {n for n, _ in columns} - set(STATIC_COLUMNS) for name, columns in TABLES.items()
    }
    assert set(RESULT_COLUMNS) <= set(CHUNK_COLUMNS)


def test_a_table_without_an_expected_column_is_refused(store: Store, root: Path):
    add(store, [make_row(make_chunk("a.py"))])
    store.db.open_table("files").drop_columns(["language"])
    with pytest.raises(IndexCorrupt, match=r"'files' was not written by coderag \(no 'language'"):
        Store(root).file_rows()
    assert Store(root).count_chunks() == 1  # the other tables still answer


def test_an_index_from_before_the_static_tier_is_accepted_and_extended(store, root):
    add(store, [make_row(make_chunk("a.py"))])
    store.db.open_table("chunks").drop_columns(list(STATIC_COLUMNS))
    old = Store(root)
    assert old.count_chunks() == 1 and old.static_dim() is None
    assert old.count_static_pending() == 1
    old.add_static_columns(SDIM)
    assert Store(root).static_dim() == SDIM and Store(root).count_static_pending() == 1


# ---------------------------------------------------------------------------- chunk rows
def test_chunk_row_makes_exactly_the_writer_columns():
    c = make_chunk("pkg/mod.py", 3, kind="method", symbol="Cls.run", text="def run(self):\n  pass")
    row = chunk_row(c, id="i", name="run", search_text="run pass", embed_key="k", priority=2.5)
    assert tuple(row) == CHUNK_COLUMNS
    assert row == {
        "id": "i",
        "path": "pkg/mod.py",
        "language": "python",
        "kind": "method",
        "symbol": "Cls.run",
        "name": "run",
        "start_line": 3,
        "end_line": 4,
        "text": c.text,
        "embed_text": c.embed_text,
        "search_text": "run pass",
        "embed_key": "k",
        "embedded": False,  # no vector yet
        "priority": 2.5,
        "vector": None,
    }


def test_chunk_rows_round_trip_with_and_without_vectors(store: Store):
    with_vector = make_row(make_chunk("a.py", 1), vector=[0.5, 0.5, 0.5, 0.5])
    without = make_row(make_chunk("a.py", 10, kind="class", symbol="A"))
    add(store, [with_vector, without])
    got = {r["id"]: r for r in store.all_chunk_rows([*CHUNK_COLUMNS, *STATIC_COLUMNS])}
    assert set(got) == {with_vector["id"], without["id"]}
    for want in (with_vector, without):
        have = got[want["id"]]
        for column in CHUNK_COLUMNS:
            if column == "vector":
                expected = want["vector"] if want["vector"] is not None else np.zeros(DIM)
                assert np.allclose(have["vector"], expected), want["id"]
            elif column == "priority":
                assert have[column] == pytest.approx(want[column])
            else:
                assert have[column] == want[column], (want["id"], column)
        assert have["sembedded"] is False and np.allclose(have["svector"], np.zeros(SDIM))
    assert store.count_pending() == 1 and store.count_static_pending() == 2


def test_dense_search_skips_rows_without_a_vector_while_there_are_any(store: Store):
    near = make_row(make_chunk("a.py", 1), vector=[1.0, 0.0, 0.0, 0.0])
    far = make_row(make_chunk("b.py", 1), vector=[0.0, 1.0, 0.0, 0.0])
    missing = make_row(make_chunk("c.py", 1))
    add(store, [near, far, missing])
    query = np.array([1.0, 0.1, 0.0, 0.0], dtype=np.float32)
    assert [r["id"] for r in store.dense(query, 10, None)] == [near["id"], far["id"]]
    store.set_vectors([missing["id"]], np.array([[0.0, 0.0, 1.0, 0.0]], dtype=np.float32))
    assert store.count_pending() == 0
    every = [r["id"] for r in store.dense(query, 10, None)]
    exact = [r["id"] for r in store.dense(query, 10, None, exact=True)]
    assert every == exact == [near["id"], far["id"], missing["id"]]
    # the caller's own filter still applies without the flag's
    only_b = store.dense(query, 10, "path = 'b.py'")
    assert [r["id"] for r in only_b] == [far["id"]]


# ---------------------------------------------------------------------------- the filter
def test_where_clause_is_none_without_filters():
    assert where_clause() is None
    assert where_clause(None, "", "") is None


def test_where_clause_quotes_and_escapes():
    assert where_clause("python") == "language = 'python'"
    assert where_clause(kind="doc") == "kind = 'doc'"
    assert where_clause("python", "class") == "language = 'python' AND kind = 'class'"
    assert where_clause("x' OR '1'='1") == "language = 'x'' OR ''1''=''1'"
    assert where_clause(path="src/a_b%.py") == (
        "(path LIKE 'src/a\\_b\\%.py' ESCAPE '\\' OR path LIKE 'src/a\\_b\\%.py/%' ESCAPE '\\')"
    )
    assert "path LIKE 'names/quote''d.py' ESCAPE" in where_clause(path="names/quote'd.py")
    both = where_clause("python", "function", "src")
    assert both.startswith("language = 'python' AND kind = 'function' AND (path LIKE ")


@pytest.mark.parametrize(
    "value", ["py\x00thon", "a\nb", "\x1b[31m", "\x7f", "\udcff", "x" * 4097], ids=repr
)
def test_where_clause_refuses_what_cannot_be_quoted(value):
    for kw in ("language", "kind"):
        with pytest.raises(CoderagError) as e:
            where_clause(**{kw: value})
        assert "\n" not in str(e.value)


def test_where_clause_refuses_a_glob_too_long():
    with pytest.raises(CoderagError, match="too long"):
        where_clause(path="*" * 5000)


FILTER_ROWS = [  # path, language, kind
    ("src/a_b.py", "python", "function"),
    ("src/axb.py", "python", "function"),  # "_" in a name is literal: never matches a_b
    ("src/quote'd.py", "python", "class"),
    ("src/50%.py", "python", "function"),
    ("src/deep/mod.go", "go", "function"),
    ("docs/guide.md", "markdown", "doc"),
    ("lib/src/a_b.py", "python", "method"),
]


@pytest.mark.parametrize(
    ("language", "kind", "path", "expected"),
    [
        ("python", None, None, {p for p, lang, _ in FILTER_ROWS if lang == "python"}),
        (None, "doc", None, {"docs/guide.md"}),
        ("python", "class", None, {"src/quote'd.py"}),
        (None, None, "src/a_b.py", {"src/a_b.py"}),
        (None, None, "a_b.py", {"src/a_b.py", "lib/src/a_b.py"}),  # a name at any depth
        (None, None, "src/quote'd.py", {"src/quote'd.py"}),
        (None, None, "src/50%.py", {"src/50%.py"}),
        (None, None, "*.md", {"docs/guide.md"}),
        (None, None, "src", {p for p, _, _ in FILTER_ROWS if p.startswith("src/")}),  # a folder
        ("go", None, "src/**", {"src/deep/mod.go"}),
        ("x' OR '1'='1", None, None, set()),  # quoted: a language that does not exist
        (None, "function' OR kind != '", None, set()),
        (None, None, "%", set()),  # a name "%": no file has it
        (None, None, "_", set()),
    ],
    ids=lambda v: repr(v)[:30] if not isinstance(v, set) else None,
)
def test_a_real_store_honours_the_filter(store: Store, language, kind, path, expected):
    rows = [
        make_row(
            make_chunk(p, language=lang, kind=k, symbol="zebra_fn"),
            search_text=f"zebra stripes {i}",
            vector=np.eye(DIM, dtype=np.float32)[i % DIM] + 0.1,
        )
        for i, (p, lang, k) in enumerate(FILTER_ROWS)
    ]
    add(store, rows)
    store.build_fts()
    where = where_clause(language, kind, path)
    assert {r["path"] for r in store.rows_for(where)} == expected
    assert {r["path"] for r in store.lexical("zebra", 50, where)} == expected
    query = np.ones(DIM, dtype=np.float32)
    assert {r["path"] for r in store.dense(query, 50, where)} == expected
    kinds = {p: k for p, _, k in FILTER_ROWS}
    named = {r["path"] for r in store.definitions(["zebra_fn"], 50, where)}
    assert named == {p for p in expected if kinds[p] != "doc"}  # definitions: no doc chunks
    assert store.count_chunks() == len(FILTER_ROWS)  # nothing was altered by any of it


# ------------------------------------------------------------------------ full-text index
def test_build_fts_indexes_search_text_and_fts_ok_says_when_it_answers(store: Store, root):
    add(
        store,
        [
            make_row(make_chunk("up.py"), search_text="Uploading files to the bucket"),
            make_row(make_chunk("cafe.py"), search_text="le café du coin"),
            make_row(make_chunk("other.py"), search_text="nothing relevant here"),
        ],
    )
    store.build_fts()
    assert store.fts_ok()
    # the analyser: lower case, stemming, stop words dropped, accents folded
    assert [r["path"] for r in store.lexical("UPLOAD file", 5, None)] == ["up.py"]
    assert [r["path"] for r in store.lexical("cafe", 5, None)] == ["cafe.py"]
    assert store.lexical("the", 5, None) == [] and store.lexical("   ", 5, None) == []

    shutil.rmtree(root / ".coderag" / DB_DIR / "chunks.lance" / "_indices")
    damaged = Store(root)
    assert not damaged.fts_ok()
    damaged.build_fts()  # the repair a refresh makes when fts_ok() says no
    assert damaged.fts_ok() and Store(root).fts_ok()
    assert [r["path"] for r in Store(root).lexical("uploads", 5, None)] == ["up.py"]


# ------------------------------------------------------------------- chunk and file rows
def test_replace_chunks_makes_rows_the_chunks_of_their_paths(store: Store):
    a1, a2 = make_row(make_chunk("a.py", 1)), make_row(make_chunk("a.py", 5, symbol="g"))
    b1 = make_row(make_chunk("it's.py", 1))
    add(store, [a1, a2, b1])
    assert [r["id"] for r in chunks_of(store)] == sorted([a1["id"], a2["id"], b1["id"]])

    a3 = make_row(make_chunk("a.py", 9, symbol="h"))
    store.replace_chunks(["a.py"], [a1, a3])  # a1 kept, a2 gone, a3 new; it's.py untouched
    assert [r["id"] for r in chunks_of(store, "a.py")] == sorted([a1["id"], a3["id"]])
    assert [r["id"] for r in chunks_of(store, "it's.py")] == [b1["id"]]

    store.replace_chunks([], [b1])  # no paths: nothing to do
    store.replace_chunks(["it's.py"], [])  # no rows: the path's chunks go
    assert chunks_of(store, "it's.py") == [] and len(chunks_of(store, "a.py")) == 2
    assert set(store.file_rows()) == {"a.py", "it's.py"}  # file rows are the caller's to write
    assert store.chunk_paths() == {"a.py"}


def test_file_rows_round_trip_and_upsert_replaces(store: Store):
    rows = [file_row("a.py"), file_row("b/c.py", "h2", chunks=3)]
    store.upsert_files(rows)
    assert store.file_rows() == {r["path"]: r for r in rows}
    store.upsert_files([file_row("a.py", "h9", chunks=0)])
    store.upsert_files([])
    got = store.file_rows()
    assert len(got) == 2 and (got["a.py"]["hash"], got["a.py"]["chunks"]) == ("h9", 0)
    assert store.counts()["files"] == 2


def test_delete_files_removes_their_chunks_and_file_rows(store: Store):
    add(store, [make_row(make_chunk(p)) for p in ("a.py", "it's.py", "keep.py")])
    store.delete_files(["a.py", "it's.py", "never-indexed.py"])
    assert set(store.file_rows()) == {"keep.py"}
    assert store.chunk_paths() == {"keep.py"}
    store.delete_files([])
    assert store.counts()["chunks"] == 1


def test_delete_files_of_many_paths(store: Store):
    paths = [f"pkg/m{i:04d}.py" for i in range(1203)]  # more than one filter's worth
    add(store, [make_row(make_chunk(p)) for p in paths] + [make_row(make_chunk("keep.py"))])
    assert store.counts()["files"] == 1204
    store.delete_files(paths)
    assert set(store.file_rows()) == {"keep.py"} and store.chunk_paths() == {"keep.py"}
