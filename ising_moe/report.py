"""Summaries and figure sets shared by the CLI commands (text tables, JSON payloads, PNG + PDF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plot import figure_grid, plot_correlation, save_figure
from .report_measure import (  # measurement reports live in their own module
    comparison_figures,
    comparison_summary,
    fmt_pm,
    measurement_figures,
    measurement_summary,
    null_fractions,
)

__all__ = ["measurement_summary", "measurement_figures", "comparison_summary", "comparison_figures", "null_fractions",
           "fit_summary", "fit_figures", "fmt_pm"]


def fit_summary(report) -> tuple[dict, list[str]]:
    """JSON payload and the per-layer table of a :class:`~ising_moe.fit.pipeline.FitReport`."""
    main = report.params.get("main_variant", "full")
    lines = [report.note] if report.note else []
    variants = report.params["variants"]
    others = [v for v in variants if v != "independent"]
    width = max([18] + [len(v) + 7 for v in others])
    header = f"{'layer':>5} {'q':>3} {'xi_emp':>16} {'xi_fit (' + main + ')':>18} {'xi_bulk':>8}"
    header += "".join(f" {'dLL ' + v:>{width}}" for v in others)
    header += f" {'resid |z|':>9}"
    lines.append(header)
    rows = []
    for lc in report.layers:
        xi = lc.xi_empirical
        row = {"layer": lc.layer, "n_states": lc.n_states, "n_train": lc.n_train, "n_test": lc.n_test,
               "hidden_fraction": lc.hidden_fraction, "xi_empirical": xi.xi, "xi_empirical_error": xi.error,
               "xi_window": list(xi.window), "xi_fitted": lc.xi_fitted, "xi_fitted_error": lc.xi_fitted_error,
               "xi_spectral": lc.xi_spectral, "heldout_ll_per_token": lc.heldout, "heldout_gain": lc.gain,
               "heldout_gain_error": lc.gain_error,
               "max_abs_residual_z_r2_to_8": float(np.max(np.abs(lc.residual_z[1:8]))) if lc.residual_z.size > 1
               else None,
               "mc_max_abs_z": None if lc.mc_overlap_z is None else float(np.max(np.abs(lc.mc_overlap_z))),
               "fits": {k: {"method": r.method, "success": r.success, "message": r.message, "n_iter": r.n_iter,
                            "log_likelihood": r.log_likelihood, "n_parameters": r.n_parameters, "aic": r.aic,
                            "bic": r.bic, "l2": r.l2} for k, r in lc.fits.items()}}
        rows.append(row)
        line = (f"{lc.layer:>5} {lc.n_states:>3} {fmt_pm(xi.xi, xi.error):>16} "
                f"{fmt_pm(lc.xi_fitted.get(main, float('nan')), lc.xi_fitted_error):>18} "
                f"{lc.xi_spectral.get(main, float('nan')):>8.3f}")
        line += "".join(f" {fmt_pm(1e3 * lc.gain[v], 1e3 * lc.gain_error[v]):>{width}}" for v in others)
        line += f" {row['max_abs_residual_z_r2_to_8'] or float('nan'):>9.1f}"
        lines.append(line)
        if lc.indicators is not None:
            ind = lc.indicators
            ok = np.isfinite(ind.coupling)
            sig = int(np.sum(np.abs(ind.coupling[ok]) > 5 * ind.coupling_error[ok]))
            row["indicators"] = {k: getattr(ind, k).tolist() for k in ("rate", "coupling", "coupling_error", "gain",
                                                                       "gain_error", "empirical_c1", "fitted_c1")}
            lines.append(f"      per-expert Ising chains: J_e mean {np.nanmean(ind.coupling):+.3f} "
                         f"(range {np.nanmin(ind.coupling):+.3f} .. {np.nanmax(ind.coupling):+.3f}), "
                         f"{sig}/{ok.sum()} experts with |J_e| > 5 sigma, held-out gain "
                         f"{1e3 * np.nanmean(ind.gain):.2f} mnat/token on average")
    lines.append("xi_emp: exponential fit to the empirical C(r); xi_fit: the same fit to the fitted chain's exact "
                 "C(r) (error: bootstrap refits); xi_bulk: transfer-matrix xi of the fitted couplings; dLL: held-out "
                 "log-likelihood gain over independent sites, in millinats per token; resid |z|: largest "
                 f"|C_emp(r) - C_{main}(r)| / error for 2 <= r <= 8 (structure beyond the nearest-neighbour fit)")
    failed = [(lc.layer, k, r.message) for lc in report.layers for k, r in lc.fits.items() if not r.success]
    for layer, name, msg in failed:
        lines.append(f"WARNING: layer {layer} variant {name} did not converge: {msg}")
    payload = {"source": report.source, "params": report.params, "note": report.note, "layers": rows}
    return payload, lines


def fit_figures(report, out_dir) -> list[Path]:
    """Fitted vs empirical C(r) per layer, xi across layers, fields, couplings, held-out gains."""
    from .plot import plot_couplings, plot_fields

    out_dir = Path(out_dir)
    main = report.params.get("main_variant", "full")
    layers = report.layers
    paths = []
    fig, axes = figure_grid(len(layers))
    for ax, lc in zip(axes, layers):
        r = np.arange(lc.empirical.size)
        plot_correlation(r, lc.empirical, lc.empirical_error, lc.empirical_null, ax=ax, label="empirical",
                         title=f"layer {lc.layer}")
        for name in ("potts", "full"):
            if name in lc.fitted_correlation and np.all(np.isfinite(lc.fitted_correlation[name])):
                ax.plot(r[1:], lc.fitted_correlation[name][1:], "-", lw=1.2, label=f"fit: {name}")
        if lc.mc_correlation is not None:
            ax.plot(r[1:], lc.mc_correlation[1:], ":", lw=1.2, color="k", label=f"MC of fit: {main}")
        ax.legend(fontsize="xx-small")
    paths += save_figure(fig, out_dir / "correlation")
    fig, (ax,) = figure_grid(1, (5, 3.5))
    idx = np.arange(len(layers))
    ax.errorbar(idx - 0.05, [lc.xi_empirical.xi for lc in layers], [lc.xi_empirical.error for lc in layers],
                fmt="o", capsize=2, label="empirical")
    ax.errorbar(idx + 0.05, [lc.xi_fitted.get(main, np.nan) for lc in layers],
                [lc.xi_fitted_error for lc in layers], fmt="s", capsize=2, label=f"fitted ({main})")
    ax.set_xticks(idx, [str(lc.layer) for lc in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("correlation length xi")
    ax.set_yscale("log")
    ax.legend(fontsize="small")
    paths += save_figure(fig, out_dir / "xi")
    fig, axes = figure_grid(len(layers), (4.0, 2.8))
    for ax, lc in zip(axes, layers):
        if main in lc.fits:
            plot_fields(lc.fits[main].fields, ax=ax, title=f"layer {lc.layer}: fields ({main})")
    paths += save_figure(fig, out_dir / "fields")
    fig, axes = figure_grid(len(layers))
    for ax, lc in zip(axes, layers):
        if main in lc.fits:
            plot_couplings(lc.fits[main].couplings, ax=ax, title=f"layer {lc.layer}: J ({main})")
    paths += save_figure(fig, out_dir / "couplings")
    fig, (ax,) = figure_grid(1, (6, 3.5))
    names = [v for v in report.params["variants"] if v != "independent"]
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        ax.bar(idx + (k - (len(names) - 1) / 2) * width, [lc.gain.get(name, np.nan) for lc in layers], width,
               yerr=[lc.gain_error.get(name, np.nan) for lc in layers], capsize=2, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(idx, [str(lc.layer) for lc in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("held-out LL gain [nats/token]")
    ax.legend(fontsize="small")
    paths += save_figure(fig, out_dir / "heldout")
    with_ind = [lc for lc in layers if lc.indicators is not None]
    if with_ind:
        fig, axes = figure_grid(len(with_ind))
        for ax, lc in zip(axes, with_ind):
            ind = lc.indicators
            ax.errorbar(ind.experts, ind.coupling, ind.coupling_error, fmt="o", ms=2, capsize=1)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xlabel("expert")
            ax.set_ylabel("Ising J_e")
            ax.set_title(f"layer {lc.layer}: indicator chains", fontsize="medium")
        paths += save_figure(fig, out_dir / "indicators")
    return [p for p in paths if p.suffix == ".png"] + [p for p in paths if p.suffix == ".pdf"]
