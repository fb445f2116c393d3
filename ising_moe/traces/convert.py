"""Import a routing trace into an expert-sequence file, and export one to the plain layouts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import ExpertSequences, load_experts, save_experts
from ..errors import InvalidParameterError, IsingMoeError
from ..io import file_sha256
from ..outputs import check_target

__all__ = ["IMPORT_FORMATS", "EXPORT_FORMATS", "ImportResult", "ExportResult", "read_trace", "import_trace",
           "export_trace"]

IMPORT_FORMATS = ("vllm", "sglang", "megatron", "npz", "parquet")
EXPORT_FORMATS = ("npz", "parquet")
#: options that only some readers take
_FORMAT_OPTIONS = {"megatron": ("micro_batch_size",), "sglang": ("min_segment_length",)}


@dataclass(frozen=True)
class ImportResult:
    """Summary of one import (the CLI prints it)."""

    path: Path
    source_format: str
    n_sequences: int
    n_tokens: int
    n_positions: int
    layers: list[int]
    top_k: int
    n_experts: int
    n_experts_origin: str
    model_id: str
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    export_format: str
    n_sequences: int
    n_tokens: int
    input_sha256: str


def _reader(fmt: str):
    if fmt not in IMPORT_FORMATS:
        raise InvalidParameterError(f"format must be one of {', '.join(IMPORT_FORMATS)}, got {fmt!r}")
    from . import megatron, npz, parquet, sglang, vllm

    return {"vllm": vllm.read_vllm, "sglang": sglang.read_sglang, "megatron": megatron.read_megatron,
            "npz": npz.read_npz, "parquet": parquet.read_parquet}[fmt]


def read_trace(source, fmt: str, *, n_experts: int | None = None, model_id: str | None = None,
               **options) -> ExpertSequences:
    """Read a routing trace of format ``fmt`` (one of :data:`IMPORT_FORMATS`) into memory.

    ``options`` go to the format's reader: ``micro_batch_size`` (megatron),
    ``min_segment_length`` (sglang).
    """
    reader = _reader(fmt)
    options = {k: v for k, v in options.items() if v is not None}
    extra = sorted(set(options) - set(_FORMAT_OPTIONS.get(fmt, ())))
    if extra:
        raise InvalidParameterError(f"option(s) {', '.join(extra)} do not apply to the {fmt} format")
    return reader(Path(source), n_experts=n_experts, model_id=model_id, **options)


def import_trace(source, output, fmt: str, *, n_experts: int | None = None, model_id: str | None = None,
                 overwrite: bool = False, **options) -> ImportResult:
    """Convert a routing trace into an expert-sequence HDF5 file (kind ``"experts"``).

    The file has the layout of extraction files (:func:`ising_moe.data.save_experts`) with
    ``weights = "imported-trace"``, ``source_format``, ``source_files`` (name, size, SHA-256),
    ``source_version``, ``n_experts_origin`` and ``import_notes``; it is written atomically and
    read back with :func:`~ising_moe.data.load_experts` before this returns.

    Raises
    ------
    DataFormatError
        The source is malformed (the message names the file and the problem); nothing is written.
    OutputExistsError
        ``output`` exists and ``overwrite`` is False.
    """
    output = Path(output)
    check_target(output, overwrite)
    data = read_trace(source, fmt, n_experts=n_experts, model_id=model_id, **options)
    params = {"format": fmt, "source": str(source), "n_experts": n_experts, "model_id": model_id,
              "options": {k: v for k, v in options.items() if v is not None},
              "source_files": json.loads(data.attrs["source_files"])}
    save_experts(data, output, overwrite=overwrite, params=params)
    try:
        back = load_experts(output)
    except IsingMoeError:
        output.unlink(missing_ok=True)
        raise
    return ImportResult(
        path=output, source_format=fmt, n_sequences=back.n_sequences, n_tokens=int(back.mask.sum()),
        n_positions=back.n_positions, layers=back.layers.tolist(), top_k=back.top_k, n_experts=back.n_experts,
        n_experts_origin=str(back.attrs["n_experts_origin"]), model_id=back.model_id,
        notes=json.loads(back.attrs["import_notes"]))


def export_trace(path, output, fmt: str, *, overwrite: bool = False) -> ExportResult:
    """Write an expert-sequence file in a plain layout (``"npz"`` or ``"parquet"``).

    The plain layouts hold the routing (``experts``, ``mask``, ``layers``, ``n_experts``, and
    ``token_ids`` / ``dropped`` when present); provenance stays in the HDF5 file, whose SHA-256 is
    returned.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidParameterError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    output = Path(output)
    check_target(output, overwrite)
    data = load_experts(path)
    if fmt == "npz":
        from .npz import write_npz as write
    else:
        from .parquet import write_parquet as write
    write(data, output, overwrite=overwrite)
    return ExportResult(path=output, export_format=fmt, n_sequences=data.n_sequences,
                        n_tokens=int(data.mask.sum()), input_sha256=file_sha256(path))
