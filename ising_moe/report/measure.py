"""Summaries and figures of ``isingmoe measure`` (text table, JSON payload, PNG + PDF), and the comparison of two files.

Re-exported by :mod:`ising_moe.report`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..plot import (
    figure_grid,
    plot_correlation,
    plot_probe,
    plot_rates,
    plot_xi_vs_block,
    save_figure,
)

__all__ = ["measurement_summary", "measurement_figures", "comparison_summary", "comparison_figures", "null_fractions",
           "fmt_pm", "fmt_ranges"]


def fmt_pm(value: float, error: float, digits: int = 3) -> str:
    """``value ± error`` with a sensible number of digits; ``nan`` stays readable."""
    if not math.isfinite(value):
        return "n/a"
    if not math.isfinite(error) or error <= 0:
        return f"{value:.{digits}g}"
    decimals = max(0, -int(math.floor(math.log10(error))) + 1)
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def fmt_ranges(values) -> str:
    """Sorted integers as runs: ``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"``."""
    r = [int(v) for v in values]
    out, start = [], r[0]
    for a, b in zip(r, r[1:] + [None]):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)


def _cell(value, width: int, spec: str) -> str:
    """A table cell: the number, or n/a where it is not finite (never "nan")."""
    value = float(value)
    return f"{value:>{width}{spec}}" if math.isfinite(value) else f"{'n/a':>{width}}"


