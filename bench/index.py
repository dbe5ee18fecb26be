"""Indexing speed and memory: cold index of a real corpus, then no-op re-indexes.

1. Cold index of a pinned PyPI sdist (default ``requests==2.32.3``, ``src/``) with the
   default CPU model: files/s, chunks/s and peak RSS of the indexing process.
2. No-op re-index of the same tree (nothing changed: stat only).
3. A generated 5,000-file tree (and 1,000 / 2,500 for the memory trend), indexed
   ``--lexical-only`` (the walk, chunking and store path; embedding is measured in 1. and in
   bench/embed.py), then re-indexed with nothing changed. Goal: the no-op re-index of
   5,000 files in <= 1 s (stat first, hash only what changed), and peak RSS flat as the
   tree grows (chunks and vectors stream to the store in batches).

Each run is a separate ``coderag index --json`` process, timed from outside (so model
load and imports are included in the cold figure but reported separately by the JSON
summary's ``seconds``); peak RSS is the child's ``ru_maxrss``.

    python bench/index.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_index(path: Path, *extra: str) -> dict:
    """One `coderag index` process: its JSON summary and wall time."""
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "coderag", "index", str(path), "--json", "-q", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"coderag index failed: {r.stderr.strip()}")
    out = json.loads(r.stdout)
    out["wall_s"] = round(wall, 2)
    return out


def rss_of(path: Path, *extra: str) -> float:
    """Peak RSS (MiB) of one indexing process, from wait4's rusage."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "coderag", "index", str(path), "--json", "-q", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    _pid, _status, usage = os.wait4(proc.pid, 0)
    return round(usage.ru_maxrss / 1024, 1)


def generate(root: Path, n_files: int) -> None:
    for i in range(n_files):
        d = root / f"pkg{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        body = [f'"""Generated module {i}."""', ""]
        for j in range(5):
            body += [
                f"def handler_{i}_{j}(request, retries={j}):",
                f'    """Handle request kind {j} for module {i}."""',
                "    for attempt in range(retries + 1):",
                "        if request.ok(attempt):",
                "            return attempt",
                "    return None",
                "",
            ]
        (d / f"mod_{i:05d}.py").write_text("\n".join(body))


def fetch_sdist(spec: str, dest: Path, subdir: str) -> Path:
    dl = dest / "_dl"
    dl.mkdir(parents=True, exist_ok=True)
    if not any(dl.iterdir()):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                spec,
                "-d",
                str(dl),
            ],
            check=True,
            capture_output=True,
        )
    out = dest / "src"
    if not out.exists():
        with tarfile.open(next(dl.iterdir())) as tf:
            tf.extractall(out, filter="data")
    return next(out.iterdir()) / subdir


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--spec", default="requests==2.32.3")
    ap.add_argument("--subdir", default="src")
    ap.add_argument("--sizes", default="1000,2500,5000")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "coderag-bench-index"))
    args = ap.parse_args()
    cache = Path(args.cache)
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }

    corpus = cache / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    shutil.copytree(fetch_sdist(args.spec, cache, args.subdir), corpus)
    cold = run_index(corpus)
    shutil.rmtree(corpus / ".coderag")
    cold_rss = rss_of(corpus)  # the same cold run again, for its peak RSS
    st = json.loads(
        subprocess.run(
            [sys.executable, "-m", "coderag", "status", "--repo", str(corpus), "--json"],
            capture_output=True,
            text=True,
        ).stdout
    )
    noop = run_index(corpus)
    results["real"] = {
        "corpus": args.spec,
        "files": st["files"],
        "chunks": st["chunks"],
        "cold_wall_s": cold["wall_s"],
        "cold_index_s": cold["seconds"],
        "files_per_s": round(st["files"] / cold["seconds"], 1),
        "chunks_per_s": round(st["chunks"] / cold["seconds"], 1),
        "peak_rss_mib": cold_rss,
        "noop_wall_s": noop["wall_s"],
        "noop_index_s": noop["seconds"],
    }
    print(json.dumps(results["real"], indent=1), flush=True)

    results["generated"] = []
    for n in map(int, args.sizes.split(",")):
        tree = cache / f"gen{n}"
        shutil.rmtree(tree, ignore_errors=True)
        generate(tree, n)
        rss = rss_of(tree, "--lexical-only")
        first = run_index(tree, "--lexical-only")  # already indexed by rss_of: a no-op
        touched = tree / "pkg000" / "mod_00000.py"
        touched.write_text(touched.read_text() + "\n# edited\n")
        one = run_index(tree, "--lexical-only")
        row = {
            "files": n,
            "peak_rss_mib_lexical_cold": rss,
            "noop_index_s": first["seconds"],
            "noop_wall_s": first["wall_s"],
            "one_edit_index_s": one["seconds"],
        }
        results["generated"].append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results" / "index.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
