"""Integrity at extraction: non-finite router logits stop the run, weights a checkpoint lacks make the
subject "partly random", a removed expert is named as missing, the corpus has one SHA-256."""

import gzip
import json
import logging
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402
from tiny_models import run_extract  # noqa: E402

from ising_moe.data import load_experts, subject_label  # noqa: E402
from ising_moe.errors import DataFormatError, NonFiniteError  # noqa: E402
from ising_moe.io import file_sha256  # noqa: E402


def _edited(src, dst, edit):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def _nothing_left(tmp_path):
    return not list(tmp_path.glob("out.h5*")) and not list(tmp_path.glob(".out.h5*"))


def test_nonfinite_logits_stop_the_run(checkpoints, corpus, tmp_path):
    """One NaN in an attention weight (not a router's) makes the router logits NaN: stopped, nothing left."""
    def edit(t):
        t["model.layers.0.self_attn.q_proj.weight"][0, 0] = float("nan")

    ckpt = _edited(checkpoints["olmoe"], tmp_path / "nan", edit)
    with pytest.raises(NonFiniteError, match="router logits of MoE layer"):
        run_extract(ckpt, corpus, tmp_path)
    assert _nothing_left(tmp_path)
    run_extract(checkpoints["olmoe"], corpus, tmp_path, "intact.h5")  # negative control: the intact one runs


def test_nonfinite_router_weight_stops_before_any_state(checkpoints, corpus, tmp_path):
    def edit(t):
        t["model.layers.1.mlp.gate.weight"][2, 3] = float("inf")

    ckpt = _edited(checkpoints["olmoe"], tmp_path / "inf", edit)
    with pytest.raises(NonFiniteError, match=r"router of MoE layer 1 .*1 NaN or infinite"):
        run_extract(ckpt, corpus, tmp_path)
    assert _nothing_left(tmp_path)


def test_removed_expert_is_missing_and_the_subject_partly_random(checkpoints, corpus, tmp_path, caplog):
    key = "model.layers.0.mlp.experts.3.down_proj.weight"
    ckpt = _edited(checkpoints["olmoe"], tmp_path / "rm", lambda t: t.pop(key))
    with pytest.raises(DataFormatError, match=r"1 weight\(s\) of the model are missing .*experts\.3\.down_proj"):
        run_extract(ckpt, corpus, tmp_path)
    result = run_extract(ckpt, corpus, tmp_path, "a.h5", allow_missing_weights=True)
    data = load_experts(result.path)
    assert data.weights == "partly-random" and result.weights == "partly-random"
    random = json.loads(data.attrs["random_weights"])
    # the checkpoint's missing key and the fused tensor transformers re-initialised whole
    assert key in random and "layers.0.mlp.experts.down_proj" in random
    assert "PARTLY RANDOM" in data.attrs["subject"] and "PARTLY RANDOM" in subject_label(data)


def test_many_mismatched_keys_one_short_line_and_all_under_verbose(checkpoints, corpus, tmp_path, caplog):
    keys = [f"model.layers.{i}.mlp.gate.weight" for i in (0, 1)] + \
           [f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkvo"]
    ckpt = _edited(checkpoints["olmoe"], tmp_path / "many", lambda t: [t.pop(k) for k in keys])
    with caplog.at_level(logging.INFO, logger="ising_moe.extract.loading"), \
            pytest.raises(DataFormatError) as info:
        run_extract(ckpt, corpus, tmp_path)
    message = str(info.value)
    assert "6 weight(s)" in message and "and 3 more (-v lists them all)" in message and len(message) < 500
    listed = " ".join(r.getMessage() for r in caplog.records)
    assert all(k.removeprefix("model.") in listed for k in keys)


def test_corpus_sha256_is_the_files(tmp_path):
    """One file, one hash: what extraction records is what `isingmoe train` and sha256sum record."""
    from ising_moe.extract.corpus import read_corpus
    from ising_moe.train.corpus import read_documents

    path = tmp_path / "c.jsonl.gz"
    docs = [{"doc_id": f"d{i}", "text": f"text {i}", "split": "validation" if i == 0 else "train"} for i in range(4)]
    with gzip.open(path, "wt") as fh:
        fh.write("".join(json.dumps(d) + "\n" for d in docs))
    assert read_corpus(path).sha256 == read_documents(path).sha256 == file_sha256(path)
    other = tmp_path / "d"
    other.mkdir()
    shutil.copy(path, other / "c.jsonl.gz")
    assert read_corpus(other).sha256 != read_corpus(path).sha256  # a directory: a hash of names and hashes
    np.testing.assert_equal(len(read_corpus(other).documents), 4)


def test_unwritable_output_directory_one_line_before_loading(checkpoints, corpus, tmp_path, monkeypatch):
    """Refused before the model is loaded, so no warning of the loading precedes the error (as root the
    permission bits do not stop writes: the access check is simulated)."""
    from click.testing import CliRunner

    from ising_moe.cli import main
    from ising_moe.extract import job

    monkeypatch.setattr(job, "_writable", lambda directory: False)
    r = CliRunner().invoke(main, ["extract", "--model", str(checkpoints["olmoe"]), "--corpus", str(corpus),
                                  "--n-sequences", "500", "--device", "cpu", "-o", str(tmp_path / "ro" / "out.h5")])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "cannot write in" in lines[0], r.output
