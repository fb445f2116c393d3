"""Property: any valid routing trace goes through import (npz) -> measure -> fit with exit 0 and only finite
or n/a numbers, or exit 2 with one line; never a traceback, never a leaked warning (issue 21)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ising_moe.cli import main

_NUMBER_NOT_SUPPORTED = re.compile(r"(?<![\w.])-?(nan|inf)(?![\w])", re.IGNORECASE)


@st.composite
def traces(draw):
    n_seq = draw(st.integers(1, 50))
    n_layers = draw(st.integers(1, 3))
    n_experts = draw(st.integers(2, 64))
    top_k = draw(st.integers(1, min(2, n_experts - 1)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, draw(st.integers(3, 40)), size=n_seq)
    n = int(lengths.max())
    mask = np.arange(n)[None, :] < lengths[:, None]
    if draw(st.booleans()):  # holes inside sequences (never a whole sequence)
        holes = rng.random(mask.shape) < 0.15
        holes[:, 0] = False
        mask &= ~holes
    experts = np.argsort(rng.random((n_seq, n_layers, n, n_experts)), axis=-1)[..., :top_k]
    arrays = {"experts": experts.astype(np.int64), "mask": mask, "n_experts": np.int64(n_experts)}
    if draw(st.booleans()):
        arrays["token_ids"] = np.where(mask, rng.integers(0, 30, size=mask.shape), 0).astype(np.int64)
    return arrays


def _check(res):
    assert res.exit_code in (0, 2), (res.exit_code, res.output[-2000:])
    assert "Traceback" not in res.output
    if res.exit_code == 2:
        assert len(res.output.strip().splitlines()) == 1, res.output
    return res.exit_code == 0


def _supported(lines):
    text = "\n".join(lines)
    assert not _NUMBER_NOT_SUPPORTED.search(text), text


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(arrays=traces())
def test_any_valid_trace_imports_measures_and_fits(tmp_path_factory, arrays):
    """The CLI imports; measure and fit run through the library calls of the CLI (their figures, the
    slow part, are covered by the CLI tests): a named error is the CLI's exit 2."""
    from ising_moe.data import load_experts
    from ising_moe.errors import IsingMoeError
    from ising_moe.fit.pipeline import fit_expert_data
    from ising_moe.measure import measure
    from ising_moe.report import fit_summary, measurement_summary

    tmp = tmp_path_factory.mktemp("trace")
    np.savez(tmp / "t.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = _check(CliRunner().invoke(main, ["import", str(tmp / "t.npz"), "--format", "npz", "-o",
                                              str(tmp / "t.h5")]))
        if not ok:
            return
        data = load_experts(tmp / "t.h5")
        try:
            result = measure(data, max_distance=8, block_sizes=(8,), n_bootstrap=20, probe=False)
        except IsingMoeError:
            pass
        else:
            _supported(measurement_summary(result, data)[1])
        try:
            report = fit_expert_data(data, layers=[int(data.layers[0])], variants=["potts"], n_bootstrap=2,
                                     max_distance=8, mc_sweeps=50)
        except IsingMoeError:
            return
        _supported(fit_summary(report)[1])
