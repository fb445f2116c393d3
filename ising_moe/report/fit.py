"""Summary (sentences, table, JSON) and figures of a fit report (``isingmoe fit``)."""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from ..plot import figure_grid, plot_correlation, save_figure
from .measure import fmt_pm

__all__ = ["fit_summary", "fit_figures"]


_LN2 = math.log(2)


def _bits(x: float) -> float:
    return x / _LN2


#: an exponential-fit xi this large sits at the fit's upper bound: C(r) does not decay on the window
_XI_BOUND = 1e4


def empirical_xi(xi) -> tuple[float, float, str]:
    """``(xi, error, "")`` of a :class:`~ising_moe.measure.CorrelationLength`, or ``(nan, nan, reason)``
    when the data do not support a number (fit failed or flagged by the estimator, or xi at the
    fit's upper bound)."""
    supported = getattr(xi, "supported", None)  # the estimator's own goodness-of-fit flag, when it has one
    if supported is False or not xi.success or not math.isfinite(xi.xi):
        return math.nan, math.nan, xi.message or "not supported by the data"
    if xi.xi >= _XI_BOUND:
        return math.nan, math.nan, "C(r) does not decay on the fit window (xi at the fit's upper bound)"
    return xi.xi, xi.error, ""


def _fmt_xi(value: float, error: float, note: str = "") -> str:
    if value == 0.0 and note:
        return "0"
    return fmt_pm(value, error) if math.isfinite(value) else "n/a"


def _layer_sentence(lc, main: str) -> str:
    """One plain sentence about a layer: what predicts its routing, and what C(r) says.

    With the nested decomposition (token ids available) every claim about tokens, position and
    neighbours is read off that table (:meth:`LayerDecomposition.sentence`); without it, from the
    variants: neighbours from the best chain over independent sites (both with position rates),
    position from ``potts`` over ``potts-homogeneous`` (both with the Potts coupling).
    """
    parts = []
    if lc.decomposition is not None:
        parts.append(lc.decomposition.sentence())
        return f"Layer {lc.layer}: " + "; ".join(parts + _xi_parts(lc, main)) + "."
    gains = {k: (_bits(v), _bits(lc.gain_error[k])) for k, v in lc.gain.items()
             if k != "independent" and math.isfinite(v)}
    chains = {k: v for k, v in gains.items() if k != "potts-homogeneous"}
    if chains:
        best = max(chains, key=lambda k: chains[k][0])
        g, e = chains[best]
        if g > 3 * e:
            parts.append(f"the best chain ({best}) predicts held-out routing {fmt_pm(g, e)} bits/token better "
                         "than independent tokens, so neighbouring tokens' experts are related")
        else:
            parts.append(f"no chain predicts held-out routing better than independent tokens (best: {best}, "
                         f"{fmt_pm(g, e)} bits/token), so neighbouring tokens' experts look unrelated")
    if "potts-homogeneous" in gains and "potts" in gains:
        # the same chain with and without position fields (errors in quadrature: conservative, the
        # two gains share their baseline)
        g = gains["potts"][0] - gains["potts-homogeneous"][0]
        e = math.hypot(gains["potts"][1], gains["potts-homogeneous"][1])
        if g > 3 * e:
            parts.append(f"position-dependent rates add {fmt_pm(g, e)} bits/token to the Potts chain")
        elif g < -3 * e:
            parts.append(f"position-dependent rates lose {fmt_pm(-g, e)} bits/token (over-fitting)")
        else:
            parts.append(f"position-dependent rates add nothing measurable to the Potts chain ({fmt_pm(g, e)} "
                         "bits/token)")
    return f"Layer {lc.layer}: " + "; ".join(parts + _xi_parts(lc, main)) + "."


def _xi_parts(lc, main: str) -> list[str]:
    parts = []
    xi, _, reason = empirical_xi(lc.xi_empirical)
    xi_fit = lc.xi_fitted.get(main, math.nan)
    if math.isfinite(xi) and math.isfinite(xi_fit) and xi > 3 * xi_fit:
        parts.append(f"C(r) decays over {xi:.3g} tokens but the fitted chain's over {xi_fit:.2g}: the long "
                     "range of C(r) is not neighbour interaction")
    elif not math.isfinite(xi):
        parts.append(f"no empirical correlation length ({reason})")
    return parts


