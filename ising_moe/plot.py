"""Plots. Every function takes ``ax=None`` (a new figure when None), returns the Axes, never calls
``plt.show()`` and never touches global rcParams. :func:`save_figure` writes PNG and PDF."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["save_figure", "plot_sweep", "plot_rates", "plot_correlation", "plot_xi_vs_block", "plot_probe",
           "figure_grid", "plot_couplings", "plot_fields", "plot_heldout",
           "plot_decomposition", "plot_topic_posterior"]


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
    return _position_heatmap(np.asarray(rates, dtype=float), ax, title, "P(expert at position)", "expert", cmap)


def _position_heatmap(values, ax, title, label, ylabel, cmap, symmetric=False, limit=None, colorbar=True):
    """Heat map of a (n_positions, n_states) array: states by position (``limit``: the symmetric
    colour range, default the array's largest magnitude)."""
    ax = _axes(ax)
    lim = (limit or float(np.nanmax(np.abs(values), initial=0.0)) or 1.0) if symmetric else None
    im = ax.imshow(values.T, aspect="auto", origin="lower", interpolation="nearest", cmap=cmap,
                   vmin=-lim if symmetric else None, vmax=lim,
                   extent=(-0.5, values.shape[0] - 0.5, -0.5, values.shape[1] - 0.5))
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("position [token index]")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def plot_correlation(distances, values, errors=None, null=None, ax=None, label: str | None = None,
                     model=None, model_label: str = "model", log: bool = False, title: str | None = None,
                     nulls=None):
    """``C(r)`` with error bars, shuffle-null bands and optionally a model curve.

    Parameters
    ----------
    distances, values, errors : ndarray of shape (R + 1,)
        ``r = 0`` is skipped; non-finite points are not drawn.
    null : ndarray of shape (n_null, R + 1), optional
        One null, drawn as a grey band labelled "shuffle null".
    nulls : dict of str -> ndarray of shape (n_null, R + 1), optional
        Several nulls, one coloured band each (min to max of the shuffles, widened by two standard
        errors of the data); empty arrays are skipped.
    model : ndarray of shape (R + 1,), optional
        e.g. the exact ``C(r)`` of a fitted chain.
    """
    ax = _axes(ax)
    r = np.asarray(distances)[1:]
    v = np.asarray(values, dtype=float)[1:]
    e = None if errors is None else np.asarray(errors, dtype=float)[1:]
    bands = {} if nulls is None else dict(nulls)
    if null is not None:
        bands = {"shuffle null": null, **bands}
    colours = ["0.75", "tab:orange", "tab:green", "tab:purple"]
    for k, (name, band) in enumerate(bands.items()):
        band = np.asarray(band, dtype=float)
        if band.ndim != 2 or band.shape[0] == 0 or band.shape[1] != len(r) + 1:
            continue
        nl = band[:, 1:]
        pad = 2 * np.nan_to_num(e) if e is not None else 0.0
        lo, hi = nl.min(axis=0) - pad, nl.max(axis=0) + pad
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(r[ok], lo[ok], hi[ok], color=colours[k % len(colours)], alpha=0.35 if k else 0.6,
                        label=name, lw=0)
    ok = np.isfinite(v) & (np.isfinite(e) if e is not None else True)
    ax.errorbar(r[ok], v[ok], yerr=None if e is None else e[ok], fmt="o", ms=2.5, capsize=1.2, label=label or "data",
                color="tab:blue", zorder=3)
    if model is not None:
        ax.plot(r, np.asarray(model)[1:], "-", lw=1.2, label=model_label)
    if log and np.any(v[ok] > 0):
        ax.set_yscale("symlog", linthresh=max(float(np.nanmax(np.abs(e))) if e is not None else 1e-4, 1e-6))
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("distance r [tokens]")
    ax.set_ylabel("C(r) [excess P(same expert)]")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="xx-small")
    return ax


