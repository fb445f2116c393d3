"""Import vLLM's routed-experts output (``--enable-return-routed-experts``).

What vLLM returns
-----------------
With ``enable_return_routed_experts`` on, vLLM reports the experts its router chose for every token
that went through a forward pass, as an integer array of shape ``(n_tokens, n_layers, top_k)``
(``top_k = num_experts_per_tok`` of the model), in the router's rank order. Checked against
vllm-project/vllm:

- ``vllm/outputs.py`` (commit 003d3ee): ``CompletionOutput.routed_experts``,
  ``np.ndarray  # [seq_len,layer_num,topk]``;
- ``vllm/model_executor/layers/fused_moe/routed_experts_capturer.py`` (commit 42fa4c0 and a later
  revision) and ``vllm/v1/core/sched/scheduler.py`` (``_get_routed_experts``): the array covers
  ``request.num_tokens - 1`` tokens (prompt and generated tokens except the last sampled one,
  which was never fed back); ``split_routed_experts`` of the later revision cuts it into
  ``RequestOutput.prompt_routed_experts`` (prompt tokens) and ``CompletionOutput.routed_experts``
  (generated tokens);
- ``vllm/entrypoints/openai/chat_completion/protocol.py`` (commit 002032e): in the OpenAI-compatible
  server's JSON, ``choices[i].routed_experts`` is a base64 string of ``.npy`` bytes
  (``np.load(io.BytesIO(base64.b64decode(s)))``) covering all ``num_tokens - 1`` tokens; other
  revisions return nested lists and a top-level ``prompt_routed_experts``.

Accepted files
--------------
A ``.json`` document (one object or a list) or a JSON Lines file (``.jsonl``), each object being

- an OpenAI-compatible response: ``choices`` (or ``outputs``) is a list whose items carry
  ``routed_experts``; an optional top-level ``prompt_routed_experts`` is shared by all choices; or
- a per-request record of your own with top-level ``routed_experts`` and/or
  ``prompt_routed_experts`` (the attribute names of ``RequestOutput``/``CompletionOutput``).

Each array is nested lists of integers or a base64 ``.npy`` string; ``null`` entries are skipped.
One sequence per choice: ``prompt_routed_experts`` followed by the choice's ``routed_experts``
(either may be absent), starting at position 0. The response's ``model`` and
``system_fingerprint`` (``vllm-<version>-...``) are recorded when present.

Ambiguities, and what the importer does
---------------------------------------
- The layer axis is ``num_hidden_layers`` in older revisions (dense layers stay all 0) and only the
  MoE layers in later ones. With ``top_k >= 2`` a layer whose every valid row is all 0 cannot be
  routing (a router picks distinct experts), so it is dropped and listed in ``import_notes``;
  the ``layer`` labels are indices along vLLM's layer axis.
- Tokens served from the prefix cache get no forward pass; their rows are 0 or -1 depending on
  the revision. Both are refused (repeated ids or negative ids): record with prefix caching off.
- ``n_experts`` is not in the output: pass ``--n-experts`` (else ``max id + 1``, marked inferred).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

import numpy as np

from ..data import ExpertSequences
from ..errors import DataFormatError
from .assemble import (
    as_id_array,
    build_sequences,
    describe_sources,
    drop_unrouted_layers,
    pad_sequences,
    read_json_records,
    source_paths,
)

__all__ = ["read_vllm"]


def _decode(value, where: str) -> np.ndarray | None:
    """One routed-experts array: nested lists, a base64 ``.npy`` string, or ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
            value = np.load(io.BytesIO(raw), allow_pickle=False)
        except (binascii.Error, ValueError, OSError, EOFError) as exc:
            raise DataFormatError(f"{where}: not a base64-encoded .npy array ({exc})") from None
    arr = as_id_array(value, where, ndim=3)
    return arr if len(arr) else None  # no token (e.g. a one-token completion): nothing to add


