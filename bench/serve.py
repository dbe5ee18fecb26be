"""Serve benchmark: warm ``POST /search`` latency next to the one-shot CLI, in one run.

1. A copy of this repository's ``coderag/``, ``tests/`` and ``grammars/`` sources and its
   Markdown files is indexed in full (vectors too) with the default CPU model.
2. **One-shot CLI** (``--cli-runs`` each, process start and model load included, no server
   running so nothing is delegated): ``coderag search "<question>" --json`` and
   ``coderag search <identifier> --mode lexical --json``, each with a different query.
3. **Warm server**: ``coderag serve`` on a free port (watcher on, as in real use), then
   ``--queries`` distinct queries (so the query-vector cache never answers), one at a time
   over one keep-alive connection, default hybrid mode: half natural-language questions, half
   identifiers and code; then the same count in ``--mode lexical``. Latency is measured at
   the client (HTTP included). The one-shot ``coderag search --server URL`` (process start,
   no model) is timed too.

    .venv/bin/python bench/serve.py [--queries 200] [--cli-runs 10] [--out bench/results/serve.md]

Goals on the 2-core CPU machine: warm p50 <= 50 ms; one-shot CLI p50 <= 1 s for a question and
<= 0.3 s for ``--mode lexical``. Prints the figures and writes them (Markdown) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import cpu_name, pct, say  # noqa: E402  (bench/, first on sys.path)

GOAL_WARM_P50_MS = 50.0
GOAL_CLI_NL_P50_S = 1.0
GOAL_CLI_LEXICAL_P50_S = 0.3

QUESTIONS = [
    "where are chunk vectors written to the database",
    "how is a file split into chunks by tree-sitter",
    "which files are skipped when walking the repository",
    "how does reciprocal rank fusion combine the two result lists",
    "where is the writer lock taken",
    "how are embeddings cached between runs",
    "decode a file that is not utf-8",
    "how does the watcher debounce file events",
    "where is the bearer token checked",
    "what happens when the model cannot be loaded",
    "how are overlapping hits collapsed",
    "read the settings from a toml file",
    "how are identifiers split into words for full text search",
    "where does the progress bar get updated",
    "how is the query embedded",
    "find the largest function in a file",
    "which languages are supported",
    "how is the index schema version checked",
    "where are deleted files removed from the index",
    "how are git hooks installed",
]
PREFIXES = ["", "show me ", "where do we ", "code that does: ", "how to ", "find "]


def machine() -> str:
    load = os.getloadavg()
    cpu = cpu_name()
    return (
        f"{cpu}, {os.cpu_count()} cores, no GPU used, Python {platform.python_version()}, "
        f"load average {load[0]:.1f} at start"
    )


def make_corpus(dst: Path) -> Path:
    dst.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".coderag")
    for name in ("coderag", "tests", "grammars"):
        shutil.copytree(REPO / name, dst / name, ignore=ignore)
    for md in REPO.glob("*.md"):
        shutil.copy(md, dst / md.name)
    return dst


def identifiers(root: Path, n: int, seed: int) -> list[str]:
    """Distinct identifiers defined in the corpus (def/class names), as code-ish queries."""
    names: set[str] = set()
    for f in sorted(root.rglob("*.py")):
        names.update(re.findall(r"^\s*(?:def|class)\s+([A-Za-z_]\w{3,})", f.read_text(), re.M))
    rng = random.Random(seed)
    out = sorted(names)
    rng.shuffle(out)
    return out[:n]


def queries(root: Path, n: int, seed: int = 7) -> list[str]:
    """``n`` distinct queries: half questions (with prefixes), half identifiers / code."""
    rng = random.Random(seed)
    nl = [p + q for q in QUESTIONS for p in PREFIXES]
    rng.shuffle(nl)
    half = n // 2
    ids = identifiers(root, n - half, seed)
    code = [f"def {x}(" if i % 3 == 0 else x for i, x in enumerate(ids)]
    out = nl[:half] + code
    while len(out) < n:  # a small corpus: pad with numbered questions
        out.append(f"{rng.choice(QUESTIONS)} {len(out)}")
    rng.shuffle(out)
    return out


def run_cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "coderag", *args], capture_output=True, text=True, cwd=REPO
    )
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"coderag {' '.join(args)} failed: {r.stderr}")
    return took, r


def start_server(root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    from coderag.server import read_runtime_info  # published in the user's runtime folder

    proc = subprocess.Popen(
        [sys.executable, "-m", "coderag", "serve", str(root), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        cwd=REPO,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()}")
        data = read_runtime_info(root)
        if data and data["pid"] == proc.pid:
            return proc, data["url"]
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cli-runs", type=int, default=10)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "serve.md"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary corpus")
    ap.add_argument(
        "--corpus", help="an existing corpus folder to use (indexed incrementally, kept)"
    )
    args = ap.parse_args()

    import httpx

    where = machine()
    tmp = Path(tempfile.mkdtemp(prefix="coderag-bench-serve-"))
    root = Path(args.corpus).resolve() if args.corpus else make_corpus(tmp / "corpus")
    say(f"machine: {where}")
    t_index, r = run_cli("index", str(root), "--json", "-q")
    summary = json.loads(r.stdout)
    say(f"indexed {summary['files_indexed']} files in {t_index:.1f}s")
    status = json.loads(run_cli("status", "--repo", str(root), "--json")[1].stdout)

    qs = queries(root, args.queries)
    nl_queries = [q for q in qs if " " in q][: args.cli_runs]
    id_queries = [q for q in qs if " " not in q][: args.cli_runs]

    say("one-shot CLI ...")
    cli_nl = [run_cli("search", q, "--repo", str(root), "--json")[0] for q in nl_queries]
    cli_lex = [
        run_cli("search", q, "--repo", str(root), "--mode", "lexical", "--json")[0]
        for q in id_queries
    ]

    say("starting the server ...")
    t0 = time.perf_counter()
    proc, url = start_server(root, tmp / "server.log")
    t_start = time.perf_counter() - t0
    warm: dict[str, list[float]] = {"hybrid": [], "lexical": []}
    failures = 0
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for q in qs[:5]:  # connection and first-call warm-up, not measured
                client.post("/search", json={"query": q + " warmup", "k": 10})
            for mode in ("hybrid", "lexical"):
                for q in qs:
                    t = time.perf_counter()
                    resp = client.post("/search", json={"query": q, "k": 10, "mode": mode})
                    warm[mode].append((time.perf_counter() - t) * 1000)
                    if resp.status_code != 200 or not resp.json()["hits"]:
                        failures += 1
        cli_remote = [
            run_cli("search", q, "--server", url, "--repo", str(root), "--json")[0]
            for q in nl_queries
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()

    rows = [
        ("warm `POST /search`, hybrid", warm["hybrid"], "ms", GOAL_WARM_P50_MS),
        ("warm `POST /search`, lexical", warm["lexical"], "ms", None),
        (
            "one-shot `coderag search` (question)",
            [x * 1000 for x in cli_nl],
            "ms",
            1000 * GOAL_CLI_NL_P50_S,
        ),
        (
            "one-shot `coderag search --mode lexical`",
            [x * 1000 for x in cli_lex],
            "ms",
            1000 * GOAL_CLI_LEXICAL_P50_S,
        ),
        ("one-shot `coderag search --server URL`", [x * 1000 for x in cli_remote], "ms", None),
    ]
    lines = [
        "# Serve benchmark",
        "",
        f"Machine: {where}.",
        "",
        f"Corpus: this repository's `coderag/`, `tests/`, `grammars/` and Markdown files — "
        f"{status['files']} files, {status['chunks']} chunks, model `{status['model']}` "
        f"({status['dim']} dims); `coderag index` took {t_index:.0f}s"
        f"{' (incremental: an existing corpus)' if args.corpus else ''}. Server start (process, model "
        f"load, watcher) until it published its URL: {t_start:.1f}s.",
        "",
        f"Warm: {len(qs)} distinct queries per mode (half questions, half identifiers/code), "
        "sequential, one keep-alive connection, latency measured at the client. One-shot: "
        f"{len(cli_nl)} runs each, a different query per run, process start and model load "
        "included, no server running.",
        "",
        "| what | n | p50 | p95 | mean | goal (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for name, values, unit, goal in rows:
        p50 = pct(values, 0.5)
        verdict = ""
        if goal is not None:
            verdict = f"≤ {goal:g} {unit}: {'met' if p50 <= goal else 'MISSED'}"
        lines.append(
            f"| {name} | {len(values)} | {p50:.1f} {unit} | {pct(values, 0.95):.1f} {unit} | "
            f"{statistics.fmean(values):.1f} {unit} | {verdict} |"
        )
    lines += ["", f"Failed or empty warm searches: {failures}.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(
            text + "\nReproduce: `.venv/bin/python bench/serve.py` (prints the same table).\n",
            encoding="utf-8",
        )
        say(f"wrote {args.out}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
