import json

import numpy as np
import pytest
from trace_fixtures import Global, routing, sglang_record, write_torch_zip

from ising_moe.errors import DataFormatError
from ising_moe.traces._torch_zip import load_torch_zip
from ising_moe.traces.sglang import read_sglang

N_LAYERS, TOP_K, N_LOGICAL = 3, 2, 4
# 6 physical slots for 4 logical experts (experts 0 and 3 replicated), one map per layer
PHYS_TO_LOGICAL = np.tile(np.array([0, 1, 2, 3, 0, 3]), (N_LAYERS, 1))


def _dump(rng):
    """Passes: extend [4, 1 (mixed-in decode token), 3 at positions 5..7], a decode pass, extend [5]."""
    logical = [routing(rng, n, N_LAYERS, TOP_K, N_LOGICAL) for n in (4, 1, 3, 2, 5)]
    physical = [np.where(np.isin(x, [0, 3]) & (rng.random(x.shape) < 0.5), np.where(x == 0, 4, 5), x)
                for x in logical]
    for x in physical:
        x[:, 1] = -1  # layer 1 is dense: never written
    p1 = np.concatenate(physical[:3]).transpose(1, 0, 2)
    records = [
        sglang_record(0, p1, [0, 1, 2, 3, 9, 5, 6, 7], [4, 1, 3], forward_mode=3),
        sglang_record(1, physical[3].transpose(1, 0, 2), [10, 8], None, forward_mode=2),
        sglang_record(2, physical[4].transpose(1, 0, 2), [0, 1, 2, 3, 4], [5]),
    ]
    dump = {"records": records, "last_physical_to_logical_map": PHYS_TO_LOGICAL}
    return dump, logical


def _check(data, logical):
    assert data.layers.tolist() == [0, 2] and data.top_k == TOP_K
    assert data.n_experts == N_LOGICAL and data.attrs["n_experts_origin"] == "file"
    assert data.experts.shape == (3, 2, 8, TOP_K)
    np.testing.assert_array_equal(data.mask, [[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1],
                                              [1, 1, 1, 1, 1, 0, 0, 0]])
    for row, (start, ref) in enumerate([(0, logical[0]), (5, logical[2]), (0, logical[4])]):
        np.testing.assert_array_equal(data.experts[row, :, start:start + len(ref)],
                                      ref[:, [0, 2]].transpose(1, 0, 2))
    notes = json.loads(data.attrs["import_notes"])
    assert notes["decode_passes_skipped"] == 1 and notes["short_segments_skipped"] == 1
    assert notes["dense_layers_dropped"] == [1] and notes["physical_to_logical_applied"]
    assert data.attrs["source_format"] == "sglang" and data.attrs["weights"] == "imported-trace"


def test_per_token_dump_segments_positions_and_logical_ids(tmp_path):
    dump, logical = _dump(np.random.default_rng(0))
    path = write_torch_zip(tmp_path / "expert_distribution_recorder_1.0_0.pt", dump)
    _check(read_sglang(path), logical)
    _check(read_sglang(tmp_path), logical)  # the recorder directory


def test_real_torch_save_reads_the_same(tmp_path):
    torch = pytest.importorskip("torch")
    dump, logical = _dump(np.random.default_rng(0))
    as_torch = {"records": [{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in r.items()}
                            for r in dump["records"]],
                "last_physical_to_logical_map": torch.from_numpy(PHYS_TO_LOGICAL)}
    torch.save(as_torch, tmp_path / "dump.pt")
    _check(read_sglang(tmp_path / "dump.pt"), logical)


def test_pickled_code_is_refused_not_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return Global("os", "system"), ("touch " + str(tmp_path / "pwned"),)

    write_torch_zip(tmp_path / "evil.pt", {"records": [Evil()]})
    with pytest.raises(DataFormatError, match="os.system"):
        load_torch_zip(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("dump,msg", [
    ({"rank": 0, "logical_count": np.zeros((2, 4), dtype=np.int32)}, "not a per_token dump"),
    ({"records": [{"positions": [0]}]}, "missing key"),
    ({"records": [sglang_record(0, np.zeros((2, 3, 2), np.int32), [0, 1], [2])]}, "covers 3 tokens"),
    ({"records": [sglang_record(0, np.zeros((2, 3, 2), np.int32), [0, 1, 2], [2])]}, "do not add up"),
    ({"records": [sglang_record(0, np.zeros((2, 3, 2), np.int32), [0, 2, 1], [3])]}, "not consecutive"),
    ({"records": [sglang_record(0, np.zeros((2, 3, 2), np.int32), [0, 1, 2], None)]}, "no extend"),
])
def test_malformed_dumps_get_named_errors(tmp_path, dump, msg):
    with pytest.raises(DataFormatError, match=msg):
        read_sglang(write_torch_zip(tmp_path / "bad.pt", dump))


def test_garbled_and_truncated_archives(tmp_path):
    dump, _ = _dump(np.random.default_rng(0))
    good = write_torch_zip(tmp_path / "good.pt", dump).read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(1).bytes(500))
    for name in ("cut.pt", "noise.pt"):
        with pytest.raises(DataFormatError, match="not a torch.save zip archive"):
            read_sglang(tmp_path / name)
