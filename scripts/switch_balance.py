"""Short switch-tiny runs to choose its capacity factor and aux coefficient. Prints JSON.

    python scripts/switch_balance.py --steps 60 --aux 0.01 --capacity-factor 2.0 -o /tmp/sw

Trains the switch-tiny preset (full shipped corpus, seed 0, one thread) for ``--steps`` optimiser
steps with the given overrides (the held-out report of a finished run is skipped: short runs only
compare routing), then measures on ``--n-windows`` validation windows (span-corrupted as at
evaluation) the share of valid encoder tokens that Hugging Face's router drops at expert capacity
(its ``expert_index`` row is all zero), per sparse encoder layer, and reports the load entropy and
validation loss of the training log.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def dropped_share(model_dir: Path, n_windows: int) -> dict:
    import torch
    from transformers import SwitchTransformersForConditionalGeneration

    from ising_moe.train.batches import Batcher
    from ising_moe.train.card import _read_log, _windows
    from ising_moe.train.corpus import SPECIAL_TOKENS
    from ising_moe.train.presets import preset

    attrs, params, _, data = _read_log(model_dir)
    p = preset("switch-tiny")
    p["train"].update(params.get("train_overrides") or {})
    _, tok, win, _ = _windows(model_dir, Path(params["corpus"]), p["train"]["seq_len"], data)
    val = win["validation"][0]
    rows = [val[i] for i in np.unique(np.linspace(0, len(val) - 1, n_windows).round().astype(int))]
    corruption = {"noise_density": p["train"]["noise_density"], "mean_span": p["train"]["mean_span"],
                  "sentinel_ids": [tok.token_to_id(t) for t in SPECIAL_TOKENS[2:]]}
    batcher = Batcher(rows, "switch_transformers", p["train"]["seq_len"], 16, int(params["seed"]), corruption)
    model = SwitchTransformersForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    seen = {}
    hooks = []
    for name, module in model.named_modules():
        if type(module).__name__ == "SwitchTransformersTop1Router" and name.startswith("encoder."):
            hooks.append(module.register_forward_hook(
                lambda m, a, out, name=name: seen.setdefault(name, []).append(out[0].detach())))
    masks = []
    with torch.no_grad():
        for s in range(0, len(rows), 16):
            batch = batcher.batch(rows[s:s + 16], sample_ids=range(s, s + 16), stream=2)
            masks.append(batch["attention_mask"])
            model(**batch)
    out = {}
    for name, chunks in seen.items():
        dropped, valid = 0, 0
        for c, m in zip(chunks, masks):
            routed = c.reshape(m.shape[0], m.shape[1], -1).sum(-1) > 0
            dropped += int((~routed & m).sum())
            valid += int(m.sum())
        out[name] = dropped / valid
    return {"capacity": int(model.config.expert_capacity), "dropped_share": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--aux", type=float, default=None)
    ap.add_argument("--capacity-factor", type=float, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--n-windows", type=int, default=64)
    ap.add_argument("--measure-only", action="store_true", help="Only measure the drops of an existing -o.")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    out = Path(args.output)
    t0 = time.perf_counter()
    if not args.measure_only:
        import ising_moe.train.card as card
        from ising_moe.train import TrainSpec, train

        class _Skip:
            def summary(self):
                return None

        card.refresh = lambda *a, **k: _Skip()  # routing comparison only: no held-out report
        over = {}
        if args.capacity_factor is not None:
            over["capacity_factor"] = args.capacity_factor
        if args.lr is not None:
            over["lr"] = args.lr
        config = {} if args.aux is None else {"router_aux_loss_coef": args.aux}
        spec = TrainSpec(preset="switch-tiny", corpus=str(ROOT / "data/corpus/mixed.jsonl.gz"),
                         tokens=args.steps * 16 * 256, config=config, train_overrides=over, log_every=20,
                         checkpoint_every=10_000, n_val_final=32)
        train(spec, out, progress=False, overwrite=True)
    import h5py

    with h5py.File(out / "train_log.h5") as f:
        log = {"step": f["log/step"][:].tolist(), "val_loss": np.round(f["log/val_loss"][:], 3).tolist(),
               "load_entropy": np.round(f["log/load_entropy"][:], 3).tolist(),
               "wall_seconds": float(f.attrs["wall_seconds"]), "params": json.loads(f.attrs["params"])}
    result = {"log": log, **dropped_share(out, args.n_windows), "seconds": time.perf_counter() - t0}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
