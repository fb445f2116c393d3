"""Atomic checkpoints and the finished output directory (model, tokenizer, log, model card)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import DataFormatError, InvalidParameterError
from ..io import atomic_h5, atomic_write_bytes, to_json, write_array
from ..outputs import check_target
from .routing import load_entropy

__all__ = ["load_checkpoint", "prepare_output", "save_checkpoint", "write_card", "write_log"]

CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"


def partial_dir(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an existing output (a directory, a file, any symbolic link) or a path under a file,
    before anything is written."""
    check_target(output, overwrite, directory=True)
    work = partial_dir(output)
    if os.path.lexists(work) and not work.is_dir():
        raise InvalidParameterError(f"{work} (the staging path of this output) is not a directory: remove it "
                                    "or choose another output")


def damaged(path: Path, detail: str) -> DataFormatError:
    return DataFormatError(f"{path} is damaged ({detail}): the interrupted run cannot be resumed; pass --overwrite "
                           f"to discard {path.parent.name}/ and start again")


def read_manifest(work: Path) -> dict:
    """The staging directory's manifest (``params``; ``diverged`` after a non-finite loss)."""
    manifest = work / MANIFEST
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(manifest, type(exc).__name__) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), str):
        raise damaged(manifest, "not a JSON object with 'params'")
    return doc


def prepare_output(output: Path, params_json: str, overwrite: bool) -> tuple[Path, bool]:
    """The staging directory ``<output>.partial`` and whether it holds a run to resume.

    A staging directory of the same parameters is resumed; one of other parameters, a damaged one,
    or one whose run diverged is refused unless ``overwrite`` (which discards it and starts again).
    """
    work = partial_dir(output)
    manifest = work / MANIFEST
    if work.exists() and overwrite:
        shutil.rmtree(work)
    if work.exists():
        if not manifest.is_file():
            if (work / CHECKPOINT).exists():
                raise damaged(manifest, "missing")
            shutil.rmtree(work)  # a run stopped before its first checkpoint: nothing to resume
        else:
            doc = read_manifest(work)
            if doc["params"] != params_json:
                raise InvalidParameterError(f"{work} holds an interrupted run with other parameters: rerun "
                                            "that command to finish it, or pass --overwrite to discard it")
            if "diverged" in doc:
                raise InvalidParameterError(
                    f"{work} holds a run whose loss or weights became non-finite ({doc['diverged']}); rerunning "
                    "it would diverge again: change the parameters (a smaller learning rate or coefficient) and "
                    "pass --overwrite to start again")
    resume = (work / CHECKPOINT).is_file()
    work.mkdir(parents=True, exist_ok=True)
    if not manifest.is_file():
        atomic_write_bytes(manifest, json.dumps({"params": params_json}).encode())
    return work, resume


def mark_diverged(work: Path, what: str) -> None:
    """Record in the manifest that the run diverged (a rerun is refused; the checkpoint stays)."""
    doc = read_manifest(work)
    doc["diverged"] = what
    atomic_write_bytes(work / MANIFEST, json.dumps(doc).encode())


def save_checkpoint(work: Path, state: dict) -> None:
    """``torch.save`` to a temporary file, fsync, then rename: a kill leaves the old or the new one."""
    tmp = work / (CHECKPOINT + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, work / CHECKPOINT)
    finally:
        tmp.unlink(missing_ok=True)


_STATE_KEYS = ("model", "optimizer", "torch_rng", "history", "step", "tokens", "val_untrained", "elapsed", "running")


def load_checkpoint(work: Path) -> dict:
    """The state of an interrupted run; a damaged file is named, with what to do."""
    path = work / CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001  (truncated, random bytes, zero bytes: each loader error differs)
        raise damaged(path, f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}") from None
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        raise damaged(path, "not a checkpoint of isingmoe train")
    return state


def load_tokenizer(path: Path):
    """The run's BPE tokenizer (``bpe.json``), or a named error when it is damaged."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001  (tokenizers raises plain Exception on bad JSON)
        raise damaged(path, (str(exc).strip().splitlines() or [""])[0][:120]) from None


def public_file(path: Path) -> None:
    """Give a written file the mode of an ordinary new file (0666 less the umask): safetensors writes
    through a private temporary file (mode 0600), which would keep the weights from other readers."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def finish(work: Path, output: Path) -> None:
    """Move the staged directory onto ``output`` (replacing an old one)."""
    (work / CHECKPOINT).unlink(missing_ok=True)
    (work / MANIFEST).unlink(missing_ok=True)
    (work / "bpe.json").unlink(missing_ok=True)  # the tokenizer lives on in tokenizer.json
    for weights in sorted(work.rglob("*.safetensors")):
        public_file(weights)
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
        _record_integrity(f, path.parent)
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


def _record_integrity(f, work: Path) -> None:
    """What extraction checks an organism against: the SHA-256 of the weights beside the log and of the
    untrained twin's, and the model configuration as saved (``config.json``)."""
    from ..io import file_sha256

    for name, weights in (("weights_sha256", work / "model.safetensors"),
                          ("untrained_weights_sha256", work / "untrained" / "model.safetensors")):
        if weights.is_file():
            f.attrs[name] = file_sha256(weights)
    if (work / "config.json").is_file():
        f.attrs["model_config"] = (work / "config.json").read_text(encoding="utf-8")


def write_card(path: Path, lines: dict) -> None:
    """A short model card (Markdown)."""
    body = ["# " + lines.pop("title"), "", lines.pop("intro"), ""]
    body += [f"- **{k}**: {v}" for k, v in lines.items()]
    path.write_text("\n".join(body) + "\n")
