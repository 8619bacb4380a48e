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
import threading
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


def load_average() -> str:
    """The machine's load as /proc/loadavg gives it (1, 5 and 15-minute averages and
    runnable/total threads), "" where there is none: every timing on a shared machine is
    reported with it."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:4])
    except OSError:
        return ""


class Concurrent:
    """The outcome of ``concurrent_calls``: each call's result by its index (None for a call
    that failed or was not made), the wall time of each successful call, the failures counted
    and the wall time of the whole."""

    def __init__(self, calls: int):
        self.results: list = [None] * calls
        self.latencies: list[float] = []
        self.errors = 0
        self.seconds = 0.0


def concurrent_calls(make_call, calls: int, threads: int, seconds: float | None = None,
                     count_errors: bool = False) -> Concurrent:
    """Make up to ``calls`` calls spread over ``threads`` caller threads, each thread taking the
    next call index until none is left or ``seconds`` have passed.  ``make_call()`` runs once
    per thread and returns what that thread calls (a client of its own, say); a ``close``
    attribute of it is called when the thread ends.  A failing call is counted with
    ``count_errors`` (a server answering 503 when its queue is full) and raised after the
    threads end otherwise."""
    out = Concurrent(calls)
    lock = threading.Lock()
    taken = [0]
    failures: list[BaseException] = []
    deadline = time.perf_counter() + seconds if seconds is not None else None

    def worker():
        call = make_call()
        try:
            while True:
                with lock:
                    i = taken[0]
                    if i >= calls or (deadline is not None and time.perf_counter() >= deadline):
                        return
                    taken[0] += 1
                t0 = time.perf_counter()
                try:
                    result = call()
                except Exception as e:  # noqa: BLE001 - counted, or raised by the caller below
                    with lock:
                        out.errors += 1
                        failures.append(e)
                    if not count_errors:
                        return
                    continue
                with lock:
                    out.latencies.append(time.perf_counter() - t0)
                out.results[i] = result
        finally:
            close = getattr(call, "close", None)
            if close is not None:
                close()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.seconds = time.perf_counter() - t0
    if failures and not count_errors:
        raise failures[0]
    return out


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
