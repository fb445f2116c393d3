"""The training loop: AdamW, warm-up and cosine decay, clipping, atomic checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import logging
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._util import as_float, as_int
from ..errors import InvalidParameterError
from ..io import to_json
from . import checkpoint as ck
from .presets import preset as get_preset

#: a run estimated to take longer than this needs ``confirmed`` (the CLI's ``--yes``)
MAX_SECONDS = 86_400.0

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "TrainSpec", "train"]

BALANCE = ("aux", "mem", "none")


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a training run (the weights are a pure function of it).

    Attributes
    ----------
    preset : str
        Name in :data:`~ising_moe.train.PRESETS`.
    corpus : str
        JSON-lines corpus (see :mod:`ising_moe.train.corpus`).
    tokens : int or None
        Training token budget (window tokens, padding included); None: the preset's.
    balance : {"aux", "mem", "none"}
        ``aux``: the class's own load-balancing loss at its default coefficient; ``mem``: the
        maximum-entropy loss :func:`~ising_moe.train.routing.mem_loss` (coefficient
        ``balance_coef``); ``none``.
    balance_coef : float or None
        Coefficient of ``mem`` (default 0.01).
    z_loss : float or None
        Router z-loss coefficient; None: the class's default (Switch 0.001, OLMoE 0).
    config, train_overrides : dict
        Overrides of the preset's ``config`` and ``train`` values (tests use tiny models).
    experts_implementation : str, optional
        OLMoE experts kernel (``eager``, ``grouped_mm``, ``batched_mm``); None: transformers'
        default, ``grouped_mm`` where it can run (the fastest on CPU, see ``benchmarks/bench_train.py``).
    """

    preset: str
    corpus: str
    tokens: int | None = None
    balance: str = "aux"
    balance_coef: float | None = None
    z_loss: float | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "fp32"
    threads: int | None = 1
    checkpoint_every: int = 50
    log_every: int = 20
    n_val_log: int = 32
    n_val_final: int = 256
    n_probe: int = 8
    config: dict[str, Any] = field(default_factory=dict)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    experts_implementation: str | None = None

    def params(self) -> dict[str, Any]:
        """The run parameters that determine the weights (``threads``, ``device`` included)."""
        params = dataclasses.asdict(self)
        if params["experts_implementation"] is None:  # transformers' default (grouped_mm where it runs)
            del params["experts_implementation"]
        return params


@dataclass(frozen=True)
class TrainResult:
    """Summary of a finished run (see the output directory for everything else)."""

    output: str
    untrained: str
    steps: int
    tokens: int
    val_loss: float
    val_loss_untrained: float
    wall_seconds: float
    tokens_per_second: float
    resumed: bool
    heldout: dict | None = None


#: ``(minimum, maximum, inclusive minimum)`` of the numeric training values (presets and overrides)
_TRAIN_RANGES = {"lr": (0.0, 1.0, False), "weight_decay": (0.0, 10.0, True), "noise_density": (0.0, 1.0, False),
                 "mean_span": (1.0, 1e3, True), "capacity_factor": (0.0, 1e3, False)}
_TRAIN_INTS = {"seq_len": 8, "batch_size": 1, "warmup_steps": 0, "vocab_size": 290, "tokens": 1}  # 256 bytes + 34 specials


