"""Tokenisation for extraction: the model's own tokenizer, or a documented offline fallback."""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["WordHashTokenizer", "load_tokenizer", "encode_documents"]


class WordHashTokenizer:
    """Offline fallback when the model's tokenizer cannot be loaded: ``fallback:word-hash-v1``.

    Text is split into words and single punctuation marks (regex ``\\w+|[^\\w\\s]``); each piece
    maps to ``3 + blake2b(piece) mod (vocab_size - 3)`` (ids 0, 1, 2 stay free for padding, end
    of sequence and unknown). Deterministic across machines and Python versions; the same word
    always gets the same id, which keeps the token-identity structure that routing depends on.
    """

    name = "fallback:word-hash-v1"
    warning: str | None = None  # why the model's own tokenizer was not used
    _pattern = re.compile(r"\w+|[^\w\s]")

    def __init__(self, vocab_size: int, eos_token_id: int | None = 1, pad_token_id: int = 0):
        if vocab_size < 16:
            raise ValueError("vocab_size must be >= 16")
        self.vocab_size = int(vocab_size)
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self._cache: dict[str, int] = {}

    def _id(self, piece: str) -> int:
        tid = self._cache.get(piece)
        if tid is None:
            h = int.from_bytes(hashlib.blake2b(piece.encode(), digest_size=8).digest(), "little")
            tid = 3 + h % (self.vocab_size - 3)
            self._cache[piece] = tid
        return tid

    def encode(self, text: str) -> list[int]:
        return [self._id(piece) for piece in self._pattern.findall(text)]


class _HFTokenizer:
    def __init__(self, tok, name: str):
        # whole documents are encoded and cut into windows here: the tokenizer's length limit and its
        # warning about it do not apply
        tok.model_max_length = 1 << 62
        self.tok = tok
        self.name = name
        self.eos_token_id = tok.eos_token_id
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]


#: files of a Hugging Face tokenizer in a checkpoint directory
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "merges.txt", "vocab.txt")


def _shipped_tokenizer_files(hub_id: str) -> list[str]:
    from pathlib import Path

    path = Path(hub_id)
    return [n for n in _TOKENIZER_FILES if (path / n).is_file()] if path.is_dir() else []


def load_tokenizer(hub_id: str, revision: str | None, vocab_size: int, eos_token_id, pad_token_id,
                   local_only: bool):
    """The model's tokenizer from the local cache (or hub), else :class:`WordHashTokenizer`.

    A local checkpoint directory that ships tokenizer files must load them: a damaged one raises
    :class:`~ising_moe.errors.DataFormatError` instead of falling back to foreign token ids.
    """
    if isinstance(eos_token_id, (list, tuple)):
        eos_token_id = eos_token_id[0] if eos_token_id else None
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(hub_id, revision=revision, local_files_only=local_only)
        # transformers builds an empty tokenizer when the vocabulary files are missing: refuse it
        probe = tok("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"]
        if len(set(probe) - {tok.unk_token_id}) < 5:
            raise ValueError("the tokenizer has no vocabulary")
        return _HFTokenizer(tok, f"{hub_id}@{revision or 'main'}")
    except Exception as exc:  # any failure to get the real tokenizer leads to the documented fallback
        shipped = _shipped_tokenizer_files(hub_id)
        if shipped:  # a checkpoint that ships a tokenizer was trained on its ids: foreign ids are no substitute
            from ..errors import DataFormatError

            detail = (str(exc).strip().splitlines() or [""])[0][:160]
            raise DataFormatError(
                f"{hub_id} ships a tokenizer ({', '.join(shipped)}) that cannot be loaded ({type(exc).__name__}: "
                f"{detail}): the model's routing needs its own token ids; repair or restore the tokenizer files") \
                from None
        fallback = WordHashTokenizer(vocab_size, eos_token_id=eos_token_id,
                                     pad_token_id=pad_token_id if pad_token_id is not None else 0)
        # logged by the caller once every check has passed (a warning before an error would make two lines)
        fallback.warning = (f"tokenizer of {hub_id} not available offline ({type(exc).__name__}): using "
                            f"{WordHashTokenizer.name}")
        return fallback


def encode_documents(tokenizer, documents, max_length: int, n_sequences: int, packing: str):
    """Token windows of the corpus.

    ``packing="concat"``: documents joined (separated by the end-of-sequence token when the
    tokenizer has one) and cut into consecutive windows of exactly ``max_length`` tokens (a
    shorter last window only when the corpus holds less than one window); a window may span two
    documents. ``packing="windows"``: every document cut into consecutive windows of
    ``max_length`` tokens, its last shorter window right-padded (dropped below 2 tokens): a
    sequence never spans two documents. ``packing="document"``: one sequence per document,
    truncated to ``max_length`` and right-padded.

    Returns
    -------
    token_ids : ndarray of int32, shape (n, max_length)
    mask : ndarray of bool, shape (n, max_length)
    document : ndarray of int64, shape (n,)
        Index into ``documents`` of each sequence (for ``concat``: the document its first token
        belongs to).
    """
    pad = tokenizer.pad_token_id or 0
    rows: list[list[int]] = []
    owner: list[int] = []
    if packing == "document":
        for d, doc in enumerate(documents[:n_sequences]):
            row = tokenizer.encode(doc)[:max_length]
            if row:
                rows.append(row)
                owner.append(d)
    elif packing == "windows":
        for d, doc in enumerate(documents):
            ids = tokenizer.encode(doc)
            for start in range(0, len(ids), max_length):
                window = ids[start:start + max_length]
                if len(window) >= 2 and len(rows) < n_sequences:
                    rows.append(window)
                    owner.append(d)
            if len(rows) >= n_sequences:
                break
    else:
        stream: list[int] = []
        starts: list[int] = []  # stream offset where each document begins
        need = n_sequences * max_length
        for doc in documents:
            starts.append(len(stream))
            stream.extend(tokenizer.encode(doc))
            if tokenizer.eos_token_id is not None:
                stream.append(tokenizer.eos_token_id)
            if len(stream) >= need:
                break
        n_full = min(n_sequences, len(stream) // max_length)
        rows = [stream[i * max_length:(i + 1) * max_length] for i in range(n_full)]
        if not rows and stream:
            rows = [stream[:max_length]]
        owner = [int(np.searchsorted(starts, i * max_length, side="right")) - 1 for i in range(len(rows))]
    token_ids = np.full((len(rows), max_length), pad, dtype=np.int32)
    mask = np.zeros((len(rows), max_length), dtype=bool)
    for i, row in enumerate(rows):
        token_ids[i, : len(row)] = row
        mask[i, : len(row)] = True
    return token_ids, mask, np.asarray(owner, dtype=np.int64)
