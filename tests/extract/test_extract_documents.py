"""Corpus splits, per-document windows and document ids (no torch needed)."""

import json

import numpy as np
import pytest

from ising_moe.data import ExpertSequences, load_experts, save_experts
from ising_moe.errors import DataFormatError, InvalidParameterError
from ising_moe.extract.corpus import read_corpus
from ising_moe.extract.tokenize import encode_documents


class _CharTokenizer:
    """One token per character (ord), eos 0: enough to check the window arithmetic."""

    pad_token_id = 0
    eos_token_id = 0

    def encode(self, text):
        return [ord(c) for c in text]


def _corpus(tmp_path, records):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    return path


def test_split_keeps_only_that_split_and_records_document_ids(tmp_path):
    path = _corpus(tmp_path, [{"text": "aaaa", "doc_id": "a", "split": "train"},
                              {"text": "bbbbbb", "doc_id": "b", "split": "validation"},
                              {"text": "cc", "split": "validation"}])
    corpus = read_corpus(path, split="validation")
    assert corpus.documents == ["bbbbbb", "cc"]
    assert corpus.document_ids == ["b", "c.jsonl:3"]
    assert read_corpus(path).document_ids == ["a", "b", "c.jsonl:3"]
    with pytest.raises(DataFormatError, match="no document has split"):
        read_corpus(path, split="test")
    nosplit = _corpus(tmp_path, [{"text": "x"}])
    with pytest.raises(DataFormatError, match="no field 'split'"):
        read_corpus(nosplit, split="validation")
    text = tmp_path / "t.txt"
    text.write_text("plain")
    with pytest.raises(InvalidParameterError, match="needs a JSONL corpus"):
        read_corpus(text, split="validation")


def test_windows_never_span_two_documents_and_know_their_document():
    docs = ["abcdefg", "hi", "j", "klmn"]
    ids, mask, owner = encode_documents(_CharTokenizer(), docs, 3, 100, "windows")
    rows = ["".join(chr(t) for t, m in zip(r, mk) if m) for r, mk in zip(ids, mask)]
    assert rows == ["abc", "def", "hi", "klm"]  # "g" and "n" (1 token) and "j" are too short
    assert owner.tolist() == [0, 0, 1, 3]
    # concat windows cross documents: the owner is the document of the first token
    ids, mask, owner = encode_documents(_CharTokenizer(), docs, 4, 100, "concat")
    assert owner.tolist() == [0, 0, 1, 2]  # "abcd" "efg<eos>" "hi<eos>j" "<eos>klm": j's eos starts the last
    _, _, owner = encode_documents(_CharTokenizer(), docs, 4, 2, "document")
    assert owner.tolist() == [0, 1]


def test_document_ids_round_trip_through_the_file(tmp_path):
    rng = np.random.default_rng(0)
    data = ExpertSequences(rng.integers(0, 4, size=(3, 1, 5, 1)), np.ones((3, 5), bool), 4,
                           document_ids=np.array(["kjv:1", "kjv:1", "shakespeare:macbeth:000"]),
                           attrs={"model_id": "test", "weights": "random-init"})
    save_experts(data, tmp_path / "d.h5")
    back = load_experts(tmp_path / "d.h5")
    assert back.document_ids.tolist() == ["kjv:1", "kjv:1", "shakespeare:macbeth:000"]
    save_experts(ExpertSequences(data.experts, data.mask, 4, attrs=data.attrs), tmp_path / "none.h5")
    assert load_experts(tmp_path / "none.h5").document_ids is None
