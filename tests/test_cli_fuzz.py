"""Fuzz table of bad command lines: every case exits 2 with one line, no traceback, and leaves no
state behind (no output, no ``.partial`` directory, no temporary, lock or staging file).

Each case runs in a fresh directory holding only the inputs it needs; afterwards that directory
must hold exactly those inputs (and the leftovers a case declares: the last good checkpoint of a
diverged training run). Sizes are tiny so the table runs in seconds: training cases use the
``fuzz-tiny`` presets (2 layers, width 32, 32-token windows) added to the preset table here.

Full-disk cases run the command with a file-size limit (``RLIMIT_FSIZE``, ``SIGXFSZ`` ignored: every
write beyond it fails with ``EFBIG`` as on a full disk): in a subprocess for the commands that can
compile Numba kernels (whose cache writes would hit the limit too) and that could crash at exit
(HDF5's segmentation fault on a failed flush), in this process for ``train`` and ``extract``.
"""

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import PottsChain, exact
from ising_moe.cli import main
from ising_moe.data import ExpertSequences, save_experts

SMALL_SWEEP = ["--n-sites", "10", "--n-sweeps", "20", "--n-chains", "2", "--max-distance", "2"]


def _experts(directory: Path, name="data.h5", finished=True, layers=(0, 1), n_experts=3) -> None:
    model = PottsChain.potts(12, 3, coupling=0.8)
    experts = np.stack([exact.sample(model, 12, rng=s) for s in range(1, len(layers) + 1)], axis=1)[..., None]
    save_experts(ExpertSequences(experts, np.ones((12, 12), bool), n_experts, layers=list(layers),
                                 attrs={"model_id": "t", "weights": "random-init"}), directory / name)
    if not finished:
        import h5py

        with h5py.File(directory / name, "a") as f:
            f.attrs["finished"] = False


def _export_npz(directory: Path) -> None:
    from ising_moe.data import load_experts
    from ising_moe.traces.npz import write_npz

    _experts(directory, "src.h5")
    write_npz(load_experts(directory / "src.h5"), directory / "t.npz")
    (directory / "src.h5").unlink()


def _start_time(pid: int) -> str:
    from ising_moe.outputs import _start_time as start_time

    return start_time(pid)


WORDS = "the of and a to in is was he for it with as his on be at by this had not are but from".split()


