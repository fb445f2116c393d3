"""Atomic checkpoints and the finished output directory (model, tokenizer, log, model card)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidParameterError, OutputExistsError
from ..io import atomic_h5, to_json, write_array
from .routing import load_entropy

__all__ = ["load_checkpoint", "prepare_output", "save_checkpoint", "write_card", "write_log"]

CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"


def partial_dir(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an existing output (before anything is written)."""
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists: pass --overwrite to replace it")
    if output.exists() and not output.is_dir():
        raise InvalidParameterError(f"{output} is a file, expected a directory path")


def prepare_output(output: Path, params_json: str, overwrite: bool) -> tuple[Path, bool]:
    """The staging directory ``<output>.partial`` and whether it holds a run to resume.

    A staging directory of the same parameters is resumed; one of other parameters is refused
    unless ``overwrite`` (then discarded).
    """
    work = partial_dir(output)
    manifest = work / MANIFEST
    if work.exists():
        same = manifest.is_file() and json.loads(manifest.read_text()).get("params") == params_json
        if not same and not overwrite:
            raise InvalidParameterError(f"{work} holds an interrupted run with other parameters: rerun "
                                        "that command to finish it, or pass --overwrite to discard it")
        if not same:
            shutil.rmtree(work)
    resume = (work / CHECKPOINT).is_file()
    work.mkdir(parents=True, exist_ok=True)
    if not manifest.is_file():
        _atomic_bytes(manifest, json.dumps({"params": params_json}).encode())
    return work, resume


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(work: Path, state: dict) -> None:
    """``torch.save`` to a temporary file, fsync, then rename: a kill leaves the old or the new one."""
    tmp = work / (CHECKPOINT + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, work / CHECKPOINT)


def load_checkpoint(work: Path) -> dict:
    return torch.load(work / CHECKPOINT, map_location="cpu", weights_only=False)


def finish(work: Path, output: Path) -> None:
    """Move the staged directory onto ``output`` (replacing an old one)."""
    (work / CHECKPOINT).unlink(missing_ok=True)
    (work / MANIFEST).unlink(missing_ok=True)
    (work / "bpe.json").unlink(missing_ok=True)  # the tokenizer lives on in tokenizer.json
    if output.exists():
        shutil.rmtree(output)
    os.replace(work, output)


def saturation(topk_history) -> np.ndarray:
    """Share of probe tokens whose top-k set at each logged step equals the final one.

    ``topk_history[t][l]``: sorted top-k sets, shape (n_tokens, k). Returns shape (n_log, n_layers).
    """
    final = topk_history[-1]
    return np.array([[float(np.mean(np.all(step[l] == final[l], axis=1))) for l in range(len(final))]
                     for step in topk_history])


def write_log(path: Path, history: dict, meta: dict, params: dict, seed: int) -> None:
    """The training log (HDF5, kind ``train_log``): one row per logged step."""
    sat = saturation(history["probe_topk"])
    with atomic_h5(path, kind="train_log", params=params, seed=seed, overwrite=True,
                   attrs={k: v for k, v in meta.items() if not isinstance(v, (dict, list))}) as f:
        f.attrs["router_names"] = to_json(meta["router_names"])
        log = f.create_group("log")
        coords = {"step": np.asarray(history["step"], dtype=np.int64)}
        for key in ("tokens", "lr", "train_loss", "val_loss", "aux_loss", "mem_kl", "z_loss"):
            write_array(log, key, np.asarray(history[key]), ["step"], coords)
        entropy = np.asarray(history["token_entropy"])
        load = np.asarray(history["load"])
        write_array(log, "routing_entropy", entropy, ["step", "layer"], coords,
                    description="mean over probe tokens of the router softmax entropy (nats)")
        write_array(log, "expert_load", load, ["step", "layer", "expert"], coords,
                    description="share of top-k assignments per expert on the probe batch")
        write_array(log, "load_entropy", load_entropy(load), ["step", "layer"], coords,
                    description="entropy (nats) of the expert load; log(E) when balanced")
        write_array(log, "router_saturation", sat, ["step", "layer"], coords,
                    description="share of probe tokens whose top-k set equals the final model's")
        data = f.create_group("data")
        data.create_dataset("doc_id", data=np.array(meta["doc_ids"], dtype=object),
                            dtype=__import__("h5py").string_dtype())
        write_array(data, "is_validation", meta["doc_is_validation"], ["document"])
        write_array(data, "train_window_doc", meta["train_window_doc"], ["train_window"])
        write_array(data, "val_window_doc", meta["val_window_doc"], ["val_window"])
        write_array(data, "step_windows", np.asarray(history["step_windows"]), ["optimizer_step", "sample"],
                    description="training window of each sample of each optimiser step")


def write_card(path: Path, lines: dict) -> None:
    """A short model card (Markdown)."""
    body = ["# " + lines.pop("title"), "", lines.pop("intro"), ""]
    body += [f"- **{k}**: {v}" for k, v in lines.items()]
    path.write_text("\n".join(body) + "\n")
