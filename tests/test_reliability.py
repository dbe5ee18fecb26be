"""Reliability (issue 9): bad input, damaged indexes, concurrent use and hostile queries.

Everything runs the real stack: the real ``coderag`` command in subprocesses where the
process boundary matters (exit codes, stderr, locks, capabilities), ``cli.main`` in-process
where only the one-line-error contract is judged (an exception escaping it is a traceback),
real LanceDB, real git as the oracle for ignore rules. Crash tests live in test_crash.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coderag import Index
from coderag.errors import CoderagError
from coderag.store import SCHEMA_VERSION

from .conftest import FIXTURES, rows_of, run_cli
from .reliability_corpus import (
    ODD_NAMES,
    OUTSIDE_MARKER,
    as_unprivileged,
    build,
    reason_counts,
    split_lines,
)


def _one_line_error(stderr: str) -> str:
    """stderr holds exactly one line, ``coderag: ...``, and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coderag: "), stderr
    return lines[0]


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    """``coderag ARGV`` in-process: an exception escaping ``cli.main`` fails the test."""
    from coderag import cli

    try:
        rc = cli.main(list(argv))
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# =============================================================================== bad input
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The hostile corpus, indexed once by the real command with ``--json -v``."""
    root = tmp_path_factory.mktemp("corpus") / "repo"
    cases = build(root)
    r = run_cli("index", str(root), "--json", "-v", "-q", "--lexical-only")
    (root / "big" / "huge.py").unlink()  # 50 MB: not kept around for the rest of the session
    return root, cases, r


def _chunks_by_path(root: Path) -> dict[str, list[dict]]:
    from coderag.store import Store

    out: dict[str, list[dict]] = {}
    for r in Store(root).all_chunk_rows(
        ["path", "start_line", "end_line", "text", "kind", "symbol"]
    ):
        out.setdefault(r["path"], []).append(r)
    return out


@pytest.mark.slow
def test_corpus_run_completes_and_reports_every_skip(corpus):
    root, cases, r = corpus
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    summary = json.loads(r.stdout)
    assert summary["skipped_reasons"] == reason_counts(cases)
    skipped = [c for c in cases if c.expect == "skipped"]
    assert summary["files_skipped"] == len(skipped)
    named = {ln.split(": ", 1)[0] for ln in r.stderr.splitlines() if ln.startswith("skipped ")}
    assert named == {f"skipped {c.path}" for c in skipped}


@pytest.mark.slow
def test_corpus_indexes_the_rest_with_exact_lines(corpus):
    from coderag.store import Store

    root, cases, _ = corpus
    files = Store(root).file_rows()
    chunks = _chunks_by_path(root)
    expected = {c.path for c in cases if c.expect in ("indexed", "empty")}
    assert set(files) == expected  # nothing skipped got a row, nothing indexable is missing
    assert set(chunks) <= expected
    for c in cases:
        rows = sorted(chunks.get(c.path, []), key=lambda r: r["start_line"])
        if c.expect == "empty":
            assert files[c.path]["chunks"] == 0 and not rows, c.path
            continue
        if c.expect != "indexed":
            continue
        assert rows, f"{c.path} ({c.why}) has no chunks"
        lines = split_lines(c.text)
        for r in rows:  # every span is exactly the file's lines
            assert r["text"] == "\n".join(lines[r["start_line"] - 1 : r["end_line"]]), (c.path, r)
        if c.contains:
            assert any(c.contains in r["text"] for r in rows), (c.path, c.contains)
        for marker, line in c.lines.items():
            assert any(
                r["start_line"] <= line <= r["end_line"]
                and r["text"].split("\n")[line - r["start_line"]].lstrip().startswith(marker)
                for r in rows
            ), (c.path, marker, line)
    everything = "\n".join(r["text"] for rs in chunks.values() for r in rs)
    assert OUTSIDE_MARKER not in everything  # no link was followed out of the repository


@pytest.mark.slow
def test_corpus_second_run_reports_again_and_changes_nothing(corpus, embedder):
    root, cases, _ = corpus
    before = rows_of(root)
    st = Index(root, embedder=embedder).refresh(lexical_only=True)
    expected = reason_counts(cases)
    expected["larger than 1,000,000 bytes"] -= 1  # the 50 MB file was deleted after the first run
    assert st.summary()["skipped_reasons"] == expected
    assert st.files_indexed == 0 and st.files_removed == 0
    assert rows_of(root) == before
    hits = Index(root, embedder=embedder).search("alpha_walker", mode="lexical", k=3)
    assert hits and hits[0].path == "ok/alpha.py"


def test_file_deleted_between_listing_and_reading(smallrepo, make_index):
    """The race made deterministic: the progress callback's "parse" event comes after the walk
    and before any file is read; two listed files are deleted right there."""
    idx = make_index(smallrepo)
    idx.refresh(lexical_only=True)
    known = smallrepo / "uploader" / "cli.py"
    known.write_text(known.read_text() + "\n# changed, so it is read again\n")
    new = smallrepo / "uploader" / "fresh.py"
    new.write_text("def fresh():\n    return 1\n")

    def progress(event, **kw):
        if event == "parse":
            known.unlink()
            new.unlink()

    st = idx.refresh(progress=progress, lexical_only=True)
    assert st.summary()["skipped_reasons"] == {"vanished before it could be read": 2}
    assert st.files_removed == 1  # the indexed one's rows went with it
    paths = {r[0] for r in rows_of(smallrepo)}
    assert "uploader/cli.py" not in paths and "uploader/fresh.py" not in paths
    assert "uploader/client.py" in paths  # the rest is indexed
    again = idx.refresh(lexical_only=True)
    assert again.files_skipped == 0 and again.files_removed == 0 and again.files_indexed == 0


def _hostile_paths(tmp_path: Path) -> tuple[Path, list[str]]:
    """A repository and a list of explicit paths (as a watcher or `coderag index FILE...`
    would pass them) that cannot be indexed, around one file that can."""
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "ok.py").write_text("def ok_function():\n    return 1\n")
    (root / "known.py").write_text("def known_function():\n    return 2\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text(f"def {OUTSIDE_MARKER}():\n    pass\n")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink(outside / "secret.py", root / "out_link.py")
    os.symlink(outside, root / "out_dir")
    os.symlink(root / "loop_dir_b", root / "loop_dir_a")
    os.symlink(root / "loop_dir_a", root / "loop_dir_b")
    os.mkfifo(root / "pipe.py")
    (root / "new\nline.py").write_text("def control():\n    pass\n")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.py"), "wb") as fh:
        fh.write(b"def latin_name():\n    pass\n")
    paths = [
        str(root / "ok.py"),
        str(root / "loop_a"),
        str(root / "out_link.py"),
        str(root / "out_dir" / "secret.py"),  # through a link to a folder outside
        str(root / "loop_dir_a" / "x.py"),  # through a loop of folder links
        str(root / "pipe.py"),
        str(root / "new\nline.py"),
        os.fsdecode(os.path.join(os.fsencode(root), b"caf\xe9.py")),
        str(root / "gone.py"),
        str(root / "known.py"),  # indexed, then deleted: its rows must go
        str(root / "sub"),
        str(outside / "secret.py"),
        "/",
    ]
    return root, paths


def test_explicit_hostile_paths_complete_and_index_only_what_they_may(tmp_path, make_index):
    root, paths = _hostile_paths(tmp_path)
    idx = make_index(root)
    idx.refresh(lexical_only=True)
    (root / "known.py").unlink()
    (root / "ok.py").write_text("def ok_function():\n    return 'changed'\n")
    st = idx.refresh(paths, lexical_only=True)
    assert st.files_indexed == 1 and st.files_removed == 1
    rows = rows_of(root)
    assert {r[0] for r in rows} == {"ok.py"}
    assert not any(OUTSIDE_MARKER in r[5] for r in rows)


def test_explicit_hostile_paths_are_reported(tmp_path, make_index):
    root, paths = _hostile_paths(tmp_path)
    st = make_index(root).refresh(paths, lexical_only=True)
    assert st.summary()["skipped_reasons"] == {
        "symbolic link": 2,  # loop_a, out_link.py (paths *through* links resolve outside: dropped)
        "not a regular file": 1,
        "file name has control characters": 1,
        "file name is not valid UTF-8": 1,
    }


# --------------------------------------------------------------------- unreadable files
@pytest.mark.slow
def test_unreadable_files_and_folders(tmp_path):
    root = tmp_path / "repo"
    (root / "ok").mkdir(parents=True)
    (root / "ok" / "alpha.py").write_text("def alpha_walker():\n    return 1\n")
    secret = root / "locked.py"
    secret.write_text("def locked_function():\n    pass\n")
    closed = root / "closed"
    closed.mkdir()
    (closed / "inner.py").write_text("def inner_function():\n    pass\n")
    half = root / "traverse_only"  # x but no r: the names inside cannot be listed
    half.mkdir()
    (half / "hidden.py").write_text("def hidden_function():\n    pass\n")
    secret.chmod(0)
    closed.chmod(0)
    half.chmod(0o100)
    try:
        probe = subprocess.run(as_unprivileged([sys.executable, "-c", f"open({str(secret)!r})"]))
        if probe.returncode == 77:
            pytest.skip("running as root without CAP_SETPCAP: cannot drop CAP_DAC_OVERRIDE")
        assert probe.returncode != 0, "the probe could read a mode-000 file"
        r = subprocess.run(
            as_unprivileged(
                [
                    sys.executable,
                    "-m",
                    "coderag",
                    "index",
                    str(root),
                    "--json",
                    "-v",
                    "-q",
                    "--lexical-only",
                ]
            ),
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert summary["skipped_reasons"] == {"unreadable": 1, "unreadable folder": 2}
        assert "skipped locked.py: unreadable (Permission denied)" in r.stderr
        assert "skipped closed: unreadable folder (Permission denied)" in r.stderr
        assert {p for p, *_ in rows_of(root)} == {"ok/alpha.py"}
    finally:
        secret.chmod(0o644)
        closed.chmod(0o755)
        half.chmod(0o755)


# =============================================================================== damage
def _trash(paths: list[Path]) -> None:
    import random

    rng = random.Random(7)
    for p in paths:
        n = max(p.stat().st_size, 64)
        p.write_bytes(bytes(rng.randrange(256) for _ in range(n)))


def _foreign_db(data: Path) -> None:
    import lancedb
    import pyarrow as pa

    shutil.rmtree(data / "db")
    db = lancedb.connect(str(data / "db"))
    db.create_table("chunks", pa.table({"a": [1, 2]}))
    db.create_table("files", pa.table({"b": ["x"]}))
    db.create_table("meta", pa.table({"zz": [1.0]}))


def _dotfile(data: Path) -> None:
    shutil.rmtree(data)
    data.write_text("not a folder\n")


def _dbfile(data: Path) -> None:
    shutil.rmtree(data / "db")
    (data / "db").write_text("not a folder either\n")


DAMAGE = {
    "random bytes in the data files": lambda d: _trash(
        list((d / "db" / "chunks.lance" / "data").iterdir())
    ),
    "random bytes in every file": lambda d: _trash(
        [p for p in (d / "db").rglob("*") if p.is_file()]
    ),
    "random bytes in the manifests": lambda d: _trash(list((d / "db").rglob("*.manifest"))),
    "a data file deleted": lambda d: [
        p.unlink() for p in (d / "db" / "chunks.lance" / "data").iterdir()
    ],
    "the full-text index deleted": lambda d: shutil.rmtree(d / "db" / "chunks.lance" / "_indices"),
    ".coderag is a file": _dotfile,
    ".coderag/db is a file": _dbfile,
    "a LanceDB of something else": _foreign_db,
}


@pytest.fixture(scope="module")
def indexed_small(tmp_path_factory, embedder):
    """smallrepo, indexed (with vectors) once; tests copy it."""
    root = tmp_path_factory.mktemp("base") / "repo"
    shutil.copytree(FIXTURES / "smallrepo", root)
    Index(root, embedder=embedder).refresh()
    return root


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_index_is_one_line_then_rebuild_recovers(damage, indexed_small, tmp_path, capsys):
    root = tmp_path / "repo"
    shutil.copytree(indexed_small, root, symlinks=True)
    clean = rows_of(root)
    DAMAGE[damage](root / ".coderag")
    search = ["search", "upload retry", "--repo", str(root), "--json"]
    for argv in (
        ["status", "--repo", str(root)],  # may answer (counts can survive), else one line
        [*search, "--mode", "lexical"],  # must fail, in one line
        search,
        ["index", str(root), "-q", "--lexical-only"],  # fails in one line, or repairs
    ):
        rc, _, err = _main(capsys, *argv)
        if rc == 0 and argv[0] != "search":
            continue
        assert rc == 1, (argv[0], rc, err)
        assert "coderag index --rebuild" in _one_line_error(err), (argv[0], err)
    if rc == 0:  # `coderag index` repaired it: then searching works
        rc, out, err = _main(capsys, *search, "--mode", "lexical")
        assert rc == 0 and json.loads(out), err
    rc, _, err = _main(capsys, "index", str(root), "--rebuild", "-q", "--lexical-only")
    assert rc == 0, err
    assert rows_of(root) == clean
    rc, out, err = _main(capsys, *search, "--mode", "lexical")
    assert rc == 0 and json.loads(out), err
    rc, out, err = _main(capsys, "status", "--repo", str(root), "--json")
    assert rc == 0 and json.loads(out)["files"] == 7, err


@pytest.mark.slow
def test_damaged_index_through_the_real_command(indexed_small, tmp_path):
    """The same contract across the process boundary (exit code, stderr, no traceback)."""
    root = tmp_path / "repo"
    shutil.copytree(indexed_small, root, symlinks=True)
    DAMAGE["random bytes in the manifests"](root / ".coderag")
    r = run_cli("search", "upload", "--repo", str(root))
    assert r.returncode == 1 and "coderag index --rebuild" in _one_line_error(r.stderr)
    r = run_cli("index", str(root), "--rebuild", "-q", "--lexical-only")
    assert r.returncode == 0, r.stderr
    r = run_cli("search", "upload", "--repo", str(root), "--mode", "lexical", "--json")
    assert r.returncode == 0 and json.loads(r.stdout), r.stderr


def _set_schema(root: Path, version: int) -> None:
    from coderag.store import Store

    Store(root).set_meta(schema_version=version)


def test_newer_schema_is_refused_in_one_line(indexed_small, tmp_path, capsys):
    root = tmp_path / "repo"
    shutil.copytree(indexed_small, root, symlinks=True)
    _set_schema(root, SCHEMA_VERSION + 1)
    for argv in (["search", "upload", "--repo", str(root)], ["index", str(root), "-q"]):
        rc, _, err = _main(capsys, *argv)
        assert rc == 1 and "--rebuild" in _one_line_error(err), err


@pytest.mark.slow
def test_old_schema_is_rebuilt_by_index_with_a_message(indexed_small, tmp_path, capsys):
    root = tmp_path / "repo"
    shutil.copytree(indexed_small, root, symlinks=True)
    clean = rows_of(root)
    _set_schema(root, SCHEMA_VERSION - 1)
    rc, _, err = _main(capsys, "search", "upload", "--repo", str(root))
    assert rc == 1 and "coderag index" in _one_line_error(err)
    rc, _, err = _main(capsys, "index", str(root), "-q")
    assert rc == 0, err
    assert "schema" in err and "rebuil" in err  # said, not silent
    assert rows_of(root) == clean
    rc, out, err = _main(capsys, "status", "--repo", str(root), "--json")
    assert json.loads(out)["schema_version"] == SCHEMA_VERSION


# ========================================================================== concurrency
@pytest.mark.slow
def test_second_indexer_waits_then_gives_up_with_a_clear_message(smallrepo):
    """A is stopped (SIGSTOP) while it holds the writer lock, so the overlap is certain."""
    lock = smallrepo / ".coderag" / "lock"
    a = subprocess.Popen(
        [sys.executable, "-m", "coderag", "index", str(smallrepo), "-q", "--lexical-only"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (lock.exists() and lock.read_text().strip() == str(a.pid)):
            assert a.poll() is None and time.monotonic() < deadline, a.stderr.read()
            time.sleep(0.005)
        a.send_signal(signal.SIGSTOP)
        b = run_cli("index", str(smallrepo), "-q", env={"CODERAG_LOCK_TIMEOUT": "1"})
        assert b.returncode == 1
        line = _one_line_error(b.stderr)
        assert f"another coderag process (pid {a.pid}) is writing this index" in line
        assert "waited 1s" in line
        c = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coderag",
                "index",
                str(smallrepo),
                "--json",
                "-q",
                "--lexical-only",
            ],
            env={**os.environ, "CODERAG_LOCK_TIMEOUT": "300"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert c.poll() is None, "the waiting indexer did not wait"
        a.send_signal(signal.SIGCONT)
        assert a.wait(timeout=300) == 0
        out, err = c.communicate(timeout=300)
        assert c.returncode == 0, err
        assert json.loads(out)["files_unchanged"] == 7  # A did the work; C found it done
    finally:
        for p in (a, locals().get("c")):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()


# no docstrings or comment blocks: doc chunks are shown as their definition, which would
# make "all chunks of one version" harder to state
FLIP_A = "".join(
    f"def zebra_alpha_{i}(x):\n    y = x + {i}  # zebra stripes version A part {i}\n    return y\n\n\n"
    for i in range(4)
)
# version B starts below version A's last line, so its spans never overlap A's (collapsing
# overlapping hits could otherwise hide a mix of both versions)
FLIP_B = "\n" * 30 + "".join(
    f"def zebra_beta_{i}(x):\n    y = x * {i}  # zebra stripes version B part {i}\n    return y\n\n\n"
    for i in range(3)
)
FLIPPER = textwrap.dedent(
    """
    import sys, pathlib
    from coderag import Index
    root, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    flip = root / "flip.py"
    versions = [sys.argv[3], sys.argv[4]]
    idx = Index(root)
    n = 0
    while not stop.exists() and n < 400:
        flip.write_text(versions[n % 2])
        idx.refresh([str(flip)])
        n += 1
        print(n, flush=True)
    """
)


def _version_of(hits, a_texts, b_texts) -> tuple[set, set]:
    texts = {h.text for h in hits if h.path == "flip.py"}
    return texts & a_texts, texts & b_texts


def _flip_texts(root: Path, embedder) -> tuple[set[str], set[str], Index]:
    """Index both versions once (vectors cached), end on A; the chunk texts of each."""
    idx = Index(root, embedder=embedder)
    texts = []
    for version in (FLIP_B, FLIP_A):
        (root / "flip.py").write_text(version)
        idx.refresh()
        texts.append({r[5] for r in rows_of(root) if r[0] == "flip.py"})
    b_texts, a_texts = texts
    assert a_texts and b_texts and not a_texts & b_texts
    return a_texts, b_texts, idx


@pytest.mark.slow
def test_searches_during_reindexing_never_see_a_file_twice_or_half(smallrepo, embedder):
    """A subprocess rewrites flip.py between two versions and re-indexes it, again and again;
    meanwhile every search here (a fresh Index each time, as a CLI search is) sees all of
    flip.py's chunks of one version: never none, never some, never both."""
    a_texts, b_texts, _ = _flip_texts(smallrepo, embedder)
    stop = smallrepo.parent / "stop"
    flipper = subprocess.Popen(
        [sys.executable, "-c", FLIPPER, str(smallrepo), str(stop), FLIP_A, FLIP_B],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = {"A": 0, "B": 0}
    searches = 0
    try:
        deadline = time.monotonic() + 240
        while (min(seen.values()) < 3 or searches < 30) and time.monotonic() < deadline:
            assert flipper.poll() is None, flipper.stderr.read()
            mode = ("hybrid", "lexical", "dense")[searches % 3]
            hits = Index(smallrepo, embedder=embedder).search(
                "zebra stripes version", k=200, mode=mode
            )
            searches += 1
            spans = [(h.path, h.start_line, h.end_line) for h in hits]
            assert len(spans) == len(set(spans)), "a hit listed twice"
            got_a, got_b = _version_of(hits, a_texts, b_texts)
            assert not (got_a and got_b), f"both versions in one result ({mode})"
            if mode != "lexical":  # dense ranks every chunk: the file is there, whole
                assert got_a == a_texts or got_b == b_texts, (
                    f"half a file ({mode}): {got_a or got_b}"
                )
            if got_a == a_texts:
                seen["A"] += 1
            elif got_b == b_texts:
                seen["B"] += 1
    finally:
        stop.touch()
        out, err = flipper.communicate(timeout=300)
    assert flipper.returncode == 0, err
    assert min(seen.values()) >= 3, f"the searches saw too few flips: {seen} in {searches}"


class _Interleaving:
    """The real embedder, plus one commit from another writer at the moment a hybrid search
    has run its full-text query and asks for the query vector (before the vector query)."""

    def __init__(self, embedder, on_query):
        self._e = embedder
        self._on_query = on_query

    def __getattr__(self, name):
        return getattr(self._e, name)

    def embed_query(self, text, kind="nl"):
        self._on_query()
        return self._e.embed_query(text, kind)


@pytest.mark.parametrize("fresh", [False, True], ids=["cli-reader", "server-reader"])
def test_a_commit_between_the_two_retrievers_never_mixes_versions(smallrepo, embedder, fresh):
    a_texts, b_texts, writer = _flip_texts(smallrepo, embedder)
    flips = iter([FLIP_B, FLIP_A] * 3)

    def commit_other_version():
        (smallrepo / "flip.py").write_text(next(flips))
        writer.refresh([str(smallrepo / "flip.py")])

    reader = Index(smallrepo, embedder=_Interleaving(embedder, commit_other_version))
    if fresh:
        reader.read_fresh()
    for _ in range(2):
        hits = reader.search("zebra stripes version", k=200, mode="hybrid")
        got_a, got_b = _version_of(hits, a_texts, b_texts)
        assert got_a or got_b
        assert not (got_a and got_b), "one search saw both versions of flip.py"


# ================================================================ hostile queries, filters
@pytest.fixture(scope="module")
def odd_repo(tmp_path_factory, embedder):
    """smallrepo plus files whose names are hard to quote, indexed with vectors."""
    root = tmp_path_factory.mktemp("odd") / "repo"
    shutil.copytree(FIXTURES / "smallrepo", root)
    (root / "names").mkdir()
    for i, name in enumerate(ODD_NAMES):
        (root / "names" / name).write_text(f"def odd_name_{i}():\n    return 'upload {i}'\n")
    Index(root, embedder=embedder).refresh()
    return root


EVIL = [
    "python' OR '1'='1",
    'x" OR 1=1 --',
    "'; DROP TABLE chunks; --",
    "') OR ('a'='a",
    "%",
    "_",
    "\\",
    "\\'",
    "*",
    "**",
    "?",
    "[",
    "[!a]",
    "{a,b}",
    "$(rm -rf /)",
    "é😀\u202e",
    "x" * 4096,
]


def test_hostile_filter_values_neither_break_nor_widen_the_query(odd_repo, embedder):
    from coderag.store import Store

    idx = Index(odd_repo, embedder=embedder)
    before = (rows_of(odd_repo), Store(odd_repo).counts())
    for evil in EVIL:
        for mode in ("hybrid", "lexical"):
            assert _answer_or_refuse(idx, lang=evil, mode=mode) in ([], None), evil
            hits = _answer_or_refuse(idx, path=evil, mode=mode) or []
            assert all(_glob_oracle(h.path, evil) for h in hits), (evil, [h.path for h in hits])
    for bad in ["py\x00thon", "a\nb", "\x1b[31m", "x" * 4097]:
        assert _answer_or_refuse(idx, lang=bad) is None, bad  # cannot be quoted: refused
        hits = _answer_or_refuse(idx, path=bad) or []  # a glob may be refused or match nothing
        assert all(_glob_oracle(h.path, bad) for h in hits), bad
    assert (rows_of(odd_repo), Store(odd_repo).counts()) == before  # nothing was altered


def test_non_utf8_filter_values_are_refused_in_one_line(odd_repo, embedder):
    idx = Index(odd_repo, embedder=embedder)
    for bad in ["\udcff", "\ud800", "py\udcffthon"]:  # a non-UTF-8 argv; a JSON "\ud800"
        assert _answer_or_refuse(idx, lang=bad) is None
        assert _answer_or_refuse(idx, path=bad) is None


def _answer_or_refuse(idx, **kw):
    """Hits, or None when the library refuses the value with a one-line CoderagError."""
    try:
        return idx.search("upload", k=50, **kw)
    except CoderagError as e:
        assert "\n" not in str(e)
        return None


def _glob_oracle(path: str, glob: str) -> bool:
    """The documented glob rules, independently: fnmatch on the name for a pattern without
    "/", else on the whole path with "**" crossing folders."""
    import fnmatch
    import re

    if "/" not in glob:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], glob) or path.startswith(glob + "/")
    rx = (
        re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    )
    return re.fullmatch(rx.replace(r"\?", "[^/]"), path) is not None or path.startswith(
        glob.rstrip("/") + "/"
    )


