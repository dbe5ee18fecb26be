"""The scale curve: build time, peak memory and warm query latency at 10k ... 1M chunks.

The corpus is real code fetched from the package registries: every source and doc file of
the packages installed in this interpreter's environment (torch, transformers, lancedb,
sympy, ... as pip put them there; their names and versions go into the results). A corpus
of N chunks is laid out as hard links (copies where links are not possible) of those files
in a fixed order; past the end of the list the files are laid out again under ``copy<k>/``
(a monorepo with vendored copies), until the estimated chunk count reaches N.

For each size, in one run, each step in a fresh process:

* ``coderag index DIR`` with ``static = only`` and ``--lexical-only`` (walk, chunk, store,
  full-text index, a static vector for every chunk, B-tree and IVF-RQ indexes past 50k):
  wall time and peak RSS (``/usr/bin/time``);
* a warm in-process search loop: 20 questions x lexical / dense (static) / hybrid, each
  asked once to warm up, then timed three times; p50 and p95; recall@10 of the vector
  index against an exhaustive scan of the static vectors for the same questions;
* an incremental refresh after one file changed (the indexes are kept, not rebuilt).

    python bench/scale.py                      # 10k, 20k, 100k
    python bench/scale.py --sizes 10000,1000000 --work /big/disk
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import cpu_name, pct, say  # noqa: E402

SOURCE_EXT = {".py", ".pyi", ".js", ".ts", ".go", ".rs", ".c", ".h", ".cpp", ".md", ".rst"}
MAX_FILE_BYTES = 400_000  # what coderag indexes by default (generated giants are skipped)
QUESTIONS = [
    "retry a failed http request with backoff",
    "parse command line arguments",
    "read a json configuration file",
    "compute the sha256 digest of a file",
    "convert a tensor to a numpy array",
    "load a model checkpoint from disk",
    "tokenize a string into words",
    "format a date as iso 8601",
    "open a database connection",
    "cache the result of a function",
    "validate an email address",
    "compress data with gzip",
    "spawn a subprocess and capture its output",
    "raise an error when the file is missing",
    "compute the cosine similarity of two vectors",
    "walk a directory tree recursively",
    "log a warning message",
    "serialize an object to yaml",
    "merge two sorted lists",
    "download a file over https",
]


def source_files() -> tuple[list[tuple[Path, str]], list[str]]:
    """(file, path inside the corpus) for every source file of the installed packages, in
    a fixed order, and the packages' names and versions."""
    import site
    import sysconfig

    roots = [Path(p) for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()}]
    roots = sorted({r.resolve() for r in roots if r.is_dir()})
    files: list[tuple[Path, str]] = []
    packages: set[str] = set()
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(root)
            if rel_dir.parts and rel_dir.parts[0].endswith(".dist-info"):
                m = re.match(r"(.+?)-([^-]+)\.dist-info$", rel_dir.parts[0])
                if m and len(rel_dir.parts) == 1:
                    packages.add(f"{m.group(1)}=={m.group(2)}")
                continue
            if rel_dir.parts and rel_dir.parts[0] in ("coderag", "__editable__"):
                continue
            for name in sorted(names):
                f = Path(dirpath) / name
                if f.suffix in SOURCE_EXT and 0 < f.stat().st_size <= MAX_FILE_BYTES:
                    files.append((f, str(rel_dir / name)))
    return files, sorted(packages)


