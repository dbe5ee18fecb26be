"""Small helpers the benchmark scripts share (machine description, percentiles, logging)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path


def cpu_name(default: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo, else ``default`` (else what platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default or platform.processor() or platform.machine()


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation; NaN for no values."""
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