@pytest.mark.parametrize("i", range(len(ODD_NAMES)), ids=ODD_NAMES)
def test_path_filter_matches_odd_names_exactly(odd_repo, embedder, i):
    """LIKE wildcards (%, _) and quotes in a name are literal; glob characters keep their
    glob meaning, as documented (``[brackets].py`` is a character class)."""
    name = ODD_NAMES[i]
    idx = Index(odd_repo, embedder=embedder)
    got = {h.path for h in idx.search("upload", path=f"names/{name}", k=50, mode="lexical")}
    expected = {f"names/{n}" for n in ODD_NAMES if _glob_oracle(f"names/{n}", f"names/{name}")}
    assert got == expected


HOSTILE_QUERIES = [
    "' OR 1=1 --",
    'title:"x" AND (y OR',
    "NOT AND OR",
    '+-&&||!(){}[]^"~*?:\\/',
    "\x01\x02\x07\x1b[31m\x7f",
    "\u202e\u200b\ufeff",
    "a" * 1_000_000,
    "upload " * 100_000,
    "\udcff\udcfe surrogates from a non-UTF-8 argv",
    "\ud800 a lone surrogate from JSON",
    "\x00",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=lambda q: repr(q)[:30])
def test_hostile_queries_are_answered_or_refused_cleanly(odd_repo, embedder, query):
    idx = Index(odd_repo, embedder=embedder)
    for mode in ("hybrid", "lexical", "dense"):
        try:
            hits = idx.search(query, k=5, mode=mode)
        except CoderagError as e:
            assert "\n" not in str(e)
        else:
            assert isinstance(hits, list) and len(hits) <= 5