def _sequences_of(record, label: str):
    """Yield ``(label, tokens)`` for each choice of one response/request record."""
    if not isinstance(record, dict):
        raise DataFormatError(f"{label}: expected a JSON object (a vLLM response), found {type(record).__name__}")
    prompt = _decode(record.get("prompt_routed_experts"), f"{label} prompt_routed_experts")
    choices = record.get("choices", record.get("outputs"))
    if choices is None:
        if "routed_experts" not in record and "prompt_routed_experts" not in record:
            raise DataFormatError(
                f"{label}: missing key 'routed_experts' (and no 'choices'/'outputs' list): not vLLM "
                "routed-experts output; start vLLM with --enable-return-routed-experts")
        choices = [record]
    if not isinstance(choices, list):
        raise DataFormatError(f"{label}: 'choices' must be a list")
    for i, choice in enumerate(choices):
        where = label if choice is record else f"{label} choice {i}"
        if not isinstance(choice, dict):
            raise DataFormatError(f"{where}: expected a JSON object")
        if "routed_experts" not in choice and prompt is None:
            raise DataFormatError(f"{where}: missing key 'routed_experts'")
        generated = _decode(choice.get("routed_experts"), f"{where} routed_experts")
        parts = [p for p in (prompt, generated) if p is not None]
        if not parts:
            yield where, None
            continue
        if len(parts) == 2 and parts[0].shape[1:] != parts[1].shape[1:]:
            raise DataFormatError(
                f"{where}: prompt_routed_experts has (layers, top_k) = {parts[0].shape[1:]}, "
                f"routed_experts {parts[1].shape[1:]}")
        yield where, np.concatenate(parts) if len(parts) == 2 else parts[0]


def read_vllm(source, *, n_experts: int | None = None, model_id: str | None = None) -> ExpertSequences:
    """Read vLLM routed-experts output (JSON / JSON Lines) into expert sequences.

    Parameters
    ----------
    source : path-like
        A ``.json``/``.jsonl`` file, or a directory of them (read in name order).
    n_experts : int, optional
        The model's number of routed experts (default: the largest id + 1, recorded as inferred).
    model_id : str, optional
        Recorded as ``model_id`` (default: the responses' ``model`` field when they agree).

    Returns
    -------
    ExpertSequences
        One sequence per choice, shape (n_sequences, n_layers, n_positions, top_k).
    """
    paths = source_paths(source, "*.json*", "JSON / JSON Lines")
    tokens, labels, skipped, models, fingerprints = [], [], 0, set(), set()
    for path in paths:
        for label, record in read_json_records(path):
            if isinstance(record, dict):
                if isinstance(record.get("model"), str):
                    models.add(record["model"])
                if isinstance(record.get("system_fingerprint"), str):
                    fingerprints.add(record["system_fingerprint"])
            for where, seq in _sequences_of(record, label):
                if seq is None or len(seq) == 0:
                    skipped += 1
                    continue
                tokens.append(seq)
                labels.append(where)
    where = str(Path(source))
    if not tokens:
        raise DataFormatError(
            f"{where}: no routed_experts arrays (all null or empty): start vLLM with "
            "--enable-return-routed-experts")
    experts, mask = pad_sequences(tokens, where, labels=labels)
    layers = np.arange(experts.shape[1], dtype=np.int64)
    dropped_layers = []
    if experts.shape[3] >= 2:
        experts, layers, dropped_layers = drop_unrouted_layers(experts, mask, layers, fill=0)
    notes = {"choices_without_routing": skipped, "dense_layers_dropped": dropped_layers,
             "positions": "prompt then generated tokens, from 0"}
    return build_sequences(
        experts, mask, where=where, source_format="vllm", sources=describe_sources(paths), layers=layers,
        n_experts=n_experts, model_id=model_id or (models.pop() if len(models) == 1 else None),
        source_version=",".join(sorted(fingerprints)), notes=notes)