def chunks_per_byte(files: list[tuple[Path, str]], work: Path, sample: int = 300) -> float:
    """Chunks a byte of this corpus makes: a spread sample of the files indexed by coderag."""
    root = work / "calibrate"
    step = max(1, len(files) // sample)
    n_bytes = 0
    for f, rel in files[::step]:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        n_bytes += f.stat().st_size
    chunks = index(root, "--lexical-only")["chunks_pending"]
    shutil.rmtree(root, ignore_errors=True)
    return chunks / max(1, n_bytes)


def lay_out(files, dest: Path, chunks: int, per_byte: float) -> int:
    """Link files into ``dest`` until about ``chunks`` chunks; the bytes laid out."""
    want = chunks / per_byte
    total = 0
    copy = 0
    while total < want:
        for f, rel in files:
            target = dest / (f"copy{copy}" if copy else "") / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:
                shutil.copyfile(f, target)
            total += f.stat().st_size
            if total >= want:
                break
        copy += 1
    return total


def index(root: Path, *extra: str) -> dict:
    """One ``coderag index`` process: its JSON stats, wall time and peak RSS."""
    cmd = [sys.executable, "-m", "coderag", "index", str(root), "--json", "-q", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CODERAG_STATIC": "only"}
    t0 = time.perf_counter()
    r = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss_kb=%M", *cmd], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"coderag index failed: {r.stderr.strip()[-2000:]}")
    out = json.loads(r.stdout)
    m = re.search(r"maxrss_kb=(\d+)", r.stderr)
    out["wall_s"] = round(wall, 1)
    out["peak_rss_mb"] = round(int(m.group(1)) / 1024) if m else None
    return out


def warm_queries(root: Path) -> dict:
    """Run in a fresh process (``--queries``): timings of a warm library search."""
    from coderag import Index
    from coderag.store import Store

    idx = Index(root, static="only")
    out: dict = {}
    for mode in ("lexical", "dense", "hybrid"):
        for q in QUESTIONS:
            idx.search(q, mode=mode, k=10)  # warm-up: files mapped, indexes loaded
        times = []
        for _ in range(3):
            for q in QUESTIONS:
                t0 = time.perf_counter()
                idx.search(q, mode=mode, k=10)
                times.append((time.perf_counter() - t0) * 1000)
        out[mode] = {"p50_ms": round(pct(times, 0.5), 1), "p95_ms": round(pct(times, 0.95), 1)}
    store = Store(root)
    model, weights = idx._static_usable(store, store.meta())  # noqa: SLF001 - what search used
    recalls = []
    for q in QUESTIONS:
        vec = model.embed([q], weights)[0]
        got = {r["id"] for r in store.static_dense(vec, 10, None)}
        want = {r["id"] for r in store.static_dense(vec, 10, None, exact=True)}
        recalls.append(len(got & want) / max(1, len(want)))
    out["ann_recall@10"] = round(sum(recalls) / len(recalls), 3)
    out["ann_columns"] = sorted(store.ann_columns())
    return out


def one_size(files, per_byte: float, n: int, work: Path) -> dict:
    root = work / f"corpus-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    laid = lay_out(files, root, n, per_byte)
    say(f"{n:,}: laid out {laid / 1e6:.0f} MB; indexing")
    built = index(root, "--lexical-only")
    res = {
        "target": n,
        "chunks": built["chunks_pending"],
        "files": built["files_indexed"],
        "build_s": built["wall_s"],
        "static_s": built["static_seconds"],
        "peak_rss_mb": built["peak_rss_mb"],
        "disk_mb": round(
            sum(f.stat().st_size for f in (root / ".coderag").rglob("*") if f.is_file()) / 1e6
        ),
    }
    say(f"{n:,}: {res}")
    r = subprocess.run(
        [sys.executable, __file__, "--queries", str(root)], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    res["warm"] = json.loads(r.stdout)
    say(f"{n:,}: warm {res['warm']}")
    edited = next(p for p in sorted(root.rglob("*.py")) if ".coderag" not in p.parts)
    text = edited.read_text("utf-8", errors="replace")
    edited.unlink()  # a hard link: write a file of its own
    edited.write_text(text + "\n\ndef scale_bench_marker():\n    return 42\n")
    again = index(root, "--lexical-only")
    res["incremental"] = {"wall_s": again["wall_s"], "files_indexed": again["files_indexed"]}
    shutil.rmtree(root, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,20000,100000")
    ap.add_argument("--work", type=Path, default=None, help="where the corpora go (disk!)")
    ap.add_argument("--queries", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.queries:
        print(json.dumps(warm_queries(args.queries)))
        return
    from coderag.models import BUNDLED_MODEL_ID, static

    t0 = time.perf_counter()
    # the shipped table; distilled once per machine (cached) only if it is missing, since an
    # index built with --lexical-only does not distil
    table = static.load_static(BUNDLED_MODEL_ID, distil=True)
    say(f"static token table {table.model_id} ready in {time.perf_counter() - t0:.1f} s")
    files, packages = source_files()
    work = Path(tempfile.mkdtemp(prefix="coderag-scale-", dir=args.work))
    per_byte = chunks_per_byte(files, work)
    say(f"{len(files):,} source files, {len(packages)} packages; {per_byte * 1000:.2f} chunks/KB")
    results = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "source_files": len(files),
        "packages": packages,
        "sizes": [],
    }
    out = HERE / "results" / "scale.json"
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            results["sizes"].append(one_size(files, per_byte, n, work))
            out.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {results['machine']}")
    print(
        "| chunks | build s | static s | peak RSS MB | disk MB | p50 lexical / dense / hybrid ms | ANN recall@10 | incremental s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in results["sizes"]:
        w = s["warm"]
        print(
            f"| {s['chunks']:,} | {s['build_s']} | {s['static_s']} | {s['peak_rss_mb']:,} | "
            f"{s['disk_mb']:,} | {w['lexical']['p50_ms']} / {w['dense']['p50_ms']} / "
            f"{w['hybrid']['p50_ms']} | {w['ann_recall@10']} | {s['incremental']['wall_s']} |"
        )


if __name__ == "__main__":
    main()
