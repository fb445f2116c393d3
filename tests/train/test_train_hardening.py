"""Training stops on non-finite values keeping the last good checkpoint, refuses runs beyond its time
budget, respects the lock, and writes weights others can read with hashes extraction checks."""

import dataclasses
import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from train_helpers import tiny_spec  # noqa: E402

from ising_moe.errors import InvalidParameterError, NonFiniteError, OutputLockedError  # noqa: E402
from ising_moe.io import file_sha256, open_h5  # noqa: E402
from ising_moe.outputs import _start_time  # noqa: E402
from ising_moe.train import train  # noqa: E402


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(small_corpus, tmp_path):
    base = tiny_spec("olmoe-tiny", small_corpus, steps=6, checkpoint_every=2)
    # weights of order 1e25 overflow in the first forward pass after an update
    spec = dataclasses.replace(base, config={**base.config, "initializer_range": 1e25})
    with pytest.raises(NonFiniteError, match=r"last good checkpoint \(step 0\)"):
        train(spec, tmp_path / "out", progress=False)
    work = tmp_path / "out.partial"
    assert not (tmp_path / "out").exists() and (work / "checkpoint.pt").is_file()
    state = torch.load(work / "checkpoint.pt", weights_only=False)
    assert state["step"] == 0 and all(bool(torch.isfinite(v).all()) for v in state["model"].values())
    assert "diverged" in json.loads((work / "manifest.json").read_text())
    with pytest.raises(InvalidParameterError, match="would diverge again"):  # the same command: refused
        train(spec, tmp_path / "out", progress=False)


def test_finished_run_weights_public_and_hashed(small_corpus, tmp_path):
    old = os.umask(0o022)
    try:
        train(tiny_spec("olmoe-tiny", small_corpus, steps=2), tmp_path / "out", progress=False)
    finally:
        os.umask(old)
    out = tmp_path / "out"
    for weights in (out / "model.safetensors", out / "untrained" / "model.safetensors"):
        assert weights.stat().st_mode & 0o777 == 0o644, oct(weights.stat().st_mode)
    with open_h5(out / "train_log.h5", kind="train_log") as f:
        assert f.attrs["weights_sha256"] == file_sha256(out / "model.safetensors")
        assert f.attrs["untrained_weights_sha256"] == file_sha256(out / "untrained" / "model.safetensors")
        assert json.loads(f.attrs["model_config"]) == json.loads((out / "config.json").read_text())


def test_time_budget_and_lock(small_corpus, tmp_path):
    spec = tiny_spec("olmoe-tiny", small_corpus, steps=2)
    with pytest.raises(InvalidParameterError, match="pass --yes"):
        train(spec, tmp_path / "out", progress=False, max_seconds=1e-6)
    assert sorted(os.listdir(tmp_path)) == []
    lock = tmp_path / ".locked.lock"
    lock.write_text(f"1 {_start_time(1)}")  # held by a live process (PID 1)
    with pytest.raises(OutputLockedError):
        train(spec, tmp_path / "locked", progress=False)
    assert sorted(os.listdir(tmp_path)) == [".locked.lock"]
    assert train(spec, tmp_path / "out", progress=False, max_seconds=1e-6, confirmed=True).steps == 2