def test_hostile_input_through_the_cli(odd_repo, capsys):
    """Exit 0, or 1/2 with one line on stderr: never a traceback."""
    repo = ["--repo", str(odd_repo), "--mode", "lexical", "--json"]
    cases = [
        (["--lang", "python' OR '1'='1"], 0, lambda hits: hits == []),
        (["--path", "%"], 0, lambda hits: hits == []),
        (["--path", "names/a_b.py"], 0, lambda hits: {h["path"] for h in hits} == {"names/a_b.py"}),
        (
            ["--path", "names/quote'd.py"],
            0,
            lambda hits: {h["path"] for h in hits} == {"names/quote'd.py"},
        ),
        (["--lang", "py\x1bthon"], 1, None),
        (["--path", "x" * 100_000], 1, None),
        (["--code-file", str(odd_repo / "nope.py")], 1, None),
        (["-k", "0"], 2, None),
        (["-k", "1000000"], 2, None),
        (["--kind", "'; DROP"], 2, None),  # argparse: usage and error, two lines
    ]
    for extra, want, check in cases:
        rc, out, err = _main(capsys, "search", "upload", *repo, *extra)
        assert rc == want, (extra[:2], rc, err)
        assert "Traceback" not in err
        if rc == 0:
            assert check(json.loads(out)), (extra, out)
        elif rc == 1:
            _one_line_error(err)
    for query in ["' OR 1=1 --", 'title:"x" AND (y OR', "*?[]{}\\"]:
        rc, out, err = _main(capsys, "search", query, *repo)
        assert rc == 0 and isinstance(json.loads(out), list), err
    rc, out, err = _main(capsys, "search", "   ", *repo)
    assert rc == 2 and _one_line_error(err)


def test_huge_and_binary_queries_through_the_real_command(odd_repo):
    # 1 MB of query with control characters, on stdin (argv cannot carry it)
    r = run_cli(
        "search", "-", "--repo", str(odd_repo), "--json", input="upload \x01\x1b " * 100_000
    )
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), list)


def test_non_utf8_query_bytes_through_the_real_command(odd_repo):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "coderag",
            "search",
            b"upload \xff\xfe",
            "--repo",
            str(odd_repo),
            "--json",
        ],
        capture_output=True,
    )
    assert r.returncode in (0, 1, 2), r.stderr
    assert b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
