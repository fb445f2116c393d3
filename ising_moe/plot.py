"""Plots. Every function takes ``ax=None`` (a new figure when None), returns the Axes, never calls
``plt.show()`` and never touches global rcParams. :func:`save_figure` writes PNG and PDF."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["save_figure", "plot_sweep", "plot_rates", "plot_correlation", "plot_xi_vs_block", "plot_probe",
           "figure_grid", "plot_couplings", "plot_fields"]


def _axes(ax):
    if ax is not None:
        return ax
    _select_backend()
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    return ax


def _select_backend() -> None:
    """A non-interactive backend unless a session is interactive (never a window from a command)."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _interactive():
        matplotlib.use("Agg", force=True)


def _interactive() -> bool:
    import sys

    return hasattr(sys, "ps1") or "ipykernel" in sys.modules


def save_figure(ax_or_fig, path_stem) -> list[Path]:
    """Save a figure as ``<stem>.png`` and ``<stem>.pdf``; closes it. Returns the paths."""
    import matplotlib.pyplot as plt

    fig = ax_or_fig.figure if hasattr(ax_or_fig, "figure") and ax_or_fig.figure is not None else ax_or_fig
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}.png"), Path(f"{stem}.pdf")]
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


def figure_grid(n_panels: int, panel_size=(3.2, 2.6), max_columns: int = 3):
    """A figure with ``n_panels`` axes (flattened list), for one panel per layer."""
    _select_backend()
    import matplotlib.pyplot as plt

    cols = min(max_columns, n_panels)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows),
                             layout="constrained", squeeze=False)
    flat = axes.ravel().tolist()
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def plot_rates(rates, ax=None, title: str | None = None, cmap: str = "viridis"):
    """Heat map of activation rates, experts (rows) by position (columns).

    Parameters
    ----------
    rates : ndarray of shape (n_positions, n_experts)
    """
    return _position_heatmap(np.asarray(rates, dtype=float), ax, title, "rate", "expert", cmap)


def _position_heatmap(values, ax, title, label, ylabel, cmap, symmetric=False):
    """Heat map of a (n_positions, n_states) array: states by position."""
    ax = _axes(ax)
    lim = (float(np.abs(values).max()) or 1.0) if symmetric else None
    im = ax.imshow(values.T, aspect="auto", origin="lower", interpolation="nearest", cmap=cmap,
                   vmin=-lim if symmetric else None, vmax=lim,
                   extent=(-0.5, values.shape[0] - 0.5, -0.5, values.shape[1] - 0.5))
    ax.figure.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("position")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def plot_correlation(distances, values, errors=None, null=None, ax=None, label: str | None = None,
                     model=None, model_label: str = "model", log: bool = False, title: str | None = None):
    """``C(r)`` with error bars, the shuffle-null band and optionally a model curve.

    Parameters
    ----------
    distances, values, errors : ndarray of shape (R + 1,)
        ``r = 0`` is skipped.
    null : ndarray of shape (n_null, R + 1), optional
        Drawn as a band (min to max of the shuffles, widened by two standard errors).
    model : ndarray of shape (R + 1,), optional
        e.g. the exact ``C(r)`` of a fitted chain.
    """
    ax = _axes(ax)
    r = np.asarray(distances)[1:]
    v = np.asarray(values)[1:]
    e = None if errors is None else np.asarray(errors)[1:]
    if null is not None and len(null):
        nl = np.asarray(null)[:, 1:]
        pad = 2 * e if e is not None else 0.0
        ax.fill_between(r, nl.min(axis=0) - pad, nl.max(axis=0) + pad, color="0.85", label="shuffle null", lw=0)
    ax.errorbar(r, v, yerr=e, fmt="o", ms=3, capsize=1.5, label=label or "data")
    if model is not None:
        ax.plot(r, np.asarray(model)[1:], "-", lw=1.2, label=model_label)
    if log and np.any(v > 0):
        ax.set_yscale("symlog", linthresh=max(float(np.nanmax(np.abs(e))) if e is not None else 1e-4, 1e-6))
    ax.set_xlabel("distance r")
    ax.set_ylabel("C(r)")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="x-small")
    return ax


def plot_xi_vs_block(block_sizes, xi, errors=None, ax=None, label: str | None = None):
    """Correlation length against the block size used to estimate it."""
    ax = _axes(ax)
    ax.errorbar(block_sizes, xi, yerr=errors, fmt="o-", ms=3, capsize=2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("block size b")
    ax.set_ylabel("xi(b)")
    if label:
        ax.legend(fontsize="x-small")
    return ax


def plot_probe(results, ax=None):
    """Positional-probe accuracy against the number of classes, with chance levels.

    Parameters
    ----------
    results : list of ProbeResult or dict
        With ``features``, ``target``, ``n_classes``, ``accuracy``, ``accuracy_sd``, ``chance``.
    """
    ax = _axes(ax)
    rows = [r if isinstance(r, dict) else r.__dict__ for r in results]
    for feats in sorted({r["features"] for r in rows}):
        sel = sorted((r for r in rows if r["features"] == feats and r["target"].startswith("block")),
                     key=lambda r: r["n_classes"])
        if sel:
            ax.errorbar([r["n_classes"] for r in sel], [r["accuracy"] for r in sel],
                        yerr=[r["accuracy_sd"] for r in sel], fmt="o-", ms=3, capsize=2, label=f"{feats}: blocks")
        par = [r for r in rows if r["features"] == feats and r["target"] == "parity"]
        if par:
            ax.errorbar([2], [par[0]["accuracy"]], yerr=[par[0]["accuracy_sd"]], fmt="s", ms=5,
                        label=f"{feats}: parity")
    chance = sorted({(r["n_classes"], r["chance"]) for r in rows})
    if chance:
        ax.plot([c[0] for c in chance], [c[1] for c in chance], "k--", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of classes")
    ax.set_ylabel("accuracy (3-fold CV)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="x-small")
    return ax


def plot_couplings(couplings, ax=None, title: str | None = None, distance: int = 1):
    """Coupling matrix ``J_r(a, b)`` as a heat map; per-bond Potts couplings as ``J_b`` along the chain.

    Parameters
    ----------
    couplings : ndarray of shape (q, q), (n_c, q, q) or (R, n_c, q, q)
    """
    ax = _axes(ax)
    c = np.asarray(couplings, dtype=float)
    if c.ndim == 4:
        c = c[distance - 1]
    if c.ndim == 3 and c.shape[0] > 1:
        q = c.shape[-1]
        diag = np.einsum("bii->b", c) / q - (c.sum(axis=(1, 2)) - np.einsum("bii->b", c)) / (q * (q - 1))
        ax.plot(np.arange(c.shape[0]), diag, lw=1)
        ax.set_xlabel("bond")
        ax.set_ylabel("J_b (diagonal minus off-diagonal mean)")
    else:
        mat = c.reshape(c.shape[-2], c.shape[-1])
        lim = float(np.abs(mat).max()) or 1.0
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="upper")
        ax.figure.colorbar(im, ax=ax, label=f"J_{distance}(a, b)")
        ax.set_xlabel("state b (right)")
        ax.set_ylabel("state a (left)")
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def plot_fields(fields, ax=None, title: str | None = None):
    """Heat map of position-dependent fields ``h_i(a)`` (states by position)."""
    return _position_heatmap(np.asarray(fields, dtype=float), ax, title, "h_i(a)", "state", "RdBu_r",
                             symmetric=True)
