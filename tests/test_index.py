"""End to end through the library: real tree-sitter, real LanceDB, real MiniLM weights."""

from __future__ import annotations

import pytest

from coderag.errors import CoderagError, UsageError

from .conftest import rows_of


def _top_symbol(hits):
    return hits[0].symbol or ""


def test_paraphrased_question_finds_the_function(smallrepo, make_index):
    idx = make_index(smallrepo)
    stats = idx.refresh()
    assert stats.files_indexed == 7
    assert stats.chunks_embedded > 10
    hits = idx.search("try again with growing delays when sending a file fails", k=5)
    assert _top_symbol(hits).endswith("upload_with_retry")
    hits = idx.search("read a file in blocks to compute its hash", k=5)
    assert _top_symbol(hits).endswith("sha256_of_file")


def test_exact_identifier_is_first_lexically(smallrepo, make_index):
    idx = make_index(smallrepo)
    idx.refresh()
    for mode in ("lexical", "hybrid"):
        hits = idx.search("parse_size_limit", k=3, mode=mode)
        assert _top_symbol(hits).endswith("parse_size_limit"), mode
    # identifier parts are searchable on their own
    hits = idx.search("size limit parse", k=3, mode="lexical")
    assert _top_symbol(hits).endswith("parse_size_limit")


@pytest.mark.slow
def test_incremental_refresh_embeds_only_what_changed(smallrepo, make_index):
    idx = make_index(smallrepo)
    first = idx.refresh()
    assert first.chunks_embedded > 0

    again = idx.refresh()
    assert again.chunks_embedded == 0
    assert again.files_indexed == 0
    assert again.files_unchanged == 7

    cfg = smallrepo / "uploader" / "config.py"
    cfg.write_text(cfg.read_text().replace("return int(text)", "return int(text.strip())"))
    edit = idx.refresh()
    assert edit.files_indexed == 1
    assert edit.chunks_embedded == 1  # only parse_size_limit's chunk is new text

    (smallrepo / "uploader" / "checksum.py").rename(smallrepo / "uploader" / "digests.py")
    moved = idx.refresh()
    assert moved.chunks_embedded == 0
    assert moved.files_removed == 1 and moved.files_indexed == 1
    paths = {r[0] for r in rows_of(smallrepo)}
    assert "uploader/digests.py" in paths and "uploader/checksum.py" not in paths

    (smallrepo / "uploader" / "cli.py").unlink()
    gone = idx.refresh()
    assert gone.files_removed == 1
    assert not any(r[0] == "uploader/cli.py" for r in rows_of(smallrepo))
    assert idx.status()["files"] == 6


@pytest.mark.slow
def test_incremental_equals_rebuild(smallrepo, make_index):
    idx = make_index(smallrepo)
    idx.refresh()
    (smallrepo / "uploader" / "extra.py").write_text('def added():\n    """New."""\n    return 1\n')
    (smallrepo / "docs" / "design.md").write_text("# Design\n\nRewritten.\n")
    idx.refresh()
    incremental = rows_of(smallrepo)
    idx.refresh(rebuild=True)
    assert rows_of(smallrepo) == incremental


@pytest.mark.slow
def test_touch_without_change_reads_but_does_not_rechunk(smallrepo, make_index):
    idx = make_index(smallrepo)
    idx.refresh()
    p = smallrepo / "uploader" / "client.py"
    p.write_bytes(p.read_bytes())  # new mtime, same content
    st = idx.refresh()
    assert st.files_indexed == 0 and st.chunks_embedded == 0


