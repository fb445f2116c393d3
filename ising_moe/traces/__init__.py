"""Import the routing traces that serving and training engines write; export the plain layouts.

Many users already have the expert choices of their MoE models, recorded by the engine they serve
or train with. This subpackage turns those records into the expert-sequence file that extraction
writes (``isingmoe extract``), so every analysis runs on them unchanged:

============ ================================================ ===================================
format       source                                           module
============ ================================================ ===================================
``vllm``     ``routed_experts`` / ``prompt_routed_experts``   :mod:`ising_moe.traces.vllm`
             of vLLM responses (JSON / JSON Lines)
``sglang``   SGLang ``per_token`` expert-distribution         :mod:`ising_moe.traces.sglang`
             recorder dumps (``.pt``, read without torch)
``megatron`` Megatron-core ``--moe-routing-trace-path``       :mod:`ising_moe.traces.megatron`
             JSONL (``router_trace_rank<N>.jsonl``)
``npz``      the plain NumPy layout                           :mod:`ising_moe.traces.npz`
``parquet``  the plain long table ``sequence, position,       :mod:`ising_moe.traces.parquet`
             layer, rank, expert`` (needs pyarrow)
============ ================================================ ===================================

Shared validation and padding live in :mod:`ising_moe.traces.assemble`. Imported files say
``weights = "imported-trace"`` (neither ``"pretrained"`` nor ``"random-init"``: the routing was not
computed here), with ``source_format``, the SHA-256 of every source file and the format's notes.
No module here imports torch.
"""

from .convert import EXPORT_FORMATS, IMPORT_FORMATS, ExportResult, ImportResult, export_trace, import_trace, read_trace

__all__ = ["IMPORT_FORMATS", "EXPORT_FORMATS", "ImportResult", "ExportResult", "read_trace", "import_trace",
           "export_trace"]