def fit_summary(report) -> tuple[dict, list[str]]:
    """JSON payload and text of a :class:`~ising_moe.fit.pipeline.FitReport`: one plain sentence
    per layer, then the detailed table (held-out gains in bits/token)."""
    from ..data import subject_label

    main = report.params.get("main_variant", "full")
    lines = [report.note] if report.note else []
    lines.append(f"Subject: {subject_label(report.source)}; capacity drops: {report.params.get('dropped')} "
                 "(router = the router's choice for every token)")
    variants = report.params["variants"]
    others = [v for v in variants if v != "independent"]
    for lc in report.layers:
        lines.append(_layer_sentence(lc, lc.main or main))
        if lc.drops is not None:
            lines.append(f"  Layer {lc.layer}: {lc.drops.sentence()}.")
    lines.append("")
    width = max([16] + [len(v) + 5 for v in others])
    header = f"{'layer':>5} {'q':>3} {'xi_emp':>16} {'xi_fit (' + main + ')':>18} {'xi_bulk':>8}"
    header += "".join(f" {'gain ' + v:>{width}}" for v in others)
    header += f" {'resid |z|':>9}"
    lines.append(header)
    rows = []
    for lc in report.layers:
        xi = lc.xi_empirical
        xi_value, xi_error, xi_reason = empirical_xi(xi)
        lmain = lc.main or main
        resid = float(np.max(np.abs(lc.residual_z[1:8]))) if lc.residual_z.size > 1 else None
        row = {"layer": lc.layer, "n_states": lc.n_states, "n_train": lc.n_train, "n_test": lc.n_test,
               "summary": _layer_sentence(lc, lmain), "main_variant": lmain,
               "hidden_fraction": lc.hidden_fraction, "xi_empirical": xi_value, "xi_empirical_error": xi_error,
               "xi_empirical_message": xi_reason or xi.message, "xi_empirical_raw": xi.xi, "xi_window": list(xi.window), "xi_fitted": lc.xi_fitted,
               "xi_fitted_note": lc.xi_fitted_note, "xi_fitted_error": lc.xi_fitted_error,
               "xi_spectral": lc.xi_spectral, "heldout_bits_per_token": {k: _bits(v) for k, v in lc.heldout.items()},
               "heldout_gain_bits_per_token": {k: _bits(v) for k, v in lc.gain.items()},
               "heldout_gain_error_bits_per_token": {k: _bits(v) for k, v in lc.gain_error.items()},
               "max_abs_residual_z_r2_to_8": resid,
               "mc_max_abs_z": None if lc.mc_overlap_z is None else float(np.max(np.abs(lc.mc_overlap_z))),
               "drops": None if lc.drops is None else {**lc.drops.__dict__, "sentence": lc.drops.sentence()},
               "fits": {k: {"method": r.method, "success": r.success, "failed": bool(r.error),
                            "message": r.message, "n_iter": r.n_iter, "log_likelihood": r.log_likelihood,
                            "n_parameters": r.n_parameters, "aic": r.aic, "bic": r.bic, "l2": r.l2,
                            "parameter_errors": r.errors.message if r.errors is not None else "none"}
                        for k, r in lc.fits.items()}}
        rows.append(row)
        line = (f"{lc.layer:>5} {lc.n_states:>3} {_fmt_xi(xi_value, xi_error):>16} "
                f"{_fmt_xi(lc.xi_fitted.get(main, math.nan), lc.xi_fitted_error):>18} "
                f"{_fmt_xi(lc.xi_spectral.get(main, math.nan), math.nan):>8}")
        for v in others:
            res = lc.fits.get(v)
            cell = "failed" if res is not None and res.error else fmt_pm(_bits(lc.gain[v]), _bits(lc.gain_error[v]))
            if res is not None and not res.error and not res.success:
                cell += " (n.c.)"
            line += f" {cell:>{width}}"
        line += f" {resid:>9.1f}" if resid is not None and math.isfinite(resid) else f" {'n/a':>9}"
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
                         f"{_bits(np.nanmean(ind.gain)):.4f} bits/token on average")
    lines.append("xi_emp: exponential fit to the empirical C(r) [tokens]; xi_fit: the same fit to the fitted chain's "
                 "exact C(r) (error: bootstrap refits; n/a where the fit did not converge or failed); xi_bulk: "
                 "transfer-matrix xi of the fitted couplings; gain: held-out log-likelihood per token minus that "
                 "of independent sites with position-dependent rates, in bits/token (negative: worse than "
                 "independent sites); n.c.: not converged; resid |z|: largest "
                 f"|C_emp(r) - C_{main}(r)| / error for 2 <= r <= 8 (structure beyond the nearest-neighbour fit)")
    lines += _decomposition_lines(report.layers)
    from .topic import token_decoder, topic_lines, topic_payload

    lines += topic_lines(report.layers)
    decode = token_decoder(report.source)
    for row, lc in zip(rows, report.layers):
        if lc.decomposition is not None:
            row["decomposition"] = _decomposition_payload(lc.decomposition)
            if getattr(lc.decomposition, "topic", None) is not None:
                row["decomposition"]["topic_chain"] = topic_payload(lc.decomposition.topic, decode)
    for lc in report.layers:
        for name, r in lc.fits.items():
            if r.error:
                lines.append(f"WARNING: layer {lc.layer} variant {name} failed ({r.error}); the others are unaffected")
            elif not r.success:
                lines.append(f"WARNING: layer {lc.layer} variant {name} did not converge: {r.message}")
    payload = {"source": report.source, "params": report.params, "note": report.note,
               "subject": subject_label(report.source),
               "units": {"gain": "bits/token", "xi": "tokens", "decomposition": "bits/token"},
               "layers": rows}
    return payload, lines


