"""Extraction on tiny random-weight models of every supported family (CPU, offline)."""

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402
from tiny_models import VOCAB, run_extract, tiny_configs  # noqa: E402

from ising_moe.cli import main  # noqa: E402
from ising_moe.data import load_experts  # noqa: E402
from ising_moe.errors import (  # noqa: E402
    DataFormatError,
    InvalidParameterError,
    MissingDependencyError,
    ModelNotAvailableError,
    UnsupportedModelError,
)
from ising_moe.extract import extract  # noqa: E402
from ising_moe.extract.capture import RoutingCapture  # noqa: E402
from ising_moe.extract.corpus import read_corpus  # noqa: E402
from ising_moe.extract.registry import MODELS, resolve_model  # noqa: E402


@pytest.mark.parametrize("family", ["switch", "olmoe", "mixtral", "qwen2_moe", "qwen3_moe"])
def test_shapes_order_and_padding(family, checkpoints, corpus, tmp_path):
    res = run_extract(checkpoints[family], corpus, tmp_path, packing="document", router_probs=True)
    data = load_experts(res.path)
    cfg = tiny_configs()[family]
    top_k = 1 if family == "switch" else cfg.num_experts_per_tok
    assert data.experts.shape == (12, len(res.layers), 24, top_k)
    assert data.top_k == top_k and data.n_experts == res.n_experts
    assert data.attrs["weights"] == "pretrained" and data.attrs["tokenizer"].startswith("fallback")
    # variable-length documents: padding is masked and zeroed
    assert not data.mask.all() and data.mask.any(axis=1).all()
    assert (data.experts[~np.broadcast_to(data.mask[:, None, :, None], data.experts.shape)] == 0).all()
    # rank order: probabilities of the chosen experts decrease along rank
    probs = data.router_probs.astype(np.float32)
    valid = np.broadcast_to(data.mask[:, None, :], probs.shape[:3])
    assert np.all(np.diff(probs, axis=-1)[valid] <= 1e-3)
    if top_k > 1:
        e = data.experts[valid]
        assert np.all(e[:, 0] != e[:, 1])
    if family == "switch":
        assert data.dropped is not None and data.dropped[data.mask[:, None, :].repeat(2, 1)].any()
        assert "expert_capacity" in data.attrs
    else:
        assert data.dropped is None


def _independent_routing(model, family, input_ids, attention_mask):
    """Record what each expert actually receives / what the gate computes, without our hooks."""
    seen = {}
    handles = []
    for name, module in model.named_modules():
        if family == "switch" and type(module).__name__ == "SwitchTransformersExperts":
            def pre(mod, args, name=name):
                seen[name] = args[1].detach().clone()  # capacity-masked one-hot dispatch
            handles.append(module.register_forward_pre_hook(pre))
        elif family != "switch" and hasattr(module, "gate") and hasattr(module, "experts"):
            def gate_in(mod, args, name=name):
                logits = torch.nn.functional.linear(args[0], mod.weight)
                seen[name] = torch.topk(torch.softmax(logits.float(), -1), mod.top_k, dim=-1).indices
            handles.append(module.gate.register_forward_pre_hook(gate_in))
    with torch.inference_mode():
        model(input_ids=input_ids, attention_mask=attention_mask)
    for h in handles:
        h.remove()
    return [seen[k] for k in sorted(seen, key=lambda n: int(n.split(".")[2 if family == "switch" else 1]))]


@pytest.mark.parametrize("family", ["switch", "olmoe", "qwen2_moe"])
def test_captured_ids_agree_with_dispatch(family, checkpoints):
    from ising_moe.extract.loading import load_model, model_config

    spec = resolve_model(str(checkpoints[family]))
    loaded = load_model(spec, model_config(spec), device="cpu")
    rng = np.random.default_rng(1)
    ids = torch.from_numpy(rng.integers(2, VOCAB, size=(3, 24))).long()
    att = torch.ones_like(ids)
    fam = "switch_transformers" if family == "switch" else family
    with RoutingCapture(loaded.model, fam, router_probs=False) as cap, torch.inference_mode():
        loaded.model(input_ids=ids, attention_mask=att)
        got = cap.collect(3, 24)
    reference = _independent_routing(loaded.model, family, ids, att)
    assert len(reference) == got["experts"].shape[1]
    for layer, ref in enumerate(reference):
        ours = got["experts"][:, layer]
        if family == "switch":
            dispatch = ref.reshape(3, 24, -1).numpy()
            received = dispatch.sum(-1) > 0
            np.testing.assert_array_equal(received, ~got["dropped"][:, layer])
            np.testing.assert_array_equal(dispatch.argmax(-1)[received], ours[..., 0][received])
        else:
            np.testing.assert_array_equal(ref.reshape(3, 24, -1).numpy(), ours)


