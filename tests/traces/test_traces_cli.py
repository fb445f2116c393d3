import hashlib
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from trace_fixtures import megatron_record, routing, sglang_record, vllm_response, write_jsonl, write_torch_zip

from ising_moe.cli import main
from ising_moe.data import load_experts
from ising_moe.errors import MissingDependencyError


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _vllm_file(path, rng, layers=2):
    return write_jsonl(path, [vllm_response(routing(rng, 3, layers, 2, 8), [routing(rng, 2, layers, 2, 8)])])


def test_import_records_provenance_and_exports(tmp_path):
    src = _vllm_file(tmp_path / "resp.jsonl", np.random.default_rng(0))
    out = tmp_path / "data" / "imported.h5"
    r = run("import", "--format", "vllm", src, "-o", out, "--n-experts", 8, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["n_sequences"] == 1 and doc["n_tokens"] == 5 and doc["n_experts_origin"] == "option"
    with h5py.File(out, "r") as f:
        attrs = dict(f.attrs)
    assert attrs["finished"] and attrs["kind"] == "experts"
    assert attrs["weights"] == "imported-trace" and attrs["source_format"] == "vllm"
    assert attrs["model_id"] == "org/moe-model" and attrs["source_version"] == "vllm-0.21.0-abc"
    (source,) = json.loads(attrs["source_files"])
    assert source == {"name": "resp.jsonl", "bytes": src.stat().st_size,
                      "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    assert json.loads(attrs["params"])["format"] == "vllm"
    data = load_experts(out)
    assert not data.is_random_init and data.weights == "imported-trace"

    r = run("export", "--format", "npz", out, "-o", tmp_path / "e.npz")
    assert r.exit_code == 0, r.output
    r = run("import", "--format", "npz", tmp_path / "e.npz", "-o", tmp_path / "back.h5")
    assert r.exit_code == 0 and "inferred" not in r.output
    back = load_experts(tmp_path / "back.h5")
    np.testing.assert_array_equal(back.experts, data.experts)
    np.testing.assert_array_equal(back.mask, data.mask)


def test_inferred_expert_count_is_flagged(tmp_path):
    src = _vllm_file(tmp_path / "r.jsonl", np.random.default_rng(1))
    r = run("import", "--format", "vllm", src, "-o", tmp_path / "o.h5")
    assert r.exit_code == 0 and "NOTE: n_experts inferred" in r.output


def _bad_sources(tmp_path):
    """(format, source, extra args, message) for every kind of bad file."""
    rng = np.random.default_rng(2)
    cases = []
    for fmt, suffix in (("vllm", "jsonl"), ("sglang", "pt"), ("megatron", "jsonl"), ("npz", "npz"),
                        ("parquet", "parquet")):
        empty = tmp_path / f"empty-{fmt}.{suffix}"
        empty.write_bytes(b"")
        cases.append((fmt, empty, [], "is empty"))
        garbled = tmp_path / f"garbled-{fmt}.{suffix}"
        garbled.write_bytes(b"\x00\xff garbage \x13" * 40)
        cases.append((fmt, garbled, [], {"vllm": "not valid JSON", "sglang": "not a torch.save zip archive",
                                          "megatron": "not valid JSON", "npz": "not a .npz archive",
                                          "parquet": "not a readable Parquet"}[fmt]))
        cases.append((fmt, tmp_path / f"missing.{suffix}", [], "no such file"))
    np.savez(tmp_path / "shape.npz", experts=np.zeros((2, 3, 4), dtype=int))
    cases.append(("npz", tmp_path / "shape.npz", [], "expected 4 dimensions"))
    cases.append(("vllm", _vllm_file(tmp_path / "ids.jsonl", rng), ["--n-experts", 4], "n_experts = 4"))
    cases.append(("vllm", write_jsonl(tmp_path / "neg.jsonl", [{"routed_experts": [[[0, -3]]]}]), [], "negative"))
    ragged = [vllm_response(None, [routing(rng, 3, 2, 2, 8)]), vllm_response(None, [routing(rng, 3, 3, 2, 8)])]
    cases.append(("vllm", write_jsonl(tmp_path / "ragged.jsonl", ragged), [], "ragged layers"))
    mega = [{"step": 0, "layer": 1, "rank": 0, "topk": 2}]
    cases.append(("megatron", write_jsonl(tmp_path / "keys.jsonl", mega), [], "missing key(s) top_indices"))
    layers = [megatron_record(0, 1, [[0, 1]]), megatron_record(0, 2, [[0, 1]]), megatron_record(1, 1, [[0, 1]])]
    cases.append(("megatron", write_jsonl(tmp_path / "layers.jsonl", layers), [], "ragged layers"))
    stat = write_torch_zip(tmp_path / "stat.pt", {"rank": 0, "logical_count": np.zeros((2, 4), np.int32)})
    cases.append(("sglang", stat, [], "missing key 'records'"))
    sg = write_torch_zip(tmp_path / "sg.pt", {"records": [sglang_record(0, np.full((1, 2, 2), 9, np.int32),
                                                                        [0, 1], [2])]})
    cases.append(("sglang", sg, [], "twice"))
    cases.append(("npz", tmp_path / "shape.npz", ["--micro-batch-size", 2], "do not apply to the npz format"))
    cases.append(("vllm", _vllm_file(tmp_path / "conflict.jsonl", rng), ["--n-experts", 0], "n_experts must lie"))
    return cases


def test_every_bad_file_exits_2_with_one_line_and_writes_nothing(tmp_path):
    pytest.importorskip("pyarrow")
    for i, (fmt, source, extra, msg) in enumerate(_bad_sources(tmp_path)):
        out_dir = tmp_path / f"out-{i}"
        out_dir.mkdir()
        r = run("import", "--format", fmt, source, "-o", out_dir / "x.h5", *extra)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 2, (fmt, source.name, r.output)
        assert len(lines) == 1 and lines[0].startswith("Error: ") and msg in lines[0], (fmt, source.name, r.output)
        assert "Traceback" not in r.output
        assert list(out_dir.iterdir()) == [], (fmt, source.name)  # no partial output, no temp file


def test_export_errors_exit_2(tmp_path):
    (tmp_path / "not.h5").write_bytes(b"junk")
    r = run("export", "--format", "npz", tmp_path / "not.h5", "-o", tmp_path / "o.npz")
    assert r.exit_code == 2 and "not a readable HDF5 file" in r.output and not (tmp_path / "o.npz").exists()
    src = _vllm_file(tmp_path / "r.jsonl", np.random.default_rng(3))
    assert run("import", "--format", "vllm", src, "-o", tmp_path / "d.h5").exit_code == 0
    (tmp_path / "o.npz").write_bytes(b"keep me")
    r = run("export", "--format", "npz", tmp_path / "d.h5", "-o", tmp_path / "o.npz")
    assert r.exit_code == 2 and "--overwrite" in r.output and (tmp_path / "o.npz").read_bytes() == b"keep me"
    assert run("export", "--format", "npz", tmp_path / "d.h5", "-o", tmp_path / "o.npz", "--overwrite").exit_code == 0
    r = run("import", "--format", "vllm", src, "-o", tmp_path / "d.h5")
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_parquet_without_pyarrow_is_a_named_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    from ising_moe.traces.parquet import read_parquet

    with pytest.raises(MissingDependencyError, match=r"ising-moe\[traces\]"):
        read_parquet(tmp_path / "x.parquet")
    r = run("import", "--format", "parquet", tmp_path / "x.parquet", "-o", tmp_path / "x.h5")
    assert r.exit_code == 2 and "pip install 'ising-moe[traces]'" in r.output


def test_traces_import_neither_torch_nor_pyarrow():
    code = ("import sys, ising_moe.traces, ising_moe.traces.sglang, ising_moe.traces.parquet, ising_moe.cli; "
            "print(','.join(m for m in ('torch', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
