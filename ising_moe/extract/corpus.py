"""Text corpora for extraction: plain text (optionally gzipped), a directory of files, or JSONL.

No torch needed. Every malformed input gets a :class:`DataFormatError` that says how to fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataFormatError, InvalidParameterError
from .registry import data_dir, shipped_data_dir

__all__ = ["Corpus", "read_corpus", "default_corpus_path"]

_TEXT_SUFFIXES = (".txt", ".txt.gz", ".text", ".md")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")


@dataclass(frozen=True)
class Corpus:
    """Documents of a corpus with the provenance of their source.

    Attributes
    ----------
    name : str
        The path as given.
    documents : list of str
    sha256 : str
        One file: the SHA-256 of its bytes as stored (``sha256sum FILE``; what ``isingmoe train``
        records of its corpus). A directory: SHA-256 of the lines ``name\0sha256\n`` of its files
        in sorted order.
    document_ids : list of str
        One id per document: a JSONL record's ``doc_id`` field, else ``<file>:<line>``; the file
        name for a plain-text file.
    """

    name: str
    documents: list[str]
    sha256: str
    document_ids: list[str]


def default_corpus_path(directory=None) -> Path:
    """The shipped corpus: the King James Bible (public domain), ``corpus/kjv.txt.gz`` in the data
    directory (``directory``, ``$ISINGMOE_DATA``) or else in the installation's ``data/``, whatever
    the working directory."""
    for folder in (data_dir(directory), shipped_data_dir()):
        path = folder / "corpus" / "kjv.txt.gz"
        if path.is_file():
            return path
    return shipped_data_dir() / "corpus" / "kjv.txt.gz"


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path} is not a valid gzip file ({exc})") from None
    return data


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path} is not UTF-8 (invalid byte at offset {exc.start}): re-encode it, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > fixed.txt`"
        ) from None


def _jsonl_documents(path: Path, text: str, text_field: str, split: str | None) -> tuple[list[str], list[str]]:
    docs, ids = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or text_field not in record:
            fields = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise DataFormatError(
                f"{path}:{lineno}: no field {text_field!r} (found: {fields}); pass --text-field NAME"
            )
        if split is not None:
            if "split" not in record:
                raise DataFormatError(f"{path}:{lineno}: no field 'split' to select --split {split} by")
            if record["split"] != split:
                continue
        value = record[text_field]
        if not isinstance(value, str):
            raise DataFormatError(f"{path}:{lineno}: field {text_field!r} is not a string")
        if value.strip():
            docs.append(value)
            ids.append(str(record.get("doc_id", f"{path.name}:{lineno}")))
    return docs, ids


def read_corpus(source=None, text_field: str = "text", data_dir=None, split: str | None = None) -> Corpus:
    """Read a corpus.

    Parameters
    ----------
    source : path-like, optional
        A ``.txt``/``.txt.gz`` file (one document), a ``.jsonl`` file (one document per line, text
        in ``text_field``), or a directory of such files (read in sorted order). Default: the
        shipped corpus (:func:`default_corpus_path`).
    text_field : str, default "text"
    data_dir : path-like, optional
        Data directory searched first for the shipped corpus (see :func:`default_corpus_path`).
    split : str, optional
        Keep only the JSONL records whose ``split`` field equals this (e.g. ``"validation"``: text
        a model organism never trained on).

    Raises
    ------
    InvalidParameterError
        The path does not exist or has an unknown extension.
    DataFormatError
        Empty, not UTF-8, invalid JSON, or JSONL without ``text_field``.
    """
    path = Path(source) if source is not None else default_corpus_path(data_dir)
    if not path.exists():
        hint = " (the shipped corpus is missing: reinstall from a full checkout)" if source is None else ""
        raise InvalidParameterError(f"corpus {path} does not exist{hint}")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in files if p.name.endswith(_TEXT_SUFFIXES + _JSONL_SUFFIXES)] if path.is_dir() else files
    if not files:
        raise DataFormatError(f"{path} holds no .txt or .jsonl files")
    file_hashes: dict[str, str] = {}
    documents: list[str] = []
    document_ids: list[str] = []
    if split is not None and not any(f.name.endswith(_JSONL_SUFFIXES) for f in files):
        raise InvalidParameterError(f"--split {split} needs a JSONL corpus with a 'split' field, got {path}")
    for file in files:
        if not file.name.endswith(_TEXT_SUFFIXES + _JSONL_SUFFIXES):
            raise InvalidParameterError(
                f"{file}: unknown corpus format; use .txt, .txt.gz, .jsonl or .jsonl.gz"
            )
        raw = file.read_bytes()
        file_hashes[file.name if path.is_dir() else ""] = hashlib.sha256(raw).hexdigest()
        data = _read_bytes(file)
        text = _decode(file, data)
        if file.name.endswith(_JSONL_SUFFIXES):
            docs, ids = _jsonl_documents(file, text, text_field, split)
        else:
            docs, ids = ([text], [file.name]) if text.strip() else ([], [])
        if not docs and split is None:
            raise DataFormatError(f"{file} is empty (no text to tokenise)")
        documents.extend(docs)
        document_ids.extend(ids)
    if not documents:
        raise DataFormatError(f"{path}: no document has split = {split!r}")
    # one file: the SHA-256 of its bytes (as sha256sum, and as `isingmoe train` records its corpus), so that
    # one output never names the same file with two different hashes; a directory: one hash of its files'
    if path.is_dir():
        digest = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in sorted(file_hashes.items())).encode())
        sha256 = digest.hexdigest()
    else:
        sha256 = file_hashes[""]
    return Corpus(name=str(source) if source is not None else f"shipped:{path.name}",
                  documents=documents, sha256=sha256, document_ids=document_ids)
