"""Shared helpers of the benchmark scripts: timing and machine description (JSON output)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time


def best_time(fn, repeat: int = 3, number: int = 1) -> float:
    """Best wall time of ``number`` calls, over ``repeat`` rounds (seconds per call)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def best_cpu_time(fn, repeat: int = 3) -> float:
    """Best process CPU time of one call over ``repeat`` rounds (seconds): less sensitive than wall
    time to other jobs on a shared machine (single-threaded runs only: it sums the threads)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def machine() -> dict:
    import numba
    import numpy as np

    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": numba.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
    }


def emit(name: str, results) -> None:
    print(json.dumps({"benchmark": name, "machine": machine(), "results": results}, indent=2))
