"""The training loop: the loss falls, a killed run resumes bit-identically, the output loads."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from train_helpers import tiny_spec

from ising_moe.io import open_h5
from ising_moe.train import train


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("preset, balance", [("olmoe-tiny", "aux"), ("olmoe-tiny", "mem"), ("switch-tiny", "aux")])
def test_twenty_steps_lower_the_loss(preset, balance, small_corpus, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_spec(preset, small_corpus, balance=balance), out, progress=False)
    assert result.steps == 20
    assert result.val_loss < result.val_loss_untrained - 0.3
    with open_h5(out / "train_log.h5", kind="train_log") as f:
        train_loss = f["log/train_loss"][:]
        steps = f["log/step"][:]
        sat = f["log/router_saturation"][:]
        load = f["log/expert_load"][:]
        assert f.attrs["finished"]
    assert list(steps) == [0, 5, 10, 15, 20]
    assert f"balance**: {balance}" in (out / "MODEL_CARD.md").read_text()
    assert np.isnan(train_loss[0]) and train_loss[-1] < train_loss[1] - 0.3
    assert np.all(sat[-1] == 1.0) and np.all((sat >= 0) & (sat <= 1))
    np.testing.assert_allclose(load.sum(-1), 1.0)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "MODEL_CARD.md",
                 "untrained/model.safetensors", "untrained/tokenizer.json"):
        assert (out / name).is_file(), name
    assert not (tmp_path / "run.partial").exists()
    # the untrained twin is the step-0 model: different weights, same keys
    w, w0 = _weights(out), _weights(out / "untrained")
    assert w.keys() == w0.keys() and any(not torch.equal(w[k], w0[k]) for k in w)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["olmoe-tiny", "switch-tiny"])
def test_resume_after_kill_is_bit_identical(preset, small_corpus, tmp_path):
    spec = tiny_spec(preset, small_corpus, steps=12, log_every=4, checkpoint_every=4)
    train(spec, tmp_path / "full", progress=False)
    # "killed" after the checkpoint of step 8: only the staging directory is left
    assert train(spec, tmp_path / "cut", progress=False, stop_after=8) is None
    assert (tmp_path / "cut.partial" / "checkpoint.pt").is_file() and not (tmp_path / "cut").exists()
    resumed = train(spec, tmp_path / "cut", progress=False)
    assert resumed.resumed
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open_h5(tmp_path / "full" / "train_log.h5") as f, open_h5(tmp_path / "cut" / "train_log.h5") as g:
        np.testing.assert_array_equal(f["log/val_loss"][:], g["log/val_loss"][:])
        np.testing.assert_array_equal(f["data/step_windows"][:], g["data/step_windows"][:])


def test_other_seed_changes_the_weights(small_corpus, tmp_path):
    """Negative control of the resume test: bit-identity is not automatic."""
    a = train(tiny_spec("olmoe-tiny", small_corpus, steps=4), tmp_path / "a", progress=False)
    b = train(tiny_spec("olmoe-tiny", small_corpus, steps=4, seed=1), tmp_path / "b", progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.val_loss != b.val_loss and not all(torch.equal(wa[k], wb[k]) for k in wa)
