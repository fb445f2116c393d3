"""Plots. Every function takes ``ax=None`` (a new figure when None), returns the Axes, never calls
``plt.show()`` and never touches global rcParams. :func:`save_figure` writes PNG and PDF."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["save_figure", "plot_sweep"]


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _interactive():
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    return ax


def _interactive() -> bool:
    import sys

    return hasattr(sys, "ps1") or "ipykernel" in sys.modules


def save_figure(ax_or_fig, path_stem) -> list[Path]:
    """Save a figure as ``<stem>.png`` and ``<stem>.pdf``; closes it. Returns the paths."""
    import matplotlib.pyplot as plt

    fig = ax_or_fig.figure if hasattr(ax_or_fig, "figure") and ax_or_fig.figure is not None else ax_or_fig
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def plot_sweep(points, x: str = "beta", observable: str = "energy_per_site", group_by: str | None = "update",
               ax=None, exact: bool = True):
    """Monte Carlo means with error bars against a swept parameter, with exact values as lines.

    Parameters
    ----------
    points : list of dict
        From :func:`ising_moe.mc.sweep.read_sweep`.
    x : str
        Swept parameter on the horizontal axis.
    observable : str
        ``energy_per_site``, ``occupation:a``, ``magnetisation``, ``overlap:r``.
    group_by : str, optional
        Parameter that separates series (e.g. the update); every other parameter that varies also
        separates series.
    """
    ax = _axes(ax)
    varying = {k for k in points[0]["params"] if len({repr(p["params"][k]) for p in points}) > 1} - {x}
    series = defaultdict(list)
    for p in points:
        if observable not in p["mean"]:
            continue
        key = tuple((k, repr(p["params"][k])) for k in sorted(varying | ({group_by} if group_by else set()))
                    if k in p["params"])
        series[key].append(p)
    for key, pts in series.items():
        pts = sorted(pts, key=lambda p: p["params"][x])
        xs = np.array([p["params"][x] for p in pts], dtype=float)
        label = ", ".join(f"{k}={pts[0]['params'][k]}" for k, _ in key) or "MC"
        ax.errorbar(xs, [p["mean"][observable] for p in pts], yerr=[p["error"][observable] for p in pts],
                    fmt="o", ms=4, capsize=2, label=label)
        ex = np.array([p["exact"][observable] for p in pts], dtype=float)
        if exact and np.isfinite(ex).any():
            ax.plot(xs, ex, "-", color="0.3", lw=1, label=None)
    if exact:
        ax.plot([], [], "-", color="0.3", lw=1, label="exact")
    ax.set_xlabel(x)
    ax.set_ylabel(observable)
    ax.legend(fontsize="small")
    return ax
