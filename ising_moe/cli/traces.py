"""``isingmoe import`` and ``isingmoe export``: routing traces of other engines in and out.

Thin commands: parse, call :mod:`ising_moe.traces`, print a summary (or ``--json``). Malformed
sources raise :class:`~ising_moe.errors.DataFormatError`, which the ``isingmoe`` group turns into
one line and exit status 2; nothing is written then.
"""

from __future__ import annotations

from pathlib import Path

import click

from ._main import _emit, main

__all__ = ["import_command", "export_command"]


@main.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True,
              type=click.Choice(["vllm", "sglang", "megatron", "npz", "parquet"]),
              help="vllm: routed_experts JSON/JSONL; sglang: per_token recorder .pt dumps; megatron: "
                   "router_trace_rank*.jsonl; npz / parquet: the plain layouts (see the README).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Expert-sequence HDF5 file to write, e.g. data/NAME.h5.")
@click.option("--n-experts", type=int, default=None,
              help="The model's number of routed experts [default: from the file, else max id + 1].")
@click.option("--model-id", default=None, help="Recorded as model_id [default: from the file, else unknown].")
@click.option("--micro-batch-size", type=int, default=None,
              help="megatron only: rows of the micro-batch each router call saw [default: 1].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def import_command(source, fmt, output, n_experts, model_id, micro_batch_size, overwrite, as_json):
    """Convert a routing trace (vLLM, SGLang, Megatron, npz, Parquet) into an expert-sequence file."""
    from ..traces import import_trace

    result = import_trace(source, output, fmt, n_experts=n_experts, model_id=model_id, overwrite=overwrite,
                          micro_batch_size=micro_batch_size)
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    lines = [
        f"wrote {result.path} (imported {fmt} trace, weights = imported-trace)",
        f"{result.n_sequences} sequences, {result.n_tokens} tokens, up to {result.n_positions} positions",
        (f"{len(result.layers)} MoE layers {result.layers}, top-{result.top_k}, {result.n_experts} experts "
         f"({result.n_experts_origin})"),
    ]
    if result.n_experts_origin == "inferred":
        lines.append("NOTE: n_experts inferred as the largest expert id + 1 (a lower bound if some expert "
                     "was never chosen): pass --n-experts.")
    skipped = {k: v for k, v in result.notes.items() if v and ("skipped" in k or "dropped" in k
                                                              or "without" in k)}
    if skipped:
        lines.append("notes: " + ", ".join(f"{k} = {v}" for k, v in sorted(skipped.items())))
    _emit(payload, as_json, lines)


@main.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(["npz", "parquet"]),
              help="npz: arrays experts/mask/layers/n_experts; parquet: rows sequence, position, layer, "
                   "rank, expert.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def export_command(path, fmt, output, overwrite, as_json):
    """Write an expert-sequence file in a plain layout (npz or Parquet) for other tools."""
    from ..traces import export_trace

    result = export_trace(path, output, fmt, overwrite=overwrite)
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    line = (f"wrote {result.path} ({fmt}): {result.n_sequences} sequences, {result.n_tokens} tokens, from {path} "
            f"(sha256 {result.input_sha256[:12]}...)")
    _emit(payload, as_json, [line])
