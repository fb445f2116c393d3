"""Extraction refuses damaged or mismatched checkpoints, leaves no state on user errors, fails fast
offline, records the provenance of local checkpoints, and finds shipped data from any directory."""

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tiny_models import run_extract  # noqa: E402

from ising_moe.cli import main  # noqa: E402
from ising_moe.data import load_experts  # noqa: E402
from ising_moe.errors import (  # noqa: E402
    DataFormatError,
    ModelNotAvailableError,
    UnsupportedModelError,
)
from ising_moe.extract.registry import find_data_file  # noqa: E402


def no_state(tmp_path, name="out.h5"):
    return not (tmp_path / name).exists() and not list(tmp_path.glob("*.partial")) and not list(
        tmp_path.glob(".*.tmp-*"))


def cli(*args):
    return CliRunner().invoke(main, ["extract", *map(str, args)])


def one_line_error(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error:") \
        and "Traceback" not in result.output


def edited_copy(src, dst, drop=(), add=None):
    """A copy of a checkpoint with tensors removed from / added to its model.safetensors."""
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    for key in drop:
        del tensors[key]
    tensors.update(add or {})
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_missing_router_weight_stops_the_run(checkpoints, corpus, tmp_path):
    key = "model.layers.1.mlp.gate.weight"
    ckpt = edited_copy(checkpoints["olmoe"], tmp_path / "damaged", drop=[key])
    with pytest.raises(DataFormatError, match=r"missing .*layers\.1\.mlp\.gate\.weight.*--allow-missing-weights"):
        run_extract(ckpt, corpus, tmp_path)
    assert no_state(tmp_path)
    r = cli("--model", ckpt, "--corpus", corpus, "-o", tmp_path / "out.h5", "--device", "cpu")
    assert one_line_error(r) and "layers.1.mlp.gate.weight" in r.output and no_state(tmp_path)
    # explicitly allowed: runs, says which weights were random, and is reproducible (seeded)
    a = run_extract(ckpt, corpus, tmp_path, "a.h5", allow_missing_weights=True)
    b = run_extract(ckpt, corpus, tmp_path, "b.h5", allow_missing_weights=True)
    da, db = load_experts(a.path), load_experts(b.path)
    assert json.loads(da.attrs["random_weights"]) == ["layers.1.mlp.gate.weight"]
    assert da.attrs["params"]["allow_missing_weights"] is True
    assert "layers.1.mlp.gate.weight" in da.provenance_note
    np.testing.assert_array_equal(da.experts, db.experts)
    intact = load_experts(run_extract(checkpoints["olmoe"], corpus, tmp_path, "intact.h5").path)
    assert json.loads(intact.attrs["random_weights"]) == [] and intact.provenance_note is None
    assert (intact.experts[:, 1] != da.experts[:, 1]).any()  # the random router routes differently


def test_unexpected_weight_stops_the_run(checkpoints, corpus, tmp_path):
    ckpt = edited_copy(checkpoints["mixtral"], tmp_path / "extra",
                       add={"model.layers.0.mlp.surplus.weight": torch.zeros(3, 3)})
    with pytest.raises(DataFormatError, match=r"not used by the model .*layers\.0\.mlp\.surplus\.weight"):
        run_extract(ckpt, corpus, tmp_path)
    assert no_state(tmp_path)


def test_weight_shapes_unlike_config_stop_the_run(checkpoints, corpus, tmp_path):
    ckpt = tmp_path / "reshaped"
    shutil.copytree(checkpoints["olmoe"], ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["intermediate_size"] += 4
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataFormatError, match=r"another shape than config.json .*layers\.0\.mlp\.experts"):
        run_extract(ckpt, corpus, tmp_path)
    assert no_state(tmp_path)


@pytest.mark.parametrize("damage, message", [
    ("empty", "is empty"), ("half", "truncated"), ("garbled", "header"), ("short", "truncated")])
def test_damaged_safetensors(damage, message, checkpoints, corpus, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["olmoe"], ckpt)
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    n_header = int.from_bytes(data[:8], "little")
    damaged = {"empty": b"", "half": data[: len(data) // 2], "short": data[:5],
               "garbled": data[:8] + b"#" * n_header + data[8 + n_header:]}[damage]
    weights.write_bytes(damaged)
    with pytest.raises(DataFormatError, match=message):
        run_extract(ckpt, corpus, tmp_path)
    r = cli("--model", ckpt, "--corpus", corpus, "-o", tmp_path / "out.h5", "--device", "cpu")
    assert one_line_error(r) and "model.safetensors" in r.output and no_state(tmp_path)


def test_family_without_moe_layer(corpus, tmp_path):
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    config = Qwen2MoeConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=4, intermediate_size=32, moe_intermediate_size=16,
                            shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                            mlp_only_layers=[0, 1])
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "dense")
    with pytest.raises(UnsupportedModelError, match=r"no MoE layer .*mlp_only_layers = \[0, 1\]"):
        run_extract(tmp_path / "dense", corpus, tmp_path)
    assert no_state(tmp_path)