def _finite(value):
    """A JSON-safe number: None for NaN/inf (a number the data do not support is not printed)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _persistence_level(st) -> float | None:
    """Flat ``C(r)`` that the within-sequence shuffle produces from the chain's own persistence alone.

    Shuffling the tokens of a sequence of length ``L`` turns ``C(r)`` into the average of ``C(|i - j|)``
    over its pairs: for ``C(d) = A exp(-d / xi)``, ``2 sum_{d=1}^{L-1} (L - d) A exp(-d / xi) / (L (L - 1))``,
    averaged over the sequences' lengths (recovered from the number of valid tokens per position).
    None without a supported ``xi``.
    """
    xi = st.xi
    if not xi.success:
        return None
    n_valid = np.asarray(st.rates.n_valid, dtype=float)
    counts = np.maximum(n_valid - np.append(n_valid[1:], 0.0), 0.0)  # sequences ending at each position
    lengths = np.arange(1, n_valid.size + 1)
    keep = (counts > 0) & (lengths >= 2)
    if not keep.any():
        return None
    level = 0.0
    for length, w in zip(lengths[keep], counts[keep]):
        d = np.arange(1, length)
        level += w * 2 * np.sum((length - d) * xi.amplitude * np.exp(-d / xi.xi)) / (length * (length - 1))
    return float(level / counts[keep].sum())


def null_fractions(st) -> dict:
    """Share of ``sum_r C(r)`` that each shuffle null reproduces, over the xi window (all ``r >= 1`` without one).

    ``{"position": f, "sequence": f, "token": f or None, "persistence": f or None, "r_range": (lo, hi),
    "sum_c": S, "sum_c_error": se}``: ``f`` = sum of the null's mean ``C(r)`` over the range / ``S``;
    None unless ``S`` is significant (above ``max(3, t_{N-1}(0.995))`` standard errors, at least
    ``MIN_SEQUENCES`` sequences). ``persistence`` is the share the within-sequence null would keep
    from the chain's own persistence alone (an exponential with the measured ``A`` and ``xi`` in
    sequences of the data's lengths; None without a supported ``xi``): only ``sequence`` well above it
    is sequence composition.
    """
    from scipy import stats as sps

    from ..measure.correlation_length import MIN_SEQUENCES

    c = st.correlation
    lo, hi = st.xi.window
    if hi - lo + 1 < 3:
        lo, hi = 1, len(c.values) - 1
    n_seq = c.influence.shape[0]
    total = float(np.sum(c.values[lo: hi + 1]))
    total_se = (float(np.sqrt(np.sum(c.influence[:, lo: hi + 1].sum(axis=1) ** 2) / (n_seq * (n_seq - 1))))
                if n_seq > 1 else math.nan)
    threshold = max(3.0, float(sps.t.isf(0.005, n_seq - 1))) if n_seq >= MIN_SEQUENCES else math.inf
    significant = math.isfinite(total_se) and total > threshold * total_se
    out = {"r_range": (int(lo), int(hi)), "sum_c": total, "sum_c_error": _finite(total_se),
           "significant": bool(significant)}
    for name, null in (("position", c.null), ("sequence", c.null_sequence), ("token", c.null_token)):
        ok = null.size and significant  # a share of noise is not a number
        out[name] = float(np.mean(null, axis=0)[lo: hi + 1].sum() / total) if ok else None
    level = _persistence_level(st) if significant else None
    out["persistence"] = None if level is None else float(level * (hi - lo + 1) / total)
    return out


def _null_sentence(fractions) -> str:
    """What the within-sequence null says, and only what it can tell apart."""
    lo, hi = fractions["r_range"]
    seq, tok, pers = fractions["sequence"], fractions["token"], fractions["persistence"]
    out = f"Shuffling tokens within each sequence keeps {seq:.0%} of sum_r C(r) ({lo} <= r <= {hi})"
    if pers is None:
        out += (", but without a correlation length this null cannot tell sequence composition (each sequence "
                "prefers some experts) from correlations that persist over much of a sequence")
    else:
        excess = seq - pers
        out += f"; the chain's own persistence (the measured exponential) would keep {pers:.0%} in sequences this long"
        if excess > 0.5:
            out += f", so {excess:.0%} of it is sequence composition (each sequence prefers some experts)"
        elif excess < 0.25:
            out += ", so it is the order of tokens (persistence along the chain), not sequence composition"
        else:
            out += f", so about {max(excess, 0.0):.0%} of it is sequence composition and the rest order along the chain"
    if tok is not None:
        out += f"; token identity alone (within-token null) gives {round(tok, 2) + 0.0:.0%}"
    return out + "."


def _explain(st, fractions) -> str:
    """One or two plain sentences on what makes this layer's C(r)."""
    xi = st.xi
    lo, hi = fractions["r_range"]
    wlo, whi = xi.window
    if xi.success:
        head = f"C(r) decays exponentially (xi = {fmt_pm(xi.xi, xi.error)} tokens on {wlo} <= r <= {whi})"
    elif "too few to tell C(r) from noise" in xi.message:
        head = xi.message.removeprefix("xi n/a: ")
    elif whi < wlo:
        head = "C(r) is in the noise already at r = 1 (no distance above noise)"
    elif "too few distances" in xi.message:
        head = f"C(r) is above noise only at {wlo} <= r <= {whi}, too few distances for a correlation length"
    else:
        head = f"C(r) is above noise on {wlo} <= r <= {whi} but {xi.message.removeprefix('xi n/a: ')}"
    parts = [head + "."]
    if fractions["sequence"] is None:
        parts.append(f"Summed over {lo} <= r <= {hi}, C(r) is in the noise.")
    else:
        parts.append(_null_sentence(fractions))
    return " ".join(parts)


