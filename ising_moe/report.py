"""Summaries and figure sets shared by the CLI commands (text tables, JSON payloads, PNG + PDF)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .plot import figure_grid, plot_correlation, plot_probe, plot_rates, plot_xi_vs_block, save_figure

__all__ = ["measurement_summary", "measurement_figures", "fmt_pm"]


def fmt_pm(value: float, error: float, digits: int = 3) -> str:
    """``value ± error`` with a sensible number of digits; ``nan`` stays readable."""
    if not math.isfinite(value):
        return "n/a"
    if not math.isfinite(error) or error <= 0:
        return f"{value:.{digits}g}"
    decimals = max(0, -int(math.floor(math.log10(error))) + 1)
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def measurement_summary(result, data=None) -> tuple[dict, list[str]]:
    """JSON payload and text lines of a :class:`~ising_moe.measure.Measurements`."""
    rows = []
    lines = []
    note = None if data is None else data.provenance_note
    if note:
        lines.append(note)
    lines.append(f"{'layer':>5} {'q':>3} {'xi (fit)':>16} {'window':>8} {'xi (sum)':>16} {'MI excess [bits]':>20} "
                 f"{'KL unif':>8} {'static acc':>11} {'chance':>7} {'SRP(m=8)':>9} {'dropped':>8}")
    for st in result.layers:
        lrc = st.lrc
        srp8 = lrc.srp[lrc.segment_lengths == 8]
        row = {
            "layer": st.layer, "n_states": st.n_states, "xi": st.xi.xi, "xi_error": st.xi.error,
            "xi_window": list(st.xi.window), "xi_sum": st.xi.xi_sum, "xi_sum_error": st.xi.xi_sum_error,
            "xi_message": st.xi.message, "mi_excess_bits": st.position_test.mi_excess,
            "mi_error_bits": st.position_test.mi_error, "position_p_value": st.position_test.p_value_shuffle,
            "kl_uniform": st.load.kl_uniform, "static_accuracy": st.static.accuracy,
            "static_chance": st.static.chance, "entropy_explained_by_position": st.static.entropy_explained,
            "srp": dict(zip(lrc.segment_lengths.tolist(), lrc.srp.tolist())),
            "xi_by_block": {b: [x.xi, x.error] for b, x in st.xi_by_block.items()},
            "dropped_fraction": None if st.dropped_by_position is None else float(st.dropped_by_position.mean()),
        }
        rows.append(row)
        dropped = "" if row["dropped_fraction"] is None else f"{row['dropped_fraction']:.1%}"
        lines.append(
            f"{st.layer:>5} {st.n_states:>3} {fmt_pm(st.xi.xi, st.xi.error):>16} "
            f"{'%d-%d' % st.xi.window:>8} {fmt_pm(st.xi.xi_sum, st.xi.xi_sum_error):>16} "
            f"{fmt_pm(st.position_test.mi_excess, st.position_test.mi_error):>20} {st.load.kl_uniform:>8.4f} "
            f"{st.static.accuracy:>11.3f} {st.static.chance:>7.3f} "
            f"{(srp8[0] if srp8.size else float('nan')):>9.3f} {dropped:>8}")
    probes = [r.__dict__ for r in result.probes]
    for r in probes:
        lines.append(f"probe {r['features']:<10} {r['target']:<10} accuracy {r['accuracy']:.3f} ± "
                     f"{r['accuracy_sd']:.3f} (chance {r['chance']:.3f}, {r['n_tokens']} tokens)")
    payload = {"source": result.source, "params": result.params, "layers": rows, "probes": probes,
               "note": note}
    return payload, lines


def measurement_figures(result, stem) -> list[Path]:
    """Rates heat maps, C(r) with null bands, xi vs block size and probe accuracy (PNG + PDF)."""
    stem = Path(stem)
    paths = []
    layers = result.layers
    fig, axes = figure_grid(len(layers), (4.0, 2.8))
    for ax, st in zip(axes, layers):
        plot_rates(st.rates.rates, ax=ax, title=f"layer {st.layer}")
    paths += save_figure(fig, stem.with_name(stem.name + ".rates"))
    fig, axes = figure_grid(len(layers))
    for ax, st in zip(axes, layers):
        c = st.correlation
        plot_correlation(c.distances, c.values, c.errors, c.null, ax=ax, title=f"layer {st.layer}")
    paths += save_figure(fig, stem.with_name(stem.name + ".correlation"))
    if any(st.xi_by_block for st in layers):
        fig, (ax,) = figure_grid(1, (5, 3.5))
        for st in layers:
            sizes = sorted(st.xi_by_block)
            plot_xi_vs_block(sizes, [st.xi_by_block[b].xi for b in sizes],
                             [st.xi_by_block[b].error for b in sizes], ax=ax, label=f"layer {st.layer}")
        paths += save_figure(fig, stem.with_name(stem.name + ".xi_block"))
    if result.probes:
        fig, (ax,) = figure_grid(1, (5, 3.5))
        plot_probe(result.probes, ax=ax)
        paths += save_figure(fig, stem.with_name(stem.name + ".probe"))
    return [p for p in paths if p.suffix == ".png"] + [p for p in paths if p.suffix == ".pdf"]


def _finite(x) -> bool:
    return bool(np.isfinite(x))
