"""Cross-layer mutual information of the shipped organisms beside OLMoE's and Mixtral's (docs/lattice.md).

Organisms: every pair of MoE layers of each shipped expert file (top-1, router's choice), in-sample
plug-in MI over all valid tokens, bootstrap error over sequences. Real models: the public routing
counts in ../shared/reference/olmoe-routing-counts/ (read in place, never copied), top-1 joint
counts of layers (0, 7) and (7, 15) per domain, the same plug-in estimator. Prints JSON.

    python scripts/crosslayer_mi.py [--reference DIR]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from ising_moe.data import load_experts
from ising_moe.fit.lattice.analysis import crosslayer_mutual_information, mutual_information

FILES = ("olmoe-tiny", "olmoe-tiny-mem", "olmoe-tiny-untrained", "olmoe-tiny.positions-shuffled", "switch-tiny",
         "switch-tiny-untrained")


def organisms(data_dir: Path) -> dict:
    out = {}
    for name in FILES:
        path = data_dir / f"{name}.h5"
        if not path.is_file():
            continue
        d = load_experts(path)
        res = crosslayer_mutual_information(d, n_bootstrap=100, seed=0)
        lay = res["layers"]
        out[name] = {"weights": d.weights, "n_experts": d.n_experts, "n_tokens": res["n_tokens"],
                     "plugin_bias_bits": res["bias"],
                     "pairs": {f"{lay[a]}-{lay[b]}": [round(float(res["mi"][a, b]), 4),
                                                      round(float(res["error"][a, b]), 4)]
                               for a in range(len(lay)) for b in range(a + 1, len(lay))}}
    return out


def reference(ref_dir: Path) -> dict:
    out = {}
    for model in ("olmoe", "mixtral"):
        path = ref_dir / f"{model}.npz"
        if not path.is_file():
            continue
        z = np.load(path)
        pairs = [tuple(int(v) for v in p) for p in z["layer_pairs"]]
        per = {}
        for key in z.files:
            if key.startswith("expert_counts_crosslayer_top1__"):
                domain = key.split("__", 1)[1]
                counts = z[key]
                per[domain] = {f"{a}-{b}": {"mi_bits": round(mutual_information(counts[k]), 3),
                                            "n_tokens": int(counts[k].sum()),
                                            "plugin_bias_bits": round((counts[k].shape[0] - 1) ** 2
                                                                      / (2 * counts[k].sum() * math.log(2)), 3)}
                               for k, (a, b) in enumerate(pairs)}
        out[model] = per
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--reference", type=Path, default=Path("../shared/reference/olmoe-routing-counts"))
    args = ap.parse_args()
    print(json.dumps({"organisms": organisms(args.data), "reference": reference(args.reference)}, indent=1))


if __name__ == "__main__":
    main()