@pytest.mark.parametrize("layers, message", [("7", "not MoE layers"), ("-1", ">= 0"), ("1,1", "twice"),
                                             ("x", "integers")])
def test_bad_layers_leave_no_state(layers, message, checkpoints, corpus, tmp_path):
    args = ["--model", checkpoints["olmoe"], "--corpus", corpus, "-o", tmp_path / "out.h5", "--device", "cpu",
            "--max-length", 16, "--n-sequences", 4]
    r = cli(*args, "--layers", layers)
    assert one_line_error(r) and message in r.output and no_state(tmp_path), r.output
    # the corrected command starts clean
    r = cli(*args, "--layers", "1")
    assert r.exit_code == 0, r.output
    assert load_experts(tmp_path / "out.h5").layers.tolist() == [1]


def test_local_directory_says_what_is_wrong(checkpoints, corpus, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_json = tmp_path / "bad_json"
    shutil.copytree(checkpoints["olmoe"], bad_json)
    (bad_json / "config.json").write_text('{"model_type": "olmoe", ')
    no_type = tmp_path / "no_type"
    shutil.copytree(checkpoints["olmoe"], no_type)
    (no_type / "config.json").write_text('{"hidden_size": 4}')
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / "notes.txt").write_text("x")
    for path, message in ((empty, "is an empty directory"), (bad_json, r"config.json is not valid JSON \(line 1"),
                          (no_type, "no 'model_type'"), (no_config, r"has no config.json \(it holds notes.txt\)")):
        r = cli("--model", path, "--corpus", corpus, "-o", tmp_path / "out.h5", "--device", "cpu")
        assert one_line_error(r), r.output
        assert "download" not in r.output.split(":", 2)[-1].split("(written by")[0]
        with pytest.raises((ModelNotAvailableError, DataFormatError), match=message):
            run_extract(path, corpus, tmp_path)
    assert no_state(tmp_path)