def _corpus(directory: Path) -> None:
    """16 documents of 120 common words (3 held out): enough for 32-token windows and a 300-token BPE."""
    rng = np.random.default_rng(0)
    docs = [{"doc_id": f"d{i}", "text": " ".join(rng.choice(WORDS, size=120)),
             "split": "validation" if i < 3 else "train"} for i in range(16)]
    (directory / "c.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))


# inputs a case needs, created in its directory before the run
INPUTS = {
    "data": lambda d: _experts(d),
    "unfinished": lambda d: _experts(d, "data.h5", finished=False),
    "garbage": lambda d: (d / "data.h5").write_bytes(b"\x89HDF\r\n not really"),
    "bad_toml": lambda d: (d / "spec.toml").write_text("beta = [0.5,"),
    "unknown_key": lambda d: (d / "spec.toml").write_text("temperature = 1.0\n"),
    "file_as_dir": lambda d: (d / "out").write_text("a file where a directory is expected"),
    "dir_as_file": lambda d: (d / "out.h5").mkdir(),
    "empty_npy": lambda d: (d / "f.npy").write_bytes(b"not numpy"),
    "afile": lambda d: (d / "afile").write_text("a file where a directory is expected"),
    "loop": lambda d: (os.symlink("loop2", d / "loop1"), os.symlink("loop1", d / "loop2")),
    "dangling": lambda d: os.symlink("nowhere.h5", d / "dang"),
    "other_layers": lambda d: _experts(d, "l5.h5", layers=[5]),
    "huge_experts": lambda d: _experts(d, "big.h5", n_experts=10_000_000),
    "npz": lambda d: _export_npz(d),
    "corpus": lambda d: _corpus(d),
    "tiny_corpus": lambda d: (d / "c.jsonl").write_text('{"doc_id": "a", "text": "x", "split": "train"}\n'
                                                      '{"doc_id": "b", "text": "y", "split": "validation"}\n'),
    "live_lock": lambda d: (d / ".out.lock").write_text(f"1 {_start_time(1)}"),
}

CASES = [
    # exact
    ([], ["exact", "-q", "1"], "n_states"),
    ([], ["exact", "--beta", "-1"], "beta"),
    ([], ["exact", "-n", "abc"], "--n-sites"),
    ([], ["exact", "-n", "16", "--max-distance", "16"], "--max-distance"),
    ([], ["exact", "--field", "missing.npy"], "no such file"),
    (["empty_npy"], ["exact", "-q", "2", "--field", "f.npy"], "--field"),
    ([], ["exact", "-q", "3", "--field", "1,2"], "n_states = 3"),
    ([], ["exact", "--bogus"], "--bogus"),
    (["dir_as_file"], ["exact", "-n", "8", "-o", "out.h5"], "directory"),
    # simulate
    ([], ["simulate", "--update", "bogus", "-n", "8"], "update"),
    ([], ["simulate", "--n-sweeps", "0", "-n", "8"], "n_sweeps"),
    ([], ["simulate", "--beta", "x"], "--beta"),
    ([], ["simulate", "--model-kind", "nope"], "--model-kind"),
    ([], ["simulate", "--seed", "-1"], "--seed"),
    ([], ["simulate", "-n", "8", "--max-distance", "8", "-o", "m.h5"], "max_distance"),
    (["dir_as_file"], ["simulate", "-n", "8", "--n-sweeps", "10", "-o", "out.h5"], "directory"),
    # sweep
    ([], ["sweep", "--beta", "a:b:c", *SMALL_SWEEP], "--beta"),
    ([], ["sweep", "--update", "heat-bath,bogus", *SMALL_SWEEP], "update"),
    ([], ["sweep", "--beta", "0.5", "--n-sites", "8", "--max-distance", "9"], "max_distance"),
    ([], ["sweep", "--executor", "threads", *SMALL_SWEEP], "--executor"),
    ([], ["sweep", "--executor", "processes:0", *SMALL_SWEEP], "--executor"),
    ([], ["sweep", "-p", "0", *SMALL_SWEEP], "--processes"),
    ([], ["sweep", "--executor", "serial", "-p", "2", *SMALL_SWEEP], "not both"),
    ([], ["sweep", "--seed", "-1", *SMALL_SWEEP], "--seed"),
    ([], ["sweep", "missing.toml", *SMALL_SWEEP], "missing.toml"),
    (["bad_toml"], ["sweep", "spec.toml", *SMALL_SWEEP], "TOML"),
    (["unknown_key"], ["sweep", "spec.toml", *SMALL_SWEEP], "unknown sweep parameter"),
    (["dir_as_file"], ["sweep", *SMALL_SWEEP, "-o", "out.h5"], "directory"),
    # measure
    ([], ["measure", "missing.h5"], "no such file"),
    (["garbage"], ["measure", "data.h5"], "data.h5"),
    (["unfinished"], ["measure", "data.h5"], "unfinished"),
    (["data"], ["measure", "data.h5", "--layers", "9"], "layer 9"),
    (["data"], ["measure", "data.h5", "--bootstrap", "1", "--no-probe"], "n_bootstrap"),
    (["data"], ["measure", "data.h5", "--block-sizes", "1", "--no-probe"], "block size"),
    (["data"], ["measure", "data.h5", "--layers", "a,b"], "--layers"),
    (["data"], ["measure", "data.h5", "--executor", "bogus"], "--executor"),
    (["data"], ["measure", "data.h5", "--dropped", "x"], "--dropped"),
    (["data"], ["measure", "data.h5", "--seed", "-1"], "--seed"),
    # fit
    ([], ["fit", "--model", "nonsense"], "alias"),
    ([], ["fit", "--model", "missing.h5"], "no such file"),
    (["data"], ["fit", "--model", "data.h5", "--variants", "potts,bogus"], "unknown variant"),
    (["data"], ["fit", "--model", "data.h5", "--bootstrap", "-2"], "n_bootstrap"),
    (["data"], ["fit", "--model", "data.h5", "--max-range", "9"], "max_range"),
    (["data"], ["fit", "--model", "data.h5", "--power-law-method", "max-likelihood"], "add --power-law"),
    (["data"], ["fit", "--model", "data.h5", "--seed", "-1"], "--seed"),
    (["data"], ["fit", "--model", "data.h5", "--executor", "processes:-1"], "--executor"),
    (["data"], ["fit", "--model", "data.h5", "--variants", "potts", "--test-fraction", "0.9",
                "--bootstrap", "0"], "too few"),
    (["data", "file_as_dir"], ["fit", "--model", "data.h5", "-o", "out"], "out"),
    (["data"], ["fit", "--model", "data.h5", "-o", "a", "--output-dir", "b"], "-o/--output"),
    # extract: only what fails before the model is loaded
    ([], ["extract", "--seed", "-1"], "--seed"),
    ([], ["extract", "--dtype", "fp8"], "--dtype"),
]



# ---------------------------------------------------------------- train, extract: tiny presets, organisms
_TINY_CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "num_key_value_heads": 2}
_TINY_TRAIN = {"seq_len": 32, "batch_size": 4, "vocab_size": 300, "warmup_steps": 1, "tokens": 256}
TRAIN = ["train", "--corpus", "c.jsonl", "--no-progress", "-o", "out"]
EXTRACT = ["extract", "--corpus", "c.jsonl", "--max-length", "16", "--n-sequences", "4", "--batch-size", "2",
           "--device", "cpu", "-o", "e.h5"]


