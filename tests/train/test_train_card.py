"""The held-out report written at the end of a run and by ``isingmoe card``."""

import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner
from train_helpers import tiny_spec

from ising_moe.cli import main
from ising_moe.errors import DataFormatError
from ising_moe.io import open_h5
from ising_moe.train import train
from ising_moe.train.card import refresh


@pytest.fixture(scope="module")
def runs(small_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    out = {}
    for preset in ("olmoe-tiny", "switch-tiny"):
        out[preset] = root / preset
        train(tiny_spec(preset, small_corpus, steps=8, log_every=4, checkpoint_every=4), out[preset], progress=False)
    return out


def _figure_title(out):
    # the title refresh() drew (read back from the PNG's text is not possible: redraw with its inputs)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ising_moe.train import card

    titles = []
    original = plt.Axes.set_title
    try:
        plt.Axes.set_title = lambda ax, t, **k: titles.append(t) or original(ax, t, **k)
        card.refresh(out, n_bootstrap=100)
    finally:
        plt.Axes.set_title = original
    return titles[-1]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_run_ends_with_the_heldout_report(runs):
    out = runs["olmoe-tiny"]
    card = (out / "MODEL_CARD.md").read_text()
    assert card.count("## Held-out comparison") == 1 and "| trigram |" in card
    assert f"**weights sha256** (`model.safetensors`): {_sha(out / 'model.safetensors')}" in card
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert "olmoe-tiny: baselines on all held-out targets" in _figure_title(out)
    with open_h5(out / "train_log.h5", kind="train_log") as f:
        assert f.attrs["weights_sha256"] == _sha(out / "model.safetensors")
        assert f.attrs["untrained_weights_sha256"] == _sha(out / "untrained" / "model.safetensors")
        summary = json.loads(f["heldout"].attrs["summary"])
        nll, n = f["heldout/model_nll"][:], f["heldout/n_targets"][:]
    assert summary["model"]["value"] == pytest.approx(nll.sum() / n.sum(), rel=1e-12)
    assert summary["baselines"]["unigram"]["value"] > summary["baselines"]["bigram"]["value"]


@pytest.mark.slow
def test_model_loss_equals_the_classes_own_loss(runs, small_corpus):
    # independent of card.py: Hugging Face's own (mean) loss of each validation window, times its
    # number of targets, summed over windows
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    from train_helpers import TINY_TRAIN

    from ising_moe.train.corpus import make_windows, read_documents

    out = runs["olmoe-tiny"]
    docs = read_documents(small_corpus)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    idx = docs.indices("validation")
    seq = TINY_TRAIN["seq_len"]
    windows, _ = make_windows([tok.encode(docs.text[i]).ids for i in idx], idx, seq, max(8, seq // 4))
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            ids = torch.as_tensor(np.asarray(w, dtype=np.int64))[None]
            total += float(model(input_ids=ids, labels=ids).loss) * (len(w) - 1)
            count += len(w) - 1
    with open_h5(out / "train_log.h5") as f:
        summary = json.loads(f["heldout"].attrs["summary"])
    assert summary["n_targets"] == count
    assert summary["model"]["value"] == pytest.approx(total / count, rel=1e-5)


@pytest.mark.slow
def test_switch_is_scored_on_its_span_tokens(runs, small_corpus):
    from tokenizers import Tokenizer
    from train_helpers import TINY_TRAIN

    from ising_moe.train.corpus import make_windows, read_documents

    out = runs["switch-tiny"]
    with open_h5(out / "train_log.h5") as f:
        summary = json.loads(f["heldout"].attrs["summary"])
        assert "heldout/model_nll_pos_4_15" not in f  # no context measure for span targets
    assert summary["targets"] == "span" and summary["context"] is None
    # the span tokens: round(0.15 n) of each window of n tokens (span_corrupt's noise count)
    docs = read_documents(small_corpus)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    idx = docs.indices("validation")
    seq = TINY_TRAIN["seq_len"]
    windows, _ = make_windows([tok.encode(docs.text[i]).ids for i in idx], idx, seq, max(8, seq // 4))
    assert summary["n_targets"] == sum(min(max(round(0.15 * len(w)), 1), len(w) - 1) for w in windows)
    assert "removed spans" in (out / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_refresh_again_keeps_provenance_and_one_section(runs, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(runs["olmoe-tiny"], copy)
    with h5py.File(copy / "train_log.h5") as f:
        before = {k: f.attrs[k] for k in ("created", "params", "seed", "ising_moe_version", "preset", "tokens")}
        loss = f["log/val_loss"][:]
    first = refresh(copy, n_bootstrap=200)
    again = refresh(copy, n_bootstrap=200)
    assert first.model == again.model
    assert (copy / "MODEL_CARD.md").read_text().count("heldout:begin") == 1
    with open_h5(copy / "train_log.h5", kind="train_log") as f:
        for k, v in before.items():
            assert f.attrs[k] == v, k
        np.testing.assert_array_equal(f["log/val_loss"][:], loss)


@pytest.mark.slow
def test_other_corpus_is_refused(runs, tmp_path, small_corpus):
    copy = tmp_path / "m"
    shutil.copytree(runs["olmoe-tiny"], copy)
    other = tmp_path / "other.jsonl"
    other.write_text(small_corpus.read_text() + '{"doc_id": "zz", "text": "more", "split": "train"}\n')
    with pytest.raises(DataFormatError, match="was trained on"):
        refresh(copy, corpus=other)
    card = (copy / "MODEL_CARD.md").read_text()
    result = CliRunner().invoke(main, ["card", str(copy), "--corpus", str(other)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert (copy / "MODEL_CARD.md").read_text() == card  # nothing rewritten
    result = CliRunner().invoke(main, ["card", str(copy), "--n-bootstrap", "200", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["weights_sha256"] == _sha(copy / "model.safetensors")
