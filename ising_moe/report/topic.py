"""Summary lines, JSON and figure of the topic-chain row of ``isingmoe fit`` (:mod:`ising_moe.fit.pipeline.topic`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .measure import fmt_pm, fmt_ranges

log = logging.getLogger(__name__)

__all__ = ["topic_lines", "topic_payload", "topic_figure", "token_decoder"]


def token_decoder(source: dict):
    """``ids -> list of str`` from the organism's ``tokenizer.json`` (the data file's tokenizer or
    model path, else ``models/<alias>``), or ``None`` (callers print the ids)."""
    candidates = []
    for key in ("tokenizer", "model_id"):
        value = str(source.get(key) or "")
        if value:
            candidates.append(Path(value.split("@")[0]))
    alias = source.get("model_alias") or ""
    if alias:
        candidates.append(Path("models") / alias)
    for folder in candidates:
        path = folder / "tokenizer.json"
        if path.is_file():
            try:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(path))
            except Exception as exc:  # noqa: BLE001 -- optional: ids are printed instead
                log.info("tokenizer %s not usable (%s): token ids instead", path, exc)
                return None
            return lambda ids: [tok.decode([int(i)]) for i in ids]
    return None


def _text(ids, decode) -> list[str]:
    return decode(ids) if decode is not None else [str(int(i)) for i in ids]


def segmented_text(posterior, ids, decode, max_tokens: int = 120) -> str:
    """The text of a sequence cut where its most probable topic changes: ``[1] ... [2] ...``."""
    p = np.asarray(posterior)
    n = int((p.sum(axis=1) > 0).sum())
    n = min(n, max_tokens)
    top = np.argmax(p[:n], axis=1)
    words = _text(np.asarray(ids)[:n], decode)
    out, cur = [], -1
    for k, w in zip(top, words):
        if k != cur:
            out.append(f" [{k + 1}]")
            cur = k
        out.append(w if decode is not None else f" {w}")
    return "".join(out).strip()


def topic_lines(layers) -> list[str]:
    """One table line per layer with a topic row, and its legend."""
    rows = [lc.decomposition.topic for lc in layers
            if lc.decomposition is not None and getattr(lc.decomposition, "topic", None) is not None]
    if not rows:
        return []
    lines = ["", "Topic chain (a hidden topic that moves along the text; gains held-out, bits/token, paired errors):",
             f"{'layer':>5} {'K':>3} {'K tried':>8} {'gain vs +couplings':>20} {'vs +seq. latent':>18} "
             f"{'xi_topic [tok]':>15} {'switch rate':>16} {'C(r) max|z|':>11} {'chi2 p':>7}"]
    for lc in layers:
        dec = lc.decomposition
        t = getattr(dec, "topic", None) if dec is not None else None
        if t is None:
            continue
        tried = f"{int(t.candidates[0])}-{int(t.candidates[-1])}" + ("!" if t.at_edge else "")
        if not t.converged:
            lines.append(f"{dec.layer:>5} {t.n_topics:>3} {tried:>8}  not converged: not reported ({t.message})")
            continue
        xi = ("n/a" if not math.isfinite(t.persistence_length) else
              fmt_pm(t.persistence_length, t.persistence_length_error, 2))
        lat = fmt_pm(t.gain_latent, t.gain_latent_error, 2) if math.isfinite(t.gain_latent) else "n/a"
        rho = fmt_pm(t.switching_rate, t.switching_rate_error, 2) if t.n_topics > 1 else "n/a"
        gof = t.gof
        tail = f"{gof['max_abs_z']:>11.1f} {gof['p_value']:>7.2g}" if gof else f"{'n/a':>11} {'n/a':>7}"
        lines.append(f"{dec.layer:>5} {t.n_topics:>3} {tried:>8} {fmt_pm(t.gain, t.gain_error, 2):>20} {lat:>18} "
                     f"{xi:>15} {rho:>16} {tail}")
    lines.append("K: topics chosen by the likelihood of held-out training sequences among K tried (!: at the edge "
                 "of the range, more may fit better); xi_topic: decay length of the model's exact topic "
                 "autocorrelation on the test sequences' tokens, switch rate: expected topic changes per token "
                 "(errors: bootstrap refits); C(r): the topic chain's exact C(r) against the test sequences'")
    for lc in layers:
        dec = lc.decomposition
        t = getattr(dec, "topic", None) if dec is not None else None
        if t is not None and t.gof and t.converged:
            lines.append(f"  Layer {dec.layer} topic chain: {_gof_words(t.gof)}.")
    return lines


def _gof_words(g) -> str:
    head = (f"C(r) for r = 1..{int(g['distances'][-1])} on test sequences, max |z| = {g['max_abs_z']:.1f}, "
            f"chi2/dof = {g['chi2']:.1f}/{g['dof']} (p = {g['p_value']:.2g})")
    if g["consistent"]:
        return head + ": consistent with the data"
    z = np.nan_to_num(np.asarray(g["z"], float))
    d = np.asarray(g["distances"])
    bad = d[np.abs(z) > 3]
    if bad.size == 0:
        return head + ": not consistent (correlated excess across distances; only the chi-square rejects)"
    worst = int(np.argmax(np.abs(z)))
    excess = float(np.asarray(g["empirical"])[worst] - np.asarray(g["model"])[worst])
    return (head + f": still fails at r = {fmt_ranges(bad)} (largest residual {excess:+.2g} at r = {int(d[worst])}, "
            f"{'data above' if excess > 0 else 'data below'} the model)")


def topic_payload(t, decode=None) -> dict:
    """JSON of a :class:`~ising_moe.fit.pipeline.topic.TopicRow`."""
    def num(x):
        return float(x) if math.isfinite(float(x)) else None

    gof = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in t.gof.items()}
    ok = t.converged
    return {
        "n_topics": t.n_topics, "candidates": [int(k) for k in t.candidates], "at_edge": t.at_edge,
        "validation_gain_bits_per_token": t.validation_gain.tolist(),
        "validation_gain_error_bits_per_token": t.validation_gain_error.tolist(), "converged": ok,
        "gain_over_couplings_bits_per_token": num(t.gain), "gain_over_couplings_error": num(t.gain_error),
        "gain_over_sequence_latent_bits_per_token": num(t.gain_latent),
        "gain_over_sequence_latent_error": num(t.gain_latent_error), "heldout_bits_per_token": num(t.heldout),
        "stay_weight": num(t.stay_weight) if ok else None,
        "switching_rate": num(t.switching_rate) if ok and t.n_topics > 1 else None,
        "switching_rate_error": num(t.switching_rate_error) if ok else None,
        "persistence_length": num(t.persistence_length) if ok else None,
        "persistence_length_error": num(t.persistence_length_error) if ok else None,
        "persistence_reason": t.persistence_reason if ok else "not converged",
        "topic_autocorrelation": [num(v) for v in t.autocorrelation], "occupancy": t.occupancy.tolist(),
        "biases": t.biases.tolist(), "n_bootstrap": t.n_bootstrap, "goodness_of_fit": gof, "message": t.message,
        "seconds": t.seconds, "summary": t.sentence(),
        "example_segmentations": [{"sequence": int(r), "text": segmented_text(p, ids, decode)}
                                  for r, p, ids in zip(t.posterior_rows, t.posterior, t.posterior_tokens)],
        "definitions": ("random field of (topic, expert) given the tokens; stay_weight is not a probability; "
                        "switching_rate: expected topic changes per bond on the test sequences' tokens; "
                        "persistence_length: decay length of the exact topic autocorrelation C_z(r)"),
    }


def topic_figure(report, out_dir, n_sequences: int = 2, n_positions: int = 64) -> list[Path]:
    """``topics.png``: per layer, the posterior topic along the first test sequences beside their text."""
    from ..data import subject_label
    from ..plot import figure_grid, plot_topic_posterior, save_figure

    layers = [lc for lc in report.layers
              if lc.decomposition is not None and getattr(lc.decomposition, "topic", None) is not None
              and lc.decomposition.topic.n_topics > 1 and lc.decomposition.topic.converged]
    if not layers:
        return []
    decode = token_decoder(report.source)
    n_show = min(n_sequences, min(lc.decomposition.topic.posterior.shape[0] for lc in layers))
    fig, axes = figure_grid(len(layers) * n_show, (11.0, 1.9), max_columns=1)
    for j, lc in enumerate(layers):
        t = lc.decomposition.topic
        for s in range(n_show):
            p = t.posterior[s]
            n = min(int((p.sum(axis=1) > 0).sum()), n_positions)
            xi = f"{t.persistence_length:.1f}" if math.isfinite(t.persistence_length) else "n/a"
            plot_topic_posterior(p[:n], _text(t.posterior_tokens[s][:n], decode), ax=axes[j * n_show + s],
                                 title=f"layer {lc.layer}, test sequence {int(t.posterior_rows[s])} "
                                       f"(K = {t.n_topics}, xi_topic = {xi} tokens)")
        axes[j * n_show].legend(fontsize="xx-small", loc="upper right", ncols=t.n_topics)
    text = "decoded tokens" if decode is not None else "token ids (tokenizer not found)"
    fig.suptitle(f"{subject_label(report.source)}\nposterior topic along held-out sequences, first {n_positions} "
                 f"positions; x labels: {text}")
    return save_figure(fig, Path(out_dir) / "topics")