def test_hub_unreachable_fails_fast_with_one_line(corpus, tmp_path, monkeypatch):
    """No cached copy, HF_HUB_OFFLINE unset, the endpoint refuses connections: one line, in seconds
    (before: 32 s of retries and 24 lines of warnings)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    start = time.perf_counter()
    r = cli("--model", "someorg/some-moe", "--corpus", corpus, "-o", tmp_path / "out.h5", "--device", "cpu")
    elapsed = time.perf_counter() - start
    assert one_line_error(r), r.output
    assert "cannot be reached" in r.output and "hf download someorg/some-moe" in r.output
    assert elapsed < 5, elapsed
    assert no_state(tmp_path)


def test_download_command_is_the_installed_cli():
    """huggingface_hub >= 1 ships `hf` (no `huggingface-cli`): the advice names a command that exists."""
    from ising_moe.extract.checkpoint import download_command

    command = download_command("org/name", "v1")
    tool = command.split()[0]
    assert command.endswith("download org/name --revision v1")
    assert (Path(sys.executable).parent / tool).exists() or shutil.which(tool)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_checkpoint_provenance(checkpoints, corpus, tmp_path):
    res = run_extract(checkpoints["switch"], corpus, tmp_path)
    data = load_experts(res.path)
    files = json.loads(data.attrs["checkpoint_files"])
    expected = {name: _sha(checkpoints["switch"] / name) for name in ("config.json", "model.safetensors")}
    assert files == expected
    combined = hashlib.sha256("".join(f"{n}\0{expected[n]}\n" for n in sorted(expected)).encode()).hexdigest()
    assert data.attrs["checkpoint_sha256"] == combined == data.attrs["params"]["checkpoint_sha256"]
    assert data.attrs["revision"] == "local"
    assert data.attrs["stack"] == "encoder"  # Switch: the encoder's routing only
    assert data.attrs["weights"] == "pretrained" and data.attrs["subject"].endswith(str(checkpoints["switch"]))
    r = CliRunner().invoke(main, ["extract", "--help"])
    assert "only the encoder runs" in " ".join(r.output.split())


def test_shipped_data_found_from_another_directory(checkpoints, tmp_path, monkeypatch):
    """The shipped expert files and corpus resolve relative to the installation, not the cwd."""
    from ising_moe.extract.registry import shipped_data_dir

    monkeypatch.delenv("ISINGMOE_DATA", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    found = find_data_file("switch-8")
    assert found is not None and found.resolve() == (shipped_data_dir() / "switch-8.random-init.h5").resolve()
    # extraction with the default corpus, from elsewhere
    res = run_extract(checkpoints["olmoe"], None, tmp_path, n_sequences=2, max_length=16)
    assert load_experts(res.path).attrs["corpus"] == "shipped:kjv.txt.gz"
    # the main job finds its data: it fails only on the (deliberately) unknown layer of that file
    r = CliRunner().invoke(main, ["fit", "--model", "switch-8", "--layers", "99"])
    assert r.exit_code == 2 and "switch-8.random-init.h5" in r.output and "layer 99" in r.output, r.output
    # an explicit data directory ($ISINGMOE_DATA, --data-dir) comes first
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(found, own / "switch-8.h5")
    monkeypatch.setenv("ISINGMOE_DATA", str(own))
    assert find_data_file("switch-8") == own / "switch-8.h5"
    monkeypatch.delenv("ISINGMOE_DATA")
    assert find_data_file("switch-8", own) == own / "switch-8.h5"


def test_data_dir_option_sets_default_output(checkpoints, corpus, tmp_path):
    args = ["--model", checkpoints["olmoe"], "--corpus", corpus, "--data-dir", tmp_path / "d", "--device", "cpu",
            "--max-length", 16, "--n-sequences", 2]
    assert cli(*args).exit_code == 0
    assert cli(*args, "--positions", "constant").exit_code == 0  # an ablation gets its own default name
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["olmoe.h5", "olmoe.positions-constant.h5"]


@pytest.mark.parametrize("args, message", [
    (["--shards", "0"], "shards"),
    (["--seed", "-1"], "seed"),
    (["--device", "tpu"], "device must be"),
    (["--n-sequences", "0"], "n_sequences"),
    (["--max-length", "1"], "max_length"),
    (["--reduced"], "--reduced needs --random-init"),
    (["--corpus", "/nonexistent/corpus.txt"], "does not exist"),
    (["--model", "switch-8", "--padding-side", "left"], "expert capacity"),
    (["--model", "switch-8", "--positions", "reversed"], "relative position bias"),
    (["--model", "olmoe-tiny"], "isingmoe train --preset olmoe-tiny --balance aux -o"),
    (["--model", "not a model"], "unknown model"),
    (["--model", "/no/such/checkpoint"], "no checkpoint directory /no/such/checkpoint"),
    (["--layers", "1;2"], "comma-separated integers"),
])
def test_bad_extract_inputs_table(args, message, checkpoints, corpus, tmp_path, monkeypatch):
    """Fuzz table of bad inputs: exit 2, one line, no traceback, nothing left behind."""
    monkeypatch.setenv("ISINGMOE_MODELS", str(tmp_path / "models"))
    base = {"--model": str(checkpoints["olmoe"]), "--corpus": str(corpus), "-o": str(tmp_path / "out.h5"),
            "--device": "cpu", "--max-length": "16", "--n-sequences": "2"}
    for i in range(len(args) - 1):
        if args[i] in base:
            base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv] + [a for i, a in enumerate(args)
                                                     if a not in base and (i == 0 or args[i - 1] not in base)]
    r = cli(*flat)
    assert one_line_error(r) and message in r.output, r.output
    assert no_state(tmp_path)


def test_existing_output_refused_before_any_work(checkpoints, corpus, tmp_path):
    (tmp_path / "out.h5").write_bytes(b"keep")
    r = cli("--model", checkpoints["olmoe"], "--corpus", corpus, "-o", tmp_path / "out.h5", "--device", "cpu")
    assert one_line_error(r) and "--overwrite" in r.output
    assert (tmp_path / "out.h5").read_bytes() == b"keep" and not list(tmp_path.glob("*.partial"))