def _decomposition_lines(layers) -> list[str]:
    """The nested table (gain of each row over the previous one, bits/token) and a sentence per layer."""
    decs = [lc.decomposition for lc in layers if lc.decomposition is not None]
    if not decs:
        return []
    rows, parents = decs[0].rows, decs[0].parents
    lines = ["", ("What routing depends on (held-out log-likelihood per token, bits/token; each column: gain of "
                  "the row over its parent, named in brackets, ± paired error over test sequences):")]
    width = 20
    lines.append(f"{'':>5} {'':>12}" + "".join(f" {r:>{width}}" for r in rows[1:]))
    lines.append(f"{'layer':>5} {'indep. [ll]':>12}" + "".join(f" {'(vs ' + str(p) + ')':>{width}}" for p in parents[1:])
                 + f" {'best':>16} {'C(r) max|z|':>11} {'chi2 p':>7}")
    for dec in decs:
        line = f"{dec.layer:>5} {dec.heldout[0]:>12.4f}"
        for i in range(1, len(rows)):
            g, e = dec.gain[i], dec.gain_error[i]
            cell = fmt_pm(g, e, 2) if math.isfinite(g) else "n/a"
            if math.isfinite(g) and not dec.converged[i]:
                cell += "*"
            line += f" {cell:>{width}}"
        gof = dec.gof
        line += f" {dec.best:>16} " + (f"{gof['max_abs_z']:>11.1f} {gof['p_value']:>7.2g}" if gof else
                                       f"{'n/a':>11} {'n/a':>7}")
        lines.append(line)
    lines.append("indep. [ll]: held-out log2-likelihood per token of global expert rates (minus the cross-entropy); "
                 "*: not converged; n/a: not fitted (reason in summary.json); best: row with the largest held-out "
                 "likelihood, whose exact C(r) on the test sequences is compared with theirs (max |z|, chi2 p). "
                 "The held-out gains answer 'does the ingredient predict new sequences?'; the training-data "
                 "likelihood-ratio test of position given the token (whether those fields are exactly zero) is "
                 "in summary.json only.")
    for dec in decs:
        lat = dec.latent
        if lat:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in lat["validation_bits_per_token"].items())
            lines.append(f"  Layer {dec.layer}: sequence latent K = {lat['n_components']} ({lat['vary']}), weights "
                         f"{', '.join(f'{w:.2f}' for w in dec.component_weights)}; validation log2-likelihood per "
                         f"token: {scores}")
        lines.append(f"  Layer {dec.layer}: {dec.gof_sentence()}.")
    return lines


def _decomposition_payload(dec) -> dict:
    gof = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dec.gof.items() if k != "model_full"}
    return {"rows": list(dec.rows), "heldout_bits_per_token": dec.heldout.tolist(),
            "gain_bits_per_token": dec.gain.tolist(), "gain_error_bits_per_token": dec.gain_error.tolist(),
            "n_parameters": dec.n_parameters.tolist(), "converged": dec.converged.tolist(),
            "fit_seconds": dec.fit_seconds.tolist(), "skipped": dec.skipped,
            "position_beyond_token_lr": {"statistic": dec.position_lr, "dof": dec.position_lr_dof,
                                         "p_value": dec.position_lr_p,
                                         "note": "training data, MAP fits (weak L2 prior): conservative; "
                                                 "answers whether the position fields given the token are exactly "
                                                 "zero, not whether they predict held-out routing (the gain does)"},
            "parents": list(dec.parents), "latent": dec.latent or None,
            "component_weights": dec.component_weights.tolist() if dec.latent else None,
            "best": dec.best, "n_train": dec.n_train,
            "n_test": dec.n_test, "n_test_tokens": dec.n_test_tokens, "token_rows": dec.token_rows,
            "seconds": dec.seconds, "summary": dec.sentence(), "goodness_of_fit_summary": dec.gof_sentence(),
            "goodness_of_fit": gof}


