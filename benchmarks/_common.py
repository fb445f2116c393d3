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
