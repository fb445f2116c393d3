"""Position ablation at extraction (RoPE models) and the aliases of the organisms trained here."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402
from tiny_models import VOCAB, run_extract  # noqa: E402

from ising_moe.cli import main  # noqa: E402
from ising_moe.data import load_experts  # noqa: E402
from ising_moe.errors import InvalidParameterError, ModelNotAvailableError  # noqa: E402
from ising_moe.extract import extract  # noqa: E402
from ising_moe.extract.capture import RoutingCapture  # noqa: E402
from ising_moe.extract.registry import resolve_model  # noqa: E402


def position_ids(*args, **kwargs):
    from ising_moe.extract.positions import position_ids

    return position_ids(*args, **kwargs)


def test_position_ids_per_mode():
    att = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(position_ids(att, "natural"), np.clip(np.cumsum(att, 1) - 1, 0, None))
    assert (position_ids(att, "constant") == 0).all()
    rev = position_ids(att, "reversed")
    np.testing.assert_array_equal(rev[0, :4], [3, 2, 1, 0])
    np.testing.assert_array_equal(rev[1, 2:], [3, 2, 1, 0])
    shuf = position_ids(att, "shuffled", seed=3, first_sequence=10)
    for row in range(3):
        valid = att[row].astype(bool)
        assert sorted(shuf[row, valid]) == list(range(valid.sum())) and (shuf[row, ~valid] == 0).all()
    # a sequence's shuffle depends on (seed, its corpus index) only: not on its batch or padding side
    alone = position_ids(att[2:], "shuffled", seed=3, first_sequence=12)
    np.testing.assert_array_equal(alone, shuf[2:])
    left = position_ids(np.array([[0, 0, 1, 1, 1, 1]]), "shuffled", seed=3, first_sequence=12)
    np.testing.assert_array_equal(left[0, 2:], position_ids(np.array([[1, 1, 1, 1]]), "shuffled", seed=3,
                                                            first_sequence=12)[0])
    assert not np.array_equal(shuf[2], position_ids(att[2:], "shuffled", seed=4, first_sequence=12)[0])
    assert not np.array_equal(shuf[2], np.arange(6))


def _router_logits(model, ids, pos):
    with RoutingCapture(model, "olmoe", router_probs=True, hidden_states=True) as cap, torch.inference_mode():
        cap.reset()
        model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos)
        return cap._records[0]["logits"].float().reshape(ids.shape[0], ids.shape[1], -1)


def test_constant_positions_remove_order_but_keep_context(checkpoints):
    """With all positions 0 (RoPE = identity), layer 0's router at position t sees the *set* of the
    tokens 0..t: permuting the prefix leaves it unchanged, changing a prefix token does not; with
    natural positions the permutation changes it (negative control)."""
    from ising_moe.extract.loading import load_model, model_config

    spec = resolve_model(str(checkpoints["olmoe"]))
    model = load_model(spec, model_config(spec), device="cpu").model
    rng = np.random.default_rng(0)
    base = rng.integers(3, VOCAB, size=12)
    permuted = base.copy()
    permuted[:8] = base[:8][::-1]
    changed = base.copy()
    changed[0] = (base[0] + 7) % (VOCAB - 3) + 3
    ids = torch.from_numpy(np.stack([base, permuted, changed])).long()
    t = 8  # positions >= 8 have the same prefix set in rows 0 and 1
    for mode, same in (("constant", True), ("natural", False)):
        pos = torch.from_numpy(position_ids(np.ones((3, 12), dtype=int), mode)).long()
        logits = _router_logits(model, ids, pos)
        close = torch.allclose(logits[0, t:], logits[1, t:], atol=1e-5)
        assert close == same, mode
        assert not torch.allclose(logits[0, t:], logits[2, t:], atol=1e-5)  # the context is still seen


@pytest.mark.parametrize("mode", ["constant", "shuffled", "reversed"])
def test_extraction_passes_the_ablated_positions(mode, checkpoints, corpus, tmp_path):
    """Stored ids equal a direct forward pass given the mode's position ids; they differ from natural."""
    from ising_moe.extract.loading import load_model, model_config

    res = run_extract(checkpoints["olmoe"], corpus, tmp_path, f"{mode}.h5", positions=mode, seed=5,
                      packing="document", batch_size=5)
    data = load_experts(res.path)
    assert data.attrs["positions"] == mode and data.attrs["params"]["positions"] == mode
    assert f"ablated position ids ({mode})" in data.provenance_note
    spec = resolve_model(str(checkpoints["olmoe"]))
    model = load_model(spec, model_config(spec), device="cpu").model
    ids = torch.from_numpy(data.token_ids.astype(np.int64))
    att = data.mask.astype(np.int64)
    expected = np.zeros_like(att)
    for row in range(att.shape[0]):  # independent construction of the positions
        n = int(att[row].sum())
        if mode == "reversed":
            expected[row, :n] = np.arange(n)[::-1]
        elif mode == "shuffled":
            rng = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(row,)))
            expected[row, :n] = rng.permutation(n)
    with RoutingCapture(model, "olmoe") as cap, torch.inference_mode():
        model(input_ids=ids, attention_mask=torch.from_numpy(att), position_ids=torch.from_numpy(expected))
        direct = cap.collect(*att.shape)["experts"]
    valid = np.broadcast_to(data.mask[:, None, :, None], data.experts.shape)
    np.testing.assert_array_equal(direct[valid], data.experts[valid])
    natural = load_experts(run_extract(checkpoints["olmoe"], corpus, tmp_path, "nat.h5", packing="document",
                                       batch_size=5).path)
    assert (natural.experts[valid] != data.experts[valid]).any()


