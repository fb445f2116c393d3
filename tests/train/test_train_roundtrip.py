"""A trained checkpoint loads with the standard classes and round-trips through extraction."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from train_helpers import tiny_spec

from ising_moe.data import load_experts
from ising_moe.extract import extract
from ising_moe.train import train


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("organism") / "olmoe"
    train(tiny_spec("olmoe-tiny", small_corpus, steps=6), out, progress=False)
    return out


@pytest.mark.slow
def test_extraction_ids_equal_a_direct_forward_hook(trained, small_corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = extract(str(trained), small_corpus, output=tmp_path / "x.h5", max_length=32, n_sequences=4,
                     batch_size=2, device="cpu", progress=False)
    assert not result.tokenizer.startswith("fallback")  # the model's own tokenizer was used
    data = load_experts(tmp_path / "x.h5")
    assert data.experts.shape == (4, 2, 32, 2)

    model = AutoModelForCausalLM.from_pretrained(trained).eval()
    tok = AutoTokenizer.from_pretrained(trained)
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1 == model.config.eos_token_id
    seen = []
    hooks = [m.mlp.gate.register_forward_hook(lambda mod, a, out: seen.append(out[2]))
             for m in model.model.layers]
    ids = torch.from_numpy(np.asarray(data.token_ids, dtype=np.int64))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.from_numpy(data.mask))
    for h in hooks:
        h.remove()
    direct = np.stack([s.reshape(4, 32, 2).numpy() for s in seen], axis=1)
    valid = data.mask[:, None, :, None].repeat(2, 1).repeat(2, 3)
    np.testing.assert_array_equal(data.experts[valid], direct[valid])
    # negative control: the untrained twin routes differently
    twin = AutoModelForCausalLM.from_pretrained(trained / "untrained").eval()
    seen.clear()
    hooks = [m.mlp.gate.register_forward_hook(lambda mod, a, out: seen.append(out[2])) for m in twin.model.layers]
    with torch.no_grad():
        twin(input_ids=ids, attention_mask=torch.from_numpy(data.mask))
    other = np.stack([s.reshape(4, 32, 2).numpy() for s in seen], axis=1)
    assert not np.array_equal(other[valid], direct[valid])
