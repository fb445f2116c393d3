import numpy as np
import pytest
from trace_fixtures import routing

from ising_moe.data import ExpertSequences, load_experts, save_experts
from ising_moe.errors import DataFormatError
from ising_moe.traces import export_trace, import_trace
from ising_moe.traces.npz import read_npz
from ising_moe.traces.parquet import read_parquet

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _switch_like(rng):
    """Ragged, top-2, with capacity drops, token ids, a fully padded middle sequence, layers 1 and 3."""
    n_seq, n_pos = 4, 6
    experts = routing(rng, n_seq * n_pos, 2, 2, 8).reshape(n_seq, n_pos, 2, 2).transpose(0, 2, 1, 3)
    mask = np.ones((n_seq, n_pos), dtype=bool)
    mask[0, 4:] = False
    mask[1] = False
    mask[3, 1] = False  # a gap
    experts = np.where(mask[:, None, :, None], experts, 0)
    dropped = (rng.random((n_seq, 2, n_pos)) < 0.2) & mask[:, None, :]
    return ExpertSequences(experts=experts.astype(np.uint8), mask=mask, n_experts=8, layers=[1, 3], dropped=dropped,
                           token_ids=rng.integers(0, 50, (n_seq, n_pos)), attrs={"model_id": "m"})


def _same(a, b, token_ids=True):
    np.testing.assert_array_equal(a.experts, b.experts)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.layers, b.layers)
    np.testing.assert_array_equal(a.dropped, b.dropped)
    assert a.n_experts == b.n_experts
    if token_ids:
        np.testing.assert_array_equal(a.token_ids, b.token_ids)


def test_round_trip_h5_npz_h5_parquet_h5(tmp_path):
    original = _switch_like(np.random.default_rng(0))
    save_experts(original, tmp_path / "orig.h5")
    export_trace(tmp_path / "orig.h5", tmp_path / "a.npz", "npz")
    import_trace(tmp_path / "a.npz", tmp_path / "a.h5", "npz")
    export_trace(tmp_path / "a.h5", tmp_path / "b.parquet", "parquet")
    import_trace(tmp_path / "b.parquet", tmp_path / "b.h5", "parquet")
    a, b = load_experts(tmp_path / "a.h5"), load_experts(tmp_path / "b.h5")
    _same(original, a)
    _same(original, b, token_ids=False)  # the long table holds routing only
    assert a.attrs["source_format"] == "npz" and b.attrs["source_format"] == "parquet"
    assert a.attrs["n_experts_origin"] == b.attrs["n_experts_origin"] == "file"
    # and once more: the re-imported file exports to the same table
    export_trace(tmp_path / "b.h5", tmp_path / "c.parquet", "parquet")
    assert pq.read_table(tmp_path / "c.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


def test_parquet_ragged_sequences_are_padded(tmp_path):
    rows = []
    for seq_id, length in ((70, 3), (-2, 5)):  # any integer ids, stored in sorted order
        for pos in range(length):
            for layer in (4, 7):
                for rank, expert in enumerate(((pos + layer) % 6, (pos + layer + 1) % 6)):
                    rows.append((seq_id, pos, layer, rank, expert))
    table = pa.table(dict(zip(("sequence", "position", "layer", "rank", "expert"), map(list, zip(*rows)))))
    pq.write_table(table, tmp_path / "r.parquet")
    data = read_parquet(tmp_path / "r.parquet", n_experts=6)
    assert data.experts.shape == (2, 2, 5, 2) and data.layers.tolist() == [4, 7]
    np.testing.assert_array_equal(data.mask.sum(axis=1), [5, 3])
    assert data.experts[1, 1, 2].tolist() == [(2 + 7) % 6, (2 + 7 + 1) % 6]
    assert not data.experts[1, :, 3:].any()


def _table(**overrides):
    cols = {"sequence": [0, 0, 0, 0], "position": [0, 0, 1, 1], "layer": [0, 0, 0, 0], "rank": [0, 1, 0, 1],
            "expert": [1, 2, 3, 4]}
    cols.update(overrides)
    return pa.table({k: v for k, v in cols.items() if v is not None})


@pytest.mark.parametrize("table,msg", [
    (_table(expert=None), "missing column"),
    (_table(rank=[0, 0, 0, 1]), "duplicate rows"),
    (_table(layer=[0, 0, 0, 1]), "ragged layers"),
    (_table(expert=[1.0, 2.0, 3.0, 4.0]), "must hold integers"),
    (_table(expert=pa.array([1, None, 3, 4], pa.int64())), "null"),
    (_table(position=[0, 0, -1, -1]), "negative"),
    (_table(expert=[1, 1, 3, 4]), "twice"),
    (_table(position=[0, 0, 2**40, 2**40]), "implausible"),
])
def test_malformed_parquet_gets_named_errors(tmp_path, table, msg):
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataFormatError, match=msg):
        read_parquet(tmp_path / "bad.parquet")


@pytest.mark.parametrize("arrays,msg", [
    ({"mask": np.ones((2, 3), bool)}, "missing key 'experts'"),
    ({"experts": np.zeros((2, 3, 1), int)}, "expected 4 dimensions"),
    ({"experts": np.array([[0, 1]]), "mask": np.ones((2, 2), bool)}, "mask must be bool of shape"),
    ({"experts": np.array([[0, 9]]), "n_experts": np.int64(4)}, "expert id 9 >= n_experts = 4"),
    ({"experts": np.array([[0, -1]])}, "negative"),
    ({"experts": np.array([[0, 1]]), "n_experts": np.array([4, 4])}, "integer scalar"),
])
def test_malformed_npz_gets_named_errors(tmp_path, arrays, msg):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataFormatError, match=msg):
        read_npz(tmp_path / "bad.npz")


def test_npz_two_dimensional_is_one_layer_top1(tmp_path):
    np.savez(tmp_path / "a.npz", experts=np.array([[0, 3, 2], [1, 1, 0]]))
    data = read_npz(tmp_path / "a.npz")
    assert data.experts.shape == (2, 1, 3, 1) and data.n_experts == 4 and data.attrs["n_experts_origin"] == "inferred"

