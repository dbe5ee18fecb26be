"""Damage that used to be reported wrongly or not at all: a deleted table (a silently empty
index) and a full disk (reported as a damaged index with advice to rebuild it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import FIXTURES, run_cli

pytestmark = pytest.mark.slow  # full-disk and table-loss recovery with real indexes


def test_a_deleted_chunks_table_is_detected_and_repaired_from_the_cache(smallrepo, make_index):
    make_index(smallrepo).refresh()
    before = run_cli("search", "upload retry", "--repo", str(smallrepo), "--json", "--no-server")
    assert before.returncode == 0 and json.loads(before.stdout)
    shutil.rmtree(smallrepo / ".coderag" / "db" / "chunks.lance")

    for args in (["search", "upload retry", "--no-server"], ["status"]):
        r = run_cli(*args, "--repo", str(smallrepo))
        assert r.returncode == 1, (args, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "'chunks' table is missing" in lines[0], r.stderr

    stats = make_index(smallrepo).refresh()
    assert any("lost its chunks table" in n for n in stats.notes), stats.notes
    assert stats.files_indexed == 7 and stats.chunks_embedded == 0 and stats.chunks_reused > 0
    after = run_cli("search", "upload retry", "--repo", str(smallrepo), "--json", "--no-server")
    assert after.returncode == 0 and json.loads(after.stdout) == json.loads(before.stdout)


_FILL = textwrap.dedent(
    """
    import json, os, shutil, subprocess, sys
    disk, fixture = sys.argv[1], sys.argv[2]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", disk], check=True)
    repo = os.path.join(disk, "repo")
    shutil.copytree(fixture, repo)
    def coderag(*args):
        p = subprocess.run([sys.executable, "-m", "coderag", *args], capture_output=True, text=True)
        return {"rc": p.returncode, "out": p.stdout, "err": p.stderr}
    out = {"first": coderag("index", repo, "-q", "--lexical-only")}
    with open(os.path.join(repo, "late.py"), "w") as fh:
        fh.write("def late_arrival_marker():\\n    return 'late'\\n" * 200)
    fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last block
        while True:
            os.write(fd, b"\\0" * 4096)
    except OSError:
        os.close(fd)
    out["full"] = coderag("index", repo, "-q", "--lexical-only")
    out["search_full"] = coderag("search", "upload", "--repo", repo, "--mode", "lexical", "--json")
    os.unlink(os.path.join(disk, "filler"))
    out["again"] = coderag("index", repo, "-q", "--lexical-only")
    out["search"] = coderag("search", "late_arrival_marker", "--repo", repo, "--mode", "lexical",
                            "--json", "--no-server")
    print(json.dumps(out))
    """
)


def test_a_full_disk_is_reported_as_such_and_keeps_the_index(tmp_path: Path):
    """A real full filesystem: a small tmpfs in a private mount namespace (``unshare``)."""
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no user and mount namespaces here")
    disk = tmp_path / "disk"
    disk.mkdir()
    p = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", _FILL, str(disk), str(FIXTURES / "smallrepo")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["first"]["rc"] == 0, out["first"]
    full = out["full"]
    assert full["rc"] == 1, full
    lines = full["err"].strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and "--rebuild" not in lines[0], full
    assert "Traceback" not in full["err"]
    # what was indexed before the disk filled is still there, and searchable
    assert out["search_full"]["rc"] == 0 and json.loads(out["search_full"]["out"])
    assert out["again"]["rc"] == 0, out["again"]
    assert out["search"]["rc"] == 0 and json.loads(out["search"]["out"]), out["search"]
