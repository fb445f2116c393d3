"""Up-front memory and time estimates of exact solutions and Monte Carlo runs.

A command asked for ``-q 100000`` or ``--n-sweeps 1e11`` must refuse at once with the reason,
not fail after minutes with a ``MemoryError``. The estimates count the arrays that are allocated
(model tables, measurement series, transfer-matrix messages) and time the work with per-operation
costs measured by ``benchmarks/bench_mc.py`` (a few ns per single-spin update on one core), so
they are right to within a small factor, which is all a refusal needs.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["MAX_SECONDS", "check_cost", "describe_seconds", "exact_cost", "memory_limit", "routing_cost",
           "simulation_cost"]

#: runs estimated to take longer than this are refused (one day)
MAX_SECONDS = 86_400.0
_NS_UPDATE = 4e-9  # one single-spin update, per state for heat-bath (bench_mc: 2-10 ns)
_NS_PAIR = 1e-9  # one pair compared by a measurement


def memory_limit() -> float:
    """Bytes a single run may allocate: half of the physical memory (8 GiB if unknown)."""
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8.0 * 2**30


def exact_cost(n_sites: int, n_states: int, periodic: bool) -> tuple[float, float]:
    """``(bytes, seconds)`` of a transfer-matrix solution (periodic chains: ``q`` open components)."""
    n, q = float(n_sites), float(n_states)
    components = q if periodic else 1.0
    memory = 8.0 * (4 * q * q + 3 * n * q * components + n * q)
    seconds = 2e-9 * (n * q * q * components + 20 * q**3)
    return memory, seconds


def simulation_cost(point: dict[str, Any]) -> tuple[float, float]:
    """``(bytes, seconds)`` of one Monte Carlo point (parameters as in :mod:`.sweep`), exact
    reference values included."""
    n, q = float(point["n_sites"]), float(point["n_states"])
    chains, sweeps = float(point["n_chains"]), float(point["n_sweeps"])
    total_sweeps = chains * (sweeps + float(point["n_burnin"]))
    r_max = float(point.get("max_distance") or 0)
    long_range = point.get("model") in ("long-range", "power-law")
    reach = float(point.get("max_range") or n) if long_range else 1.0
    if point.get("model") == "power-law" and point.get("update") == "swendsen-wang":
        reach = 4.0  # O(N): about beta J sum_r r^-(1+sigma) bond events per site, plus union-find
    per_sweep_bytes = 8 + 4 * q + 8 * (r_max + 1)
    memory = chains * sweeps * per_sweep_bytes + 8.0 * (chains * n * q + reach * q * q + n * q)
    per_update = _NS_UPDATE * reach * (q if point.get("update") == "heat-bath" else 1.0)
    seconds = total_sweeps * n * (per_update + _NS_PAIR * (r_max + 1))
    if not long_range:  # the exact reference (pair marginals of every bond)
        exact_memory, exact_seconds = exact_cost(n_sites=int(n), n_states=int(q), periodic=bool(point["periodic"]))
        memory += exact_memory + 8.0 * n * q * q
        seconds += exact_seconds
    return memory, seconds


def _human_bytes(x: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if x < 1024 or unit == "PiB":
            return f"{x:.3g} {unit}"
        x /= 1024
    return f"{x:.3g} PiB"  # pragma: no cover


def _human_seconds(x: float) -> str:
    for unit, size in (("years", 3.15e7), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.3g} s"


def check_cost(memory: float, seconds: float, what: str, max_seconds: float = MAX_SECONDS,
               fix: str = "use fewer sites, states, sweeps or chains") -> None:
    """Raise :class:`InvalidParameterError` when ``memory`` or ``seconds`` is beyond the limits
    (the message ends with ``fix``)."""
    limit = memory_limit()
    if memory > limit:
        raise InvalidParameterError(
            f"{what} would need about {_human_bytes(memory)} of memory (limit {_human_bytes(limit)}, half of "
            f"this machine's): {fix}")
    if seconds > max_seconds:
        raise InvalidParameterError(
            f"{what} would take about {_human_seconds(seconds)} (limit {_human_seconds(max_seconds)}): {fix}")


def routing_cost(n_sequences: int, n_experts: int, max_distance: int, fit: bool = False) -> float:
    """Bytes of the largest arrays that ``measure`` (``fit=False``) or ``fit`` allocates per layer of an
    expert-sequence file: per-sequence pair tables of shape (max_distance + 1, n_experts) and
    expert counts; a fit adds Potts couplings, gradients and transfer matrices of shape
    (n_experts, n_experts)."""
    e, n = float(n_experts), float(n_sequences)
    memory = 8.0 * n * e * (max_distance + 3)
    if fit:
        memory += 8.0 * 8 * e * e
    return memory


def describe_seconds(seconds: float) -> str:
    """``seconds`` in the largest sensible unit (for messages)."""
    return _human_seconds(seconds)
