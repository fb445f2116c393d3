"""The numbers of docs/organisms.md, as Markdown, from the outputs of scripts/reship_organisms.sh.

    python scripts/organisms_numbers.py OUT_DIR [--models models] [--fit fits/olmoe-tiny/summary.json]

Reads ``OUT_DIR/card-*.json`` (isingmoe card), ``OUT_DIR/measure-vs-{untrained,constant,shuffled,mem}.json``
(isingmoe measure --compare), the training logs in ``models/`` and the main job's ``summary.json``;
prints the tables (training, held-out baselines, measurements, decomposition). A number that is
missing from the inputs is printed as n/a.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import h5py
import numpy as np

ORGANISMS = ("olmoe-tiny", "olmoe-tiny-mem")


def _load(path: Path):
    """The JSON document at ``path``, or None when missing or unreadable (an interrupted step)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _f(x, digits=4, signed=False):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if round(x, digits) == 0:
        x = 0.0  # no "-0.0000"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _ci(e, digits=3, signed=False):
    return f"{_f(e['value'], digits, signed)} [{_f(e['low'], digits, signed)}, {_f(e['high'], digits, signed)}]"


def training(models: Path) -> list[str]:
    lines = ["| organism | tokens | optimiser steps | wall time | tokens/s | held-out loss (logged windows) at 25% / 50% / 75% / 100% of the tokens | untrained twin |",
             "|---|---|---|---|---|---|---|"]
    for m in ORGANISMS:
        path = models / m / "train_log.h5"
        if not path.is_file():
            lines.append(f"| {m} | n/a | | | | | |")
            continue
        with h5py.File(path) as f:
            a = f.attrs
            tokens, val = f["log/tokens"][:], f["log/val_loss"][:]
            picks = [int(np.argmin(np.abs(tokens - q * tokens[-1]))) for q in (0.25, 0.5, 0.75, 1.0)]
            curve = " / ".join(f"{val[i]:.3f} ({tokens[i] / 1e6:.2f}M)" for i in picks)
            threads = json.loads(a["params"]).get("threads")
            lines.append(f"| {m} | {int(a['tokens']):,} | {int(a['steps'])} | {float(a['wall_seconds']) / 3600:.2f} h "
                         f"({threads} thread) | {int(a['tokens']) / float(a['wall_seconds']):.0f} | {curve} | "
                         f"{float(a['val_loss_untrained']):.3f} |")
    return lines


def heldout(out: Path) -> list[str]:
    lines = ["| organism | model | unigram | KN bigram | KN trigram | model - trigram | better than trigram on | "
             "loss at positions 4-15 / 64-255 | difference (trigram's) |", "|---|---|---|---|---|---|---|---|---|"]
    for m in ORGANISMS:
        c = _load(out / f"card-{m}.json")
        if not c or "baselines" not in c:
            lines.append(f"| {m} | n/a | | | | | | | |")
            continue
        b, ctx = c["baselines"], c["context"]
        row = (f"| {m} | {_ci(c['model'])} | {_f(b['unigram']['value'], 3)} | {_ci(b['bigram'])} | "
               f"{_ci(b['trigram'])} | {_ci(c['model_minus']['trigram'], 3, True)} | "
               f"{c['documents_better']['trigram']} of {c['n_documents']} documents | ")
        if ctx is None:
            row += "n/a | n/a |"
        else:
            row += (f"{_f(ctx['model_short']['value'], 3)} / {_f(ctx['model_long']['value'], 3)} | "
                    f"{_ci(ctx['model_short_minus_long'], 3, True)} ({_ci(ctx['trigram_short_minus_long'], 3, True)}) |")
        lines.append(row)
    c = _load(out / f"card-{ORGANISMS[0]}.json")
    if c and "n_targets" in c:
        lines.append("")
        lines.append(f"{c['n_targets']:,} targets in {c['n_windows']} windows of {c['n_documents']} held-out documents; "
                     "95% intervals from a bootstrap over documents (differences paired).")
    return lines


