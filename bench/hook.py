"""Wall time of coderag's pre-commit hook: a commit touching 5 files of a 2,000-file repository.

Generates a repository (Python modules with docstrings and functions, plus Markdown notes;
seeded, so every run sees the same tree), commits it, builds the index with the default CPU
model (``coderag index``), installs the pre-commit hook (``coderag hook install --pre-commit``)
and then, for each run, edits 5 files (a new function in each), stages them and executes the
installed ``.git/hooks/pre-commit`` script, timing it from the outside; the commit itself is
then made with ``--no-verify``. Three settings:

  * background (the default): no server; the hook stores the staged blobs' chunks without
    loading the model and starts a detached ``coderag index --vectors-only``; the time until
    those vectors are in the index is reported too (the next run waits for it);
  * inline (``--vectors inline``): the hook process loads the model and embeds before it returns;
  * server: a warm ``coderag serve`` (watching, as by default) runs for the repository; the
    hook hands it the paths (one warm-up commit first, not counted).

Goals: the hook under 2 s without a server, under 0.3 s with one.

    .venv/bin/python bench/hook.py [--files 2000] [--touch 5] [--runs 5] [--no-server]
                                   [--write bench/results/hook.md]

Prints a Markdown table; with --write, also writes it (and the machine) to that file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_name  # bench/, first on sys.path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PY = sys.executable
WORDS = (
    "upload retry client config cache token parse render queue worker session index chunk "
    "stream buffer digest schedule backoff report metric select filter merge split encode "
    "decode verify archive export import signal resolve commit branch"
).split()


def git_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
    )
    return env


ENV = git_env()


def sh(*cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")
    return p


def module_text(rng: random.Random, i: int) -> str:
    out = [f'"""Module {i}: {" ".join(rng.sample(WORDS, 6))}."""\n\nimport os\n']
    for j in range(rng.randint(2, 4)):
        a, b = rng.sample(WORDS, 2)
        out.append(
            f"\n\ndef {a}_{b}_{i}_{j}(path, limit={rng.randint(1, 99)}):\n"
            f'    """{a.capitalize()} the {b} found at ``path``, at most ``limit`` times."""\n'
            f"    total = 0\n"
            f"    for step in range(limit):\n"
            f"        if os.path.exists(path):\n"
            f"            total += step * {rng.randint(2, 9)}\n"
            f"    return total\n"
        )
    return "".join(out)


def note_text(rng: random.Random, i: int) -> str:
    return (
        f"# Note {i}\n\n{' '.join(rng.choices(WORDS, k=40))}.\n\n"
        f"## Details\n\n{' '.join(rng.choices(WORDS, k=60))}.\n"
    )


def generate(root: Path, n: int) -> list[Path]:
    rng = random.Random(8)
    modules = []
    for i in range(n):
        if i % 10 == 9:
            p = root / "docs" / f"note_{i}.md"
            text = note_text(rng, i)
        else:
            p = root / f"pkg{i // 100:02d}" / f"mod_{i}.py"
            text = module_text(rng, i)
            modules.append(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return modules


def touch(files: list[Path], tag: str) -> None:
    for k, f in enumerate(files):
        with f.open("a") as fh:
            fh.write(f'\n\ndef bench_{tag}_{k}(x):\n    """Added by run {tag}."""\n    return x\n')


HOOK_CMD = [PY, "-m", "coderag", "hook", "run", "--json", "pre-commit"]


def run_hook(repo: Path, expect: str, vectors: str) -> tuple[float, float, float]:
    """Run what the installed pre-commit script runs (plus --json for the breakdown):
    (wall seconds from outside, seconds inside the hook process, seconds of the refresh)."""
    cmd = [*HOOK_CMD[:-1], "--vectors", vectors, HOOK_CMD[-1]]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=repo, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    try:
        res = json.loads(p.stdout)
    except ValueError:
        res = {}
    if p.returncode != 0 or res.get("via") != expect:
        raise SystemExit(f"the hook did not go {expect}:\n{p.stdout}{p.stderr}")
    refresh = (res.get("stats") or {}).get("seconds", float("nan"))
    return wall, res["seconds"], refresh


BACKFILL: list[float] = []  # background mode: seconds from the hook's start to full vectors


def wait_for_vectors(repo: Path, since: float, timeout: float = 600) -> None:
    while time.perf_counter() - since < timeout:
        st = json.loads(sh(PY, "-m", "coderag", "status", "--json", cwd=repo).stdout)
        if st["dense_coverage"] >= 1.0:
            BACKFILL.append(time.perf_counter() - since)
            return
        time.sleep(0.2)
    raise SystemExit("the background vectors did not arrive")


def one_commit(
    repo: Path, files: list[Path], tag: str, expect: str, vectors: str = "inline"
) -> tuple[float, float, float]:
    touch(files, tag)
    sh("git", "add", *[str(f) for f in files], cwd=repo)
    t0 = time.perf_counter()
    took = run_hook(repo, expect, vectors)
    if vectors == "background":
        wait_for_vectors(repo, t0)
    sh("git", "commit", "-q", "--no-verify", "-m", f"run {tag}", cwd=repo)
    return took


def start_server(repo: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PY, "-m", "coderag", "serve", str(repo), "--port", "0"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    from coderag.server import read_runtime_info  # published in the user's runtime folder

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"coderag serve exited:\n{proc.stderr.read()}")
        if (read_runtime_info(repo) or {}).get("pid") == proc.pid:
            return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("coderag serve did not start within 300 s")


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} s (min {min(xs):.3f}, max {max(xs):.3f})"


def row(name: str, runs: list[tuple[float, float, float]], goal: str) -> str:
    wall, inside, refresh = zip(*runs, strict=True)
    return (
        f"| {name} | {fmt(list(wall))} | {statistics.median(inside):.3f} s | "
        f"{statistics.median(refresh):.3f} s | {goal} |"
    )


def machine() -> str:
    cpu = cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores ({cpu}), no GPU used, Python {platform.python_version()}, load {load:.1f}"


def build(repo: Path, n: int) -> tuple[list[Path], int]:
    """Generate, commit and index the repository (or reuse one built before in ``repo``)."""
    if (repo / ".coderag" / "db").is_dir():
        modules = sorted(repo.glob("pkg*/mod_*.py"))
        chunks = json.loads(sh(PY, "-m", "coderag", "status", "--json", cwd=repo).stdout)["chunks"]
        print(f"reusing {repo} ({chunks} chunks)", file=sys.stderr)
        return modules, chunks
    modules = generate(repo, n)
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "generated", cwd=repo)
    t0 = time.perf_counter()
    p = sh(PY, "-m", "coderag", "index", str(repo), "-q", "--json", cwd=repo)
    built = json.loads(p.stdout)
    print(
        f"indexed {built['files_indexed']} files, {built['chunks_embedded']} chunks "
        f"in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    sh(PY, "-m", "coderag", "hook", "install", "--pre-commit", "--repo", str(repo), cwd=repo)
    chunks = json.loads(sh(PY, "-m", "coderag", "status", "--json", cwd=repo).stdout)["chunks"]
    return modules, chunks  # rows; fewer texts were embedded (identical ones share a vector)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--touch", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-server", action="store_true", help="measure inline only")
    ap.add_argument("--write", metavar="PATH", help="also write the results as Markdown here")
    ap.add_argument(
        "--keep",
        metavar="DIR",
        help="build the repository in DIR and keep it; a later run with the same DIR reuses it "
        "(indexing 2,000 files takes minutes)",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="coderag-bench-hook-") as tmp:
        repo = Path(args.keep).resolve() if args.keep else Path(tmp) / "repo"
        modules, chunks = build(repo, args.files)
        n_files = len(modules) + len(list(repo.glob("docs/*.md")))
        rng = random.Random(time.time_ns())
        # new function names on every run: a kept repository has embedded earlier runs'
        # functions, and cached vectors would make an inline run look model-free
        nonce = f"{time.time_ns():x}"[-8:]

        def pick() -> list[Path]:
            return rng.sample(modules, args.touch)

        noop = [run_hook_noop(repo) for _ in range(args.runs)]
        background = [
            one_commit(repo, pick(), f"b{r}_{nonce}", "inline", "background")
            for r in range(args.runs)
        ]
        print(f"background: {fmt([w for w, _, _ in background])}", file=sys.stderr)
        inline = [one_commit(repo, pick(), f"i{r}_{nonce}", "inline") for r in range(args.runs)]
        print(f"inline: {fmt([w for w, _, _ in inline])}", file=sys.stderr)
        served: list[tuple[float, float, float]] = []
        if not args.no_server:
            proc = start_server(repo)
            try:
                one_commit(repo, pick(), f"w_{nonce}", "server")
                served = [
                    one_commit(repo, pick(), f"s{r}_{nonce}", "server") for r in range(args.runs)
                ]
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            print(f"server: {fmt([w for w, _, _ in served])}", file=sys.stderr)

    rows = [
        f"| setting | hook wall time, median of {args.runs} (min, max) | inside the hook process "
        "| index refresh | goal |",
        "|---|---|---|---|---|",
        f"| nothing staged (process start, imports, one `git diff`) | {fmt(noop)} | | | |",
        row("default: chunks stored, vectors in the background", background, "< 2 s"),
        f"| ... until those vectors are in the index | {fmt(BACKFILL)} | | | |",
        row("`--vectors inline`: the hook loads the model", inline, "< 2 s"),
    ]
    if served:
        rows.append(row("warm `coderag serve` (watching)", served, "< 0.3 s"))
    table = "\n".join(rows)
    head = (
        f"{n_files}-file generated repository ({chunks} chunks), commits touching "
        f"{args.touch} files (a new function in each); default CPU model (all-MiniLM-L6-v2). "
        f"Wall time of `{' '.join(['python', *HOOK_CMD[1:]])}`, what the installed "
        "`.git/hooks/pre-commit` runs (--json added for the breakdown).\n\n"
        f"Machine: {machine()}.\n"
    )
    print(head)
    print(table)
    if args.write:
        Path(args.write).write_text(
            "# Pre-commit hook benchmark (`bench/hook.py`)\n\n" + head + "\n" + table + "\n"
        )
    return 0


def run_hook_noop(repo: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(HOOK_CMD, cwd=repo, env=ENV, capture_output=True, text=True)
    if p.returncode != 0 or json.loads(p.stdout).get("via") != "none":
        raise SystemExit(f"the no-op hook run failed:\n{p.stdout}{p.stderr}")
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
