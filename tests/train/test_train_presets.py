"""Presets: the OLMoE-shaped organism has OLMoE-1B-7B's routing shape and builds with the real class."""

import pytest

from ising_moe.train import PRESETS, preset


def test_olmoe_shaped_preset_has_the_routing_shape_of_olmoe():
    c = PRESETS["olmoe-tiny-e64"]["config"]
    assert (c["num_experts"], c["num_experts_per_tok"], c["norm_topk_prob"]) == (64, 8, False)
    assert c["num_hidden_layers"] >= 8 and c["intermediate_size"] * 2 == c["hidden_size"]


@pytest.mark.slow
def test_olmoe_shaped_preset_builds_and_runs():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ising_moe.train.loop import _build_config, _model_class

    p = preset("olmoe-tiny-e64")
    config = _build_config(p, 4096, p["train"])
    torch.manual_seed(0)
    model = _model_class(config.model_type).from_config(config).eval()
    n = sum(q.numel() for q in model.parameters())
    assert 13.0e6 < n < 14.5e6  # the size the preset's comment states
    with torch.no_grad():
        out = model(input_ids=torch.arange(2, 34).reshape(2, 16), output_router_logits=True)
    assert len(out.router_logits) == 8 and out.router_logits[0].shape[-1] == 64
