"""The static-embedding tier with the real distilled table (from the bundled MiniLM): every
chunk gets a vector in phase 1b, searches use them while the model's vectors are missing,
refreshes keep them current, and older indexes gain them."""

from __future__ import annotations

import numpy as np
import pytest

from coderag import Index
from coderag.index import STATIC_SOURCE
from coderag.models import BUNDLED_MODEL_ID, distill_static, static


@pytest.fixture(scope="module")
def table():
    """The table an index uses: the shipped, code-trained one."""
    model = static.load_static(STATIC_SOURCE)
    assert model is not None and model.folder == static.SHIPPED
    return model


@pytest.fixture(scope="module")
def distilled():
    """The table distilled on this machine (the fallback, and what the shipped one was
    trained from; made once per machine, cached; ~20-40 s the first time)."""
    distill_static()
    model = static.load_cached(STATIC_SOURCE)
    assert model is not None
    return model


def test_distillation_is_cached_and_deterministic(distilled):
    assert distilled.model_id == static.distilled_id(BUNDLED_MODEL_ID)
    assert distilled.model_id == f"static:{BUNDLED_MODEL_ID}:{static.DIM}"
    assert distilled.table.shape == (30522, static.DIM) and np.isfinite(distilled.table).all()
    # related words sit closer than unrelated ones (a real table, not noise)
    w = np.ones(distilled.vocab, dtype=np.float32)
    retry, again, banana = distilled.embed(["retry", "try again", "banana"], w)
    assert retry @ again > retry @ banana + 0.1
    assert distill_static() == static.cache_folder(STATIC_SOURCE)  # cached: no re-run


def test_the_shipped_table_is_int8_and_tokenizes_as_the_model_does(table, distilled):
    """The shipped table keeps a scale per row; a vector is the weighted mean of the rows
    scaled back. Its tokenizer is the model's, so chunk token counts can be handed over."""
    from coderag.models import bundled_token_counter

    assert table.table.dtype == np.int8 and table.scales.shape == (table.vocab,)
    assert table.vocab == distilled.vocab and table.dim == static.DIM
    assert table.model_id != distilled.model_id and table.source == BUNDLED_MODEL_ID
    texts = ["def retry_upload(path, attempts=3):", "Gzip a body before upload.", ""]
    w = np.random.default_rng(0).random(table.vocab).astype(np.float32)
    ids = table.token_ids(texts)
    rows = np.asarray(table.table, dtype=np.float32) * table.scales[:, None]
    for i, t in enumerate(ids[:2]):
        want = (w[t] @ rows[t]) / np.linalg.norm(w[t] @ rows[t])
        assert np.allclose(table.vectors(ids, w)[i], want, atol=1e-5)
    assert not table.vectors(ids, w)[2].any()  # no tokens: a zero vector
    assert [list(t) for t in ids] == [list(t) for t in distilled.token_ids(texts)]
    counter = bundled_token_counter()
    assert table.same_tokenizer(counter)
    assert [counter.count(t) for t in texts] == [len(t) for t in ids]


def test_every_chunk_gets_a_static_vector_and_search_uses_them(smallrepo, table, make_index):
    idx = make_index(smallrepo)
    stats = idx.refresh(lexical_only=True)  # no model vectors at all
    st = Index(smallrepo).status()
    assert st["dense_coverage"] == 0.0 and st["static_coverage"] == 1.0
    assert stats.chunks_static == st["chunks"] > 0

    idx = Index(smallrepo)  # no model given: the static tier must not load one
    for query, want in (
        ("wait longer between attempts when a transfer fails", "upload_with_retry"),
        ("digest of a file read in blocks", "sha256_of_file"),
    ):
        hits = idx.search(query, mode="dense", k=5)
        assert idx.last_dense_tier == "static" and idx.last_dense_coverage == 1.0
        found = [h.symbol or h.path for h in hits[:3]]
        assert any(want in f for f in found), (query, found)
    assert not idx.embedder_loaded  # the static tier needs no model


def test_refresh_updates_only_new_chunks_and_keeps_the_weights(smallrepo, table, make_index):
    idx = make_index(smallrepo)
    idx.refresh(lexical_only=True)
    df_before = static.DocFreq.load(smallrepo / ".coderag" / static.DF_FILE, table.vocab)
    f = smallrepo / "uploader" / "extra.py"
    f.write_text(
        'def compress_payload(data):\n    """Gzip a body before upload."""\n    return data\n'
    )
    stats = idx.refresh(lexical_only=True)
    from coderag.store import Store

    new = [r for r in Store(smallrepo).all_chunk_rows(["path"]) if r["path"] == "uploader/extra.py"]
    assert stats.files_indexed == 1 and stats.chunks_static == len(new) > 0
    df_after = static.DocFreq.load(smallrepo / ".coderag" / static.DF_FILE, table.vocab)
    assert df_after.docs == df_before.docs and (df_after.df == df_before.df).all()
    assert Index(smallrepo).status()["static_coverage"] == 1.0


