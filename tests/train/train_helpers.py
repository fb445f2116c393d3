"""Helpers of the training tests: tiny presets (2 layers, width 32)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "data" / "corpus" / "mixed.jsonl.gz"

#: 2-layer, width-32 variants of the presets (seconds per run on one thread)
TINY = {
    "olmoe-tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "num_key_value_heads": 2},
    "switch-tiny": {"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
                    "num_sparse_encoder_layers": 1, "num_sparse_decoder_layers": 1, "num_heads": 2},
}
TINY_TRAIN = {"seq_len": 64, "batch_size": 8, "vocab_size": 320, "warmup_steps": 3, "lr": 3e-3}


def tiny_spec(preset, corpus, steps=20, **kw):
    from ising_moe.train import TrainSpec

    tokens = steps * TINY_TRAIN["seq_len"] * TINY_TRAIN["batch_size"]
    options = {"log_every": 5, "checkpoint_every": 5, "n_val_log": 8, "n_val_final": 8, "n_probe": 4}
    options.update(kw)
    return TrainSpec(preset=preset, corpus=str(corpus), tokens=tokens, config=TINY[preset],
                     train_overrides=TINY_TRAIN, **options)