def _overall(result) -> list[str]:
    """The one or two sentences a reader needs: is there an xi, what makes C(r), what do the drops do."""
    layers = result.layers
    out = []
    with_xi = [int(st.layer) for st in layers if st.xi.success]
    fractions = [f for f in map(null_fractions, layers) if f["sequence"] is not None]
    head = ("no layer's C(r) is a measured exponential, so no correlation length is reported"
            if not with_xi else f"xi is supported for layers {with_xi}")
    if fractions:
        shares = [f["sequence"] for f in fractions]
        head += f"; shuffling tokens within each sequence keeps {min(shares):.0%} to {max(shares):.0%} of sum_r C(r)"
        excess = [f["sequence"] - f["persistence"] for f in fractions if f["persistence"] is not None]
        if len(excess) == len(fractions):
            head += (": beyond what the chains' own persistence explains, mostly sequence composition"
                     if np.median(excess) > 0.5 else ": mostly order along the chain (persistence), not sequence "
                     "composition" if np.median(excess) < 0.25 else ": partly sequence composition, partly order")
        else:
            head += " (where a layer has no correlation length, that null cannot tell composition from persistence)"
    out.append("In short: " + head + ".")
    drops = [st.drop_position_tests for st in layers if st.drop_position_tests]
    if drops:
        made = [d["exclude"].mi_excess - d["router"].mi_excess for d in drops]
        router = [d["router"].mi_excess for d in drops]
        out.append(f"Capacity drops are not missing at random: excluding them creates {min(made):.3f} to {max(made):.3f} "
                   f"bits of position information beyond the router's own choices ({min(router):+.3f} to "
                   f"{max(router):+.3f} bits), so router-choice statistics are the default.")
    return out