def test_switch_refuses_position_ablation(checkpoints, corpus, tmp_path):
    with pytest.raises(InvalidParameterError, match="relative position bias"):
        run_extract(checkpoints["switch"], corpus, tmp_path, positions="shuffled")
    assert not list(tmp_path.glob("*.partial"))
    r = CliRunner().invoke(main, ["extract", "--model", "switch-8", "--positions", "constant", "-o",
                                  str(tmp_path / "s.h5")])
    assert r.exit_code == 2 and "relative position bias" in r.output and "Traceback" not in r.output


def _fast_tokenizer(path, corpus):
    """A real BPE fast tokenizer within the tiny vocabulary, saved like `isingmoe train` does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    texts.append("The quick brown fox jumps over the lazy dog.")
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<pad>", "</s>", "<unk>"]))
    assert tok.get_vocab_size() <= VOCAB
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)


def _organism(root, name, checkpoint, corpus, tokens=1234):
    """A checkpoint laid out as `isingmoe train` leaves it: weights, tokenizer, train_log.h5, untrained/."""
    from ising_moe.io import atomic_h5

    target = root / name
    shutil.copytree(checkpoint, target)
    _fast_tokenizer(target, corpus)
    with atomic_h5(target / "train_log.h5", kind="train_log", params={}, attrs={
            "preset": "olmoe-tiny", "tokens": tokens, "corpus_sha256": "ab" * 32}):
        pass
    shutil.copytree(target, target / "untrained", ignore=shutil.ignore_patterns("train_log.h5", "untrained"))
    return target


def test_organism_aliases(checkpoints, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("ISINGMOE_MODELS", str(tmp_path / "models"))
    for alias, command in (("olmoe-tiny", "--preset olmoe-tiny --balance aux"),
                           ("olmoe-tiny-mem", "--preset olmoe-tiny --balance mem"),
                           ("switch-tiny", "--preset switch-tiny --balance aux")):
        with pytest.raises(ModelNotAvailableError, match=f"`isingmoe train {command} -o "):
            resolve_model(alias)
    r = CliRunner().invoke(main, ["extract", "--model", "olmoe-tiny-mem", "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and str(tmp_path / "models" / "olmoe-tiny-mem") in r.output
    _organism(tmp_path / "models", "olmoe-tiny", checkpoints["olmoe"], corpus)
    trained = load_experts(extract("olmoe-tiny", corpus, output=tmp_path / "t.h5", max_length=16, n_sequences=3,
                                   device="cpu", progress=False).path)
    assert trained.attrs["weights"] == "trained-here"
    assert "trained here on 1,234 tokens" in trained.attrs["subject"]
    assert "not a production model" in trained.provenance_note
    assert trained.attrs["tokenizer"].endswith("olmoe-tiny@main")  # the checkpoint's own tokenizer
    twin = load_experts(extract("olmoe-tiny-untrained", corpus, output=tmp_path / "u.h5", max_length=16,
                                n_sequences=3, device="cpu", progress=False).path)
    assert twin.attrs["weights"] == "random-init" and twin.is_random_init