@pytest.mark.slow
def test_the_model_answers_once_its_vectors_cover_the_index(smallrepo, table, make_index):
    idx = make_index(smallrepo)
    idx.refresh()
    idx.search("upload retry", mode="dense")
    assert idx.last_dense_tier == "model"
    only = make_index(smallrepo, static="only")
    only.search("upload retry", mode="dense")
    assert only.last_dense_tier == "static"


@pytest.mark.slow
def test_static_weight_fuses_both_tiers_once_both_cover_the_index(smallrepo, table, make_index):
    make_index(smallrepo).refresh()  # model and static vectors for every chunk
    both = make_index(smallrepo, static_weight=0.25)
    hits = both.search("wait longer between attempts when a transfer fails", mode="dense", k=5)
    assert both.last_dense_tier == "both"
    assert "upload_with_retry" in " ".join(h.symbol or "" for h in hits[:3])
    model = make_index(smallrepo)  # the default: the model's list alone
    model.search("wait longer between attempts when a transfer fails", mode="dense", k=5)
    assert model.last_dense_tier == "model"
    # the static list takes part in the ranking: the order differs from the model's alone
    q = "digest of a file read in blocks"
    alone = [h.symbol for h in model.search(q, mode="dense", k=20)]
    fused = [h.symbol for h in both.search(q, mode="dense", k=20)]
    assert alone != fused


@pytest.mark.slow
def test_static_only_never_embeds_with_the_model_and_off_stores_none(smallrepo, table):
    only = Index(smallrepo, static="only")
    stats = only.refresh()  # the model's tokenizer sizes the chunks; no vector is computed
    assert stats.chunks_embedded == 0 and stats.chunks_pending > 0
    assert stats.chunks_static == stats.chunks_pending
    off = Index(smallrepo, static="off")
    stats = off.refresh(rebuild=True)
    assert stats.chunks_static == 0 and stats.chunks_embedded > 0
    assert Index(smallrepo).status()["static_coverage"] == 0.0


def test_a_first_build_writes_static_vectors_as_it_stores(smallrepo, table, monkeypatch):
    """Phase 1 gives every row its static vector as it is stored: the rows of the weight
    sample once the sample is counted, the rest at insert. Either way a vector is the one
    the final weights give its text, and no pass over stored rows is needed afterwards."""
    from coderag import index as index_mod
    from coderag.store import Store

    monkeypatch.setattr(index_mod, "STATIC_SAMPLE", 5)  # most rows come after the sample
    handed_over = []  # texts whose ids the chunker's tokenizer passed on instead
    token_ids = static.StaticModel.token_ids

    def spy(self, texts, known=None):
        handed_over.extend(t for t in texts if t in (known or {}))
        return token_ids(self, texts, known)

    monkeypatch.setattr(static.StaticModel, "token_ids", spy)
    for i in range(40):  # more files than phase 1's first commit takes
        (smallrepo / f"extra_{i}.py").write_text(f"def helper_{i}(x):\n    return x + {i}\n")
    stats = Index(smallrepo).refresh(lexical_only=True)
    rows = Store(smallrepo).all_chunk_rows(["embed_text", "svector", "sembedded"])
    assert len(rows) > 5 and stats.chunks_static == len(rows)
    assert all(r["sembedded"] for r in rows)
    df = static.DocFreq.load(smallrepo / ".coderag" / static.DF_FILE, table.vocab)
    assert df is not None and 5 <= df.docs < len(rows)  # counted over the sample only
    want = table.embed([r["embed_text"] for r in rows], df.weights())
    got = np.array([r["svector"] for r in rows], dtype=np.float32)
    assert np.allclose(got, want, atol=1e-5)
    # the chunker counted the longer texts with this tokenizer: those ids were reused
    assert handed_over and set(handed_over) <= {r["embed_text"] for r in rows}