def _tiny_presets():
    from ising_moe.train.presets import PRESETS

    base = PRESETS["olmoe-tiny"]
    return {"fuzz-tiny": {"config": {**base["config"], **_TINY_CONFIG}, "train": {**base["train"], **_TINY_TRAIN}},
            # weights of order 1e25 overflow in the first forward pass after an update: a run that diverges
            "fuzz-diverge": {"config": {**base["config"], **_TINY_CONFIG, "initializer_range": 1e25},
                             "train": {**base["train"], **_TINY_TRAIN}}}


@pytest.fixture()
def tiny_presets(monkeypatch):
    from ising_moe.train import presets

    for name, value in _tiny_presets().items():
        monkeypatch.setitem(presets.PRESETS, name, value)


@pytest.fixture(scope="session")
def train_state(tmp_path_factory):
    """A staged run of ``train --preset fuzz-tiny`` stopped after step 1, the staged state of a run that
    diverged, and a finished organism (its train log records the weights' SHA-256, as the card refresh
    does), made once with the library."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import h5py

    from ising_moe.io import file_sha256
    from ising_moe.train import TrainSpec, presets, train

    root = tmp_path_factory.mktemp("train-state")
    old = dict(presets.PRESETS)
    presets.PRESETS.update(_tiny_presets())
    cwd = os.getcwd()
    try:
        os.chdir(root)
        _corpus(root)
        # the spec the CLI builds for TRAIN + ["--preset", "fuzz-tiny"]
        spec = TrainSpec(preset="fuzz-tiny", corpus="c.jsonl", checkpoint_every=50, log_every=20)
        train(spec, "out", progress=False, stop_after=1)
        shutil.move(root / "out.partial", root / "staged")
        with contextlib.suppress(Exception):
            train(TrainSpec(preset="fuzz-diverge", corpus="c.jsonl"), "out", progress=False)
        shutil.move(root / "out.partial", root / "diverged")
        train(TrainSpec(preset="fuzz-tiny", corpus="c.jsonl", n_val_log=2, n_val_final=2, n_probe=2), "org",
              progress=False)
        with h5py.File(root / "org" / "train_log.h5", "a") as f:
            f.attrs["weights_sha256"] = file_sha256(root / "org" / "model.safetensors")
            f.attrs["untrained_weights_sha256"] = file_sha256(root / "org" / "untrained" / "model.safetensors")
    finally:
        os.chdir(cwd)
        presets.PRESETS.clear()
        presets.PRESETS.update(old)
    return root


def _staged(damage=None):
    def build(d, state):
        shutil.copytree(state / "staged", d / "out.partial")
        if damage is not None:
            damage(d / "out.partial")
    return build


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_weights(directory: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / "model.safetensors")
    edit(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def _old_log(org):
    """A training log written before the configuration was recorded: the twin's config.json is the reference."""
    import h5py

    _edit_config(org)
    with h5py.File(org / "train_log.h5", "a") as f:
        del f.attrs["model_config"]


