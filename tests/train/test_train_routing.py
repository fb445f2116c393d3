"""Router losses: MEM equals the hand-computed KL (value and gradient); the class's aux loss is the
class's own; the learning-rate schedule."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ising_moe.train.routing import (
    RouterCapture,
    class_aux_loss,
    mem_loss,
    routing_stats,
    warmup_cosine,
    z_loss,
)


def _hand_kl(logits, mask):
    """KL(mean softmax over valid tokens || uniform), numpy."""
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p_bar = p[mask].mean(0)
    return float(np.sum(p_bar * np.log(p_bar / (1.0 / p.shape[-1]))))


def test_mem_loss_is_the_kl_to_uniform():
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(30, 8)) * s for s in (0.5, 2.0, 4.0)]
    masks = [rng.random(30) < 0.7 for _ in layers]
    got = mem_loss([torch.from_numpy(x) for x in layers], [torch.from_numpy(m) for m in masks])
    want = np.mean([_hand_kl(x, m) for x, m in zip(layers, masks)])
    assert float(got) == pytest.approx(want, rel=1e-12)
    # uniform routing on average: zero loss, though no token is routed uniformly
    sym = np.stack([np.eye(4)[i % 4] * 5 for i in range(8)])
    assert float(mem_loss([torch.from_numpy(sym)], [None])) == pytest.approx(0.0, abs=1e-15)
    # negative control: the unmasked mean is a different number
    assert float(mem_loss([torch.from_numpy(layers[0])], [None])) != pytest.approx(_hand_kl(layers[0], masks[0]))


def test_mem_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(8, 4)) * 1.5, dtype=torch.float64, requires_grad=True)
    mask = torch.from_numpy(rng.random(8) < 0.8)
    mem_loss([x], [mask]).backward()
    h = 1e-6
    fd = np.zeros(x.shape)
    base = x.detach().numpy()
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for sign in (1, -1):
                y = base.copy()
                y[i, j] += sign * h
                fd[i, j] += sign * _hand_kl(y, mask.numpy()) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-6, atol=1e-9)
    assert np.all(x.grad.numpy()[~mask.numpy()] == 0)  # masked tokens get no gradient
    assert torch.autograd.gradcheck(lambda t: mem_loss([t], [mask]), (x.detach().requires_grad_(),))


def test_z_loss_value():
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    want = np.mean([math.log(2) ** 2, math.log(math.e + 1 / math.e) ** 2])
    assert float(z_loss([x], [None])) == pytest.approx(want, rel=1e-12)


def _olmoe():
    from transformers import OlmoeConfig, OlmoeForCausalLM

    torch.manual_seed(0)
    config = OlmoeConfig(vocab_size=50, hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return OlmoeForCausalLM(config)


def _switch():
    from transformers import (
        SwitchTransformersConfig,
        SwitchTransformersForConditionalGeneration,
    )

    torch.manual_seed(0)
    config = SwitchTransformersConfig(vocab_size=50, d_model=16, d_kv=8, d_ff=16, num_layers=2,
                                      num_decoder_layers=2, num_sparse_encoder_layers=1,
                                      num_sparse_decoder_layers=1, num_heads=2, num_experts=4, expert_capacity=8,
                                      router_jitter_noise=0.0, dropout_rate=0.0,
                                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return SwitchTransformersForConditionalGeneration(config)


def test_class_aux_loss_is_the_models_own():
    ids = torch.randint(2, 50, (3, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 7:] = False
    model = _olmoe().eval()
    cap = RouterCapture(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
    assert len(cap.names) == 2
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)  # the hooks see the same logits without the flag
    assert float(class_aux_loss("olmoe", cap, model.config, mask)) == pytest.approx(float(out.aux_loss), rel=1e-6)

    model = _switch().eval()
    cap = RouterCapture(model)
    labels = torch.randint(2, 50, (3, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels, output_router_logits=True)
    assert [cap.is_decoder(i) for i in range(len(cap.names))] == [False, True]
    want = float(out.encoder_aux_loss) + float(out.decoder_aux_loss)
    assert want > 0  # sparse every second layer: the router losses are not silently zero
    assert float(class_aux_loss("switch_transformers", cap, model.config, batch_size=3)) == pytest.approx(want, rel=1e-6)


def test_routing_stats_shapes_and_values():
    model = _olmoe().eval()
    cap = RouterCapture(model)
    ids = torch.randint(2, 50, (2, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model(input_ids=ids)
    entropy, load, topk = routing_stats(cap, [None, None], 2)
    assert entropy.shape == (2,) and np.all((entropy > 0) & (entropy <= math.log(4) + 1e-6))
    np.testing.assert_allclose(load.sum(1), 1.0)
    assert topk[0].shape == (12, 2) and np.all(topk[0][:, 0] < topk[0][:, 1])


def test_warmup_cosine():
    lrs = [warmup_cosine(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1) and np.all(np.diff(lrs[9:]) <= 1e-12)