def measurements(out: Path) -> list[str]:
    cmp = {k: _load(out / f"measure-vs-{k}.json") for k in ("untrained", "constant", "shuffled", "mem")}
    cmp = {k: (v if v and "compare" in v and "layers" in v else None) for k, v in cmp.items()}
    lines = ["| layer | I trained | I untrained | C(1) trained | C(1) untrained | max \\|z\\| | I constant pos. | "
             "C(1) constant pos. | max \\|z\\| | C(1) shuffled pos. | max \\|z\\| |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = cmp["untrained"]
    if base is None:
        return lines + ["| n/a |"]

    def row(kind, layer):
        d = cmp[kind]
        if d is None:
            return None
        return next((r for r in d["compare"]["layers"] if r["layer"] == layer), None)

    for r in base["compare"]["layers"]:
        L = r["layer"]
        c, s = row("constant", L), row("shuffled", L)
        cells = [str(L), _f(r["mi_excess"][0]), _f(r["mi_excess"][1]), _f(r["c1"][0], 3), _f(r["c1"][1], 3),
                 _f(r["max_abs_z_difference"], 1),
                 _f(c["mi_excess"][1]) if c else "n/a", _f(c["c1"][1], 3) if c else "n/a",
                 _f(c["max_abs_z_difference"], 1) if c else "n/a",
                 _f(s["c1"][1], 3) if s else "n/a", _f(s["max_abs_z_difference"], 1) if s else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    nulls = [x["null_fraction_of_sum_c"] for x in base["layers"]]
    lines += ["", "Share of sum_r C(r) that each null keeps (trained olmoe-tiny, layers in order): "
              f"within positions {' / '.join(_f(n['position'], 2) for n in nulls)}; within each sequence "
              f"{' / '.join(_f(n['sequence'], 2) for n in nulls)}; expert ids permuted within each token id "
              f"{' / '.join(_f(n['token'], 2) for n in nulls)} (sums over r = "
              f"{' / '.join('%d-%d' % tuple(n['r_range']) for n in nulls)}, each layer's xi window)."]
    mem = cmp["mem"]
    if mem is not None:
        rows = mem["compare"]["layers"]
        lines += ["", "aux vs mem (olmoe-tiny vs olmoe-tiny-mem): I "
                  f"{' / '.join(_f(x['mi_excess'][0]) for x in rows)} vs {' / '.join(_f(x['mi_excess'][1]) for x in rows)} bits; "
                  f"C(1) {' / '.join(_f(x['c1'][0], 3) for x in rows)} vs {' / '.join(_f(x['c1'][1], 3) for x in rows)} "
                  f"(max |z| {' / '.join(_f(x['max_abs_z_difference'], 1) for x in rows)})."]
    return lines


def load_entropy(models: Path) -> list[str]:
    parts = []
    for m in ORGANISMS:
        path = models / m / "train_log.h5"
        if path.is_file():
            with h5py.File(path) as f:
                h = f["log/load_entropy"][-1]
                parts.append(f"{m} {h.min():.2f}-{h.max():.2f} nats")
    return [f"Per-layer load entropy at the end of training (train_log.h5; log 8 = {math.log(8):.2f}): " + "; ".join(parts) + "."]


def decomposition(fit: Path) -> list[str]:
    d = _load(fit)
    if not d or "layers" not in d:
        return ["(main job summary not found)"]
    layers = [x for x in d["layers"] if x.get("decomposition")]
    if not layers:
        return ["(no decomposition in the main job)"]
    rows = layers[0]["decomposition"]["rows"]
    lines = ["| layer | " + " | ".join(rows[1:]) + " | best model's C(r): max \\|z\\|, p |",
             "|---|" + "---|" * (len(rows) - 1) + "---|"]
    for x in layers:
        dec = x["decomposition"]
        cells = []
        for g, e in zip(dec["gain_bits_per_token"][1:], dec["gain_error_bits_per_token"][1:]):
            cells.append("n/a" if g is None else f"{g:.4f} ± {e:.4f}")
        gof = dec.get("goodness_of_fit") or {}
        p = gof.get("p_value")
        cells.append(f"{_f(gof.get('max_abs_z'), 1)}, {p:.2g}" if p is not None else "n/a")
        lines.append(f"| {x['layer']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"Layer {x['layer']}: {x['decomposition']['summary']}." for x in layers]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--fit", type=Path, default=Path("fits/olmoe-tiny/summary.json"))
    args = ap.parse_args()
    sections = [("Training", training(args.models)), ("Held-out cross-entropy (nats/token)", heldout(args.out)),
                ("Measurements (isingmoe measure A.h5 --compare B.h5 --max-distance 32)",
                 measurements(args.out) + [""] + load_entropy(args.models)),
                ("What routing depends on (isingmoe fit --model olmoe-tiny, held-out bits/token)",
                 decomposition(args.fit))]
    for title, lines in sections:
        print(f"## {title}\n")
        print("\n".join(lines))
        print()


if __name__ == "__main__":
    main()
