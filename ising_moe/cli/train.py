"""``isingmoe train``: train a model organism (a small MoE language model) on CPU or GPU."""

from __future__ import annotations

import shlex
import sys

import click

from ._main import SEED, _emit, main

__all__ = ["card_command", "train_command"]


class _TokenCount(click.ParamType):
    """A positive whole number, also written as ``4e6``."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number of tokens", param, ctx)
        if not number.is_integer():
            self.fail(f"{value!r} is not a whole number of tokens", param, ctx)
        return int(number)  # its sign is checked by the library, with the others


_TOKENS = _TokenCount()


@main.command("train")
@click.option("--preset", required=True,
              help="Model preset: olmoe-tiny, switch-tiny, or olmoe-tiny-e64 (OLMoE-shaped: 64 experts, top-8, 8 layers).")
@click.option("--corpus", default=None,
              help="JSON-lines corpus (text, doc_id, split) [default: the shipped data/corpus/mixed.jsonl.gz, "
                   "see data/corpus/make_mixed.sh].")
@click.option("--tokens", type=_TOKENS, default=None,
              help="Training token budget, e.g. 4000000 or 4e6 (default: the preset's).")
@click.option("--balance", type=click.Choice(["aux", "mem", "none"]), default="aux", show_default=True,
              help="Load balancing: the class's own aux loss, max-entropy KL(mean routing || uniform), or none.")
@click.option("--balance-coef", type=float, default=None,
              help="Coefficient of --balance mem, in [0, 100] (default 0.01; refused with another --balance).")
@click.option("--z-loss", "z_loss", type=float, default=None,
              help="Router z-loss coefficient, in [0, 100] (default: the class's, Switch 0.001, OLMoE 0).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: autocast (for GPUs).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads.")
@click.option("--checkpoint-every", type=int, default=50, show_default=True, help="Steps between checkpoints.")
@click.option("--log-every", type=int, default=20, show_default=True, help="Steps between log points.")
@click.option("-o", "--output", required=True, help="Output directory (a checkpoint directory).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output (or discard an interrupted run).")
@click.option("--yes", "confirmed", is_flag=True,
              help="Run even if the time estimated from a measured step exceeds one day (refused without it).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def train_command(preset, corpus, tokens, balance, balance_coef, z_loss, seed, device, dtype, threads,
                  checkpoint_every, log_every, output, overwrite, confirmed, no_progress, as_json):
    """Train a small MoE language model with a real Hugging Face class (resumable: rerun the same
    command after an interruption)."""
    import dataclasses

    from ..extract.registry import shipped_data_dir
    from ..train import TrainSpec, train

    corpus = corpus or str(shipped_data_dir() / "corpus" / "mixed.jsonl.gz")

    spec = TrainSpec(preset=preset, corpus=corpus, tokens=tokens, balance=balance, balance_coef=balance_coef,
                     z_loss=z_loss, seed=seed, device=device, dtype=dtype, threads=threads,
                     checkpoint_every=checkpoint_every, log_every=log_every)
    command = "isingmoe " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = train(spec, output, overwrite=overwrite, progress=not no_progress, command=command, confirmed=confirmed)
    _emit(dataclasses.asdict(result), as_json, [
        (f"trained {preset} ({balance}) -> {result.output} ({result.steps} steps, {result.tokens:,} tokens, "
         f"{result.wall_seconds:.0f} s, {result.tokens_per_second:.0f} tokens/s)"),
        (f"validation loss {result.val_loss:.4f} (untrained twin {result.val_loss_untrained:.4f}: "
         f"{result.untrained})"),
        _heldout_line(result.heldout),
    ])


def _heldout_line(h: dict) -> str:
    m, t, d = h["model"], h["baselines"]["trigram"], h["model_minus"]["trigram"]
    return (f"held-out ({h['targets']} targets, {h['n_documents']} documents): model {m['value']:.3f}, "
            f"unigram {h['baselines']['unigram']['value']:.3f}, bigram {h['baselines']['bigram']['value']:.3f}, "
            f"trigram {t['value']:.3f} nats/token; model - trigram {d['value']:+.3f} "
            f"[{d['low']:+.3f}, {d['high']:+.3f}] (see MODEL_CARD.md)")


@main.command("card")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--corpus", default=None,
              help="Training corpus [default: the one recorded in train_log.h5, else the shipped file of that name].")
@click.option("--n-bootstrap", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap replicates over held-out documents.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def card_command(model_dir, corpus, n_bootstrap, threads, as_json):
    """Measure a trained organism on its held-out text against unigram/bigram/trigram baselines; rewrite
    its MODEL_CARD.md and train_log.h5 (weights SHA-256 included) and draw learning_curve.png."""
    from ..train.card import refresh

    result = refresh(model_dir, corpus=corpus, n_bootstrap=n_bootstrap, threads=threads)
    _emit(result.summary(), as_json, [_heldout_line(result.summary()),
                                      f"weights sha256 {result.weights_sha256}; wrote {model_dir}/MODEL_CARD.md, "
                                      "train_log.h5, learning_curve.png"])