def measurement_summary(result, data=None) -> tuple[dict, list[str]]:
    """JSON payload and text lines of a :class:`~ising_moe.measure.Measurements`.

    ``xi`` is printed only where the data support it (else ``n/a`` and the reason); the p-value is
    the reflection test's (the chi-square one assumes independent tokens); each layer gets a plain
    sentence on what its ``C(r)`` is made of, and Switch data the position effect of the drops.
    """
    rows = []
    lines = []
    note = None if data is None else data.provenance_note
    if note:
        lines.append(note)
    subject = result.source.get("subject")
    if subject:
        lines.append(f"subject: {subject}; capacity drops: {result.params.get('dropped')}")
    lines.append(f"{'layer':>5} {'q':>3} {'xi (fit)':>14} {'window':>7} {'xi (sum)':>14} {'chi2/dof':>11} "
                 f"{'MI excess [bits]':>18} {'p(pos)':>7} {'KL unif':>8} {'static acc':>10} {'chance':>7} "
                 f"{'SRP(m=8)':>8} {'SCH(m=8,c=2)':>12} {'dropped':>8}")
    notes = []
    for st in result.layers:
        lrc, xi, pt = st.lrc, st.xi, st.position_test
        srp8 = lrc.srp[lrc.segment_lengths == 8]
        sch8 = lrc.sch[lrc.segment_lengths == 8, 1] if lrc.sch.shape[1] > 1 else np.zeros(0)
        fractions = null_fractions(st)
        row = {
            "layer": st.layer, "n_states": st.n_states, "xi": _finite(xi.xi), "xi_error": _finite(xi.error),
            "xi_success": xi.success, "xi_window": list(xi.window), "xi_sum": _finite(xi.xi_sum),
            "xi_sum_error": _finite(xi.xi_sum_error), "xi_message": xi.message, "xi_chi2": _finite(xi.chi2),
            "xi_dof": xi.dof, "xi_gof_p_value": _finite(xi.p_value), "xi_window_capped": xi.capped,
            "xi_fit_sum_agreement_z": _finite(xi.agreement_z), "xi_n_sequences": xi.n_sequences,
            "xi_split": [_finite(v) for v in xi.split_xi], "xi_split_z": _finite(xi.split_z),
            "xi_curvature_z": _finite(xi.curvature_z), "xi_curvature_p_value": _finite(xi.curvature_p_value),
            "position_test_message": pt.message,
            "mi_excess_bits": pt.mi_excess, "mi_error_bits": pt.mi_error, "position_p_value": pt.p_value,
            "kl_uniform": st.load.kl_uniform, "static_accuracy": st.static.accuracy,
            "static_chance": st.static.chance, "entropy_explained_by_position": st.static.entropy_explained,
            "srp": dict(zip(lrc.segment_lengths.tolist(), lrc.srp.tolist())),
            "sch": {int(m): v.tolist() for m, v in zip(lrc.segment_lengths, lrc.sch)},
            "xi_by_block": {b: {"xi": _finite(x.xi), "error": _finite(x.error), "success": x.success,
                                "capped": x.capped, "message": x.message} for b, x in st.xi_by_block.items()},
            "null_fraction_of_sum_c": fractions,
            "dropped_fraction": None if st.dropped_by_position is None else float(st.dropped_by_position.mean()),
        }
        dropped = "" if row["dropped_fraction"] is None else f"{row['dropped_fraction']:.1%}"
        gof = f"{xi.chi2:.0f}/{xi.dof}" if math.isfinite(xi.chi2) else "n/a"
        lines.append(
            f"{st.layer:>5} {st.n_states:>3} {fmt_pm(xi.xi, xi.error):>14} {('%d-%d' % xi.window if xi.window[1] >= xi.window[0] else 'none'):>7} "
            f"{fmt_pm(xi.xi_sum, xi.xi_sum_error):>14} {gof:>11} {fmt_pm(pt.mi_excess, pt.mi_error):>18} "
            f"{_cell(pt.p_value, 7, '.3f')} {_cell(st.load.kl_uniform, 8, '.4f')} "
            f"{_cell(st.static.accuracy, 10, '.3f')} {_cell(st.static.chance, 7, '.3f')} "
            f"{_cell(srp8[0] if srp8.size else math.nan, 8, '.3f')} {_cell(sch8[0] if sch8.size else math.nan, 12, '.3f')} "
            f"{dropped:>8}")
        notes.append(f"layer {st.layer}: {_explain(st, fractions)}")
        if st.drop_position_tests:
            ex, ro = st.drop_position_tests["exclude"], st.drop_position_tests["router"]
            row["drops_position_effect_bits"] = {"exclude": ex.mi_excess, "router": ro.mi_excess,
                                                 "exclude_error": ex.mi_error, "router_error": ro.mi_error}
            notes.append(f"layer {st.layer}: position information (MI excess) {fmt_pm(ex.mi_excess, ex.mi_error)} bits "
                         f"with drops excluded vs {fmt_pm(ro.mi_excess, ro.mi_error)} with the router's choice: the "
                         f"capacity drops themselves produce {ex.mi_excess - ro.mi_excess:+.4f} bits")
        rows.append(row)
    lines += notes
    lines += _overall(result)
    lines.append("window: distances 1..r above noise (tested in turn from r = 1, each one-sided 5% with t quantiles "
                 "over sequences: 5% family-wise; none below 4 sequences). xi: exponential fit on the window, "
                 "reported only as a measurement (>= 20 sequences, >= 4 distances, exponential by a Hotelling "
                 "goodness of fit, on both halves of the window and without an upward bend of ln C(r), below the "
                 "cap, fit and sum agreeing, error <= 50%), else n/a with the reason. p(pos): reflection test of "
                 "position dependence (sequences reversed at random; blind to effects symmetric about the middle). "
                 "SCH: moe-lrc's online look-ahead cache.")
    probes = [r.__dict__ for r in result.probes]
    for r in probes:
        lines.append(f"probe {r['features']:<10} {r['target']:<10} accuracy {r['accuracy']:.3f} ± "
                     f"{r['accuracy_sd']:.3f} (chance {r['chance']:.3f}, {r['n_tokens']} tokens)")
    payload = {"source": result.source, "params": result.params, "layers": rows, "probes": probes,
               "note": note, "subject": subject}
    return payload, lines


def _subject_title(fig, result, what: str) -> None:
    subject = result.source.get("subject") or result.source.get("model_id", "unknown model")
    fig.suptitle(f"{what}\n{subject}", fontsize="medium")


