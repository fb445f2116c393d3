"""Fixtures of the extraction tests: tiny checkpoints saved like hub ones, and a small corpus."""

import json

import numpy as np
import pytest
from tiny_models import tiny_configs

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Tiny checkpoints saved like hub ones (full model classes, random weights)."""
    from transformers import AutoModelForCausalLM, SwitchTransformersForConditionalGeneration

    root = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, config in tiny_configs().items():
        torch.manual_seed(0)
        if name == "switch":
            model = SwitchTransformersForConditionalGeneration(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
        paths[name] = root / name
        model.save_pretrained(paths[name])
    return paths


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "the", "a", "of", "and", ".", ","]
    docs = [" ".join(rng.choice(words, size=rng.integers(5, 60))) for _ in range(40)]
    path = tmp_path_factory.mktemp("corpus") / "c.jsonl"
    path.write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(docs)))
    return path
