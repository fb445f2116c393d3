"""One training session: data, model, the optimiser loop, checkpoints, evaluation, final output."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import DataFormatError, DiskFullError, InvalidParameterError, NonFiniteError
from ..io import to_json
from . import checkpoint as ck
from .batches import Batcher, router_masks
from .corpus import (
    SPECIAL_TOKENS,
    fast_tokenizer,
    make_windows,
    read_documents,
    train_tokenizer,
)
from .routing import (
    RouterCapture,
    class_aux_loss,
    mem_loss,
    routing_stats,
    warmup_cosine,
    z_loss,
)

log = logging.getLogger(__name__)

_HISTORY_KEYS = ("step", "tokens", "lr", "train_loss", "val_loss", "aux_loss", "mem_kl", "z_loss",
                 "token_entropy", "load", "probe_topk", "step_windows")


def _tokenizer(work: Path, docs, vocab_size: int):
    path = work / "bpe.json"
    if path.is_file():
        return ck.load_tokenizer(path)
    tok = train_tokenizer([docs.text[i] for i in docs.indices("train")], vocab_size)
    tok.save(str(path))
    return tok


def _spaced(n_total: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(np.int64))


class _Evaluator:
    """Token-weighted cross-entropy of fixed windows (eval mode, no gradient)."""

    def __init__(self, model, batcher: Batcher, capture, family: str, device, autocast):
        self.model, self.batcher, self.capture, self.family = model, batcher, capture, family
        self.device, self.autocast = device, autocast

    @torch.no_grad()
    def loss(self, rows, batch_size: int) -> float:
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        for s in range(0, len(rows), batch_size):
            chunk = rows[s:s + batch_size]
            batch = self.batcher.batch(chunk, self.device, sample_ids=range(s, s + len(chunk)), stream=2)
            with self.autocast():
                logits = self.model(**batch).logits.float()
            labels = batch["labels"]
            if self.family != "switch_transformers":
                logits, labels = logits[:, :-1], labels[:, 1:]
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                   ignore_index=-100, reduction="sum")
            total += float(ce)
            count += int((labels != -100).sum())
        self.model.train(was_training)
        return total / count

    @torch.no_grad()
    def routing(self, rows, top_k: int):
        was_training = self.model.training
        self.model.eval()
        batch = self.batcher.batch(rows, self.device, sample_ids=range(len(rows)), stream=2)
        with self.autocast():
            self.model(**batch)
        self.model.train(was_training)
        return routing_stats(self.capture, router_masks(batch, self.capture, self.family), top_k)


def run(spec, p, output: Path, *, overwrite, progress, command, stop_after, build_config, model_class, budget=None):
    """Prepare the staging directory and train; a fresh run that fails before its first checkpoint
    leaves nothing behind (the corrected command starts clean)."""
    work = ck.partial_dir(output)
    fresh = not work.exists() or overwrite
    saved = []
    try:
        return _run(spec, p, output, overwrite=overwrite, progress=progress, command=command,
                    stop_after=stop_after, build_config=build_config, model_class=model_class, budget=budget,
                    saved=saved)
    except BaseException as exc:
        if fresh and not saved:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        from ..outputs import disk_full, disk_full_error

        if disk_full(exc) and not isinstance(exc, DiskFullError):  # torch, safetensors, tokenizers: their own types
            raise disk_full_error(output, exc) from None
        raise


def _check_windows(win: dict, docs, seq_len: int) -> None:
    for split in ("train", "validation"):
        if len(win[split][0]) == 0:
            raise DataFormatError(
                f"corpus {docs.path} is too small: its {split} documents give no window of at least "
                f"{max(8, seq_len // 4)} tokens (windows of {seq_len}); add text to that split")


def _step_seconds(model, opt, batcher, step, device, autocast) -> float:
    """Wall time of one forward and backward pass on the batch of ``step``; the model, optimiser and
    random state are left exactly as they were (a measured run ends bit-identical to another)."""
    rng = torch.get_rng_state()
    batch = batcher.step_batch(step, device)
    times = []
    for _ in range(2):  # the first pass pays one-off set-up costs: the second is the step's time
        t0 = time.perf_counter()
        with autocast():
            out = model(**batch)
        out.loss.backward()
        times.append(time.perf_counter() - t0)
        opt.zero_grad(set_to_none=True)
    torch.set_rng_state(rng)
    return min(times)


def _finite_weights(model) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, or None."""
    for name, q in model.named_parameters():
        if not bool(torch.isfinite(q).all()):
            return name
    return None


