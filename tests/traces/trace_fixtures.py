"""Hand-built trace files in the engines' own formats (small; written from the format definitions).

See the module docstrings of ising_moe.traces.{vllm,sglang,megatron,npz,parquet} for the upstream
sources these follow.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import pickle
import zipfile

import numpy as np


def routing(rng, n_tokens, n_layers, top_k, n_experts):
    """Distinct top-k expert ids per (token, layer): shape (n_tokens, n_layers, top_k)."""
    out = np.empty((n_tokens, n_layers, top_k), dtype=np.int64)
    for t in range(n_tokens):
        for layer in range(n_layers):
            out[t, layer] = rng.choice(n_experts, top_k, replace=False)
    return out


def npy_b64(arr) -> str:
    """vLLM's wire encoding: base64 of the ``.npy`` bytes."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def vllm_response(prompt, choices, *, encode="list", model="org/moe-model", fingerprint="vllm-0.21.0-abc"):
    """An OpenAI-compatible chat completion with vLLM's routed-experts fields."""
    enc = (lambda a: None if a is None else np.asarray(a).tolist()) if encode == "list" else \
        (lambda a: None if a is None else npy_b64(a))
    doc = {"id": "chatcmpl-1", "object": "chat.completion", "model": model, "system_fingerprint": fingerprint,
           "choices": [{"index": i, "message": {"role": "assistant", "content": "..."},
                        "routed_experts": enc(c)} for i, c in enumerate(choices)]}
    if prompt is not None:
        doc["prompt_routed_experts"] = enc(prompt)
    return doc


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- torch.save without torch
class Global:
    """A pickled reference ``module.name`` (GLOBAL opcode) that needs no importable module."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires reduce functions to be callable
        raise RuntimeError("marker only")


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


_STORAGE_NAMES = {np.dtype("int32"): "IntStorage", np.dtype("int64"): "LongStorage",
                  np.dtype("float32"): "FloatStorage", np.dtype("bool"): "BoolStorage"}


class _TorchPickler(pickle._Pickler):
    """Writes the pickle that torch.save writes: tensors as _rebuild_tensor_v2 over persistent storages."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.storages = []

    def _save_marker(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = _save_marker

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            arr = np.ascontiguousarray(obj)
            storage = _Storage(str(len(self.storages)), arr)
            self.storages.append(storage)
            strides = tuple(s // arr.itemsize for s in arr.strides)
            return (Global("torch._utils", "_rebuild_tensor_v2"),
                    (storage, 0, arr.shape, strides, False, collections.OrderedDict()))
        return NotImplemented

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = _STORAGE_NAMES[obj.array.dtype]
            return ("storage", Global("torch", kind), obj.key, "cpu", obj.array.size)
        return None


def write_torch_zip(path, obj, name="archive"):
    """Write ``obj`` (dicts, lists, numbers, NumPy arrays as tensors) in torch.save's zip layout."""
    buf = io.BytesIO()
    pickler = _TorchPickler(buf)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}/data.pkl", buf.getvalue())
        zf.writestr(f"{name}/byteorder", "little")
        for storage in pickler.storages:
            zf.writestr(f"{name}/data/{storage.key}", storage.array.astype(storage.array.dtype.newbyteorder("<"))
                        .tobytes())
        zf.writestr(f"{name}/version", "3\n")
    return path


def sglang_record(pass_id, topk_ids_of_layer, positions, extend_seq_lens, forward_mode=1):
    """One per_token record of SGLang's _DetailAccumulator (topk buffer of 8 columns, -1 filled)."""
    n_layers, n_tokens, k = topk_ids_of_layer.shape
    buf = np.full((n_layers, n_tokens, 8), -1, dtype=np.int32)
    buf[:, :, :k] = topk_ids_of_layer
    return {"forward_pass_id": pass_id, "rank": 0, "gatherer_key": "primary",
            "input_ids": list(range(100, 100 + n_tokens)), "positions": list(positions),
            "extend_seq_lens": extend_seq_lens, "forward_mode": forward_mode, "topk_ids_of_layer": buf,
            "misc_objects": [], "global_physical_count": np.zeros((n_layers, 8), dtype=np.int32)}


def megatron_record(step, layer, indices, rank=0, **extra):
    indices = np.asarray(indices)
    rec = {"step": step, "stage": "pre_dispatch", "block": "decoder", "layer": layer, "rank": rank,
           "num_tokens": int(indices.shape[0]), "topk": int(indices.shape[1]), "top_indices": indices.tolist()}
    rec.update(extra)
    return rec
