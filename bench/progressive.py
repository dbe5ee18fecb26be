"""Progressive indexing on a real corpus: how soon is a repository searchable?

Fetches a pinned Debian package of sources (default ``librust-tokio-dev=1.24.2-1``: the
tokio crate, ~12k chunks; ``--spec NAME==VER`` takes a PyPI sdist instead), runs
``coderag index`` on it in a subprocess with the default CPU model, and from this process
measures, on the same wall clock:

* time until the first lexical answer (``coderag search --mode lexical`` in a separate
  process, retried until it returns a hit);
* time until dense coverage reaches 50 % and 100 % (read from the index while it is written).

    python bench/progressive.py                      # full run (the embedding takes a while)
    python bench/progressive.py --stop-at 0.5        # stop after 50 % dense coverage

Figures are printed and appended to bench/results/progressive.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from index import fetch_sdist  # noqa: E402  (bench/index.py: pip download + unpack)


def fetch_deb(spec: str, dest: Path) -> Path:
    """``apt-get download`` a Debian package and unpack it; returns the unpacked folder."""
    dl = dest / "_deb"
    dl.mkdir(parents=True, exist_ok=True)
    if not list(dl.glob("*.deb")):
        subprocess.run(["apt-get", "download", spec], cwd=dl, check=True, capture_output=True)
    out = dest / "src"
    if not out.exists():
        subprocess.run(["dpkg-deb", "-x", str(next(dl.glob("*.deb"))), str(out)], check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--deb", default="librust-tokio-dev=1.24.2-1", help="Debian package=version")
    ap.add_argument("--spec", default=None, help="a PyPI sdist instead, e.g. requests==2.32.3")
    ap.add_argument("--subdir", default="usr/share/cargo/registry", help="folder to index")
    ap.add_argument("--query", default="spawn")
    ap.add_argument(
        "--stop-at", type=float, default=1.0, help="stop once this dense coverage is reached"
    )
    ap.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "coderag-bench-progressive")
    )
    args = ap.parse_args()

    from coderag.store import Store

    cache = Path(args.cache)
    src = fetch_sdist(args.spec, cache, "") if args.spec else fetch_deb(args.deb, cache)
    work = cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src / args.subdir if args.subdir else src, work)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    exe = [sys.executable, "-m", "coderag"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*exe, "index", str(work), "-q", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    first_answer = None
    marks: dict[str, float] = {}
    total = 0
    try:
        while proc.poll() is None:
            now = time.perf_counter() - t0
            if first_answer is None:
                r = subprocess.run(
                    [
                        *exe,
                        "search",
                        args.query,
                        "--repo",
                        str(work),
                        "--mode",
                        "lexical",
                        "-k",
                        "1",
                        "--json",
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if r.returncode == 0 and json.loads(r.stdout or "[]"):
                    first_answer = time.perf_counter() - t0
                    print(f"first lexical answer after {first_answer:.1f}s", flush=True)
            try:
                st = Store(work)
                c = st.counts()
                total = c["chunks"]
                cov = 1 - c["pending"] / total if total else 0.0
            except Exception:  # noqa: BLE001 - not created yet
                cov = 0.0
            for mark in (0.5, 1.0):
                key = f"dense_{int(mark * 100)}pct_s"
                if cov >= mark and key not in marks and total:
                    marks[key] = now
                    print(f"dense coverage {cov:.0%} after {now:.1f}s ({total} chunks)", flush=True)
            if cov >= args.stop_at and total:
                proc.terminate()
                break
            time.sleep(0.5 if first_answer else 0.1)
    finally:
        proc.wait()
    elapsed = time.perf_counter() - t0
    c = Store(work).counts()
    res = {
        "corpus": args.spec or args.deb,
        "files": c["files"],
        "chunks": c["chunks"],
        "first_lexical_answer_s": round(first_answer or float("nan"), 2),
        **{k: round(v, 1) for k, v in marks.items()},
        "wall_s": round(elapsed, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(res, indent=1))
    out = HERE / "results" / "progressive.json"
    out.parent.mkdir(exist_ok=True)
    prev = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps([*prev, res], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
