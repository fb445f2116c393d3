"""The held-out report of a trained organism: baselines, per-document loss, weights hash, learning curve.

:func:`refresh` works on any finished organism directory (``isingmoe train`` calls it at the end
of a run; ``isingmoe card DIR`` applies it to an existing one). It

- re-tokenises the training corpus with the model's own tokenizer and rebuilds the validation
  windows exactly as training did (checked against the windows recorded in ``train_log.h5``);
- computes the model's negative log-likelihood of every held-out target (eval mode, no gradient)
  and the unigram / Kneser-Ney bigram / trigram baselines of the same targets
  (:mod:`~ising_moe.train.baselines`), with document-bootstrap intervals and paired differences;
- for causal models, the context-use measure: loss at window positions 4-15 against 64-255;
- records the SHA-256 of ``model.safetensors`` (``weights_sha256``; the untrained twin's as
  ``untrained_weights_sha256``);
- rewrites ``train_log.h5`` (atomically; its provenance attributes are kept, ``refreshed`` added;
  the results in the group ``heldout``) and ``MODEL_CARD.md`` (a generated section between
  markers, replaced on each refresh), and draws ``learning_curve.png``.

Torch and transformers are imported when :func:`refresh` runs, not at import.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import DataFormatError, InvalidParameterError
from ..io import atomic_h5, file_sha256, open_h5, read_params, to_json, utc_now, write_array
from . import baselines as bl

log = logging.getLogger(__name__)

__all__ = ["Heldout", "plot_learning_curve", "refresh"]

#: window positions (0-based index of the predicted token) of the context-use measure
SHORT, LONG = (4, 15), (64, 255)
BASELINES = {"unigram": 1, "bigram": 2, "trigram": 3}
_BEGIN, _END = "<!-- heldout:begin (written by isingmoe card) -->", "<!-- heldout:end -->"
_PROVENANCE = ("schema_version", "ising_moe_version", "kind", "created", "params", "seed", "finished")


@dataclass(frozen=True)
class Heldout:
    """What :func:`refresh` measured (all cross-entropies in nats per target token).

    Attributes
    ----------
    model_dir : str
    targets : str
        ``"causal"`` or ``"span"`` (see :mod:`~ising_moe.train.baselines`).
    n_windows, n_documents, n_targets : int
    model : Estimate
    baselines : dict of str -> Estimate
        ``unigram``, ``bigram``, ``trigram``.
    model_minus : dict of str -> Estimate
        Paired document-bootstrap difference model - baseline (negative: the model is better).
    documents_better : dict of str -> int
        Documents on which the model's cross-entropy is below the baseline's.
    context : dict of str -> Estimate, or None
        Causal models: ``model_short``, ``model_long`` (positions 4-15 and 64-255),
        ``model_short_minus_long`` and ``trigram_short_minus_long`` (paired). None for span targets
        and for windows too short to have targets at positions 64-255.
    weights_sha256, untrained_weights_sha256 : str
    """

    model_dir: str
    targets: str
    n_windows: int
    n_documents: int
    n_targets: int
    model: bl.Estimate
    baselines: dict
    model_minus: dict
    documents_better: dict
    context: dict | None
    weights_sha256: str
    untrained_weights_sha256: str

    def summary(self) -> dict:
        """Plain JSON-ready dictionary (without the directory)."""
        out = {k: getattr(self, k) for k in ("targets", "n_windows", "n_documents", "n_targets",
                                             "documents_better", "weights_sha256", "untrained_weights_sha256")}
        out["model"] = self.model.as_dict()
        out["baselines"] = {k: v.as_dict() for k, v in self.baselines.items()}
        out["model_minus"] = {k: v.as_dict() for k, v in self.model_minus.items()}
        out["context"] = None if self.context is None else {k: v.as_dict() for k, v in self.context.items()}
        return out


# ---- inputs --------------------------------------------------------------------------------------
def _read_log(model_dir: Path):
    path = model_dir / "train_log.h5"
    if not path.is_file():
        raise InvalidParameterError(f"{model_dir} has no train_log.h5: pass a directory written by isingmoe train")
    with open_h5(path, kind="train_log") as f:
        attrs = dict(f.attrs)
        params = read_params(f, path)
        hist = {k: f["log"][k][()] for k in ("tokens", "val_loss", "train_loss") if k in f["log"]}
        data = {k: f["data"][k][()] for k in ("val_window_doc", "train_window_doc")}
    return attrs, params, hist, data


def _resolve_corpus(params: dict, attrs: dict, corpus) -> Path:
    from ..extract.registry import shipped_data_dir

    want = str(attrs.get("corpus_sha256", ""))
    candidates = [Path(corpus)] if corpus is not None else [
        Path(params["corpus"]), shipped_data_dir() / "corpus" / Path(params["corpus"]).name]
    for path in candidates:
        if path.is_file():
            got = file_sha256(path)
            if want and got != want:
                raise DataFormatError(f"corpus {path} has sha256 {got}, but the model was trained on {want}: "
                                      "pass the training corpus with --corpus")
            return path
    raise InvalidParameterError(f"training corpus {params['corpus']} not found: pass it with --corpus")


def _windows(model_dir: Path, corpus: Path, seq_len: int, data: dict):
    from tokenizers import Tokenizer

    from .corpus import make_windows, read_documents

    docs = read_documents(corpus)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    encoded = [e.ids for e in tok.encode_batch(docs.text, add_special_tokens=False)]
    out = {}
    for split in ("train", "validation"):
        idx = docs.indices(split)
        out[split] = make_windows([encoded[i] for i in idx], idx, seq_len, max(8, seq_len // 4))
    recorded = {"train": data["train_window_doc"], "validation": data["val_window_doc"]}
    for split, (_, owner) in out.items():
        if not np.array_equal(owner, recorded[split]):
            raise DataFormatError(f"{model_dir}: the {split} windows rebuilt from the corpus and tokenizer differ "
                                  "from those recorded in train_log.h5 (another corpus or tokenizer?)")
    train_docs = [np.asarray(encoded[i], dtype=np.int64) for i in docs.indices("train")]
    return docs, tok, out, train_docs


# ---- the model's per-target loss -----------------------------------------------------------------
def _model_nll(model_dir: Path, family: str, windows, seq_len: int, batch_size: int, batcher_args: dict):
    """Per-target negative log-likelihood, flattened window by window (and the span pairs)."""
    import torch

    from .batches import Batcher
    from .loop import _model_class

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars
    model = _model_class(family).from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    batcher = Batcher(windows, family, seq_len, batch_size, **batcher_args)
    out = []
    with torch.no_grad():
        for s in range(0, len(windows), batch_size):
            rows = windows[s:s + batch_size]
            batch = batcher.batch(rows, sample_ids=range(s, s + len(rows)), stream=2)
            logits = model(**batch).logits.float()
            labels = batch["labels"]
            if family != "switch_transformers":
                logits, labels = logits[:, :-1], labels[:, 1:]
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                   reduction="none")
            for i in range(len(rows)):
                valid = labels[i] != -100
                out.append((ce[i][valid].numpy().astype(np.float64), labels[i][valid].numpy()))
    return out


# ---- the report ----------------------------------------------------------------------------------
def _estimates(model_nll, base_nll, targets, window_doc, n_docs, causal, n_bootstrap, seed):
    tot = {name: bl.document_totals(v, targets.window, window_doc, n_docs) for name, v in
           {"model": model_nll, **base_nll}.items()}
    n = tot["model"][1]
    model = bl.document_estimate(*tot["model"], n_bootstrap=n_bootstrap, seed=seed)
    bases = {k: bl.document_estimate(*tot[k], n_bootstrap=n_bootstrap, seed=seed) for k in base_nll}
    minus = {k: bl.paired_difference(tot["model"][0], n, tot[k][0], n, n_bootstrap=n_bootstrap, seed=seed)
             for k in base_nll}
    has = n > 0
    better = {k: int(np.sum(tot["model"][0][has] < tot[k][0][has])) for k in base_nll}
    context = None
    in_bins = [np.any((targets.position >= lo) & (targets.position <= hi)) for lo, hi in (SHORT, LONG)]
    if causal and all(in_bins):  # windows shorter than LONG[0] + 1 tokens: no context measure
        short = {k: bl.bin_totals(v, targets, window_doc, n_docs, *SHORT)
                 for k, v in (("model", model_nll), ("trigram", base_nll["trigram"]))}
        long = {k: bl.bin_totals(v, targets, window_doc, n_docs, *LONG)
                for k, v in (("model", model_nll), ("trigram", base_nll["trigram"]))}
        context = {"model_short": bl.document_estimate(*short["model"], n_bootstrap=n_bootstrap, seed=seed),
                   "model_long": bl.document_estimate(*long["model"], n_bootstrap=n_bootstrap, seed=seed)}
        for k in ("model", "trigram"):
            context[f"{k}_short_minus_long"] = bl.paired_difference(*short[k], *long[k], n_bootstrap=n_bootstrap,
                                                                    seed=seed)
    return tot, model, bases, minus, better, context


def refresh(model_dir, *, corpus=None, n_bootstrap: int = 2000, seed: int = 0, batch_size: int = 16,
            threads: int | None = None, name: str | None = None) -> Heldout:
    """Measure a trained organism on its held-out targets and rewrite its card and log.

    Parameters
    ----------
    model_dir : path-like
        A directory written by ``isingmoe train`` (``train_log.h5``, ``model.safetensors``,
        ``tokenizer.json``; ``untrained/`` optional).
    corpus : path-like, optional
        The training corpus (default: the one recorded in the log, else the shipped file of that
        name); its SHA-256 must match the log's.
    n_bootstrap : int
        Bootstrap replicates over held-out documents.
    seed : int
        Seed of the bootstrap.
    batch_size : int
        Windows per forward pass.
    threads : int, optional
        torch CPU threads.
    name : str, optional
        The model's name in the figure (default: the directory's name).

    Returns
    -------
    Heldout

    Raises
    ------
    InvalidParameterError
        Not an organism directory, or its corpus cannot be found.
    DataFormatError
        The corpus or tokenizer does not rebuild the recorded windows.
    """
    model_dir = Path(model_dir)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise InvalidParameterError(f"{model_dir} has no model.safetensors: pass a finished organism directory")
    if n_bootstrap < 100:
        raise InvalidParameterError(f"n_bootstrap must be >= 100 for a 95% interval, got {n_bootstrap}")
    attrs, params, hist, data = _read_log(model_dir)
    from .presets import preset as get_preset

    p = get_preset(params["preset"])
    p["config"].update(params.get("config") or {})
    p["train"].update(params.get("train_overrides") or {})
    if params.get("tokens") is not None:
        p["train"]["tokens"] = int(params["tokens"])
    family = json.loads((model_dir / "config.json").read_text())["model_type"]
    seq_len = int(p["train"]["seq_len"])
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    corpus_path = _resolve_corpus(params, attrs, corpus)
    docs, tok, win, train_docs = _windows(model_dir, corpus_path, seq_len, data)
    val_windows, val_owner = win["validation"]
    val_docs, window_doc = np.unique(val_owner, return_inverse=True)
    n_docs = len(val_docs)
    causal = family != "switch_transformers"
    batcher_args = {"seed": int(params["seed"])}
    if not causal:
        from .corpus import SPECIAL_TOKENS

        sentinels = [tok.token_to_id(t) for t in SPECIAL_TOKENS[2:]]
        batcher_args["corruption"] = {"noise_density": p["train"]["noise_density"],
                                      "mean_span": p["train"]["mean_span"], "sentinel_ids": sentinels}
    per_window = _model_nll(model_dir, family, val_windows, seq_len, batch_size, batcher_args)
    if causal:
        targets = bl.causal_targets(val_windows, max_history=2)
        model_nll = np.concatenate([ce for ce, _ in per_window])
    else:
        pairs = []
        from .corpus import span_corrupt

        c = batcher_args["corruption"]
        for i, w in enumerate(val_windows):  # as Batcher.batch(sample_ids=i, stream=2)
            pairs.append(span_corrupt(w, np.random.default_rng([int(params["seed"]), 2, i]), c["noise_density"],
                                      c["mean_span"], c["sentinel_ids"]))
        targets = bl.span_targets(val_windows, pairs, sentinels, max_history=2)
        special = np.asarray(sentinels + [1])
        chosen = []
        for (ce, labels), (_, tgt) in zip(per_window, pairs):
            if not np.array_equal(labels, tgt):
                raise DataFormatError("span corruption of the evaluation differs from the baseline's (internal error)")
            chosen.append(ce[~np.isin(labels, special)])
        model_nll = np.concatenate(chosen)
    if len(model_nll) != len(targets.target):
        raise DataFormatError("model and baseline targets differ in number (internal error)")
    vocab = int(tok.get_vocab_size())
    base_nll = {}
    for baseline, order in BASELINES.items():
        base_nll[baseline] = bl.KneserNey(order, vocab).fit(train_docs).nll(targets)
    tot, model, bases, minus, better, context = _estimates(model_nll, base_nll, targets, window_doc, n_docs,
                                                           causal, n_bootstrap, seed)
    twin = model_dir / "untrained" / "model.safetensors"
    result = Heldout(str(model_dir), "causal" if causal else "span", len(val_windows), n_docs,
                     int(len(model_nll)), model, bases, minus, better, context, file_sha256(weights),
                     file_sha256(twin) if twin.is_file() else "")
    _write_log(model_dir / "train_log.h5", result, tot, targets, model_nll, base_nll, window_doc, n_docs,
               [docs.doc_id[i] for i in val_docs], n_bootstrap, seed)
    _write_figure(model_dir, hist, result, name or model_dir.name)
    _write_card(model_dir / "MODEL_CARD.md", result)
    return result


# ---- outputs -------------------------------------------------------------------------------------
def _write_log(path: Path, result: Heldout, tot, targets, model_nll, base_nll, window_doc, n_docs, doc_ids,
               n_bootstrap, seed):
    import h5py

    with h5py.File(path, "r") as old:
        attrs = {k: old.attrs[k] for k in old.attrs if k != "finished"}
        with atomic_h5(path, kind=str(attrs["kind"]), params=json.loads(attrs["params"]), seed=int(attrs["seed"]),
                       overwrite=True, created=str(attrs["created"]),
                       attrs={k: v for k, v in attrs.items() if k not in ("kind", "params", "seed", "created")}) as f:
            for name in old:
                if name != "heldout":
                    old.copy(old[name], f, name=name)
            f.attrs["weights_sha256"] = result.weights_sha256
            f.attrs["untrained_weights_sha256"] = result.untrained_weights_sha256
            f.attrs["refreshed"] = utc_now()
            f.attrs["refreshed_with"] = __version__
            g = f.create_group("heldout")
            g.attrs["summary"] = to_json(result.summary())
            g.attrs["targets"] = result.targets
            g.attrs["n_bootstrap"] = int(n_bootstrap)
            g.attrs["bootstrap_seed"] = int(seed)
            g.attrs["description"] = (
                "held-out cross-entropies (nats/token) of the model and of n-gram baselines of the training split "
                "on the same targets; per document: total negative log-likelihood and number of targets")
            coords = {"document": np.arange(n_docs)}
            g.create_dataset("doc_id", data=np.array(doc_ids, dtype=object), dtype=h5py.string_dtype())
            write_array(g, "n_targets", tot["model"][1], ["document"], coords)
            for name, (nll, _) in tot.items():
                write_array(g, f"{name}_nll", nll, ["document"], coords,
                            description=f"total negative log-likelihood (nats) of the {name} per document")
            if result.context is not None:
                for lo, hi in (SHORT, LONG):
                    for name, values in (("model", model_nll), ("trigram", base_nll["trigram"])):
                        s, c = bl.bin_totals(values, targets, window_doc, n_docs, lo, hi)
                        write_array(g, f"{name}_nll_pos_{lo}_{hi}", s, ["document"], coords)
                    write_array(g, f"n_targets_pos_{lo}_{hi}", c, ["document"], coords)


def _fmt(e: bl.Estimate, digits: int = 3) -> str:
    if not np.isfinite(e.low):
        return f"{e.value:.{digits}f} (interval n/a: too few documents)"
    return f"{e.value:.{digits}f} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def _section(r: Heldout) -> str:
    what = ("every validation window, targets at positions 1..len-1 predicted from the tokens before them in "
            "the window" if r.targets == "causal" else
            "the tokens of the removed spans of every validation window: span corruption seeded as at "
            "evaluation, sentinels and `</s>` left out; each baseline predicts a span token from the "
            "original tokens before it")
    lines = [_BEGIN, "", "## Held-out comparison", "",
             f"{r.n_targets:,} targets in {r.n_windows} windows of {r.n_documents} held-out documents ({what}). "
             "Baselines: unigram and interpolated Kneser-Ney bigram/trigram of the training split, same BPE tokens. "
             "95% intervals: bootstrap over documents; differences paired.", "",
             "| predictor | nats/token [95% CI] | model minus predictor [95% CI] | documents where the model is better |",
             "|---|---|---|---|",
             f"| this model | {_fmt(r.model)} | | |"]
    for k, e in r.baselines.items():
        lines.append(f"| {k} | {_fmt(e)} | {_fmt(r.model_minus[k])} | {r.documents_better[k]} of {r.n_documents} |")
    d = r.model_minus["trigram"]
    if np.isfinite(d.high):
        verdict = ("beats the trigram (interval below 0)" if d.high < 0 else
                   "is worse than the trigram (interval above 0)" if d.low > 0 else
                   "does not differ from the trigram significantly (interval includes 0)")
        lines += ["", f"The model {verdict}: {d.value:+.3f} nats/token [{d.low:+.3f}, {d.high:+.3f}]."]
    if r.context is None and r.targets == "causal":
        lines += ["", f"**Context use**: n/a (no targets at window positions {LONG[0]}-{LONG[1]} or {SHORT[0]}-{SHORT[1]})."]
    if r.context is not None:
        c = r.context
        lines += ["", f"**Context use**: model loss at window positions {SHORT[0]}-{SHORT[1]} "
                  f"{_fmt(c['model_short'])}, at {LONG[0]}-{LONG[1]} {_fmt(c['model_long'])}; difference "
                  f"{_fmt(c['model_short_minus_long'])} nats/token (the trigram's, which sees 2 tokens: "
                  f"{_fmt(c['trigram_short_minus_long'])})."]
    lines += ["", f"- **weights sha256** (`model.safetensors`): {r.weights_sha256}"]
    if r.untrained_weights_sha256:
        lines.append(f"- **untrained twin weights sha256** (`untrained/model.safetensors`): {r.untrained_weights_sha256}")
    lines += ["- **learning curve**: `learning_curve.png`", "", _END]
    return "\n".join(lines)


def _write_card(path: Path, r: Heldout) -> None:
    text = path.read_text() if path.is_file() else f"# {path.parent.name}\n"
    if _BEGIN in text and _END in text:
        head, rest = text.split(_BEGIN, 1)
        text = head.rstrip("\n") + "\n" + rest.split(_END, 1)[1].lstrip("\n")
    text = text.rstrip("\n") + "\n\n" + _section(r) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plot_learning_curve(tokens, val_loss, baselines: dict, train_loss=None, final=None, ax=None):
    """Validation loss against training tokens, the baselines as horizontal lines.

    Parameters
    ----------
    tokens, val_loss : array_like, shape (n_log,)
        The logged points of ``train_log.h5`` (validation loss on the logged windows).
    baselines : dict of str -> float
        Name -> nats/token (drawn as horizontal lines).
    train_loss : array_like, shape (n_log,), optional
        Mean training loss since the previous point (NaN at step 0 is skipped).
    final : (float, float, str), optional
        ``(tokens, loss, label)`` of the final measurement on all held-out targets.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    from ..plot import _axes

    ax = _axes(ax)
    tokens = np.asarray(tokens, float)
    ax.plot(tokens, val_loss, "o-", ms=2.5, color="C0", label="validation loss (logged windows, all targets)")
    if train_loss is not None:
        ax.plot(tokens, train_loss, "-", lw=0.8, color="C0", alpha=0.5, label="training loss")
    for i, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 1}", label=f"{name} ({value:.3f})")
    if final is not None:
        ax.plot([final[0]], [final[1]], "*", ms=10, color="k", label=final[2])
    ax.set_xlabel("training tokens")
    ax.set_ylabel("cross-entropy [nats/token]")
    shown = [np.asarray(val_loss, float), list(baselines.values())]
    if train_loss is not None:
        shown.append(np.asarray(train_loss, float))
    finite = [v for v in np.concatenate(shown) if np.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) - 0.3, min(max(finite), max(baselines.values(), default=0) + 2.5))
    ax.legend(fontsize="small")
    return ax


def _write_figure(model_dir: Path, hist: dict, r: Heldout, name: str) -> None:
    import matplotlib.pyplot as plt

    targets = "span tokens" if r.targets == "span" else "all held-out targets"
    ax = plot_learning_curve(hist["tokens"], hist["val_loss"], {k: e.value for k, e in r.baselines.items()},
                             train_loss=hist.get("train_loss"),
                             final=(float(hist["tokens"][-1]), r.model.value, f"final model, {targets} ({r.model.value:.3f})"))
    ax.set_title(f"{name}: baselines on {targets}", fontsize="medium")
    tmp = model_dir / "learning_curve.tmp.png"
    ax.figure.savefig(tmp, dpi=120)
    plt.close(ax.figure)
    os.replace(tmp, model_dir / "learning_curve.png")
