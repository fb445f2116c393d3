"""The topic-chain row of ``isingmoe fit``'s decomposition: planted topic chain found, stored and drawn."""

import json
import math
from types import SimpleNamespace

import h5py
import numpy as np
from topic_oracles import plant

from ising_moe.fit.pipeline.decomposition import decompose_layer
from ising_moe.fit.pipeline.files import _write_topic
from ising_moe.report.topic import topic_figure, topic_lines, topic_payload


def test_topic_row_of_a_planted_topic_chain(tmp_path):
    x, _, t = plant(150, 32, 4, 2, 3.0, 1.5, 0.5, 10, 0.5, seed=7)
    mask = np.ones(x.shape, bool)
    dec = decompose_layer(x, mask, np.full(len(x), 32), t, 4, 3, seed=1, token_rows=12, gof_distance=8, topic=True)
    row = dec.topic
    assert row is not None and row.converged
    # the range 1..3 is extended while its best validation score is at its largest K (here K = 3 by a hair)
    assert row.n_topics == 2 and not row.at_edge and list(row.candidates)[:3] == [1, 2, 3]
    assert row.gain > 3 * row.gain_error
    assert math.isfinite(row.persistence_length) and row.persistence_length > 2
    assert math.isfinite(row.switching_rate_error) and row.n_bootstrap >= 2
    assert "xi_topic" in dec.sentence() and f"K = 2 of K = 1..{row.candidates[-1]}" in dec.sentence()
    assert row.gof and row.posterior.shape == (3, 32, 2)
    # stored, summarised, drawn
    with h5py.File(tmp_path / "t.h5", "w") as f:
        _write_topic(f, row)
        assert f["topic_chain"].attrs["n_topics"] == 2
        assert f["topic_chain/posterior"].shape == (3, 32, 2)
    payload = topic_payload(row)
    json.dumps(payload, allow_nan=False)
    assert payload["persistence_length"] == row.persistence_length
    assert payload["example_segmentations"][0]["text"].startswith("[")
    layers = [SimpleNamespace(layer=3, decomposition=dec)]
    lines = topic_lines(layers)
    assert any(line.split()[:2] == ["3", "2"] for line in lines)
    report = SimpleNamespace(layers=layers, source={"model_id": "test/chain", "weights": "random-init"})
    paths = topic_figure(report, tmp_path)
    assert [p.name for p in paths] == ["topics.png", "topics.pdf"]


def test_no_topic_row_says_so():
    """A topic-free layer: K = 1 chosen, no persistence length, no switching rate printed."""
    x, _, t = plant(100, 24, 4, 1, 0.0, 0.0, 0.5, 10, 0.6, seed=8, topics=False)
    mask = np.ones(x.shape, bool)
    dec = decompose_layer(x, mask, np.full(len(x), 24), t, 4, 0, seed=1, token_rows=12, gof_distance=6, topic=True)
    row = dec.topic
    assert row.n_topics == 1 and math.isnan(row.persistence_length)
    assert "no persistence length" in row.sentence()
    assert topic_payload(row)["switching_rate"] is None
