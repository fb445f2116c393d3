"""Checkpoint directories and the hub, before anything is loaded (no torch needed).

- :func:`inspect_checkpoint` says what is wrong with a local directory (empty, no or invalid
  ``config.json``, no weights, damaged ``.safetensors``) instead of a loader's traceback;
- :func:`content_hashes` gives the SHA-256 of its config, weight and tokenizer files (the
  provenance of a local checkpoint, which has no hub revision);
- :func:`hub_reachable` answers in seconds whether the hub can be asked at all, so that an offline
  machine gets one line instead of a minute of retries;
- :func:`download_command` spells the download command of the installed ``huggingface_hub``;
- :func:`organism` reads what ``isingmoe train`` left beside a checkpoint (trained here or the
  untrained twin).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from pathlib import Path

from ..errors import DataFormatError, ModelNotAvailableError

log = logging.getLogger(__name__)

__all__ = ["inspect_checkpoint", "check_safetensors", "content_hashes", "combined_sha256", "hub_reachable",
           "download_command", "offline_mode", "organism"]

#: weight files transformers loads into torch models (``model.safetensors``, sharded
#: ``model-00001-of-00002.safetensors``, ``pytorch_model.bin``); other files (``training_args.bin``,
#: an organism's ``train_log.h5``) are not weights
_WEIGHT_PREFIXES = ("model", "pytorch_model")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_HASHED_NAMES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "tokenizer.model", "vocab.json", "merges.txt", "spiece.model")


def offline_mode() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for the local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "", "false", "no", "off")


def download_command(hub_id: str, revision: str | None = None) -> str:
    """The command that downloads ``hub_id`` with the installed ``huggingface_hub``.

    ``huggingface_hub`` >= 1.0 ships the ``hf`` command (``hf download``); older versions ship
    ``huggingface-cli download``. The console scripts the installed distribution declares decide.
    """
    from importlib import metadata

    try:
        scripts = {ep.name for ep in metadata.distribution("huggingface_hub").entry_points
                   if ep.group == "console_scripts"}
    except metadata.PackageNotFoundError:
        scripts = set()
    tool = "huggingface-cli download" if "hf" not in scripts and "huggingface-cli" in scripts else "hf download"
    return f"{tool} {hub_id}" + (f" --revision {revision}" if revision else "")


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)
                  and p.name.startswith(_WEIGHT_PREFIXES))


def check_safetensors(path: Path) -> None:
    """Check a ``.safetensors`` file's header and length without reading its tensors.

    Format: 8 bytes (little-endian u64 ``n``), an ``n``-byte JSON header mapping tensor names to
    ``{"dtype", "shape", "data_offsets": [begin, end]}``, then the data (offsets relative to it).

    Raises
    ------
    DataFormatError
        Empty, truncated, or with a header that is not valid JSON.
    """
    size = path.stat().st_size
    fix = "the file is damaged: download or save the checkpoint again"
    if size == 0:
        raise DataFormatError(f"{path} is empty (0 bytes): {fix}")
    if size < 8:
        raise DataFormatError(f"{path} is truncated ({size} bytes, not even a header): {fix}")
    with open(path, "rb") as fh:
        (n_header,) = struct.unpack("<Q", fh.read(8))
        if n_header > size - 8:
            raise DataFormatError(
                f"{path}: its header claims {n_header} bytes but the file holds {size}: truncated or not a "
                f"safetensors file; {fix}")
        raw = fh.read(n_header)
    try:
        header = json.loads(raw.decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, IndexError, TypeError,
            ValueError) as exc:
        raise DataFormatError(f"{path}: the header is not valid safetensors JSON ({type(exc).__name__}); {fix}") \
            from None
    need = max(ends, default=0)
    have = size - 8 - n_header
    if need > have:
        raise DataFormatError(f"{path} is truncated: its tensors need {need} bytes of data, the file holds {have}; "
                              f"{fix}")


def inspect_checkpoint(path, need_weights: bool = True) -> dict:
    """Validate a local checkpoint directory; return its ``config.json`` as a dict.

    Raises
    ------
    ModelNotAvailableError
        Empty directory, no ``config.json``, or (``need_weights``) no weight files.
    DataFormatError
        ``config.json`` is not a JSON object with a ``model_type``; a ``.safetensors`` file or
        a sharded checkpoint's index is damaged or incomplete.
    """
    path = Path(path)
    entries = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    layout = ("a checkpoint directory holds config.json and model.safetensors (written by save_pretrained, "
              f"`isingmoe train`, or `{download_command('ORG/NAME')} --local-dir DIR`)")
    if not entries:
        raise ModelNotAvailableError(f"{path} is an empty directory: {layout}")
    config_file = path / "config.json"
    if not config_file.is_file():
        shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
        raise ModelNotAvailableError(f"{path} has no config.json (it holds {shown}): {layout}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataFormatError(f"{config_file} is not UTF-8 text: the file is damaged") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{config_file} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg}): repair or replace it") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise DataFormatError(f"{config_file} has no 'model_type' string: it is not a transformers model "
                              "configuration")
    if need_weights:
        weights = _weight_files(path)
        if not weights:
            raise ModelNotAvailableError(
                f"{path} has config.json but no weight files (model.safetensors, pytorch_model.bin): copy the "
                "weights there, or pass --random-init for random weights from this configuration")
        for index in (p for p in path.glob("*.index.json") if p.is_file()):
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
                raise DataFormatError(f"{index} is not a valid checkpoint index: repair or replace it") from None
            missing = sorted(s for s in shards if not (path / s).is_file())
            if missing:
                raise DataFormatError(f"{path}: the sharded checkpoint lacks {', '.join(missing)} (listed in "
                                      f"{index.name}): copy the missing shards")
        for file in weights:
            if file.name.endswith(".safetensors"):
                check_safetensors(file)
    return config


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def content_hashes(path, weights: bool = True) -> dict[str, str]:
    """SHA-256 of a checkpoint directory's config, tokenizer and (``weights``) weight files, by name."""
    path = Path(path)
    files = [path / n for n in _HASHED_NAMES if (path / n).is_file()]
    if weights:
        files += _weight_files(path) + sorted(p for p in path.glob("*.index.json") if p.is_file())
    return {p.name: _file_sha256(p) for p in sorted(set(files))}


