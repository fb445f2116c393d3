"""The HDF5/JSON layer: provenance, atomic writes, resumable chunks, and fuzzed readers."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ising_moe import io
from ising_moe.errors import DataFormatError, InvalidParameterError, OutputExistsError


def _write_example(path, **kw):
    with io.atomic_h5(path, kind="exact", params={"n": 4, "beta": 1.0}, seed=7, **kw) as f:
        io.write_array(f, "marginals", np.full((4, 3), 1 / 3), ("position", "state"))
        io.write_array(f, "correlation", np.linspace(1, 0, 5), ("distance",))


def _read_example(path):
    with io.open_h5(path, kind="exact") as f:
        params = io.read_params(f)
        marg = io.read_array(f, "marginals", kinds="f", ndim=2, shape=(params["n"], None))
        corr = io.read_array(f, "correlation", kinds="f", ndim=1)
        seed = io.read_attr(f, "seed", int)
    return marg, corr, seed


def test_provenance_and_roundtrip(tmp_path):
    path = tmp_path / "x.h5"
    _write_example(path)
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        assert list(f.attrs)[-1] == "finished"  # written last
    for key in ("schema_version", "ising_moe_version", "kind", "created", "params", "seed", "finished"):
        assert key in attrs
    assert json.loads(attrs["params"]) == {"beta": 1.0, "n": 4}
    marg, corr, seed = _read_example(path)
    assert marg.shape == (4, 3) and seed == 7


def test_fail_if_exists_and_overwrite(tmp_path):
    path = tmp_path / "x.h5"
    _write_example(path)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        _write_example(path)
    _write_example(path, overwrite=True)


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(RuntimeError):
        with io.atomic_h5(path, kind="exact", params={}) as f:
            f["a"] = np.ones(3)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_reader_errors(tmp_path):
    path = tmp_path / "x.h5"
    _write_example(path)
    with pytest.raises(DataFormatError, match="holds 'exact' data"):
        io.open_h5(path, kind="experts")
    with h5py.File(path, "a") as f:
        f.attrs["finished"] = False
    with pytest.raises(DataFormatError, match="unfinished"):
        io.open_h5(path)
    with h5py.File(path, "a") as f:
        f.attrs["finished"] = True
        f.attrs["schema_version"] = io.SCHEMA_VERSION + 1
    with pytest.raises(DataFormatError, match="upgrade ising-moe"):
        io.open_h5(path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataFormatError, match="not a readable HDF5"):
        io.open_h5(tmp_path / "text.h5")
    with pytest.raises(DataFormatError, match="no such file"):
        io.open_h5(tmp_path / "missing.h5")


def test_dimension_scales_label_axes(tmp_path):
    path = tmp_path / "x.h5"
    with io.atomic_h5(path, kind="experts", params={}) as f:
        d = io.stream_array(f, "experts", (5, 2), "u1", ("sequence", "position", "rank"))
        io.append_rows(d, np.zeros((3, 5, 2)))
        io.append_rows(d, np.ones((2, 5, 2)))
    with h5py.File(path, "r") as f:
        assert [dim.label for dim in f["experts"].dims] == ["sequence", "position", "rank"]
        np.testing.assert_array_equal(f["sequence"][()], np.arange(5))
        assert f["experts"].shape == (5, 5, 2)


def test_json_writer(tmp_path):
    path = tmp_path / "s.json"
    io.write_json(path, {"xi": 1.5}, kind="summary", params={"a": 1}, seed=3)
    doc = io.read_json(path, kind="summary")
    assert list(doc)[-1] == "finished" and doc["xi"] == 1.5 and doc["seed"] == 3
    with pytest.raises(OutputExistsError):
        io.write_json(path, {}, kind="summary", params={})
    path.write_text("{")
    with pytest.raises(DataFormatError):
        io.read_json(path)


def test_chunk_store_resume_and_mismatch(tmp_path):
    final = tmp_path / "out.h5"
    store = io.ChunkStore(final, "experts", {"a": 1}).open()
    store.write(0, {"x": np.arange(3)})
    again = io.ChunkStore(final, "experts", {"a": 1}).open()
    assert again.resumed and again.done() == {0} and again.created == store.created
    np.testing.assert_array_equal(again.read(0)["x"], np.arange(3))
    with pytest.raises(InvalidParameterError, match="other parameters"):
        io.ChunkStore(final, "experts", {"a": 2}).open()
    fresh = io.ChunkStore(final, "experts", {"a": 2}).open(overwrite=True)
    assert fresh.done() == set()
    fresh.remove()
    assert not fresh.directory.exists()


# ----------------------------------------------------------------------------- fuzzing
_VALID = None


def _valid_bytes() -> bytes:
    global _VALID
    if _VALID is None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "v.h5"
            _write_example(p)
            _VALID = p.read_bytes()
    return _VALID


def _must_fail_cleanly(path):
    try:
        _read_example(path)
    except DataFormatError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_fuzz_truncated_file(cut):
    data = _valid_bytes()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.h5"
        p.write_bytes(data[: cut % len(data)])
        with pytest.raises(DataFormatError):
            _read_example(p)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_corrupted_bytes(edits):
    data = bytearray(_valid_bytes())
    for pos, val in edits:
        data[pos % len(data)] = val
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.h5"
        p.write_bytes(bytes(data))
        _must_fail_cleanly(p)


_MUTATIONS = ["del_attr", "del_dataset", "wrong_dtype", "wrong_shape", "bad_params", "attr_array", "group"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=st.sampled_from(_MUTATIONS), which=st.integers(0, 100))
def test_fuzz_structural_mutations(mutation, which):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.h5"
        p.write_bytes(_valid_bytes())
        with h5py.File(p, "a") as f:
            names = ["marginals", "correlation"]
            attrs = sorted(f.attrs)
            name = names[which % 2]
            if mutation == "del_attr":
                del f.attrs[attrs[which % len(attrs)]]
            elif mutation == "del_dataset":
                del f[name]
            elif mutation == "wrong_dtype":
                del f[name]
                f[name] = np.array(["a", "b"], dtype="S1")
            elif mutation == "wrong_shape":
                del f[name]
                f[name] = np.zeros((2, 2, 2))
            elif mutation == "bad_params":
                f.attrs["params"] = "{not json" if which % 2 else "[1, 2]"
            elif mutation == "attr_array":
                f.attrs[attrs[which % len(attrs)]] = np.arange(3)
            elif mutation == "group":
                del f[name]
                f.create_group(name)
        _must_fail_cleanly(p)


# ---------------------------------------------------------------- outputs as one unit
def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_output_unit_moves_everything_together(tmp_path):
    from ising_moe.outputs import output_unit

    main, fig = tmp_path / "out.h5", tmp_path / "out.rates.png"
    with output_unit(main, others=[fig]) as unit:
        _write_example(unit.path(main))
        unit.path(fig).write_bytes(b"png")
        assert not main.exists() and not fig.exists()  # nothing visible before the commit
        assert (tmp_path / ".out.h5.lock").exists()
    assert main.exists() and fig.read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "out.rates.png"]
    with pytest.raises(OutputExistsError, match="rates.png"), output_unit(tmp_path / "other.h5", others=[fig]):
        pytest.fail("an existing declared output must be refused before the work")
    with pytest.raises(RuntimeError), output_unit(tmp_path / "third.h5") as unit:  # a failure leaves nothing
        unit.path(tmp_path / "third.h5").write_bytes(b"half")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "out.rates.png"]


def test_commit_interrupted_by_a_kill_is_completed_by_the_next_run(tmp_path):
    from ising_moe.outputs import clean_stale

    stage = tmp_path / f".out.h5.stage-{_dead_pid()}"
    stage.mkdir()
    (stage / "out.h5").write_bytes(b"data")
    (stage / "commit.json").write_text(json.dumps({"moves": ["out.png", "out.h5"], "discard": ["out.h5.partial"]}))
    (tmp_path / "out.h5.partial").mkdir()
    (tmp_path / "out.png").write_bytes(b"png")  # already moved before the kill
    clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "out.png"]
    # without a commit record the staged files were unfinished: discarded
    stage = tmp_path / f".x.h5.stage-{_dead_pid()}"
    stage.mkdir()
    (stage / "x.h5").write_bytes(b"half")
    clean_stale(tmp_path)
    assert not stage.exists() and not (tmp_path / "x.h5").exists()


def test_locks_are_reentrant_and_refuse_a_live_other_process(tmp_path):
    from ising_moe.errors import OutputLockedError
    from ising_moe.outputs import acquire_lock, release_lock

    target = tmp_path / "a.h5"
    lock = acquire_lock(target)
    acquire_lock(target)
    release_lock(target)
    assert lock.exists()
    release_lock(target)
    assert not lock.exists()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(f"{holder.pid}")
        with pytest.raises(OutputLockedError, match=f"PID {holder.pid}"):
            acquire_lock(target)
    finally:
        holder.kill()
        holder.wait()
    acquire_lock(target)  # its process is gone: stale
    release_lock(target)
    assert not lock.exists()


def test_strict_json_maps_non_finite_numbers_to_null():
    doc = io.strict_jsonable({"a": float("nan"), "b": [np.inf, 1.5], "c": np.array([-np.inf, 2.0]),
                              "d": np.float32(np.nan), "e": (1, None)})
    assert doc == {"a": None, "b": [None, 1.5], "c": [None, 2.0], "d": None, "e": [1, None]}
    json.loads(io.strict_json(doc), parse_constant=lambda c: 1 / 0)


def test_chunk_store_removes_dead_runs_temporaries_and_locks(tmp_path):
    from ising_moe.errors import OutputLockedError

    final = tmp_path / "x.h5"
    stale = tmp_path / f".x.h5.tmp-{_dead_pid()}"  # a final write killed in an earlier run
    stale.write_bytes(b"half")
    store = io.ChunkStore(final, "t", {"a": 1}).open()
    assert not stale.exists() and (tmp_path / ".x.h5.lock").exists()
    code = ("import sys; from ising_moe import io\n"
            "try:\n    io.ChunkStore(sys.argv[1], 't', {'a': 1}).open()\n"
            "except Exception as e:\n    print(type(e).__name__)")
    other = subprocess.run([sys.executable, "-c", code, str(final)], capture_output=True, text=True, check=False,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert other.stdout.strip() == OutputLockedError.__name__  # a second writer stops at once
    store.remove()
    assert not (tmp_path / ".x.h5.lock").exists() and not store.directory.exists()


def test_atomic_h5_on_a_full_disk_raises_and_leaves_nothing(tmp_path):
    """A write past a file-size limit (as on a full disk) is a DiskFullError, the temporary file is gone,
    and HDF5 is left consistent (it never saw the failed write: a failed flush would crash it at exit)."""
    import resource
    import signal

    from ising_moe.errors import DiskFullError
    from ising_moe.io import atomic_h5, write_array

    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old[1]))
    try:
        with pytest.raises(DiskFullError, match=r"x\.h5: file too large: free some space"):
            with atomic_h5(tmp_path / "x.h5", kind="t", params={}) as f:
                write_array(f, "x", np.random.default_rng(0).random(100_000), ["i"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert os.listdir(tmp_path) == []
    with atomic_h5(tmp_path / "x.h5", kind="t", params={}) as f:  # the same write with room succeeds
        write_array(f, "x", np.arange(100_000.0), ["i"])
    with io.open_h5(tmp_path / "x.h5") as f:
        assert f["x"][-1] == 99_999.0