def _organism(edit=None, record=False, plain=False):
    """A copy of the tiny organism as ``org/``, edited; ``record``: the train log records the edited weights'
    hash (the weights were trained so); ``plain``: without its train log (a plain local checkpoint)."""
    def build(d, state):
        import h5py

        from ising_moe.io import file_sha256

        shutil.copytree(state / "org", d / "org")
        _corpus(d)
        if edit is not None:
            edit(d / "org")
        if record:
            with h5py.File(d / "org" / "train_log.h5", "a") as f:
                f.attrs["weights_sha256"] = file_sha256(d / "org" / "model.safetensors")
        if plain:
            (d / "org" / "train_log.h5").unlink()
    return build


def _nan_router(org):
    def edit(t):
        t["model.layers.1.mlp.gate.weight"][0, 0] = float("nan")
    _edit_weights(org, edit)


def _scaled_weight(org):
    def edit(t):
        t["model.layers.0.mlp.gate.weight"] *= 1.5
    _edit_weights(org, edit)


def _remove_expert(org):
    def edit(t):
        del t["model.layers.0.mlp.experts.3.down_proj.weight"]
    _edit_weights(org, edit)


def _edit_config(org):
    config = json.loads((org / "config.json").read_text())
    config["num_experts_per_tok"] = 3
    (org / "config.json").write_text(json.dumps(config))


STATE_INPUTS = {
    "staged": _staged(),
    "ckpt_truncated": _staged(lambda w: _truncate(w / "checkpoint.pt")),
    "ckpt_random": _staged(lambda w: (w / "checkpoint.pt").write_bytes(np.random.default_rng(0).bytes(4096))),
    "ckpt_empty": _staged(lambda w: (w / "checkpoint.pt").write_bytes(b"")),
    "manifest_bad": _staged(lambda w: (w / "manifest.json").write_text('{"params": ')),
    "manifest_list": _staged(lambda w: (w / "manifest.json").write_text("[1, 2]")),
    "bpe_bad": _staged(lambda w: (w / "bpe.json").write_text('{"model": {"type": "BPE", "vocab": 7}}')),
    "diverged": lambda d, state: (shutil.copytree(state / "diverged", d / "out.partial"), _corpus(d)),
    "org_nan": _organism(_nan_router, record=True),
    "org_tokenizer": _organism(lambda o: (o / "tokenizer.json").write_text("{not json")),
    "org_weights": _organism(_scaled_weight),
    "org_config": _organism(_edit_config),
    "org_config_old_log": _organism(_old_log),
    "ckpt_expert_removed": _organism(_remove_expert, plain=True),
}
_HAS_CUDA = False
with contextlib.suppress(Exception):
    import torch as _torch  # noqa: F401  (only to know whether --device cuda can be refused here)

    _HAS_CUDA = _torch.cuda.is_available()

