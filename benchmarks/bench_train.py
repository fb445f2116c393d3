"""Training throughput: tokens/s of ``isingmoe train``'s loop against a bare forward + backward +
AdamW step of the same model, same batch shape, in the same run; and the OLMoE
``experts_implementation`` (eager, grouped_mm, optionally batched_mm) chosen by measurement. Prints JSON.

    python benchmarks/bench_train.py [--presets olmoe-tiny,switch-tiny] [--steps 40] [--threads 1]
                                     [--impls eager,grouped_mm] [--corpus data/corpus/mixed.jsonl.gz]

The loop's time (``wall_seconds`` of the run, setup excluded) includes batching, the router losses,
clipping, the validation and probe evaluations of the log points (every 20 steps) and checkpoints;
its tokens/s are counted like the bare ones (batch x length, padding included), so
``overhead = 1 - loop / bare``. The loop runs on a slice of the corpus (150 training and 20
validation documents) so that tokenizer training stays short. The bare step is timed before and after the loop (their
mean is the reference; their difference shows how much the machine's load drifted meanwhile).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import emit


def _slice_corpus(src: Path, dst: Path, n_train=150, n_val=20) -> Path:
    keep, counts = [], {"train": 0, "validation": 0}
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            limit = n_train if doc["split"] == "train" else n_val
            if counts[doc["split"]] < limit:
                counts[doc["split"]] += 1
                keep.append(line)
    dst.write_text("".join(keep))
    return dst


def _bare(preset: str, impl: str | None, n_steps: int) -> float:
    """Median seconds of one forward + backward + AdamW step on a random batch of the preset's shape."""
    import torch

    from ising_moe.train.loop import _build_config, _model_class
    from ising_moe.train.presets import preset as get_preset

    p = get_preset(preset)
    tr = p["train"]
    config = _build_config(p, tr["vocab_size"], tr)
    torch.manual_seed(0)
    cls = _model_class(config.model_type)
    model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls._from_config(config)
    if impl is not None:
        model.set_experts_implementation(impl)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    b, n = tr["batch_size"], tr["seq_len"]
    if config.model_type == "switch_transformers":  # span-corrupted shapes: ~88% of the window in, ~25% out
        n_in = n - round(0.15 * n) + round(0.15 * n / 3) + 1
        kw = {"input_ids": torch.randint(2, tr["vocab_size"], (b, n_in), generator=g),
              "labels": torch.randint(2, tr["vocab_size"], (b, n - n_in + 2 * round(0.15 * n / 3)), generator=g)}
    else:
        ids = torch.randint(2, tr["vocab_size"], (b, n), generator=g)
        kw = {"input_ids": ids, "labels": ids}
    times = []
    for _ in range(n_steps + 1):
        t0 = time.perf_counter()
        loss = model(**kw).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main():
    import torch

    from ising_moe.train import TrainSpec, train
    from ising_moe.train.presets import preset as get_preset

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", default="olmoe-tiny,switch-tiny")
    parser.add_argument("--impls", default="eager,grouped_mm", help="OLMoE experts implementations to compare")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--bare-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--corpus", default="data/corpus/mixed.jsonl.gz")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = _slice_corpus(Path(args.corpus), Path(tmp) / "slice.jsonl")
        for preset in args.presets.split(","):
            tr = get_preset(preset)["train"]
            per_step = tr["batch_size"] * tr["seq_len"]
            impls = args.impls.split(",") if preset.startswith("olmoe") else [None]
            for impl in impls:
                before = _bare(preset, impl, args.bare_steps)
                spec = TrainSpec(preset=preset, corpus=str(corpus), tokens=args.steps * per_step,
                                 threads=args.threads, experts_implementation=impl, checkpoint_every=1000,
                                 n_val_final=16)
                result = train(spec, Path(tmp) / f"{preset}-{impl}", progress=False)
                after = _bare(preset, impl, args.bare_steps)  # bracketing the loop: load drifts on a shared machine
                bare = (before + after) / 2
                loop_rate = result.steps * per_step / result.wall_seconds
                rows.append({"preset": preset, "experts_implementation": impl or "n/a (Switch)",
                             "threads": args.threads, "batch_tokens": per_step,
                             "bare_tokens_per_s": per_step / bare, "bare_before_after_s": [before, after],
                             "loop_tokens_per_s": loop_rate,
                             "loop_real_tokens_per_s": result.tokens_per_second,
                             "overhead": 1 - loop_rate / (per_step / bare), "steps": result.steps})
    olmoe = [r for r in rows if r["preset"].startswith("olmoe")]
    best = max(olmoe, key=lambda r: r["loop_tokens_per_s"])["experts_implementation"] if olmoe else None
    emit("train", {"rows": rows, "fastest_experts_implementation": best})


if __name__ == "__main__":
    main()
