"""Sharded extraction: 2 CPU processes (gloo) give the same datasets as one, and resume per batch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import h5py  # noqa: E402
from tiny_models import run_extract  # noqa: E402

from ising_moe.errors import OutputExistsError  # noqa: E402
from ising_moe.io import ChunkStore  # noqa: E402


class _Interrupted(Exception):
    pass


def test_shard_range_is_a_contiguous_partition():
    from ising_moe.extract.shard import shard_range

    for n in range(12):
        for world in range(1, 5):
            parts = [shard_range(n, world, r) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_two_shards_equal_one_process_and_resume(checkpoints, corpus, tmp_path):
    """A single-process run interrupted after 2 of 6 batches is finished by 2 gloo ranks (each takes
    a contiguous half of the batches, skipping staged ones); rank 0 merges: every dataset is
    bit-identical to an uninterrupted single-process run. (Resume after SIGKILL at any moment is
    tested in test_extract.py; the staging is the same.)"""
    kw = dict(max_length=24, n_sequences=12, batch_size=2, router_probs=True, packing="document")
    ref = run_extract(checkpoints["olmoe"], corpus, tmp_path, "ref.h5", **kw).path
    out = tmp_path / "sharded.h5"
    original = ChunkStore.write
    written = []

    def interrupted_write(self, index, arrays):
        if len(written) == 2:
            raise _Interrupted
        written.append(index)
        return original(self, index, arrays)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ChunkStore, "write", interrupted_write)
        with pytest.raises(_Interrupted):
            run_extract(checkpoints["olmoe"], corpus, tmp_path, "sharded.h5", **kw)
    assert len(list((tmp_path / "sharded.h5.partial").glob("chunk-*.npz"))) == 2
    res = run_extract(checkpoints["olmoe"], corpus, tmp_path, "sharded.h5", shards=2, **kw)
    assert res.shards == 2 and res.rank == 0 and res.resumed
    assert not (tmp_path / "sharded.h5.partial").exists()
    with h5py.File(ref, "r") as f, h5py.File(out, "r") as g:
        assert sorted(f) == sorted(g) and "router_probs" in f
        for name in f:
            np.testing.assert_array_equal(f[name][()], g[name][()], err_msg=name)
        assert g.attrs["n_shards"] == 2 and f.attrs["params"] == g.attrs["params"]
    with pytest.raises(OutputExistsError):  # checked before any process starts
        run_extract(checkpoints["olmoe"], corpus, tmp_path, "sharded.h5", shards=2, **kw)