def plot_xi_vs_block(block_sizes, xi, errors=None, ax=None, label: str | None = None, success=None, capped=None):
    """Correlation length ``xi(b)`` against the block size ``b`` used to estimate it.

    Only supported estimates are drawn (``success`` True and finite ``xi``): a failed fit is never
    plotted as a value. Estimates whose window reached the block size (``capped``) are drawn as open
    markers: they measure the decay inside the block, not a converged correlation length.
    """
    ax = _axes(ax)
    b = np.asarray(block_sizes, dtype=float)
    x = np.asarray(xi, dtype=float)
    err = np.zeros_like(x) if errors is None else np.asarray(errors, dtype=float)
    ok = np.isfinite(x) & np.isfinite(err) & (np.ones(len(x), bool) if success is None else np.asarray(success, bool))
    cap = np.zeros(len(x), bool) if capped is None else np.asarray(capped, bool)
    if ok.any():
        line = ax.errorbar(b[ok], x[ok], yerr=err[ok], fmt="-", lw=1, capsize=2, label=label)
        colour = line[0].get_color()
        ax.plot(b[ok & ~cap], x[ok & ~cap], "o", ms=4, color=colour)
        ax.plot(b[ok & cap], x[ok & cap], "o", ms=4, mfc="none", color=colour)
    if b.size:
        ax.set_xlim(b.min() / 1.5, b.max() * 1.5)
    ax.set_xscale("log", base=2)
    _integer_ticks(ax, b)
    ax.set_xlabel("block size b [tokens]")
    ax.set_ylabel("xi(b) [tokens]")
    if capped is not None and cap[ok].any() and not any(h.get_label() == "open: window reaches b - 1"
                                                        for h in ax.get_lines()):
        ax.plot([], [], "o", mfc="none", color="0.3", label="open: window reaches b - 1")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small")
    return ax