# (inputs, args, message, options): options "leftover" (names a case may add), "limit" (file-size limit,
# bytes), "subprocess" (run as `python -m ising_moe.cli` to catch crashes at exit)
MORE_CASES = [
    # train: coefficients, threads, device, corpus, budget, damaged state, -o, lock, divergence, full disk
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--balance", "mem", "--balance-coef", "nan"], "--balance-coef", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--balance", "mem", "--balance-coef", "-1"], "--balance-coef", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--balance-coef", "0.1"], "--balance mem", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--z-loss", "-1"], "--z-loss", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--z-loss", "inf"], "--z-loss", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--threads", "-2"], "--threads", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--threads", "0"], "--threads", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--device", "tpu9"], "not a torch device", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--device", "cuda"], "no CUDA device", {"needs_no_cuda": True}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--tokens", "1.5"], "--tokens", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--tokens", "0"], "--tokens", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny", "--tokens", "1e15"], "--yes", {}),
    (["tiny_corpus"], [*TRAIN, "--preset", "fuzz-tiny"], "too small", {}),
    (["corpus", "afile"], [*TRAIN[:-1], "afile/out", "--preset", "fuzz-tiny"], "not a directory", {}),
    (["corpus", "afile"], [*TRAIN[:-1], "afile", "--preset", "fuzz-tiny"], "exists", {}),
    (["corpus", "dangling"], [*TRAIN[:-1], "dang", "--preset", "fuzz-tiny"], "symbolic link", {}),
    (["corpus", "live_lock"], [*TRAIN, "--preset", "fuzz-tiny"], "another process", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-diverge"], "last good checkpoint", {"leftover": ["out.partial"]}),
    (["diverged"], [*TRAIN, "--preset", "fuzz-diverge"], "--overwrite", {}),
    (["corpus", "ckpt_truncated"], [*TRAIN, "--preset", "fuzz-tiny"], "checkpoint.pt is damaged", {}),
    (["corpus", "ckpt_random"], [*TRAIN, "--preset", "fuzz-tiny"], "checkpoint.pt is damaged", {}),
    (["corpus", "ckpt_empty"], [*TRAIN, "--preset", "fuzz-tiny"], "checkpoint.pt is damaged", {}),
    (["corpus", "manifest_bad"], [*TRAIN, "--preset", "fuzz-tiny"], "manifest.json is damaged", {}),
    (["corpus", "manifest_list"], [*TRAIN, "--preset", "fuzz-tiny"], "manifest.json is damaged", {}),
    (["corpus", "bpe_bad"], [*TRAIN, "--preset", "fuzz-tiny"], "bpe.json is damaged", {}),
    (["corpus"], [*TRAIN, "--preset", "fuzz-tiny"], "file too large", {"limit": 2048}),
    # extract: damaged organisms, weights not trained here, full disk, one-line errors
    (["org_nan"], [*EXTRACT, "--model", "org"], "NaN or infinite", {}),
    (["org_tokenizer"], [*EXTRACT, "--model", "org"], "ships a tokenizer", {}),
    (["org_weights"], [*EXTRACT, "--model", "org"], "not the weights trained here", {}),
    (["org_config"], [*EXTRACT, "--model", "org"], "num_experts_per_tok = 3", {}),
    (["ckpt_expert_removed"], [*EXTRACT, "--model", "org"], "experts.3.down_proj.weight", {}),
    (["org_config_old_log"], [*EXTRACT, "--model", "org"], "untrained/config.json", {}),
    (["org_config"], [*EXTRACT, "--model", "org", "--layers", "9"], "config.json", {}),
    (["ckpt_expert_removed"], [*EXTRACT, "--model", "org", "--allow-missing-weights", "--layers", "9"],
     "layers [9]", {}),
    (["ckpt_expert_removed", "afile"], [*EXTRACT[:-1], "afile/e.h5", "--model", "org"], "not a directory", {}),
    (["ckpt_expert_removed", "dangling"], [*EXTRACT[:-1], "dang", "--model", "org"], "symbolic link", {}),
    (["ckpt_expert_removed"], [*EXTRACT, "--model", "org", "--allow-missing-weights"], "file too large",
     {"limit": 700}),
    # measure --compare, huge expert counts
    (["data", "other_layers"], ["measure", "data.h5", "--compare", "l5.h5", "--no-probe"], "holds MoE layers", {}),
    (["huge_experts"], ["measure", "big.h5", "--no-probe"], "of memory", {}),
    (["huge_experts"], ["fit", "--model", "big.h5"], "of memory", {}),
    # import / export: -o under a file, symlinks, wording
    (["data", "afile"], ["export", "data.h5", "--format", "npz", "-o", "afile/x.npz"], "not a directory", {}),
    (["data", "loop"], ["export", "data.h5", "--format", "npz", "-o", "loop1"], "symbolic link", {}),
    (["data", "dangling"], ["export", "data.h5", "--format", "parquet", "-o", "dang"], "symbolic link", {}),
    (["data", "afile"], ["export", "data.h5", "--format", "npz", "-o", "afile"], "--overwrite", {}),
    (["npz", "afile"], ["import", "t.npz", "--format", "npz", "-o", "afile"], "pass --overwrite to", {}),
    (["npz", "afile"], ["import", "t.npz", "--format", "npz", "-o", "afile/x.h5"], "not a directory", {}),
    # symlinks at -o of the other writers
    (["loop"], ["exact", "-n", "8", "-o", "loop1"], "symbolic link", {}),
    (["dangling"], ["sweep", *SMALL_SWEEP, "-o", "dang"], "symbolic link", {}),
    (["dangling"], ["simulate", "-n", "8", "--n-sweeps", "10", "--max-distance", "2", "-o", "dang"],
     "symbolic link", {}),
    (["data", "dangling"], ["measure", "data.h5", "--no-probe", "-o", "dang"], "symbolic link", {}),
    (["data", "dangling"], ["fit", "--model", "data.h5", "-o", "dang"], "symbolic link", {}),
    (["afile"], ["exact", "-n", "8", "-o", "afile/x.h5"], "not a directory", {}),
    # a full disk: every writer
    ([], ["simulate", "-n", "16", "--n-sweeps", "100", "-o", "m.h5"], "file too large",
     {"limit": 2048, "subprocess": True}),
    ([], ["exact", "-n", "8", "-o", "x.h5"], "file too large", {"limit": 2048, "subprocess": True}),
    ([], ["sweep", *SMALL_SWEEP, "--beta", "0.5", "-o", "s.h5"], "file too large",
     {"limit": 2048, "subprocess": True}),
    (["data"], ["measure", "data.h5", "--no-probe", "--bootstrap", "2", "-o", "st.h5"], "file too large",
     {"limit": 2048, "subprocess": True}),
    (["data"], ["fit", "--model", "data.h5", "--variants", "potts", "--bootstrap", "0", "-o", "fo"], "file too large",
     {"limit": 2048, "subprocess": True}),
    (["data"], ["export", "data.h5", "--format", "npz", "-o", "x.npz"], "file too large",
     {"limit": 300, "subprocess": True}),
    (["data"], ["export", "data.h5", "--format", "parquet", "-o", "x.parquet"], "file too large",
     {"limit": 300, "subprocess": True}),
    (["npz"], ["import", "t.npz", "--format", "npz", "-o", "i.h5"], "file too large",
     {"limit": 2048, "subprocess": True}),
]

