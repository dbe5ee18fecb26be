"""Watch-mode benchmark: save-to-searchable latency and a 1,000-file checkout storm.

1. **Single edits.** A copy of this repository's ``coderag/`` and ``tests/`` sources is
   indexed in full (vectors too), then watched with the defaults (debounce from
   ``Config.debounce_ms``, lexical first, vectors back-filled in the background). Each of
   ``--edits`` edits puts a unique new identifier into a function body of one file (written
   the way an editor saves: temp file + rename) and polls ``Index.search(ident,
   mode="lexical", k=10)`` on the watcher's own ``Index`` (as ``coderag serve`` does) until a
   hit contains it. Latency = save → first search that finds it. Edits are ``--gap`` seconds
   apart, so the back-fill of the previous edit's vector runs in between, as in real use.
2. **Checkout storm.** A git repository with ``--files`` small Python files, fully indexed and
   watched; branch ``storm`` changes every file. ``git checkout storm`` is timed until
   ``Watcher.flush()`` returns (the index equals the tree, lexically) and until every new
   chunk has its vector; then ``git checkout main`` (every text seen before: nothing to
   embed). A thread searches all the while; failures are counted.

    .venv/bin/python bench/watch.py [--edits 30] [--files 1000] [--out bench/results/watch.md]

Prints the figures and writes them (Markdown) to ``--out``. Default CPU model; set
``CODERAG_DEVICE`` to try another device.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import pct, say  # noqa: E402  (bench/, first on sys.path)

from coderag import Index  # noqa: E402
from coderag.watch import Watcher  # noqa: E402

RETURN_RE = re.compile(r"^(?P<indent>[ \t]+)return\b", re.M)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load[0]:.1f} at start"
    )


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def wait_found(index: Index, ident: str, timeout: float = 60.0) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            hits = index.search(ident, mode="lexical", k=10)
        except Exception:  # noqa: BLE001 - the index may be mid-commit; try again
            hits = []
        if any(ident in h.text for h in hits):
            return time.perf_counter()
        time.sleep(0.005)
    return None


# ---------------------------------------------------------------------- part 1
def bench_edits(workdir: Path, edits: int, gap: float, log) -> dict:
    tree = workdir / "edits"
    for sub in ("coderag", "tests"):
        shutil.copytree(
            REPO / sub,
            tree / sub,
            ignore=shutil.ignore_patterns("__pycache__", "fixtures", "*.pyc"),
        )
    candidates = sorted(p for p in tree.rglob("*.py") if RETURN_RE.search(p.read_text()))
    index = Index(tree)
    t0 = time.perf_counter()
    stats = index.refresh()
    full_index_s = time.perf_counter() - t0
    log(
        f"indexed {stats.files_indexed} files, {stats.chunks_embedded} chunks in {full_index_s:.1f}s "
        f"({index.embedder.model_id} on {index.embedder.device})"
    )
    watcher = Watcher(index, log=lambda line: None).start()
    latencies: list[float] = []
    misses = 0
    try:
        for i in range(edits):
            path = candidates[(i * 7) % len(candidates)]
            text = path.read_text()
            returns = list(RETURN_RE.finditer(text))
            m = returns[(i * 3) % len(returns)]
            # letters only: a typical new name, one token (digits would be split off)
            ident = "zqwatch" + "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
            line = f"{m['indent']}{ident} = None  # bench edit\n"
            new = text[: m.start()] + line + text[m.start() :]
            t_save = time.perf_counter()
            atomic_write(path, new)
            found = wait_found(index, ident)
            if found is None:
                misses += 1
                log(f"  edit {i + 1}: not found within 60 s")
            else:
                latencies.append(found - t_save)
                log(f"  edit {i + 1:2d}: {path.relative_to(tree)}: {latencies[-1] * 1000:.0f} ms")
            time.sleep(gap)
    finally:
        watcher.stop()
    return {
        "files": stats.files_indexed,
        "chunks": stats.chunks_embedded + stats.chunks_reused,
        "full_index_s": full_index_s,
        "edits": edits,
        "misses": misses,
        "p50": pct(latencies, 0.5),
        "p95": pct(latencies, 0.95),
        "min": min(latencies, default=float("nan")),
        "max": max(latencies, default=float("nan")),
        "mean": statistics.fmean(latencies) if latencies else float("nan"),
        "debounce_ms": watcher.debounce * 1000,
        "model": index.embedder.model_id,
        "device": index.embedder.device,
    }


# ---------------------------------------------------------------------- part 2
def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.com",
        },
    )


def module_text(i: int, variant: str) -> str:
    return (
        f'"""Generated module {i} ({variant})."""\n\n\n'
        f"def handler_{variant}_{i}(request, retries={i % 7}):\n"
        f'    """Handle request number {i} in the {variant} way."""\n'
        f"    total = {i} * retries\n"
        f"    for attempt in range(retries):\n"
        f"        total += attempt * {i % 13}\n"
        f"    return total\n"
    )


def bench_storm(workdir: Path, files: int, dense_timeout: float, log) -> dict:
    repo = workdir / "storm"
    (repo / "pkg").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        sub = repo / "pkg" / f"group{i % 20:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"mod_{i:04d}.py").write_text(module_text(i, "plain"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "checkout", "-q", "-b", "storm")
    for i in range(files):
        (repo / "pkg" / f"group{i % 20:02d}" / f"mod_{i:04d}.py").write_text(
            module_text(i, "storm")
        )
    git(repo, "commit", "-q", "-am", "storm")
    git(repo, "checkout", "-q", "main")

    index = Index(repo)
    t0 = time.perf_counter()
    index.refresh()
    log(f"storm repo: {files} files indexed in {time.perf_counter() - t0:.1f}s")
    watcher = Watcher(index, log=lambda line: log("  " + line)).start()

    searches = {"ok": 0, "failed": 0, "max_ms": 0.0}
    stop = threading.Event()

    def search_meanwhile():
        while not stop.is_set():
            t = time.perf_counter()
            try:
                index.search("handle request retries", mode="lexical", k=5)
                searches["ok"] += 1
            except Exception:  # noqa: BLE001
                searches["failed"] += 1
            searches["max_ms"] = max(searches["max_ms"], (time.perf_counter() - t) * 1000)
            time.sleep(0.05)

    searcher = threading.Thread(target=search_meanwhile, daemon=True)
    searcher.start()
    out: dict = {"files": files}
    try:
        for label, branch in (("to_new", "storm"), ("back", "main")):
            b0 = watcher.state["batches"]
            t0 = time.perf_counter()
            git(repo, "checkout", "-q", branch)
            t_git = time.perf_counter() - t0
            watcher.flush(timeout=900)
            t_lex = time.perf_counter() - t0
            b1 = watcher.state["batches"]
            t_dense = None
            deadline = time.perf_counter() + dense_timeout
            while time.perf_counter() < deadline:
                if watcher.state["pending_vectors"] == 0 and watcher.state["queue"] == 0:
                    t_dense = time.perf_counter() - t0
                    break
                time.sleep(0.1)
            marker = "storm" if branch == "storm" else "plain"
            ok = bool(index.search(f"handler_{marker}_{files - 1}", mode="lexical", k=1))
            out[label] = {
                "git_s": t_git,
                "searchable_s": t_lex,
                "dense_s": t_dense,
                "batches": b1 - b0,
                "found_last_file": ok,
            }
            log(
                f"checkout {branch}: git {t_git:.2f}s, searchable after {t_lex:.2f}s in {b1 - b0} "
                f"batch(es), dense after {t_dense if t_dense is None else round(t_dense, 1)}s"
            )
    finally:
        stop.set()
        searcher.join()
        watcher.stop()
    out["searches"] = searches
    return out


# ---------------------------------------------------------------------- report
def report(edits: dict, storm: dict | None, where: str) -> str:
    lines = [
        "## Watch mode (`bench/watch.py`)",
        "",
        f"Machine: {where}. Model: `{edits['model']}` on {edits['device']}; "
        f"debounce {edits['debounce_ms']:.0f} ms (default), lexical first, vectors back-filled.",
        "",
        f"**Save → searchable (lexical), one-function edit**, {edits['edits']} edits to a "
        f"{edits['files']}-file, {edits['chunks']}-chunk tree (this repository's sources), "
        'polled with `Index.search(mode="lexical")` in the watcher\'s process:',
        "",
        "| p50 | p95 | min | max | mean | not found |",
        "|---|---|---|---|---|---|",
        f"| {edits['p50'] * 1000:.0f} ms | {edits['p95'] * 1000:.0f} ms | {edits['min'] * 1000:.0f} ms "
        f"| {edits['max'] * 1000:.0f} ms | {edits['mean'] * 1000:.0f} ms | {edits['misses']} |",
        "",
        f"Goal p50 ≤ 1 s: **{'met' if edits['p50'] <= 1.0 else 'missed'}**.",
    ]
    if storm:
        s = storm["searches"]
        lines += [
            "",
            f"**Checkout storm**: `git checkout` of a branch that changes all {storm['files']} "
            "files of a fully indexed repository, and back:",
            "",
            "| checkout | git itself | index equals the tree (lexical) | batches | all vectors in |",
            "|---|---|---|---|---|",
        ]
        for label, name in (
            ("to_new", "main → storm (new texts)"),
            ("back", "storm → main (texts seen before)"),
        ):
            r = storm[label]
            dense = "not within the wait" if r["dense_s"] is None else f"{r['dense_s']:.1f} s"
            lines.append(
                f"| {name} | {r['git_s']:.2f} s | {r['searchable_s']:.2f} s | {r['batches']} | {dense} |"
            )
        lines += [
            "",
            f"Searches during the storms: {s['ok']} ok, {s['failed']} failed, slowest {s['max_ms']:.0f} ms.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--edits", type=int, default=30)
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between edits")
    ap.add_argument("--files", type=int, default=1000, help="files changed by the checkout storm")
    ap.add_argument("--no-storm", action="store_true")
    ap.add_argument("--dense-timeout", type=float, default=900.0)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "watch.md"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary trees")
    args = ap.parse_args()

    where = machine()
    workdir = Path(tempfile.mkdtemp(prefix="coderag-bench-watch-"))
    try:
        edits = bench_edits(workdir, args.edits, args.gap, say)
        storm = None if args.no_storm else bench_storm(workdir, args.files, args.dense_timeout, say)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    where += f", {os.getloadavg()[0]:.1f} at the end"
    text = report(edits, storm, where)
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