def _run(spec, p, output: Path, *, overwrite, progress, command, stop_after, build_config, model_class, budget,
         saved):
    from tqdm.auto import tqdm

    from ..extract.loading import check_versions

    versions = check_versions()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars of save_pretrained
    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    params = spec.params()
    docs = read_documents(spec.corpus)  # a malformed corpus is refused before anything is written
    work, resume = ck.prepare_output(output, to_json(params), overwrite)
    tr = p["train"]
    tok = _tokenizer(work, docs, tr["vocab_size"])
    seq_len, bsz = int(tr["seq_len"]), int(tr["batch_size"])
    encoded = tok.encode_batch(docs.text)
    win = {}
    for split in ("train", "validation"):
        idx = docs.indices(split)
        win[split] = make_windows([encoded[i].ids for i in idx], idx, seq_len, max(8, seq_len // 4))
    del encoded
    _check_windows(win, docs, seq_len)

    # the class's own router losses are part of the saved configuration only when they were used
    p["config"].setdefault("router_aux_loss_coef", 0.0)
    if spec.balance != "aux":
        p["config"]["router_aux_loss_coef"] = 0.0
    family_is_switch = p["config"]["model_type"] == "switch_transformers"
    z_coef = spec.z_loss if spec.z_loss is not None else (p["config"].get("router_z_loss_coef", 0.0)
                                                          if family_is_switch else 0.0)
    if family_is_switch:
        p["config"]["router_z_loss_coef"] = z_coef
    config = build_config(p, tok.get_vocab_size(), tr)
    family = config.model_type
    top_k = int(getattr(config, "num_experts_per_tok", 1))
    device = torch.device(spec.device)
    use_bf16 = spec.dtype == "bf16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    torch.manual_seed(spec.seed)
    cls = model_class(family)
    model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls._from_config(config)
    if spec.experts_implementation is not None:
        model.set_experts_implementation(spec.experts_implementation)
    model.to(device)
    capture = RouterCapture(model)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tr["lr"], betas=(0.9, 0.95))
    n_steps = max(1, math.ceil(tr["tokens"] / (bsz * seq_len)))
    corruption = None
    if family == "switch_transformers":
        corruption = {"noise_density": tr["noise_density"], "mean_span": tr["mean_span"],
                      "sentinel_ids": [tok.token_to_id(t) for t in SPECIAL_TOKENS[2:]]}
    train_windows, train_doc = win["train"]
    val_windows, val_doc = win["validation"]
    batcher = Batcher(train_windows, family, seq_len, bsz, spec.seed, corruption)
    evaluator = _Evaluator(model, batcher, capture, family, device, autocast)
    val_log = [val_windows[i] for i in _spaced(len(val_windows), spec.n_val_log)]
    val_final = [val_windows[i] for i in _spaced(len(val_windows), spec.n_val_final)]
    probe = val_log[:spec.n_probe]
    mem_coef = 0.01 if spec.balance_coef is None else float(spec.balance_coef)
    fast = fast_tokenizer(tok)

    def log_point(step, tokens, running):
        entropy, load, topk = evaluator.routing(probe, top_k)
        n = max(1, running["n"])
        row = {"step": step, "tokens": tokens, "lr": running["lr"], "train_loss": running["ce"] / n if running["n"] else float("nan"),
               "val_loss": evaluator.loss(val_log, bsz), "aux_loss": running["aux"] / n if running["n"] else float("nan"),
               "mem_kl": running["mem"] / n if running["n"] else float("nan"),
               "z_loss": running["z"] / n if running["n"] else float("nan"),
               "token_entropy": entropy, "load": load, "probe_topk": topk}
        for key, value in row.items():
            history[key].append(value)
        return row

    def fresh():
        return {"n": 0, "ce": 0.0, "aux": 0.0, "mem": 0.0, "z": 0.0, "lr": 0.0}

    if resume:
        state = ck.load_checkpoint(work)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ck.damaged(work / ck.CHECKPOINT, f"it does not fit this model: {str(exc).splitlines()[0][:120]}") \
                from None
        saved.append(state["step"])
        history, start, tokens_seen = state["history"], state["step"], state["tokens"]
        val_untrained, elapsed, running = state["val_untrained"], state["elapsed"], state["running"]
        log.info("resuming %s at step %d of %d", work, start, n_steps)
    else:
        start = 0
    seconds = _step_seconds(model, opt, batcher, start, device, autocast)
    remaining = (n_steps - start) * seconds
    log.info("one optimiser step takes about %.2f s: %d steps, about %.0f s", seconds, n_steps - start, remaining)
    if budget is not None and remaining > budget:
        from ..mc.resources import describe_seconds

        raise InvalidParameterError(
            f"this run would take about {describe_seconds(remaining)} ({n_steps - start:,} optimiser steps of "
            f"{seconds:.2g} s measured here, {tr['tokens']:,} tokens): lower --tokens, or pass --yes to run it")
    if not resume:
        untrained = work / "untrained"
        model.save_pretrained(untrained)
        fast.save_pretrained(untrained)
        history = {k: [] for k in _HISTORY_KEYS}
        start, tokens_seen, elapsed, running = 0, 0, 0.0, fresh()
        val_untrained = evaluator.loss(val_final, bsz)
        log_point(0, 0, running)

    def save(step):
        ck.save_checkpoint(work, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                  "scheduler": {"step": step, "n_steps": n_steps}, "torch_rng": torch.get_rng_state(),
                                  "history": history, "step": step, "tokens": tokens_seen,
                                  "val_untrained": val_untrained, "elapsed": elapsed, "running": running})
        saved.append(step)  # a checkpoint to keep (a fresh run that fails before it leaves nothing)

    if not resume:
        save(0)
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(total=n_steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True)
    aux_coef = float(config.router_aux_loss_coef) if spec.balance == "aux" else 0.0
    for step in range(start, n_steps):
        lr = warmup_cosine(step, n_steps, int(tr["warmup_steps"]), float(tr["lr"]))
        for group in opt.param_groups:
            group["lr"] = lr
        batch = batcher.step_batch(step, device)
        with autocast():
            out = model(**batch)
            masks = router_masks(batch, capture, family)
            aux = class_aux_loss(family, capture, config, batch["attention_mask"] if family != "switch_transformers"
                                 else None, batch_size=bsz)
            mem = mem_loss(capture.logits, masks)
            zl = z_loss(capture.logits, masks)
            loss = out.loss + aux_coef * aux + z_coef * zl
            if spec.balance == "mem":
                loss = loss + mem_coef * mem
        if not bool(torch.isfinite(loss.detach())):
            _diverged(work, step + 1, f"the loss is {float(loss.detach())} at step {step + 1}", saved)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bad = _finite_weights(model)
        if bad is not None:
            _diverged(work, step + 1, f"the weight {bad} is non-finite after step {step + 1}", saved)
        history["step_windows"].append(batcher.step_windows(step))
        step_tokens = int(sum(len(batcher.windows[i]) for i in batcher.step_windows(step)))
        tokens_seen += step_tokens
        running["n"] += 1
        running["ce"] += float(out.loss.detach())
        running["aux"] += float(aux.detach()) if torch.is_tensor(aux) else float(aux)
        running["mem"] += float(mem.detach())
        running["z"] += float(zl.detach())
        running["lr"] = lr
        done = step + 1
        if done % spec.log_every == 0 or done == n_steps:
            row = log_point(done, tokens_seen, running)
            running = fresh()
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}",
                            tok_s=f"{(tokens_seen) / max(1e-9, elapsed + time.perf_counter() - t0):.0f}")
        bar.update(1)
        if done % spec.checkpoint_every == 0 or done == stop_after:
            elapsed_now = elapsed + time.perf_counter() - t0
            elapsed, t0 = elapsed_now, time.perf_counter()
            save(done)
            if done == stop_after:
                bar.close()
                return None
    bar.close()
    elapsed += time.perf_counter() - t0
    capture.remove()
    return _finish(spec, p, output, work, model, fast, history, evaluator, val_final, bsz, n_steps, tokens_seen,
                   val_untrained, elapsed, resume, command, docs, train_doc, val_doc, versions, params, config,
                   mem_coef)