def test_filters_and_injection_safety(smallrepo, make_index):
    idx = make_index(smallrepo)
    idx.refresh()
    docs = idx.search("retries", kind="doc", k=20)
    assert docs and all(h.kind == "doc" for h in docs)
    md = idx.search("retries", lang="markdown", k=20)
    assert md and all(h.language == "markdown" for h in md)
    only = idx.search("upload", path="uploader/c*.py", k=20)
    assert only and all(
        h.path
        in ("uploader/client.py", "uploader/config.py", "uploader/cli.py", "uploader/checksum.py")
        for h in only
    )
    assert all(h.path.endswith(".md") for h in idx.search("upload", path="*.md", k=20))
    # hostile filter values neither break nor widen the query
    for evil in ["python' OR '1'='1", 'x" OR 1=1 --', "%", "_", "'; DROP TABLE chunks; --"]:
        assert idx.search("upload", lang=evil, k=5) == []
    assert idx.search("upload", path="%", k=5) == []
    assert idx.search("upload", path="uploader/_lient.py", k=5) == []
    with pytest.raises(CoderagError):
        idx.search("upload", lang="py\x00thon")
    with pytest.raises(UsageError):
        idx.search("upload", kind="nonsense")
    # hostile queries are answered
    for q in ["' OR 1=1 --", 'title:"x" AND (y OR', "*?[]{}\\", "a" * 200_000, "\x01\x02\x7f"]:
        idx.search(q, k=3)
    assert rows_of(smallrepo)  # nothing was deleted


def test_hits_have_exact_spans(smallrepo, make_index):
    idx = make_index(smallrepo)
    idx.refresh()
    for h in idx.search("load settings from json", k=10):
        lines = (smallrepo / h.path).read_text().split("\n")
        assert "\n".join(lines[h.start_line - 1 : h.end_line]) == h.text


@pytest.mark.slow
def test_status(smallrepo, make_index):
    idx = make_index(smallrepo)
    idx.refresh()
    st = idx.status()
    assert st["files"] == 7
    assert st["chunks"] > 10
    assert st["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert st["dim"] == 384
    assert st["bytes"] > 0 and st["indexed_at"]
    assert st["dense_coverage"] == 1.0
    assert (smallrepo / ".coderag" / ".gitignore").read_text().strip() == "*"


def test_lancedb_http_client_is_loaded_only_on_demand(smallrepo, make_index):
    """A local search does not import LanceDB's generated REST API (0.45 s of start-up);
    the deferred package still works in full when something asks for it."""
    import subprocess
    import sys

    make_index(smallrepo).refresh(lexical_only=True)
    code = (
        "import sys\n"
        "from coderag import Index\n"
        f"hits = Index({str(smallrepo)!r}).search('retry uploads', mode='lexical')\n"
        "assert hits\n"
        "print('api' if 'lance_namespace_urllib3_client.api' in sys.modules else 'no api')\n"
        "import lance_namespace_urllib3_client as m\n"
        "print(m.ApiClient.__name__, 'lance_namespace_urllib3_client.api' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["no api", "ApiClient True"]


@pytest.mark.slow
def test_index_chunked_by_other_code_is_chunked_again_reusing_vectors(smallrepo, make_index):
    """After an upgrade that changes chunking, the next full refresh re-chunks every file
    (unchanged files too) and embeds only texts it has not seen; a partial refresh (a hook's)
    re-chunks its files but leaves the index marked for the full one."""
    from coderag.store import Store

    idx = make_index(smallrepo)
    first = idx.refresh()
    before = rows_of(smallrepo)
    Store(smallrepo, create=True).set_meta(chunker="written-by-an-older-chunker")

    part = make_index(smallrepo).refresh([str(smallrepo / "uploader" / "cli.py")])
    assert part.files_indexed == 1 and not part.notes
    assert Store(smallrepo).meta()["chunker"] == "written-by-an-older-chunker"

    full = make_index(smallrepo).refresh()
    assert full.files_indexed == first.files_indexed  # every file, though none changed
    assert full.chunks_embedded == 0 and full.chunks_reused > 0  # the cache had every text
    assert any("chunking changed" in n for n in full.notes)
    assert rows_of(smallrepo) == before
    assert Store(smallrepo).meta()["chunker"] != "written-by-an-older-chunker"
    again = make_index(smallrepo).refresh()
    assert again.files_indexed == 0 and not again.notes
