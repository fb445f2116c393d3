"""Helpers of the training tests: a small corpus cut from the shipped one, tiny presets."""

import gzip
import json
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """40 training and 6 validation documents (the first ones of each genre and split), <= 4000 chars."""
    if not SHIPPED.is_file():
        pytest.skip("data/corpus/mixed.jsonl.gz not built")
    keep, counts = [], {}
    with gzip.open(SHIPPED, "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            key = (doc["genre"], doc["split"])
            limit = 12 if doc["split"] == "train" else 2
            if counts.get(key, 0) < limit:
                counts[key] = counts.get(key, 0) + 1
                doc["text"] = doc["text"][:4000]
                keep.append(doc)
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in keep))
    return path


def tiny_spec(preset, corpus, steps=20, **kw):
    from ising_moe.train import TrainSpec

    tokens = steps * TINY_TRAIN["seq_len"] * TINY_TRAIN["batch_size"]
    options = dict(log_every=5, checkpoint_every=5, n_val_log=8, n_val_final=8, n_probe=4)
    options.update(kw)
    return TrainSpec(preset=preset, corpus=str(corpus), tokens=tokens, config=TINY[preset],
                     train_overrides=TINY_TRAIN, **options)