def _diverged(work: Path, step: int, what: str, saved: list) -> None:
    """Stop a run whose loss or weights became non-finite; its last good checkpoint stays."""
    ck.mark_diverged(work, what)
    raise NonFiniteError(
        f"training stopped: {what}; the last good checkpoint (step {saved[-1]}) is kept in {work}/{ck.CHECKPOINT}. "
        "Lower the learning rate or the loss coefficients and pass --overwrite to start again")


def _finish(spec, p, output, work, model, fast, history, evaluator, val_final, bsz, n_steps, tokens_seen,
            val_untrained, elapsed, resume, command, docs, train_doc, val_doc, versions, params, config, mem_coef):
    from .loop import TrainResult

    val_trained = evaluator.loss(val_final, bsz)
    model.save_pretrained(work)
    fast.save_pretrained(work)
    meta = {"preset": spec.preset, "corpus_sha256": docs.sha256, "steps": n_steps, "tokens": tokens_seen,
            "val_loss": val_trained, "val_loss_untrained": val_untrained, "wall_seconds": elapsed,
            "n_val_final_windows": len(val_final), "router_names": evaluator.capture.names,
            "doc_ids": docs.doc_id, "doc_is_validation": docs.is_validation,
            "train_window_doc": train_doc, "val_window_doc": val_doc, **versions}
    ck.write_log(work / "train_log.h5", history, meta, params, spec.seed)
    n_params = sum(q.numel() for q in model.parameters())
    rate = tokens_seen / elapsed if elapsed > 0 else float("nan")
    ck.write_card(work / "MODEL_CARD.md", {
        "title": f"{output.name}: {spec.preset} trained here ({spec.balance} balancing)",
        "intro": (f"Trained here on {tokens_seen:,} tokens of {Path(spec.corpus).name}; not a production model. "
                  "A model organism of ising-moe: real Hugging Face class, toy size, CPU training."),
        "preset": spec.preset, "class": type(model).__name__, "parameters": f"{n_params:,}",
        "architecture": ", ".join(f"{k}={v}" for k, v in p["config"].items() if k != "model_type")
                        + f", vocab_size={config.vocab_size}",
        "corpus": f"{spec.corpus} (sha256 {docs.sha256})",
        "tokens": f"{tokens_seen:,} in {n_steps} optimiser steps of {p['train']['batch_size']} windows of "
                  f"<= {p['train']['seq_len']} tokens (a window never spans two documents)",
        "balance": spec.balance + (f" (coefficient {mem_coef:g} on the layer-mean KL to uniform)"
                                   if spec.balance == "mem" else ""),
        "z-loss coefficient": getattr(config, "router_z_loss_coef", 0.0) or spec.z_loss or 0.0,
        "validation loss (trained)": f"{val_trained:.4f} nats/token on {len(val_final)} held-out windows",
        "validation loss (untrained twin, `untrained/`)": f"{val_untrained:.4f}",
        "seed": spec.seed, "wall time": f"{elapsed:.0f} s ({spec.threads} thread(s), {spec.device}, {spec.dtype})",
        "throughput": f"{rate:.0f} tokens/s",
        "software": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "command": f"`{command}`",
    })
    from .card import refresh

    heldout = refresh(work, corpus=spec.corpus, name=output.name)  # baselines, weights hash, learning curve (card and log)
    ck.finish(work, output)
    return TrainResult(output=str(output), untrained=str(output / "untrained"), steps=n_steps, tokens=tokens_seen,
                       val_loss=val_trained, val_loss_untrained=val_untrained, wall_seconds=elapsed,
                       tokens_per_second=rate, resumed=resume, heldout=heldout.summary())