def _integer_ticks(ax, values):
    """Plain integer tick labels at the given values on a log axis (8, 16, ... rather than 2^3, 2^4)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ticks = sorted({int(v) for v in values})
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks, [str(t) for t in ticks])


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
    _integer_ticks(ax, [r["n_classes"] for r in rows])
    ax.set_xlabel("number of position classes [equal blocks]")
    ax.set_ylabel("accuracy (3-fold CV)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="x-small")
    return ax


def plot_couplings(couplings, ax=None, title: str | None = None, distance: int = 1, limit: float | None = None,
                   colorbar: bool = True):
    """Coupling matrix ``J_r(a, b)`` as a heat map; per-bond Potts couplings as ``J_b`` along the chain.

    Parameters
    ----------
    couplings : ndarray of shape (q, q), (n_c, q, q) or (R, n_c, q, q)
        In units of ``k_B T`` (``beta = 1``).
    limit : float, optional
        Symmetric colour range ``[-limit, limit]`` (default: the matrix's largest magnitude); pass
        the same value to every panel of a figure so that colours compare.
    colorbar : bool
        Draw a colour bar beside this panel (a figure with a shared range draws one for all).
    """
    ax = _axes(ax)
    c = np.asarray(couplings, dtype=float)
    if c.ndim == 4:
        c = c[distance - 1]
    if c.ndim == 3 and c.shape[0] > 1:
        q = c.shape[-1]
        diag = np.einsum("bii->b", c) / q - (c.sum(axis=(1, 2)) - np.einsum("bii->b", c)) / (q * (q - 1))
        ax.plot(np.arange(c.shape[0]), diag, lw=1)
        ax.set_xlabel("bond [position of the left token]")
        ax.set_ylabel("J_b, diagonal minus off-diagonal mean [k_B T]")
    else:
        mat = c.reshape(c.shape[-2], c.shape[-1])
        lim = limit or float(np.nanmax(np.abs(mat), initial=0.0)) or 1.0
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="upper")
        if colorbar:
            ax.figure.colorbar(im, ax=ax, label=f"J_{distance}(a, b) [k_B T]")
        ax.set_xlabel("expert b (right token)")
        ax.set_ylabel("expert a (left token)")
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def plot_fields(fields, ax=None, title: str | None = None, limit: float | None = None, colorbar: bool = True):
    """Heat map of position-dependent fields ``h_i(a)`` (states by position), symmetric colour range
    ``[-limit, limit]`` (default the largest magnitude), in units of ``k_B T``."""
    return _position_heatmap(np.asarray(fields, dtype=float), ax, title, "h_i(a) [k_B T]", "expert", "RdBu_r",
                             symmetric=True, limit=limit, colorbar=colorbar)


def plot_heldout(layers, gains: dict, errors: dict, ax=None, unit: str = "bits/token", colors: dict | None = None):
    """Held-out log-likelihood gain of each variant over independent sites, bars per layer.

    Parameters
    ----------
    layers : sequence of int
    gains, errors : dict of str -> sequence of float
        Per variant, one value per layer, in ``unit``. Non-finite values (failed fits) are not
        drawn; the variant's legend entry says so.
    colors : dict of str -> colour, optional
        Per variant (default: the colour cycle).
    """
    ax = _axes(ax)
    idx = np.arange(len(layers))
    names = list(gains)
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        g = np.asarray(gains[name], dtype=float)
        e = np.asarray(errors[name], dtype=float)
        ok = np.isfinite(g)
        label = name if ok.all() else f"{name} (failed in {int((~ok).sum())} layer(s): not drawn)"
        x = idx + (k - (len(names) - 1) / 2) * width
        ax.bar(x[ok], g[ok], width, yerr=np.where(np.isfinite(e[ok]), e[ok], 0.0), capsize=2, label=label,
               color=(colors or {}).get(name))
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(idx, [str(x) for x in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"held-out gain [{unit}]")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return ax


def plot_decomposition(layers, gains: dict, ax=None, unit: str = "bits/token", colors: dict | None = None):
    """Stacked bars per layer: what each added ingredient gains in held-out log-likelihood.

    Parameters
    ----------
    layers : sequence of int
    gains : dict of str -> sequence of float
        Per row of the nested table (in order), its gain over the previous row, one value per layer,
        in ``unit``. Positive gains stack upwards from 0, negative ones downwards; non-finite values
        (rows not fitted) are not drawn and the legend says so.
    colors : dict of str -> colour, optional
        Per row (default: the colour cycle).
    """
    ax = _axes(ax)
    idx = np.arange(len(layers))
    up, down = np.zeros(len(layers)), np.zeros(len(layers))
    for name, values in gains.items():
        g = np.asarray(values, dtype=float)
        ok = np.isfinite(g)
        if not ok.any():
            continue
        label = name if ok.all() else f"{name} ({int((~ok).sum())} layer(s) n/a: not drawn)"
        value = np.where(ok, g, 0.0)
        bottom = np.where(value >= 0, up, down)
        ax.bar(idx[ok], value[ok], 0.6, bottom=bottom[ok], label=label, color=(colors or {}).get(name))
        up += np.maximum(value, 0.0)
        down += np.minimum(value, 0.0)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(idx, [str(x) for x in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"held-out gain [{unit}]")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return ax


def plot_topic_posterior(posterior, labels=None, ax=None, title: str | None = None):
    """Posterior topic probabilities along one sequence as stacked areas.

    Parameters
    ----------
    posterior : array_like, shape (L, K)
        ``P(z_i = k | experts, tokens)`` at every position.
    labels : sequence of str, optional
        Text of every position (decoded tokens), drawn as rotated tick labels.
    """
    ax = _axes(ax)
    p = np.asarray(posterior, dtype=float)
    pos = np.arange(p.shape[0])
    ax.stackplot(pos, p.T, labels=[f"topic {k + 1}" for k in range(p.shape[1])], step="mid", alpha=0.85)
    ax.set_xlim(-0.5, p.shape[0] - 0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(topic)")
    if labels is not None:
        ax.set_xticks(pos, [str(s) for s in labels], rotation=90, fontsize=5)
    else:
        ax.set_xlabel("position")
    if title:
        ax.set_title(title, fontsize="small")
    return ax