ALL_CASES = [(*case, {}) for case in CASES] + MORE_CASES


def _ids(case):
    return " ".join(case[1])[:70]


@contextlib.contextmanager
def _file_size_limit(limit):
    if limit is None:
        yield
        return
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


def _run_subprocess(args, limit, cwd):
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY)); "
            "sys.argv = ['isingmoe', *sys.argv[1:]]; from ising_moe.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("inputs,args,message,options", ALL_CASES, ids=[_ids(c) for c in ALL_CASES])
def test_bad_command_line(tmp_path, monkeypatch, request, inputs, args, message, options):
    if options.get("needs_no_cuda") and _HAS_CUDA:
        pytest.skip("this machine has a CUDA device")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ISINGMOE_DATA", str(tmp_path / "no-data"))
    if args[0] == "train":
        request.getfixturevalue("tiny_presets")
    for name in inputs:
        if name in STATE_INPUTS:
            STATE_INPUTS[name](tmp_path, request.getfixturevalue("train_state"))
        else:
            INPUTS[name](tmp_path)
    before = sorted(os.listdir(tmp_path))
    if options.get("subprocess"):
        code, output = _run_subprocess(args, options["limit"], tmp_path)
        exception = None
    else:
        with _file_size_limit(options.get("limit")):
            result = CliRunner().invoke(main, args)
        code, output, exception = result.exit_code, result.output, result.exception
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert code == 2, output
    assert len(lines) == 1 and lines[0].startswith("Error:"), output
    assert message in lines[0], lines[0]
    assert "Traceback" not in output and not isinstance(exception, AssertionError)
    after = sorted(set(os.listdir(tmp_path)) - set(options.get("leftover", ())))
    assert after == before, f"left behind: {sorted(set(after) - set(before))}"
