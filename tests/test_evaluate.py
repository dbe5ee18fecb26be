"""`coderag eval`: the metric arithmetic by hand, and the command on a real index."""

from __future__ import annotations

import json
import math

import pytest

from coderag.errors import CoderagError
from coderag.evaluate import load_queries, matches, score_query

from .conftest import run_cli


def hit(path, start, end, symbol=None):
    return {"path": path, "start_line": start, "end_line": end, "symbol": symbol}


def test_matching_rules():
    h = hit("a.py", 10, 20, "pkg.a.Client.send")
    assert matches(h, {"path": "a.py"})
    assert matches(h, {"path": "a.py", "symbol": "send"})
    assert matches(h, {"path": "a.py", "symbol": "Client.send"})
    assert not matches(h, {"path": "a.py", "symbol": "recv"})
    assert matches(h, {"path": "a.py", "start_line": 20, "end_line": 30})
    assert not matches(h, {"path": "a.py", "start_line": 21, "end_line": 30})
    assert not matches(h, {"path": "b.py"})


def test_metrics_by_hand():
    hits = [hit("x.py", 1, 2), hit("a.py", 1, 5), hit("x.py", 3, 4), hit("b.py", 1, 9)]
    rel = [{"path": "a.py"}, {"path": "b.py"}, {"path": "c.py"}]
    s = score_query(hits, rel)
    assert s["recall@1"] == 0
    assert s["recall@5"] == pytest.approx(2 / 3)
    assert s["mrr@10"] == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert s["ndcg@10"] == pytest.approx(dcg / idcg)
    # file level: x, a, b → a at 2, b at 3
    fdcg = 1 / math.log2(3) + 1 / math.log2(4)
    assert s["file_ndcg@10"] == pytest.approx(fdcg / idcg)
    assert s["file_mrr@10"] == pytest.approx(1 / 2)


def test_bad_query_files(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"query": "x"}\n')
    with pytest.raises(CoderagError, match="relevant"):
        load_queries(p)
    p.write_text("not json\n")
    with pytest.raises(CoderagError, match=":1:"):
        load_queries(p)


@pytest.mark.slow
def test_eval_command(smallrepo, tmp_path):
    assert run_cli("index", str(smallrepo), "-q").returncode == 0
    q = tmp_path / "q.jsonl"
    lines = [
        {
            "query": "retry an upload with exponential backoff",
            "relevant": [{"path": "uploader/client.py", "symbol": "upload_with_retry"}],
        },
        {
            "query": "hash a file's contents",
            "relevant": [{"path": "uploader/checksum.py", "symbol": "sha256_of_file"}],
        },
        {
            "query": "how do I configure the token",
            "kind": "doc",
            "relevant": [{"path": "README.md", "start_line": 5, "end_line": 7}],
        },
    ]
    q.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = run_cli("eval", str(q), "--repo", str(smallrepo), "--mode", "lexical,hybrid", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res) == {"lexical", "hybrid"}
    assert res["hybrid"]["recall@10"] == 1.0
    assert 0 < res["hybrid"]["ndcg@10"] <= 1
    r = run_cli("eval", str(q), "--repo", str(smallrepo), "--mode", "hybrid")
    assert r.returncode == 0 and "ndcg@10" in r.stdout
    assert run_cli("eval", str(q), "--repo", str(smallrepo), "--mode", "bogus").returncode == 2
