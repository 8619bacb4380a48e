"""Helpers shared by the benchmark scripts (run as ``python benchmarks/x.py``; each script puts
this folder on ``sys.path`` and imports ``common``).

Rules: timings are medians of ``runs`` calls after ``warmup`` untimed ones; the commit comes
from ``git rev-parse`` in this folder; JSON results are written with ``json.dump``.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time


def timed_runs(fn, runs: int, warmup: int) -> list[float]:
    """Wall times of ``runs`` calls of ``fn`` (seconds) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn, runs: int, warmup: int) -> float:
    """Median wall time of one call of ``fn`` in seconds, over ``runs`` calls after ``warmup``."""
    return statistics.median(timed_runs(fn, runs, warmup))


def cuda_problem(install_hint: str = "") -> str | None:
    """Why CuPy cannot run on this machine (not installed, no device, no driver), or None;
    ``install_hint`` is appended to the not-installed reason."""
    try:
        import cupy  # noqa: PLC0415
    except ImportError as e:
        return f"CuPy is not installed ({e}){install_hint}"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible"
    except Exception as e:  # noqa: BLE001 - no driver raises a CUDARuntimeError
        return f"no usable CUDA device ({type(e).__name__}: {e})"
    return None


def git_commit(short: bool = True) -> str:
    """The checked-out commit (abbreviated unless ``short`` is false), "" outside a git tree."""
    args = ["git", "rev-parse", "--short", "HEAD"] if short else ["git", "rev-parse", "HEAD"]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        return subprocess.run(args, capture_output=True, text=True, cwd=here, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git on the machine (a bare GPU image)
        return ""


def machine() -> str:
    """The host in one line: architecture, core count and Python version."""
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}"


def device_name(cupy) -> str:
    """The name of CUDA device 0 (CuPy gives bytes or str depending on the version)."""
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def write_json(path: str, data, indent: int = 1) -> None:
    """Write ``data`` to ``path`` as JSON."""
    with open(path, "w") as f:
        json.dump(data, f, indent=indent)