def fit_figures(report, out_dir) -> list[Path]:
    """Fitted vs empirical C(r) per layer, xi across layers, fields, couplings, held-out gains.

    Every figure's title names the subject (model and nature of its weights); fields and
    couplings share one symmetric colour range across layers (said in the title).
    """
    from ..data import subject_label
    from ..plot import plot_couplings, plot_fields, plot_heldout

    out_dir = Path(out_dir)
    subject = subject_label(report.source)
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
            ax.plot(r[1:], lc.mc_correlation[1:], ":", lw=1.2, color="k", label=f"MC of fit: {lc.main or main}")
        dec = lc.decomposition
        if dec is not None and dec.gof:  # the best conditional model, on the test sequences' tokens
            d, c = np.asarray(dec.gof["distances"]), np.asarray(dec.gof["model"])
            ok = np.isfinite(c) & (d <= r[-1])
            ax.plot(d[ok], c[ok], "--", lw=1.2, color="tab:red", label=f"best conditional ({dec.best}), test seqs")
            e = np.asarray(dec.gof["empirical"])  # what that model is tested against (fewer sequences)
            ok = np.isfinite(e) & (d <= r[-1])
            ax.plot(d[ok], e[ok], "x", ms=3, color="tab:red", label="empirical, test seqs")
        ax.set_xlabel("distance r [tokens]")
        ax.set_ylabel("C(r) [probability]")
        ax.legend(fontsize="xx-small")
    fig.suptitle(f"{subject}\nsame-expert correlation C(r): data vs fitted chains")
    paths += save_figure(fig, out_dir / "correlation")
    fig, (ax,) = figure_grid(1, (5.5, 3.8))
    idx = np.arange(len(layers))
    emp = np.array([empirical_xi(lc.xi_empirical)[0] for lc in layers], dtype=float)
    emp_err = np.array([empirical_xi(lc.xi_empirical)[1] for lc in layers], dtype=float)
    fit = np.array([lc.xi_fitted.get(main, np.nan) for lc in layers], dtype=float)
    fit_err = np.array([lc.xi_fitted_error for lc in layers], dtype=float)
    for x, y, e, fmt, label in ((idx - 0.05, emp, emp_err, "o", "empirical"),
                                (idx + 0.05, fit, fit_err, "s", f"fitted ({main})")):
        ok = np.isfinite(y) & (y > 0)  # n/a (and xi = 0 on a log axis) are not drawn
        ax.errorbar(x[ok], y[ok], np.where(np.isfinite(e[ok]), e[ok], 0.0), fmt=fmt, capsize=2,
                    label=label + ("" if ok.all() else f" ({int((~ok).sum())} n/a, not drawn)"))
    ax.set_xticks(idx, [str(lc.layer) for lc in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("correlation length xi [tokens]")
    drawn = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (emp, fit)])
    if drawn.size:
        ax.set_yscale("log")
    else:  # nothing positive to draw: a log axis would have no range (and matplotlib fails to save it)
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no layer has a correlation length\n(reasons per layer in summary.json)",
                transform=ax.transAxes, ha="center", va="center", fontsize="small", color="0.3")
    ax.legend(fontsize="small")
    ax.set_title(f"{subject}\ncorrelation length (n/a values not drawn)", fontsize="medium")
    paths += save_figure(fig, out_dir / "xi")
    with_main = [lc for lc in layers if (lc.main or main) in lc.fits and not lc.fits[lc.main or main].error]
    if with_main:
        lim = max(float(np.nanmax(np.abs(lc.fits[lc.main or main].fields))) for lc in with_main) or 1.0
        fig, axes = figure_grid(len(with_main), (4.0, 2.8))
        for ax, lc in zip(axes, with_main):
            plot_fields(lc.fits[lc.main or main].fields, ax=ax, title=f"layer {lc.layer} ({lc.main or main})",
                        limit=lim, colorbar=False)
        fig.colorbar(axes[0].images[0], ax=axes, label="h_i(a) [k_B T]", shrink=0.9)
        fig.suptitle(f"{subject}\nfitted fields h_i(a), zero-sum gauge; one symmetric colour range "
                     f"[-{lim:.2g}, {lim:.2g}] shared by all layers")
        paths += save_figure(fig, out_dir / "fields")
        lim = max(float(np.nanmax(np.abs(lc.fits[lc.main or main].couplings[0]))) for lc in with_main) or 1.0
        fig, axes = figure_grid(len(with_main), (3.2, 2.9))
        for ax, lc in zip(axes, with_main):
            plot_couplings(lc.fits[lc.main or main].couplings, ax=ax, title=f"layer {lc.layer} ({lc.main or main})",
                           limit=lim, colorbar=False)
        if axes[0].images:
            fig.colorbar(axes[0].images[0], ax=axes, label="J_1(a, b) [k_B T]", shrink=0.9)
        fig.suptitle(f"{subject}\nfitted couplings J_1(a, b), zero-sum gauge; one symmetric colour range "
                     f"[-{lim:.2g}, {lim:.2g}] shared by all layers")
        paths += save_figure(fig, out_dir / "couplings")
    fig, (ax,) = figure_grid(1, (7.5, 3.8))
    names = [v for v in report.params["variants"] if v != "independent"]
    plot_heldout([lc.layer for lc in layers],
                 {v: [_bits(lc.gain.get(v, np.nan)) for lc in layers] for v in names},
                 {v: [_bits(lc.gain_error.get(v, np.nan)) for lc in layers] for v in names}, ax=ax)
    ax.set_title(f"{subject}\nheld-out log-likelihood gain over independent sites (paired errors)",
                 fontsize="medium")
    paths += save_figure(fig, out_dir / "heldout")
    with_dec = [lc for lc in layers if lc.decomposition is not None]
    if with_dec:
        from ..plot import plot_decomposition

        rows = with_dec[0].decomposition.rows
        fig, (ax1, ax2) = figure_grid(2, (7.5, 3.4), max_columns=1)
        gains = {row: [lc.decomposition.gain[i] for lc in with_dec] for i, row in enumerate(rows) if i}
        gains = {k: v for k, v in gains.items() if np.isfinite(v).any()}  # rows not fitted (range-2 off)
        errors = {row: [lc.decomposition.gain_error[i] for lc in with_dec] for i, row in enumerate(rows) if i}
        colors = {row: f"C{i}" for i, row in enumerate(rows)}  # the same colour per row in both panels
        chain = ["independent"]  # the stacked path: each row's parent is the previous one
        for row, parent in zip(rows, with_dec[0].decomposition.parents):
            if parent is not None and parent == chain[-1]:
                chain.append(row)
        plot_decomposition([lc.layer for lc in with_dec], {k: v for k, v in gains.items() if k in chain}, ax=ax1,
                           colors=colors)
        ax1.set_title("stacked gains along " + " > ".join(chain[1:]), fontsize="medium")
        small = {k: v for k, v in gains.items() if k != "+token"}
        plot_heldout([lc.layer for lc in with_dec], small, {k: errors[k] for k in small}, ax=ax2, colors=colors)
        ax2.set_title("the same without +token, with paired errors", fontsize="medium")
        from ..fit.pipeline.decomposition import ALTERNATIVE_ROWS

        # opt-in alternatives (the power-law row) are named only when asked for and failed
        skipped = sorted({k for lc in with_dec for k, why in lc.decomposition.skipped.items()
                          if k not in ALTERNATIVE_ROWS or not why.startswith("not fitted (opt in")} - set(gains))
        if skipped:
            ax1.set_title(f"stacked gains along {' > '.join(chain[1:])} (not fitted: {', '.join(skipped)})",
                          fontsize="medium")
        fig.suptitle(f"{subject}\nwhat routing depends on: held-out gain of each added ingredient [bits/token]")
        paths += save_figure(fig, out_dir / "decomposition")
        from .topic import topic_figure

        paths += topic_figure(report, out_dir)
    with_ind = [lc for lc in layers if lc.indicators is not None]
    if with_ind:
        fig, axes = figure_grid(len(with_ind))
        for ax, lc in zip(axes, with_ind):
            ind = lc.indicators
            ok = np.isfinite(ind.coupling)
            ax.errorbar(ind.experts[ok], ind.coupling[ok], np.nan_to_num(ind.coupling_error[ok]), fmt="o", ms=2,
                        capsize=1)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xlabel("expert")
            ax.set_ylabel("Ising J_e [k_B T]")
            ax.set_title(f"layer {lc.layer}: indicator chains", fontsize="medium")
        fig.suptitle(f"{subject}\nper-expert indicator chains")
        paths += save_figure(fig, out_dir / "indicators")
    return [p for p in paths if p.suffix == ".png"] + [p for p in paths if p.suffix == ".pdf"]