def measurement_figures(result, stem) -> list[Path]:
    """Rates heat maps, C(r) with three null bands, xi vs block size, drops and probe accuracy (PNG + PDF).

    Every figure's title names the subject (model and nature of its weights); failed estimates are
    never drawn as values.
    """
    stem = Path(stem)
    paths = []
    layers = result.layers
    fig, axes = figure_grid(len(layers), (4.0, 2.8))
    for ax, st in zip(axes, layers):
        plot_rates(st.rates.rates, ax=ax, title=f"layer {st.layer}")
    _subject_title(fig, result, "Expert activation rate by position")
    paths += save_figure(fig, stem.with_name(stem.name + ".rates"))
    fig, axes = figure_grid(len(layers), (4.2, 3.2))
    for ax, st in zip(axes, layers):
        c = st.correlation
        verdict = f"xi = {fmt_pm(st.xi.xi, st.xi.error)}" if st.xi.success else "xi n/a"
        plot_correlation(c.distances, c.values, c.errors, ax=ax, title=f"layer {st.layer}: {verdict}",
                         nulls={"null: within position": c.null, "null: within sequence": c.null_sequence,
                                "null: within token id": c.null_token})
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:  # one legend for all panels, outside the data
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    _subject_title(fig, result, "Same-expert correlation C(r); bands: shuffle nulls (min-max ± 2 se)")
    paths += save_figure(fig, stem.with_name(stem.name + ".correlation"))
    if any(st.xi_by_block for st in layers):
        fig, (ax,) = figure_grid(1, (5.5, 3.8))
        for st in layers:
            sizes = sorted(st.xi_by_block)
            fits = [st.xi_by_block[b] for b in sizes]
            plot_xi_vs_block(sizes, [f.xi for f in fits], [f.error for f in fits], ax=ax, label=f"layer {st.layer}",
                             success=[f.success for f in fits], capped=[f.capped for f in fits])
        if not any(f.success for st in layers for f in st.xi_by_block.values()):
            ax.text(0.5, 0.5, "no block size gives a supported xi in any layer:\nC_b(r) is not exponential, or the "
                    "estimators disagree\n(reasons per block in the JSON summary)", transform=ax.transAxes,
                    ha="center", va="center", fontsize="small", color="0.3")
            ax.set_yticks([])
        _subject_title(fig, result, "Correlation length within blocks of b tokens")
        paths += save_figure(fig, stem.with_name(stem.name + ".xi_block"))
    dropped = [st for st in layers if st.dropped_by_position is not None]
    if dropped:
        fig, (ax,) = figure_grid(1, (5.5, 3.8))
        for st in dropped:
            ax.plot(np.arange(st.dropped_by_position.size), st.dropped_by_position, lw=1, label=f"layer {st.layer}")
        ax.set_xlabel("position [token index]")
        ax.set_ylabel("fraction dropped by capacity")
        ax.legend(fontsize="x-small", ncols=2)
        _subject_title(fig, result, "Switch capacity drops by position")
        paths += save_figure(fig, stem.with_name(stem.name + ".dropped"))
    if result.probes:
        fig, (ax,) = figure_grid(1, (5.5, 3.8))
        plot_probe(result.probes, ax=ax)
        _subject_title(fig, result, "Positional probe: position block predicted from routing")
        paths += save_figure(fig, stem.with_name(stem.name + ".probe"))
    return [p for p in paths if p.suffix == ".png"] + [p for p in paths if p.suffix == ".pdf"]