def combined_sha256(hashes: dict[str, str]) -> str:
    """One hash of a set of files: SHA-256 of ``name\\0sha256\\n`` lines in sorted order."""
    h = hashlib.sha256()
    for name in sorted(hashes):
        h.update(f"{name}\0{hashes[name]}\n".encode())
    return h.hexdigest()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers within ``timeout`` seconds (one request, no retries).

    Uses ``huggingface_hub``'s own HTTP session (proxies, ``HF_ENDPOINT``), in a thread so that
    a hanging name lookup cannot block longer than ``timeout``.
    """
    result = {"ok": False}

    def probe():
        try:
            from huggingface_hub import constants
            from huggingface_hub.utils import get_session

            get_session().head(constants.ENDPOINT, timeout=timeout)
            result["ok"] = True
        except Exception as exc:  # any failure means: do not ask the hub
            log.debug("hub probe failed: %s", exc)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result["ok"]


#: configuration values an organism's routing depends on: an edit of one in ``config.json`` (say
#: ``num_experts_per_tok``) makes the checkpoint another model than the one trained
_ROUTING_KEYS = ("num_experts", "num_experts_per_tok", "norm_topk_prob", "num_hidden_layers", "hidden_size",
                 "intermediate_size", "num_attention_heads", "num_key_value_heads", "d_model", "d_ff", "d_kv",
                 "num_layers", "num_decoder_layers", "num_sparse_encoder_layers", "num_sparse_decoder_layers",
                 "num_heads", "router_bias", "router_jitter_noise", "router_dtype", "router_ignore_padding_tokens",
                 "model_type")


def _trained_config(path: Path, attrs: dict, twin: bool) -> tuple[dict | None, str]:
    """The configuration an organism was trained with, and where it comes from: as its training log
    recorded it (``model_config``), else (logs written before it was recorded) the ``config.json``
    of its twin, saved by the same run (the trained model's beside the twin, the twin's beside it)."""
    if attrs.get("model_config"):
        try:
            config = json.loads(str(attrs["model_config"]))
        except json.JSONDecodeError:
            config = None
        if isinstance(config, dict):
            return config, "train_log.h5"
    sibling = (path.parent if twin else path / "untrained") / "config.json"
    try:
        config = json.loads(sibling.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, ""
    return (config, str(sibling)) if isinstance(config, dict) else (None, "")


def _check_organism(path: Path, log_file: Path, attrs: dict, twin: bool) -> str:
    """Compare the weights and the routing configuration beside a training log with what it recorded.

    Returns how the weights were verified; raises when they or the configuration differ.
    """
    fix = (f"these are not the weights trained here: restore the directory as `isingmoe train` wrote it, or copy it "
           f"without train_log.h5 to extract it as a plain local checkpoint")
    config_file = path / "config.json"
    trained, source = _trained_config(path, attrs, twin)
    if trained is not None and config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            config = {}  # inspect_checkpoint names a damaged config.json
        changed = [k for k in _ROUTING_KEYS if k in trained and k in config and config[k] != trained[k]]
        if changed:
            shown = ", ".join(f"{k} = {config[k]!r} (trained with {trained[k]!r})" for k in changed[:4])
            raise DataFormatError(f"{config_file} differs from the configuration of the training run ({source}): "
                                  f"{shown}; {fix}")
    key = "untrained_weights_sha256" if twin else "weights_sha256"
    recorded = str(attrs.get(key, "") or "")
    if not recorded:
        return f"not checked ({log_file.name} records no {key})"
    weights = path / "model.safetensors"
    actual = _file_sha256(weights) if weights.is_file() else "(no model.safetensors)"
    if actual != recorded:
        raise DataFormatError(f"{weights} does not match {log_file}: its SHA-256 is {actual[:16]}..., the training log "
                              f"records {recorded[:16]}...; {fix}")
    return f"sha256 {recorded} matches {log_file.name}"


def organism(path) -> dict | None:
    """What ``isingmoe train`` recorded for a checkpoint directory, or None for other checkpoints.

    A trained organism has its training log ``train_log.h5`` (kind ``train_log``) beside its
    weights; its untrained twin is the ``untrained/`` sub-directory (same configuration, step 0).
    The weights must have the SHA-256 the log records (``weights_sha256``, the twin's
    ``untrained_weights_sha256``) and ``config.json`` the routing values of the run's preset and
    overrides: otherwise they are not the weights trained here and :class:`DataFormatError` says so.

    Returns
    -------
    dict or None
        ``weights`` ("trained-here" or "random-init"), ``subject`` (one sentence for reports),
        ``preset``, ``tokens``, ``corpus_sha256``, ``train_log_sha256``, ``weights_verified``.
    """
    path = Path(path).resolve()
    twin = path.name == "untrained" and (path.parent / "train_log.h5").is_file()
    log_file = path.parent / "train_log.h5" if twin else path / "train_log.h5"
    if not log_file.is_file():
        return None
    from ..io import open_h5

    with open_h5(log_file, kind="train_log") as f:
        attrs = {k: f.attrs[k] for k in ("preset", "tokens", "corpus_sha256", "weights_sha256",
                                         "untrained_weights_sha256", "model_config") if k in f.attrs}
    verified = _check_organism(path, log_file, attrs, twin)
    preset = str(attrs.get("preset", "unknown preset"))
    tokens = int(attrs["tokens"]) if "tokens" in attrs else None
    if twin:
        subject = (f"untrained twin of {path.parent.name} ({preset} configuration at step 0, random weights); "
                   "not a trained model")
    else:
        amount = f"{tokens:,} tokens" if tokens is not None else "an unknown number of tokens"
        subject = f"{path.name}: {preset} trained here on {amount}; not a production model"
    return {"weights": "random-init" if twin else "trained-here", "subject": subject, "preset": preset,
            "tokens": -1 if tokens is None else tokens, "corpus_sha256": str(attrs.get("corpus_sha256", "")),
            "train_log_sha256": _file_sha256(log_file), "weights_verified": verified}
