"""Extraction throughput: tokens/s of ``isingmoe extract``'s capture (hooks, copies to host)
against a bare forward pass of the same model (encoder only for Switch), same batch and dtype,
for the switch-base-8 and switch-base-16 architectures with random weights. Prints JSON.

    python benchmarks/bench_extract.py [--device cuda] [--dtype bf16] [--batch-size 32] [--n-batches 20]

Meant for a GPU; on a CPU use small --n-batches (the ratio is still meaningful).

With ``--shards N`` it also times the whole ``extract()`` job (corpus, tokenizer, model load,
forward passes, staging, merge) on the shipped corpus in one process and in N processes (CPU, one
model replica each), and checks that both files hold identical datasets:

    python benchmarks/bench_extract.py --device cpu --models olmoe --shards 2 --n-sequences 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import emit


def main():
    import torch

    from ising_moe.extract.capture import RoutingCapture
    from ising_moe.extract.loading import load_model, model_config
    from ising_moe.extract.registry import resolve_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--n-batches", type=int, default=20)
    parser.add_argument("--models", default="switch-8,switch-16")
    parser.add_argument("--shards", type=int, default=1, help="also time extract() with this many processes")
    parser.add_argument("--n-sequences", type=int, default=64, help="sequences of the sharded comparison")
    args = parser.parse_args()
    dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rng = np.random.default_rng(0)
    rows = []
    for alias in args.models.split(","):
        spec = resolve_model(alias)
        config = model_config(spec, random_init=True)
        loaded = load_model(spec, config, dtype=dtype, device=args.device, random_init=True, seed=0)
        ids = torch.from_numpy(rng.integers(2, config.vocab_size, size=(args.batch_size, args.length))).to(args.device)
        att = torch.ones_like(ids)
        tokens = args.batch_size * args.length * args.n_batches

        def bare():
            with torch.inference_mode():
                for _ in range(args.n_batches):
                    loaded.model(input_ids=ids, attention_mask=att)
            sync()

        def captured():
            with RoutingCapture(loaded.model, loaded.family) as cap, torch.inference_mode():
                for _ in range(args.n_batches):
                    cap.reset()
                    loaded.model(input_ids=ids, attention_mask=att)
                    cap.collect(args.batch_size, args.length)
            sync()

        bare()  # warm-up
        times = {}
        for name, fn in (("bare", bare), ("extract", captured), ("bare_again", bare)):
            t0 = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - t0
        t_bare = min(times["bare"], times["bare_again"])
        rows.append({
            "model": alias, "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "dtype": dtype, "batch_size": args.batch_size, "length": args.length,
            "bare_tokens_per_s": tokens / t_bare, "extract_tokens_per_s": tokens / times["extract"],
            "extract_over_bare": t_bare / times["extract"],
        })
        loaded = None  # free the model before the next one
        if args.shards > 1:
            rows.append(_sharded(alias, args))
    emit("extract", rows)


def _sharded(alias: str, args) -> dict:
    """End-to-end extract() in 1 and in ``args.shards`` processes: wall time and identical datasets."""
    import tempfile
    import time
    from pathlib import Path

    import h5py

    from ising_moe.extract import extract

    reduced = alias == "olmoe"
    times, paths = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for shards in (1, args.shards):
            paths[shards] = Path(tmp) / f"{shards}.h5"
            t0 = time.perf_counter()
            res = extract(alias, output=paths[shards], random_init=True, reduced=reduced, device=args.device,
                          max_length=args.length, n_sequences=args.n_sequences, batch_size=args.batch_size,
                          shards=shards, progress=False)
            times[shards] = time.perf_counter() - t0
        with h5py.File(paths[1], "r") as f, h5py.File(paths[args.shards], "r") as g:
            identical = sorted(f) == sorted(g) and all(np.array_equal(f[k][()], g[k][()]) for k in f)
    return {"model": alias, "device": args.device, "n_tokens": res.n_tokens, "shards": args.shards,
            "single_s": times[1], "sharded_s": times[args.shards], "speedup": times[1] / times[args.shards],
            "identical_datasets": bool(identical)}


if __name__ == "__main__":
    main()
