"""Sharded extraction: 2 CPU processes (gloo) give the same datasets as one, and resume per batch."""

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import h5py  # noqa: E402
from tiny_models import run_extract  # noqa: E402

from ising_moe.errors import OutputExistsError  # noqa: E402
from ising_moe.extract.shard import shard_range  # noqa: E402

# kills the run after two staged chunks: an interrupted single-process run
_KILL_AFTER_TWO = textwrap.dedent("""
    import os, signal, sys
    from ising_moe import io
    from ising_moe.extract import extract
    count = [0]
    original = io.ChunkStore._atomic_write
    def killing_write(self, path, data):
        if path.name.startswith("chunk-"):
            count[0] += 1
            if count[0] > 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, path, data)
    io.ChunkStore._atomic_write = killing_write
    extract(sys.argv[1], sys.argv[2], output=sys.argv[3], max_length=24, n_sequences=12, batch_size=2,
            device="cpu", progress=False, router_probs=True, packing="document")
""")


def test_shard_range_is_a_contiguous_partition():
    for n in range(0, 12):
        for world in range(1, 5):
            parts = [shard_range(n, world, r) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_two_shards_equal_one_process_and_resume(checkpoints, corpus, tmp_path):
    """A single-process run killed after 2 of 6 batches is finished by 2 gloo ranks (each takes a
    contiguous half of the batches, skipping staged ones); rank 0 merges: every dataset is
    bit-identical to an uninterrupted single-process run."""
    kw = dict(max_length=24, n_sequences=12, batch_size=2, router_probs=True, packing="document")
    ref = run_extract(checkpoints["olmoe"], corpus, tmp_path, "ref.h5", **kw).path
    out = tmp_path / "sharded.h5"
    proc = subprocess.run([sys.executable, "-c", _KILL_AFTER_TWO, str(checkpoints["olmoe"]), str(corpus), str(out)],
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL
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
