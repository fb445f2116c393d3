"""Training data: split by document, windows inside documents, span corruption, the tokenizer."""

import gzip
import json

import numpy as np
import pytest

from ising_moe.errors import DataFormatError
from ising_moe.train.batches import Batcher
from ising_moe.train.corpus import EOS_ID, make_windows, read_documents, span_corrupt


def test_windows_never_span_documents():
    docs = [np.arange(100, 100 + n) for n in (10, 25, 3, 40)]
    windows, owner = make_windows(docs, [7, 8, 9, 10], seq_len=8, min_len=2)
    assert list(owner) == [7, 7, 8, 8, 8, 9, 10, 10, 10, 10, 10]  # the 1-token tail of d8 is dropped
    for w, d in zip(windows, owner):
        doc = docs[[7, 8, 9, 10].index(d)]
        assert np.isin(w, doc).all() and len(w) <= 8
    # min_len 4 also drops the 2-token tail of d7 and the 3-token document d9
    _, owner = make_windows(docs, [7, 8, 9, 10], seq_len=8, min_len=4)
    assert list(owner) == [7, 8, 8, 8, 10, 10, 10, 10, 10]


def test_span_corruption_reconstructs_the_window():
    tokens = np.arange(100, 164)
    sentinels = list(range(2, 34))
    inp, tgt = span_corrupt(tokens, np.random.default_rng(0), 0.15, 3.0, sentinels)
    assert inp[-1] == EOS_ID and tgt[-1] == EOS_ID
    n_spans = int(np.isin(inp, sentinels).sum())
    assert n_spans == round(round(0.15 * 64) / 3.0) and int(np.isin(tgt, sentinels).sum()) == n_spans
    spans, rebuilt = {}, []
    cur = None
    for t in tgt[:-1]:
        if t in sentinels:
            cur = t
            spans[cur] = []
        else:
            spans[cur].append(t)
    for t in inp[:-1]:
        rebuilt.extend(spans[t] if t in sentinels else [t])
    np.testing.assert_array_equal(rebuilt, tokens)


def test_batches_are_a_pure_function_of_the_step():
    windows = [np.arange(i, i + 5) for i in range(10)]
    a = Batcher(windows, "olmoe", 5, 4, seed=3)
    b = Batcher(windows, "olmoe", 5, 4, seed=3)
    seen = np.concatenate([a.step_windows(s) for s in (0, 1)])  # first 8 of epoch 0: no repeats
    assert len(set(seen)) == 8
    np.testing.assert_array_equal(b.step_windows(7), a.step_windows(7))
    assert not np.array_equal(Batcher(windows, "olmoe", 5, 4, seed=4).step_windows(0), a.step_windows(0))


def test_read_documents_split_and_errors(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    rows = [{"doc_id": f"d{i}", "text": "t", "split": "validation" if i == 2 else "train"} for i in range(4)]
    with gzip.open(path, "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    docs = read_documents(path)
    assert list(docs.indices("validation")) == [2] and list(docs.indices("train")) == [0, 1, 3]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc_id": "a", "text": "x"}\n{"doc_id": "a", "text": "y"}\n')
    with pytest.raises(DataFormatError, match="unique"):
        read_documents(bad)


def test_tokenizer_round_trip():
    pytest.importorskip("tokenizers")
    from ising_moe.train.corpus import SPECIAL_TOKENS, train_tokenizer

    tok = train_tokenizer(["In the beginning God created the heaven and the earth."] * 20, 300)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS[:3]] == [0, 1, 2]
    text = "Naïve heaven; the earth!"
    assert tok.decode(tok.encode(text).ids) == text  # byte level: nothing is unknown