@pytest.mark.parametrize("family", ["switch", "olmoe", "mixtral"])
def test_ids_independent_of_batch_size_and_padding_side(family, checkpoints, corpus, tmp_path):
    a = load_experts(run_extract(checkpoints[family], corpus, tmp_path, "a.h5", packing="document",
                                 batch_size=1).path)
    b = load_experts(run_extract(checkpoints[family], corpus, tmp_path, "b.h5", packing="document",
                                 batch_size=5).path)
    valid = np.broadcast_to(a.mask[:, None, :, None], a.experts.shape)
    np.testing.assert_array_equal(a.experts[valid], b.experts[valid])
    if family == "switch":
        np.testing.assert_array_equal(a.dropped, b.dropped)
        # Switch counts left padding against expert capacity, which changes routing: refused, with
        # nothing left behind
        with pytest.raises(InvalidParameterError, match="expert capacity"):
            run_extract(checkpoints[family], corpus, tmp_path, "c.h5", packing="document", batch_size=5,
                        padding_side="left")
        assert not (tmp_path / "c.h5").exists() and not (tmp_path / "c.h5.partial").exists()
    else:
        c = load_experts(run_extract(checkpoints[family], corpus, tmp_path, "c.h5", packing="document",
                                     batch_size=5, padding_side="left").path)
        np.testing.assert_array_equal(a.experts[valid], c.experts[valid])


def test_alias_resolution():
    assert resolve_model("switch-16").hub_id == "google/switch-base-16"
    assert resolve_model("olmoe").top_k == 8 and resolve_model("mixtral").top_k == 2
    assert resolve_model("qwen-moe").family == "qwen2_moe"
    assert resolve_model("google/switch-base-8").alias == "switch-8"
    assert resolve_model("someorg/some-moe").alias == "someorg/some-moe"
    from ising_moe.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="unknown model"):
        resolve_model("not a model")
    # the registry holds the real published configurations, not transformers' defaults
    sw = MODELS["switch-8"].config
    assert sw["d_ff"] == 3072 and sw["num_sparse_encoder_layers"] == 6
    assert MODELS["olmoe"].config["intermediate_size"] == 1024


def test_random_init_real_config_layers():
    from ising_moe.extract.capture import moe_blocks
    from ising_moe.extract.loading import build_config

    config = build_config(MODELS["switch-8"])
    assert config.encoder_sparse_step == 2 and config.d_ff == 3072
    # build a 2-layer version of the same classes to check which blocks are sparse, cheaply
    config.num_layers = 4
    from transformers import SwitchTransformersEncoderModel

    model = SwitchTransformersEncoderModel(config)
    assert [i for i, _ in moe_blocks(model, "switch_transformers")] == [1, 3]


def test_missing_weights_error(tmp_path, checkpoints, corpus, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text((checkpoints["olmoe"] / "config.json").read_text())
    with pytest.raises(ModelNotAvailableError, match="has config.json but no weight files"):
        run_extract(config_only, corpus, tmp_path)
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ModelNotAvailableError, match="`hf download google/switch-base-8`"):
        extract("switch-8", corpus, output=tmp_path / "x.h5", device="cpu", progress=False)
    r = CliRunner().invoke(main, ["extract", "--model", "switch-8", "--corpus", str(corpus),
                                  "-o", str(tmp_path / "y.h5"), "--device", "cpu"])
    assert r.exit_code == 2 and "Traceback" not in r.output and "--random-init" in r.output


def test_unsupported_architecture(tmp_path, corpus):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(UnsupportedModelError, match="switch_transformers, olmoe"):
        run_extract(tmp_path / "gpt2", corpus, tmp_path)


