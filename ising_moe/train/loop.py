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

from .._util import as_int
from ..errors import InvalidParameterError
from ..io import to_json
from . import checkpoint as ck
from .presets import preset as get_preset

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


def _validate(spec: TrainSpec, output: Path, overwrite: bool) -> dict:
    p = get_preset(spec.preset)
    if spec.balance not in BALANCE:
        raise InvalidParameterError(f"--balance must be one of {', '.join(BALANCE)}, got {spec.balance!r}")
    if not Path(spec.corpus).is_file():
        raise InvalidParameterError(f"corpus {spec.corpus} does not exist: pass a JSON-lines file "
                                    "(build the shipped one with data/corpus/make_mixed.sh)")
    if spec.tokens is not None and (not isinstance(spec.tokens, (int, np.integer)) or spec.tokens <= 0):
        raise InvalidParameterError(f"--tokens must be a positive integer, got {spec.tokens!r}")
    if spec.dtype not in ("fp32", "bf16"):
        raise InvalidParameterError(f"--dtype must be fp32 or bf16, got {spec.dtype!r}")
    for name in ("checkpoint_every", "log_every", "n_val_log", "n_probe"):
        as_int(getattr(spec, name), name, minimum=1)
    ck.check_output(output, overwrite)
    p["config"].update(spec.config)
    p["train"].update(spec.train_overrides)
    if spec.tokens is not None:
        p["train"]["tokens"] = int(spec.tokens)
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
          command: str | None = None, stop_after: int | None = None) -> TrainResult | None:
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
    """
    from . import session

    output = Path(output)
    p = _validate(spec, output, overwrite)
    command = command or "python -c 'ising_moe.train.train(...)' " + shlex.quote(to_json(spec.params()))
    return session.run(spec, p, output, overwrite=overwrite, progress=progress, command=command,
                       stop_after=stop_after, build_config=_build_config, model_class=_model_class)


