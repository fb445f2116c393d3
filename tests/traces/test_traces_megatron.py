import json

import numpy as np
import pytest
from trace_fixtures import megatron_record, routing, write_jsonl

from ising_moe.errors import DataFormatError, InvalidParameterError
from ising_moe.traces.megatron import read_megatron

LAYERS, TOP_K, E = (1, 3), 2, 16


def _micro_batches(rng, n_steps, passes, seq_len, batch):
    """Routing (steps, passes, batch, seq_len, n_layers, top_k) and the records a rank would write."""
    truth = routing(rng, n_steps * passes * batch * seq_len, len(LAYERS), TOP_K, E).reshape(
        n_steps, passes, batch, seq_len, len(LAYERS), TOP_K)
    records = []
    for step in range(n_steps):
        for j in range(passes):
            # Megatron flattens [sequence, batch]: token t = s * batch + b
            flat = truth[step, j].transpose(1, 0, 2, 3).reshape(seq_len * batch, len(LAYERS), TOP_K)
            for li, layer in enumerate(LAYERS):
                records.append(megatron_record(step, layer, flat[:, li]))
        records.append(megatron_record(step, 0, flat[:, 0], block="mtp", mtp_idx=0))
    return truth, records


def test_micro_batches_passes_and_layers(tmp_path):
    truth, records = _micro_batches(np.random.default_rng(0), n_steps=2, passes=2, seq_len=5, batch=3)
    data = read_megatron(write_jsonl(tmp_path / "router_trace_rank0.jsonl", records), n_experts=E,
                         micro_batch_size=3)
    assert data.layers.tolist() == list(LAYERS) and data.experts.shape == (12, 2, 5, TOP_K) and data.mask.all()
    expected = truth.reshape(12, 5, len(LAYERS), TOP_K).transpose(0, 2, 1, 3)  # (step, pass, row) order
    np.testing.assert_array_equal(data.experts, expected)
    notes = json.loads(data.attrs["import_notes"])
    assert notes["mtp_records_skipped"] == 2 and notes["micro_batch_size"] == 3
    assert data.attrs["source_format"] == "megatron" and data.attrs["weights"] == "imported-trace"
    # the wrong micro-batch size scrambles positions: the same records read with B = 1 differ
    other = read_megatron(tmp_path / "router_trace_rank0.jsonl", n_experts=E, micro_batch_size=1)
    assert other.experts.shape == (4, 2, 15, TOP_K)


def test_trace_directory_with_two_ranks(tmp_path):
    rng = np.random.default_rng(1)
    _, r0 = _micro_batches(rng, 1, 1, 4, 1)
    t1, r1 = _micro_batches(rng, 1, 1, 6, 1)
    for rec in r1:
        rec["rank"] = 1
    write_jsonl(tmp_path / "router_trace_rank0.jsonl", r0)
    write_jsonl(tmp_path / "router_trace_rank1.jsonl", r1)
    (tmp_path / "hidden_states_rank0.bin").write_bytes(b"\0" * 8)  # sidecars are ignored
    data = read_megatron(tmp_path, n_experts=E)
    np.testing.assert_array_equal(data.mask.sum(axis=1), [4, 6])
    np.testing.assert_array_equal(data.experts[1], t1[0, 0, 0].transpose(1, 0, 2))
    assert len(json.loads(data.attrs["source_files"])) == 2


def _rec(step, layer, n=4, k=2, **kw):
    return megatron_record(step, layer, np.tile(np.arange(k), (n, 1)), **kw)


@pytest.mark.parametrize("records,msg", [
    ([{"step": 0, "layer": 1, "rank": 0, "topk": 2}], "missing key"),
    ([dict(_rec(0, 1), topk=3)], "topk says 3"),
    ([dict(_rec(0, 1), num_tokens=5)], "num_tokens says 5"),
    ([_rec(0, 1), _rec(0, 3), _rec(0, 1)], "ragged layers"),
    ([_rec(0, 1), _rec(0, 3, n=3)], "ragged layers"),
    ([_rec(0, 1), _rec(0, 3), _rec(1, 1), _rec(1, 5)], "ragged layers"),
    ([_rec(0, 1, k=1), _rec(0, 3)], "ragged layers"),
    ([dict(_rec(0, 1), step="x")], "must be integers"),
    ([dict(_rec(0, 1), top_indices=[[0, 1], [2]])], "ragged nested lists"),
    ([_rec(0, 1, block="mtp")], "no decoder router records"),
])
def test_malformed_traces_get_named_errors(tmp_path, records, msg):
    with pytest.raises(DataFormatError, match=msg):
        read_megatron(write_jsonl(tmp_path / "router_trace_rank0.jsonl", records))


def test_micro_batch_size_must_divide_tokens(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [_rec(0, 1, n=5)])
    with pytest.raises(DataFormatError, match="not a multiple of micro_batch_size = 2"):
        read_megatron(path, micro_batch_size=2)
    with pytest.raises(InvalidParameterError, match="micro_batch_size"):
        read_megatron(path, micro_batch_size=0)