def _coefficient(value, option: str, maximum: float) -> float | None:
    """A loss coefficient: None (the default), or finite and in [0, maximum] (a negative z-loss
    rewards large router logits, a negative balance coefficient rewards collapse)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{option} must be a number, got {value!r}") from None
    if not math.isfinite(out) or not 0.0 <= out <= maximum:
        raise InvalidParameterError(f"{option} must be a finite number in [0, {maximum:g}], got {value!r}")
    return out


def check_device(device: str) -> None:
    """Refuse a device string torch does not know, or a device this machine does not have."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidParameterError(f"--device {device!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParameterError(f"--device {device}: this machine has no CUDA device (torch "
                                        f"{torch.__version__}): use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidParameterError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) "
                                        "here (cuda:0 ...)")
        return
    if dev.type == "mps" and torch.backends.mps.is_available():
        return
    raise InvalidParameterError(f"--device {device}: not available for training here: use cpu or cuda")


def _validate(spec: TrainSpec, output: Path, overwrite: bool) -> dict:
    p = get_preset(spec.preset)
    if spec.balance not in BALANCE:
        raise InvalidParameterError(f"--balance must be one of {', '.join(BALANCE)}, got {spec.balance!r}")
    if not Path(spec.corpus).is_file():
        raise InvalidParameterError(f"corpus {spec.corpus} does not exist: pass a JSON-lines file "
                                    "(build the shipped one with data/corpus/make_mixed.sh)")
    if spec.tokens is not None and (isinstance(spec.tokens, bool) or not isinstance(spec.tokens, (int, np.integer))
                                    or spec.tokens <= 0):
        raise InvalidParameterError(f"--tokens must be a positive integer, got {spec.tokens!r}")
    if spec.dtype not in ("fp32", "bf16"):
        raise InvalidParameterError(f"--dtype must be fp32 or bf16, got {spec.dtype!r}")
    _coefficient(spec.balance_coef, "--balance-coef", 100.0)
    _coefficient(spec.z_loss, "--z-loss", 100.0)
    if spec.balance_coef is not None and spec.balance != "mem":
        raise InvalidParameterError(f"--balance-coef is the coefficient of --balance mem; with --balance "
                                    f"{spec.balance} it would be ignored: drop it or pass --balance mem")
    if spec.threads is not None:
        as_int(spec.threads, "--threads", minimum=1, maximum=4096)
    for name in ("checkpoint_every", "log_every", "n_val_log", "n_probe"):
        as_int(getattr(spec, name), name, minimum=1)
    as_int(spec.n_val_final, "n_val_final", minimum=1)
    ck.check_output(output, overwrite)
    p["config"].update(spec.config)
    p["train"].update(spec.train_overrides)
    if spec.tokens is not None:
        p["train"]["tokens"] = int(spec.tokens)
    for key, (low, high, inclusive) in _TRAIN_RANGES.items():
        if key in p["train"]:
            value = as_float(p["train"][key], key)
            if value > high or value < low or (value == low and not inclusive):
                raise InvalidParameterError(f"training value {key} must lie in {'[' if inclusive else '('}{low:g}, "
                                            f"{high:g}], got {value!r}")
    for key, low in _TRAIN_INTS.items():
        if key in p["train"]:
            as_int(p["train"][key], key, minimum=low)
    coef = p["config"].get("router_aux_loss_coef")
    if coef is not None:
        _coefficient(coef, "router_aux_loss_coef", 100.0)
    check_device(spec.device)
    return p


def _build_config(p: dict, vocab_size: int, tr: dict):
    from transformers import AutoConfig

    values = dict(p["config"])
    model_type = values.pop("model_type")
    values.update(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1)
    if model_type == "switch_transformers":
        n = tr["seq_len"]
        n_noise = round(tr["noise_density"] * n)
        enc_len = n - n_noise + max(1, round(n_noise / tr["mean_span"])) + 1
        values.update(decoder_start_token_id=0,
                      expert_capacity=math.ceil(tr["capacity_factor"] * enc_len / values["num_experts"]))
    return AutoConfig.for_model(model_type, **values)


def _model_class(family: str):
    if family == "switch_transformers":
        from transformers import SwitchTransformersForConditionalGeneration

        return SwitchTransformersForConditionalGeneration
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


def train(spec: TrainSpec, output, *, overwrite: bool = False, progress: bool = True,
          command: str | None = None, stop_after: int | None = None, confirmed: bool = False,
          max_seconds: float = MAX_SECONDS) -> TrainResult | None:
    """Train a model organism into the directory ``output`` (resuming an interrupted run).

    The run is staged in ``<output>.partial/`` (checkpoint every ``checkpoint_every`` steps); a
    rerun of the same spec continues from the last checkpoint and ends with weights bit-identical
    to an uninterrupted run. The finished directory holds ``config.json``, ``model.safetensors``,
    the tokenizer, ``train_log.h5``, ``MODEL_CARD.md`` and ``untrained/`` (the step-0 twin).

    Parameters
    ----------
    stop_after : int, optional
        Stop (as if killed) after this many optimiser steps, once the checkpoint of that step is
        written; returns None. For tests of the resume.
    confirmed, max_seconds : bool, float
        A run whose time, estimated from one measured optimiser step, exceeds ``max_seconds``
        (default one day) is refused unless ``confirmed`` (the CLI's ``--yes``).

    Raises
    ------
    OutputLockedError
        Another process trains into the same ``output``.
    NonFiniteError
        The loss or a weight became NaN or infinite; the last good checkpoint is kept in
        ``<output>.partial/`` and the message says so.
    DataFormatError
        The staged state of an interrupted run is damaged (the message names the file).
    """
    from ..outputs import acquire_lock, release_lock
    from . import session

    output = Path(output)
    p = _validate(spec, output, overwrite)
    command = command or "python -c 'ising_moe.train.train(...)' " + shlex.quote(to_json(spec.params()))
    acquire_lock(output)  # the same output-unit lock as fit and sweep: a second run stops at once
    try:
        ck.check_output(output, overwrite)  # a run that finished while this one waited for the lock
        return session.run(spec, p, output, overwrite=overwrite, progress=progress, command=command,
                           stop_after=stop_after, build_config=_build_config, model_class=_model_class,
                           budget=None if confirmed else max_seconds)
    finally:
        release_lock(output)


