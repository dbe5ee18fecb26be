"""One-shot `coderag search` with and without the warm path, in one run.

A copy of this repository's sources (``coderag/``, ``tests/``, ``grammars/``, Markdown) is
indexed with the default CPU model. Then, each a fresh process timed from outside (process
start included), with distinct queries so no cache answers:

* **cold**: ``coderag search --no-server`` (no server is asked or started);
* **warm**: ``coderag search`` after the first call started the private background server
  (``CODERAG_AUTOSERVE=1``, the default): the server's start is waited for, then the runs
  are timed.

Both modes: a natural-language question (hybrid) and ``--mode lexical``. Goals (issue 16, on
2 cores): warm p50 <= 0.3 s in both modes, cold p50 <= 0.8 s.

    .venv/bin/python bench/warm_path.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from _common import cpu_name, pct, say  # noqa: E402

QUESTIONS = [
    "where is the writer lock taken",
    "how are symbolic links refused when reading files",
    "which function escapes control characters for the terminal",
    "where are the static vectors computed",
    "how does the hook hand paths to a running server",
    "where is the search request validated",
    "how are chunks merged when they are too small",
    "where are globs matched",
    "how is the user key created",
    "where is the full-text index built",
    "how does the watcher debounce events",
    "where is reciprocal rank fusion computed",
]
IDENTIFIERS = [
    "WriterLock", "open_beneath", "escape_block", "DocFreq", "start_background",
    "compile_glob", "user_key", "chunk_file", "Watcher", "rank", "find_server", "distill_static",
]  # fmt: skip


def one(root: Path, query: str, *extra: str, env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "coderag", "search", query, "--repo", str(root), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"search failed: {r.stderr.strip()}")
    json.loads(r.stdout)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    from coderag import Index, server

    work = Path(tempfile.mkdtemp(prefix="coderag-warm-"))
    root = work / "repo"
    root.mkdir()
    for name in ("coderag", "tests", "grammars"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for md in REPO.glob("*.md"):
        shutil.copy2(md, root / md.name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CODERAG_AUTOSERVE": "1"}
    env["CODERAG_AUTOSERVE_IDLE"] = "120"
    found = None
    try:
        say("indexing ...")
        Index(root).refresh()
        n = args.runs
        res: dict[str, list[float]] = {}
        say("cold one-shot searches ...")
        res["cold, question"] = [one(root, q, "--no-server", env=env) for q in QUESTIONS[:n]]
        res["cold, lexical"] = [
            one(root, q, "--no-server", "--mode", "lexical", env=env) for q in IDENTIFIERS[:n]
        ]
        say("starting the background server (first search) ...")
        t0 = time.perf_counter()
        one(root, "warm up", env=env)
        while (found := server.find_server(root, verify=True)) is None:
            if time.perf_counter() - t0 > 180:
                raise SystemExit("the background server did not come up")
            time.sleep(0.2)
        start_s = time.perf_counter() - t0
        say(f"server up after {start_s:.1f} s; warm one-shot searches ...")
        res["warm, question"] = [one(root, q + " ?", env=env) for q in QUESTIONS[:n]]
        res["warm, lexical"] = [
            one(root, q + "s", "--mode", "lexical", env=env) for q in IDENTIFIERS[:n]
        ]
        status = server.request(found, "/status", None, timeout=30)
    finally:
        if found is not None:
            os.kill(found.pid, 15)
        time.sleep(1)
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {args.runs} runs each")
    print("| one-shot `coderag search` | p50 s | p90 s |")
    print("|---|---:|---:|")
    for name, xs in res.items():
        print(f"| {name} | {statistics.median(xs):.3f} | {pct(xs, 0.9):.3f} |")
    print(
        f"background server: up {start_s:.1f} s after the first search; RSS {status['rss_mb']} MB"
    )
    for mode in ("question", "lexical"):
        ratio = statistics.median(res[f"cold, {mode}"]) / statistics.median(res[f"warm, {mode}"])
        print(f"warm path speed-up, {mode}: {ratio:.1f}x")
    out = HERE / "results" / "warm_path.json"
    out.write_text(json.dumps({"runs": res, "server_start_s": start_s, "status": status}) + "\n")


if __name__ == "__main__":
    main()