def test_old_transformers_refused(monkeypatch):
    from ising_moe.extract.loading import check_versions

    monkeypatch.setattr(sys.modules["transformers"], "__version__", "5.17.0")
    with pytest.raises(MissingDependencyError, match=">=5.18"):
        check_versions()


def test_malformed_corpora(tmp_path, checkpoints):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataFormatError, match="empty"):
        read_corpus(tmp_path / "empty.txt")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin1"))
    with pytest.raises(DataFormatError, match="not UTF-8"):
        read_corpus(tmp_path / "latin.txt")
    (tmp_path / "nofield.jsonl").write_text('{"body": "hello"}\n')
    with pytest.raises(DataFormatError, match="--text-field"):
        read_corpus(tmp_path / "nofield.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n{oops\n')
    with pytest.raises(DataFormatError, match="bad.jsonl:2"):
        read_corpus(tmp_path / "bad.jsonl")
    r = CliRunner().invoke(main, ["extract", "--model", str(checkpoints["olmoe"]), "--corpus",
                                  str(tmp_path / "latin.txt"), "-o", str(tmp_path / "z.h5")])
    assert r.exit_code == 2 and "not UTF-8" in r.output
    assert read_corpus(None).sha256  # the shipped corpus is there


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from ising_moe import io
    from ising_moe.extract import extract
    stop_after, mid_write = int(sys.argv[3]), sys.argv[4] == "mid"
    count = [0]
    original = io.ChunkStore._atomic_write
    def killing_write(self, path, data):
        if path.name.startswith("chunk-"):
            count[0] += 1
            if count[0] > stop_after:
                if mid_write:  # die with the temporary file half written
                    open(path.with_name(path.name + ".tmp"), "wb").write(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, path, data)
    io.ChunkStore._atomic_write = killing_write
    extract(sys.argv[1], sys.argv[2], output=sys.argv[5], max_length=24, n_sequences=12, batch_size=2,
            device="cpu", progress=False, router_probs=True)
""")


@pytest.mark.parametrize("mid_write", [False, True])
def test_resume_after_sigkill_is_bit_identical(mid_write, checkpoints, corpus, tmp_path):
    import h5py

    ref = run_extract(checkpoints["switch"], corpus, tmp_path, "ref.h5", batch_size=2, router_probs=True).path
    out = tmp_path / "killed.h5"
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(checkpoints["switch"]), str(corpus), "2",
                           "mid" if mid_write else "clean", str(out)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and len(list((tmp_path / "killed.h5.partial").glob("chunk-*.npz"))) == 2
    res = run_extract(checkpoints["switch"], corpus, tmp_path, "killed.h5", batch_size=2, router_probs=True)
    assert res.resumed and not (tmp_path / "killed.h5.partial").exists()
    with h5py.File(ref, "r") as f, h5py.File(out, "r") as g:
        assert sorted(f) == sorted(g)
        for name in f:
            np.testing.assert_array_equal(f[name][()], g[name][()])
        skip = {"created"}
        assert {k: str(v) for k, v in f.attrs.items() if k not in skip} == \
               {k: str(v) for k, v in g.attrs.items() if k not in skip}


def test_cli_extract_random_init_labelled(checkpoints, corpus, tmp_path):
    out = tmp_path / "r.h5"
    r = CliRunner().invoke(main, ["extract", "--model", str(checkpoints["mixtral"]), "--corpus", str(corpus),
                                  "--random-init", "--n-sequences", "3", "--max-length", "16",
                                  "--device", "cpu", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.output[r.output.index("{"):])
    assert payload["weights"] == "random-init"
    data = load_experts(out)
    assert data.is_random_init and "RANDOM-INIT" in data.provenance_note


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(checkpoints, corpus, tmp_path):
    a = load_experts(run_extract(checkpoints["olmoe"], corpus, tmp_path, "cpu.h5").path)
    b = load_experts(run_extract(checkpoints["olmoe"], corpus, tmp_path, "gpu.h5", device="cuda",
                                 dtype="fp32").path)
    assert (a.experts == b.experts).mean() > 0.99
