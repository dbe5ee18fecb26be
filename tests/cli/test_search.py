"""``coderag search``: human output, a model that is not the index's, and flags generated
from the search vocabulary."""

from __future__ import annotations

import shutil

from coderag import cli, vocabulary
from coderag.models import bundled_model_path
from coderag.vocabulary import FIELDS

from ..conftest import run_cli


def test_human_output(smallrepo):
    assert run_cli("index", str(smallrepo), "-q").returncode == 0
    r = run_cli(
        "search", "settings from environment variables", "--repo", str(smallrepo), "-k", "2"
    )
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    path_span, symbol, score = first.split()
    assert path_span.startswith("uploader/") and ":" in path_span and "-" in path_span
    float(score)
    r = run_cli("status", "--repo", str(smallrepo))
    assert "chunks" in r.stdout and r.returncode == 0


def test_model_mismatch(smallrepo, tmp_path):
    assert run_cli("index", str(smallrepo), "-q").returncode == 0
    other = tmp_path / "other-model"
    shutil.copytree(bundled_model_path(), other)
    r = run_cli("search", "upload", "--repo", str(smallrepo), "--model", str(other))
    assert r.returncode == 1
    assert "--rebuild" in r.stderr and "Traceback" not in r.stderr


def test_search_flags_are_exactly_the_vocabulary():
    parser = cli.build_parser()
    args = parser.parse_args(["search", "x"])
    own = {"command", "handler", "repo", "code_file", "json", "server", "no_server"}
    own |= {"model", "device", "dtype", "dim", "rerank_model"}
    assert set(vars(args)) - own == set(FIELDS)  # every destination, the help excepted
    defaults = {o.name: o.default for o in vocabulary.options()}
    assert {n: getattr(args, n) for n in FIELDS} == {**defaults, "query": "x"}
    args = parser.parse_args(["search", "x", "-k", "3", "--kind", "doc", "--no-rerank", "--code"])
    assert (args.k, args.kind, args.rerank, args.code) == (3, "doc", False, True)