def test_an_index_from_before_the_static_tier_gains_it(smallrepo, table, make_index):
    import lancedb

    from coderag.store import DB_DIR, STATIC_COLUMNS, Store

    make_index(smallrepo, static="off").refresh(lexical_only=True)
    db = lancedb.connect(str(smallrepo / ".coderag" / DB_DIR))
    db.open_table("chunks").drop_columns(list(STATIC_COLUMNS))  # as an older coderag made it
    assert Store(smallrepo).static_dim() is None
    assert make_index(smallrepo).search("upload", mode="hybrid")  # still answers, lexically
    stats = make_index(smallrepo).refresh(lexical_only=True)
    assert stats.chunks_static > 0 and Index(smallrepo).status()["static_coverage"] == 1.0


def test_static_vectors_from_another_table_are_made_again(
    smallrepo, table, distilled, make_index, monkeypatch
):
    """Static vectors made with another token table (an older coderag's distilled one) are
    not searched with this table's query vectors; the next refresh remakes every one with
    this table, counts the weights again and records which table made them."""
    from coderag.store import Store

    with monkeypatch.context() as m:
        m.setattr(static, "load_static", lambda source, distil=False: distilled)
        make_index(smallrepo).refresh(lexical_only=True)
        assert Store(smallrepo).meta()["static_model"] == distilled.model_id
    Store(smallrepo).set_meta(static_model=None)  # as an index from before it was recorded
    st = Index(smallrepo).status()
    assert st["static_model"] == distilled.model_id and st["static_coverage"] == 0.0
    idx = make_index(smallrepo)
    idx.search("wait longer between attempts when a transfer fails", mode="hybrid")
    assert idx.last_dense_tier != "static"

    stats = make_index(smallrepo).refresh(lexical_only=True)
    assert any("static token table changed" in n for n in stats.notes)
    rows = Store(smallrepo).all_chunk_rows(["embed_text", "svector", "sembedded"])
    assert stats.chunks_static == len(rows) and all(r["sembedded"] for r in rows)
    df = static.DocFreq.load(smallrepo / ".coderag" / static.DF_FILE, table.vocab)
    assert df is not None and df.docs == len(rows)  # counted again, over every chunk
    want = table.embed([r["embed_text"] for r in rows], df.weights())
    assert np.allclose(np.array([r["svector"] for r in rows], dtype=np.float32), want, atol=1e-5)
    st = Index(smallrepo).status()
    assert st["static_model"] == table.model_id and st["static_coverage"] == 1.0
    idx = Index(smallrepo)
    idx.search("wait longer between attempts when a transfer fails", mode="dense")
    assert idx.last_dense_tier == "static"
    again = make_index(smallrepo).refresh(lexical_only=True)
    assert again.chunks_static == 0 and not again.notes  # recorded: nothing to remake


def test_a_large_index_gets_its_indexes_and_keeps_its_answers(tmp_path, table, monkeypatch):
    """Past ANN_MIN_ROWS chunks the static vectors get an IVF-RQ index; a search through it
    finds what an exhaustive search finds, and rows added later are found before they are
    folded into the index."""
    from coderag import store as store_mod

    root = tmp_path / "big"
    root.mkdir()
    words = ["upload", "retry", "parse", "config", "render", "invoice", "ledger", "socket"]
    for i in range(160):
        a, b = words[i % 8], words[(i * 3 + 1) % 8]
        (root / f"m{i:03}.py").write_text(
            "".join(
                f'def {a}_{b}_{i}_{j}(value):\n    """{a} the {b} number {j}."""\n'
                f"    return value * {j}\n\n\n"
                for j in range(4)
            )
        )
    monkeypatch.setattr(store_mod, "ANN_MIN_ROWS", 500)
    idx = Index(root, static="only")
    stats = idx.refresh(lexical_only=True)
    assert any("nearest-neighbour index on svector" in n for n in stats.notes), stats.notes
    st = store_mod.Store(root)
    assert st.ann_columns() == {"svector"}
    indexed = st.indexed_columns()
    assert {"path", "id", "svector", "search_text"} <= set(indexed)
    assert "IvfRq" in indexed["svector"]
    query = "retry the upload"
    df = static.DocFreq.load(root / ".coderag" / static.DF_FILE, table.vocab)
    vec = table.embed([query], df.weights())[0]
    via_index = [r["id"] for r in st.static_dense(vec, 10, None)]
    exhaustive = [r["id"] for r in st.static_dense(vec, 10, None, exact=True)]
    assert via_index[:3] == exhaustive[:3]
    (root / "late.py").write_text('def late_marker_function():\n    """retry the upload late."""\n')
    assert idx.refresh([str(root / "late.py")], lexical_only=True).chunks_static > 0
    hits = Index(root, static="only").search("late marker function", mode="dense", k=10)
    assert any(h.path == "late.py" for h in hits)