def comparison_summary(first, second) -> tuple[dict, list[str]]:
    """Side-by-side rates and C(r) of two measurements (e.g. natural vs ablated positions, trained vs not).

    Per common layer: position information, ``C(1)``, ``C(8)`` and ``xi`` of each, and ``z`` of the
    ``C(r)`` differences (independent data sets: errors add in quadrature).
    """
    names = [m.source.get("subject") or m.source.get("model_id") for m in (first, second)]
    paths = [m.source.get("path") or "" for m in (first, second)]
    lines = [f"compare A = {paths[0]} [{names[0]}]", f"    with B = {paths[1]} [{names[1]}]",
             (f"{'layer':>5} {'MI excess A':>16} {'MI excess B':>16} {'C(1) A':>18} {'C(1) B':>18} "
              f"{'max|z| C_A-C_B':>14} {'xi A':>12} {'xi B':>12}")]
    rows = []
    for a in first.layers:
        try:
            b = second.layer(a.layer)
        except Exception:  # noqa: BLE001 - a layer missing from B is reported, not fatal
            lines.append(f"{a.layer:>5} (not in B)")
            continue
        ca, cb = a.correlation, b.correlation
        n = min(len(ca.values), len(cb.values))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (ca.values[1:n] - cb.values[1:n]) / np.hypot(ca.errors[1:n], cb.errors[1:n])
        zmax = float(np.nanmax(np.abs(z))) if z.size else math.nan
        rows.append({"layer": a.layer, "mi_excess": [a.position_test.mi_excess, b.position_test.mi_excess],
                     "c1": [float(ca.values[1]), float(cb.values[1])], "max_abs_z_difference": _finite(zmax),
                     "xi": [_finite(a.xi.xi), _finite(b.xi.xi)]})
        lines.append(f"{a.layer:>5} {fmt_pm(a.position_test.mi_excess, a.position_test.mi_error):>16} "
                     f"{fmt_pm(b.position_test.mi_excess, b.position_test.mi_error):>16} "
                     f"{fmt_pm(ca.values[1], ca.errors[1]):>18} {fmt_pm(cb.values[1], cb.errors[1]):>18} "
                     f"{zmax:>14.1f} {fmt_pm(a.xi.xi, a.xi.error):>12} {fmt_pm(b.xi.xi, b.xi.error):>12}")
    return {"first": names[0], "second": names[1], "layers": rows}, lines


def comparison_figures(first, second, stem) -> list[Path]:
    """One row per common layer: rates of A, rates of B (same colour scale), C(r) of both (PNG + PDF)."""
    import matplotlib.pyplot as plt

    stem = Path(stem)
    common = [a for a in first.layers if any(b.layer == a.layer for b in second.layers)]
    figure_grid(1)  # selects a non-interactive backend when needed
    fig, axes = plt.subplots(len(common), 3, figsize=(12, 2.8 * len(common)), layout="constrained", squeeze=False)
    names = [m.source.get("subject") or m.source.get("model_id") for m in (first, second)]
    for row, a in zip(axes, common):
        b = second.layer(a.layer)
        vmax = float(max(np.nanmax(a.rates.rates), np.nanmax(b.rates.rates)))
        for ax, st, tag in ((row[0], a, "A"), (row[1], b, "B")):
            plot_rates(st.rates.rates, ax=ax, title=f"layer {st.layer}: rates {tag}")
            ax.images[0].set_clim(0, vmax)
        for st, tag, colour in ((a, "A", "tab:blue"), (b, "B", "tab:red")):
            c = st.correlation
            ok = np.isfinite(c.values[1:]) & np.isfinite(c.errors[1:])
            row[2].errorbar(c.distances[1:][ok], c.values[1:][ok], c.errors[1:][ok], fmt="o", ms=2.5, capsize=1,
                            color=colour, label=tag)
        row[2].axhline(0, color="k", lw=0.6)
        row[2].set_xlabel("distance r [tokens]")
        row[2].set_ylabel("C(r) [excess P(same expert)]")
        row[2].set_title(f"layer {a.layer}: C(r), A vs B", fontsize="medium")
        row[2].legend(fontsize="x-small")
    fig.suptitle(f"A: {names[0]}\nB: {names[1]}", fontsize="medium")
    paths = save_figure(fig, stem.with_name(stem.name + ".compare"))
    return [p for p in paths if p.suffix == ".png"] + [p for p in paths if p.suffix == ".pdf"]
