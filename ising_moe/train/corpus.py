"""Training data: documents split by document, a byte-level BPE tokenizer, windows, span corruption.

No torch here (numpy and the ``tokenizers`` library).

The corpus is a JSON-lines file (optionally gzipped), one document per line with the fields
``text`` and ``doc_id`` and optionally ``split`` (``"train"`` or ``"validation"``) and ``genre``.
Without a ``split`` field whole documents are held out by a hash of their id. A training window
never spans two documents, and the document of every window is recorded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, InvalidParameterError
from ..io import file_sha256
from .presets import N_SENTINELS

__all__ = [
    "EOS_ID",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "Documents",
    "fast_tokenizer",
    "make_windows",
    "read_documents",
    "span_corrupt",
    "train_tokenizer",
]

PAD_ID, EOS_ID = 0, 1
SPECIAL_TOKENS = ["<pad>", "</s>"] + [f"<extra_id_{i}>" for i in range(N_SENTINELS)]
_HASH_VALIDATION_PERCENT = 5


@dataclass(frozen=True)
class Documents:
    """The documents of a corpus, in file order.

    Attributes
    ----------
    path : str
    sha256 : str
        Of the file's bytes.
    doc_id, text, genre : list of str
    is_validation : ndarray of bool, shape (n_documents,)
    """

    path: str
    sha256: str
    doc_id: list[str]
    text: list[str]
    genre: list[str]
    is_validation: np.ndarray

    def indices(self, split: str) -> np.ndarray:
        """Document indices of ``split`` (``"train"`` or ``"validation"``)."""
        return np.flatnonzero(self.is_validation if split == "validation" else ~self.is_validation)


def _hash_split(doc_id: str) -> bool:
    h = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little")
    return h % 100 < _HASH_VALIDATION_PERCENT


def read_documents(path) -> Documents:
    """Read a JSON-lines corpus (see the module docstring).

    Raises
    ------
    InvalidParameterError
        The file does not exist.
    DataFormatError
        Not JSON lines, a document without ``text``/``doc_id``, duplicate ids, or an empty split.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"corpus {path} does not exist: pass a JSON-lines file "
                                    "(build the shipped one with data/corpus/make_mixed.sh)")
    opener = gzip.open if path.suffix == ".gz" else open
    ids, texts, genres, val = [], [], [], []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                doc = json.loads(line)
                if not isinstance(doc, dict) or not isinstance(doc.get("text"), str) or "doc_id" not in doc:
                    raise DataFormatError(f"{path}:{lineno}: each line must be a JSON object with "
                                          "'text' and 'doc_id'")
                ids.append(str(doc["doc_id"]))
                texts.append(doc["text"])
                genres.append(str(doc.get("genre", "")))
                split = doc.get("split")
                if split not in (None, "train", "validation"):
                    raise DataFormatError(f"{path}:{lineno}: split must be 'train' or 'validation'")
                val.append(_hash_split(ids[-1]) if split is None else split == "validation")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path} is not a readable JSON-lines corpus ({exc})") from None
    if len(set(ids)) != len(ids):
        raise DataFormatError(f"{path}: document ids are not unique")
    is_val = np.array(val, dtype=bool)
    if not is_val.any() or is_val.all():
        raise DataFormatError(f"{path}: needs both training and validation documents")
    return Documents(str(path), file_sha256(path), ids, texts, genres, is_val)


def train_tokenizer(texts, vocab_size: int):
    """A byte-level BPE (``tokenizers``) trained on ``texts``; ids 0, 1 are ``<pad>``, ``</s>``,
    then the sentinels ``<extra_id_0>`` ... of span corruption. Deterministic for given texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def fast_tokenizer(tok):
    """Wrap a ``tokenizers.Tokenizer`` as a ``PreTrainedTokenizerFast`` (savable, loadable by
    ``AutoTokenizer``)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
        additional_special_tokens=SPECIAL_TOKENS[2:], model_max_length=1 << 20,
    )


def make_windows(token_lists, doc_index, seq_len: int, min_len: int):
    """Cut each document into consecutive windows of ``seq_len`` tokens (never across documents).

    The last, shorter piece of a document is kept when it has at least ``min_len`` tokens
    (it is padded at training time).

    Returns
    -------
    windows : list of ndarray of int32
    window_doc : ndarray of int64, shape (n_windows,)
        Index (into the corpus) of each window's document.
    """
    windows, owner = [], []
    for ids, d in zip(token_lists, doc_index):
        ids = np.asarray(ids, dtype=np.int32)
        for start in range(0, len(ids), seq_len):
            piece = ids[start:start + seq_len]
            if len(piece) >= min_len:
                windows.append(piece)
                owner.append(d)
    return windows, np.asarray(owner, dtype=np.int64)


def span_corrupt(tokens: np.ndarray, rng: np.random.Generator, noise_density: float,
                 mean_span: float, sentinel_ids) -> tuple[np.ndarray, np.ndarray]:
    """T5 span corruption of one window.

    ``round(noise_density * n)`` tokens in ``round(n_noise / mean_span)`` spans are removed; the
    input keeps the other tokens with one sentinel per removed span, the target lists the
    sentinels followed by their spans, then ``</s>`` (as in T5's ``random_spans_noise_mask``).
    """
    n = len(tokens)
    n_noise = int(min(max(round(noise_density * n), 1), n - 1))
    n_spans = int(min(max(round(n_noise / mean_span), 1), len(sentinel_ids), n_noise, n - n_noise))

    def _segments(total, k):  # random composition of `total` into k positive parts
        cuts = np.sort(rng.choice(np.arange(1, total), size=k - 1, replace=False)) if k > 1 else np.array([], int)
        return np.diff(np.concatenate([[0], cuts, [total]]))

    noise_len, keep_len = _segments(n_noise, n_spans), _segments(n - n_noise, n_spans)
    inp, tgt, pos = [], [], 0
    for s in range(n_spans):  # keep span first, then noise span (as T5's interleaving)
        inp.extend(tokens[pos:pos + keep_len[s]])
        pos += keep_len[s]
        inp.append(sentinel_ids[s])
        tgt.append(sentinel_ids[s])
        tgt.extend(tokens[pos:pos + noise_len[s]])
        pos += noise_len[s]
    inp.append(EOS_ID)
    tgt.append(EOS_ID)
    return np.asarray(inp, dtype=np.int64), np.asarray(tgt, dtype=np.int64)
