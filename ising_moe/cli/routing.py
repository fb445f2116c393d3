"""Commands on routing data: ``extract``, ``measure``, ``fit``."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ..data import DEFAULT_DROPPED
from ..errors import InvalidParameterError

log = logging.getLogger(__name__)

from ._main import SEED, _emit, _executor_spec, _int_list, executor_options, main

#: figure names of ``measure`` (``<output stem>.<name>.png/pdf``) and ``fit`` (``<dir>/<name>.png/pdf``):
#: declared up front so that an existing figure is refused before any work, like the data files
MEASURE_FIGURES = ("rates", "correlation", "xi_block", "dropped", "probe")
FIT_FIGURES = ("correlation", "xi", "fields", "couplings", "heldout", "indicators", "decomposition", "topics")


def _figure_paths(stem_names) -> list[Path]:
    return [Path(f"{stem}.{ext}") for stem in stem_names for ext in ("png", "pdf")]


@main.command()
@click.option("--model", "-m", default="switch-8", show_default=True,
              help="Alias (switch-8/16/32/64/128, olmoe, mixtral, qwen-moe; organisms trained here: olmoe-tiny, "
                   "olmoe-tiny-mem, switch-tiny, and their step-0 twins <alias>-untrained), hub id, or a local "
                   "checkpoint directory (its own tokenizer is used).")
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="Text file, directory or JSONL [default: the shipped corpus corpus/kjv.txt.gz of the data "
                   "directory].")
@click.option("--layers", default=None, help="MoE block indices to record, e.g. 1,3,5 [default: all].")
@click.option("--max-length", type=int, default=512, show_default=True,
              help="Tokens per sequence.")
@click.option("--n-sequences", type=int, default=1000, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=None,
              help="[default: bf16 on GPU, fp32 on CPU]")
@click.option("--device", default=None, help="cuda, cuda:1, cpu [default: cuda if available].")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="[default: DATA_DIR/<model>.h5; <model>.random-init.h5 with --random-init; "
                   "<model>.positions-MODE.h5 with --positions MODE]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory for the default output and corpus [default: $ISINGMOE_DATA, else the "
                   "installation's data/, whatever the working directory].")
@click.option("--random-init", is_flag=True, help="Random weights from the real configuration (seeded).")
@click.option("--reduced", is_flag=True, help="With --random-init: the reduced-size variant (olmoe).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the random weights and of --positions shuffled.")
@click.option("--positions", type=click.Choice(["natural", "constant", "shuffled", "reversed"]), default="natural",
              show_default=True,
              help="Position ids given to a RoPE model (olmoe, mixtral, qwen): constant = all 0 (no positional "
                   "information), shuffled = a seeded permutation per sequence, reversed. Same text, same causal "
                   "context: compares routing with and without position. Refused for Switch (relative "
                   "position bias, no position ids).")
@click.option("--allow-missing-weights", is_flag=True,
              help="Run even if the checkpoint lacks weights of the model (randomly initialised, seeded) or "
                   "holds unused ones; the file lists them (attribute random_weights). Default: stop.")
@click.option("--shards", type=int, default=1, show_default=True,
              help="Processes (one model replica each) that split the corpus; the file is the same as with 1. "
                   "For several GPUs use torchrun --nproc-per-node N -m ising_moe.extract ... instead.")
@click.option("--router-probs", is_flag=True, help="Also store chosen experts' probabilities and router entropy.")
@click.option("--hidden-states", is_flag=True, help="Also store router-input hidden states (large).")
@click.option("--text-field", default="text", show_default=True, help="JSONL field holding the text.")
@click.option("--packing", type=click.Choice(["concat", "windows", "document"]), default="concat", show_default=True,
              help="Full windows of the concatenated corpus (a window may span two documents), windows within "
                   "each document (never spanning two), or one padded sequence per document.")
@click.option("--split", default=None,
              help="Only the JSONL records whose 'split' field equals this (e.g. validation: text an organism "
                   "never trained on).")
@click.option("--padding-side", type=click.Choice(["right", "left"]), default="right", show_default=True,
              help="Where a batch pads short sequences; Switch accepts only right (left padding takes "
                   "expert capacity).")
@click.option("--overwrite", is_flag=True, help="Replace the output and discard interrupted partial work.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def extract(model, corpus, layers, max_length, n_sequences, batch_size, dtype, device, revision, output, data_dir,
            random_init, reduced, seed, positions, allow_missing_weights, shards, router_probs, hidden_states,
            text_field, packing, split, padding_side, overwrite, as_json):
    """Extract top-k expert sequences from a MoE model into HDF5 (resumable).

    Switch Transformers are encoder-decoders: only the encoder runs (on the corpus text), so the
    file holds the routing of the encoder's MoE layers; the decoder's are not extracted (recorded
    in the file as stack = encoder). Any weight missing from or unexpected in a checkpoint stops
    the run unless --allow-missing-weights.
    """
    from ..errors import require

    require("torch", "extract", "isingmoe extract")
    from ..extract import extract as run_extract

    result = run_extract(
        model, corpus, output=output, layers=_int_list(layers, "--layers"), max_length=max_length,
        n_sequences=n_sequences, batch_size=batch_size, dtype=dtype, device=device, revision=revision,
        random_init=random_init, reduced=reduced, seed=seed, router_probs=router_probs,
        hidden_states=hidden_states, text_field=text_field, packing=packing, split=split, padding_side=padding_side,
        positions=positions, allow_missing_weights=allow_missing_weights, data_dir=data_dir, shards=shards,
        overwrite=overwrite, progress=not as_json)
    if result.rank != 0:  # under torchrun only rank 0 reports
        return
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    lines = [
        f"wrote {result.path}{' (resumed)' if result.resumed else ''}"
        + (f" from {result.shards} shards" if result.shards > 1 else ""),
        f"model {result.model_id}: {result.n_experts} experts, top-{result.top_k}, MoE layers {result.layers}",
        f"{result.n_sequences} sequences, {result.n_tokens} tokens, tokenizer {result.tokenizer}",
    ]
    if result.positions != "natural":
        lines.append(f"position ids: {result.positions} (ablation)")
    if result.drop_fraction is not None:
        lines.append("capacity drops by layer: " + ", ".join(
            f"{layer}: {frac:.1%}" for layer, frac in zip(result.layers, result.drop_fraction)))
    if result.weights == "random-init":
        lines.append("NOTE: RANDOM-INIT weights, not a trained model: use this data to test pipelines only.")
    if result.weights == "partly-random":
        lines.append("NOTE: PARTLY RANDOM weights (--allow-missing-weights): weights the checkpoint lacked were randomly "
                     "initialised; the file lists them (attribute random_weights). Not the trained model.")
    _emit(payload, as_json, lines)


def _check_same_layers(data, other, data_file, compare_file) -> None:
    """``measure --compare``: the two files must hold the same MoE layers (compared layer by layer)."""
    a, b = [int(x) for x in data.layers], [int(x) for x in other.layers]
    if a != b:
        common = sorted(set(a) & set(b))
        hint = (f"pass --layers {','.join(map(str, common))} (the layers both hold)" if common
                else "compare files of the same model")
        raise InvalidParameterError(f"--compare: {compare_file} holds MoE layers {b}, {data_file} holds {a}: {hint}")


def _check_routing_cost(data, max_distance: int, command: str) -> None:
    """Refuse, before any work, a file whose expert count makes the per-layer arrays too large."""
    from ..mc.resources import check_cost, routing_cost

    memory = routing_cost(data.n_sequences, data.n_experts, max_distance, fit=command == "fit")
    check_cost(memory, 0.0, f"{command} of {data.path} ({data.n_sequences} sequences, {data.n_experts:,} experts)",
               fix="check the file's n_experts attribute (the model's number of routed experts), or use fewer "
                   "sequences (a smaller file) or a smaller --max-distance")


@main.command()
@click.argument("data_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--compare", "compare_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A second expert-sequence file measured the same way: rates and C(r) side by side "
                   "(natural vs ablated positions, trained vs untrained).")
@click.option("--layers", default=None, help="MoE block indices, e.g. 1,3 [default: all].")
@click.option("--max-distance", type=int, default=64, show_default=True, help="Largest r of C(r).")
@click.option("--block-sizes", default="8,16,32,64,128,256", show_default=True, help="Block sizes for xi(b).")
@click.option("--dropped", type=click.Choice(["router", "exclude", "state"]), default=DEFAULT_DROPPED, show_default=True,
              help="Switch capacity drops: the router's choice (what the router wants; drops are not missing at "
                   "random), masked out (what ran), or an extra state.")
@click.option("--bootstrap", "n_bootstrap", type=int, default=200, show_default=True)
@click.option("--no-probe", is_flag=True, help="Skip the positional probes (scikit-learn).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="[default: DATA_FILE with suffix .stats.h5]")
@executor_options
@click.option("--overwrite", is_flag=True, help="Replace the output file and its figures.")
@click.option("--json", "as_json", is_flag=True)
def measure(data_file, compare_file, layers, max_distance, block_sizes, dropped, n_bootstrap, no_probe, seed, output,
            executor, processes, overwrite, as_json):
    """Empirical spatial statistics of an expert-sequence file, with error bars and figures."""
    from ..data import load_experts
    from ..executors import open_executor
    from ..io import file_sha256
    from ..measure import measure as run_measure
    from ..measure import write_measurements
    from ..outputs import output_unit
    from ..report import (
        comparison_figures,
        comparison_summary,
        measurement_figures,
        measurement_summary,
    )

    if not no_probe:  # a core dependency; checked before any work all the same
        from ..errors import require

        require("sklearn", "probe", "the positional probe of isingmoe measure (or pass --no-probe)")
    output = output or data_file.with_name(data_file.name.removesuffix(".h5") + ".stats.h5")
    stem = output.with_name(output.name.removesuffix(".h5"))
    executor = _executor_spec(executor, processes)
    layer_list = _int_list(layers, "--layers")
    block_list = _int_list(block_sizes, "--block-sizes") or ()
    names = MEASURE_FIGURES + (("compare",) if compare_file is not None else ())
    declared = _figure_paths(f"{stem}.{name}" for name in names)
    data = load_experts(data_file, layers=layer_list)
    other = None if compare_file is None else load_experts(compare_file, layers=layer_list)
    _check_routing_cost(data, max_distance, "measure")
    if other is not None:
        _check_same_layers(data, other, data_file, compare_file)
        _check_routing_cost(other, max_distance, "measure")
    with output_unit(output, others=declared, overwrite=overwrite) as unit:
        options = dict(max_distance=max_distance, block_sizes=block_list, dropped=dropped, n_bootstrap=n_bootstrap,
                       seed=seed, progress=not as_json)
        with open_executor(executor) as pool:
            result = run_measure(data, probe=not no_probe, executor=pool, **options)
            second = None if other is None else run_measure(other, probe=False, executor=pool, **options)
        write_measurements(result, unit.path(output), overwrite=True, input_path=data_file,
                           input_sha256=file_sha256(data_file))
        staged_stem = unit.path(output).with_name(stem.name)
        staged = measurement_figures(result, staged_stem)
        if second is not None:
            staged += comparison_figures(result, second, staged_stem)
    figures = [output.parent / p.name for p in staged]
    payload, lines = measurement_summary(result, data)
    if second is not None:
        compare_payload, compare_lines = comparison_summary(result, second)
        payload["compare"] = compare_payload
        lines += compare_lines
    payload.update({"output": str(output), "figures": [str(f) for f in figures]})
    lines += [f"wrote {output}", *(f"figure {f}" for f in figures if f.suffix == ".png"),
              "(and PDF versions)"]
    _emit(payload, as_json, lines)


@main.command()
@click.option("--model", "-m", "model", required=True,
              help="Alias (switch-8, ...: the matching file in data/) or an expert-sequence HDF5 file.")
@click.option("--layers", default=None, help="MoE block indices, e.g. 1,3 [default: all].")
@click.option("--variants", default=None,
              help="Comma-separated variants [default: independent,potts,full,potts-homogeneous]; also "
                   "potts-bond, full-bond, full-homogeneous, pseudo-likelihood, range<R>.")
@click.option("--max-range", type=int, default=1, show_default=True,
              help="Also fit couplings up to this distance (variants range2 .. range<R>; 1: none).")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Held-out share of sequences.")
@click.option("--max-distance", type=int, default=64, show_default=True,
              help="Largest r compared (the default of measure: both print the same empirical C(r) and xi).")
@click.option("--bootstrap", "n_bootstrap", type=int, default=6, show_default=True,
              help="Bootstrap refits for the fitted xi's error.")
@click.option("--dropped", type=click.Choice(["router", "exclude", "state"]), default=DEFAULT_DROPPED, show_default=True,
              help="Switch capacity drops: the router's choice (what the router wants; drops are not missing "
                   "at random, so excluding them creates position dependence), excluded, or an extra state.")
@click.option("--decomposition/--no-decomposition", default=None,
              help="Nested table token / position given the token / neighbours / sequence topic, with the best "
                   "model's C(r) against the data [default: on when the file has token ids].")
@click.option("--topic-chain/--no-topic-chain", default=False, show_default=True,
              help="With the decomposition, also fit a hidden topic that moves along the text (K by held-out "
                   "likelihood, persistence length xi_topic, posterior topic figure topics.png). Costly: "
                   "several times the rest of the fit, so off by default.")
@click.option("--gof-distance", type=int, default=None,
              help="Largest r of the decomposition's goodness of fit [default: min(64, --max-distance)].")
@click.option("--power-law", "power_law", is_flag=True,
              help="Add the decomposition row '+power-law couplings' (J/r^(1+sigma) up to the exact range, scored "
                   "against +couplings; about 10x the cost of the latent row).")
@click.option("--power-law-method", type=click.Choice(["pseudo-likelihood", "max-likelihood"]), default=None,
              help="How the --power-law row is fitted [default: pseudo-likelihood; max-likelihood: exact likelihood "
                   "of the cutoff model, started from pseudo-likelihood, several times costlier].")
@click.option("--lattice", is_flag=True,
              help="Also fit the layer x position lattice (cross-layer couplings between a token's experts): "
                   "lattice.h5, the 'lattice' block of summary.json and lattice.png/pdf.")
@click.option("--lattice-method", type=click.Choice(["auto", "exact", "pseudo-likelihood", "monte-carlo"]),
              default="auto", show_default=True,
              help="How the lattice is fitted (auto: pairs exactly up to 32 experts, the whole lattice by Monte Carlo "
                   "learning; exact: every model by the exact column transfer operator).")
@executor_options
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (fit.h5, summary.json, figures) [default: fits/<model>]")
@click.option("--output-dir", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              hidden=True, help="Deprecated spelling of -o/--output.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs and discard an interrupted fit's layers.")
@click.option("--json", "as_json", is_flag=True)
def fit(model, layers, variants, max_range, test_fraction, max_distance, n_bootstrap, dropped, decomposition,
        gof_distance, power_law, power_law_method, topic_chain, lattice, lattice_method, executor, processes, seed, output,
        output_dir, overwrite, as_json):
    """Fit Potts chains to expert sequences and compare fitted with empirical correlations.

    With token ids in the file, also the decomposition: held-out bits/token that token identity,
    position given the token, neighbours and a sequence-level latent each add, and whether the best
    model's C(r) reproduces the data's.

    Resumable per layer: rerun the same command after an interruption to fit only the missing layers.
    """
    from ..data import load_experts
    from ..executors import open_executor
    from ..extract.registry import MODELS, data_dir, find_data_file
    from ..fit.pipeline import write_fit_report
    from ..fit.pipeline import fit_expert_data
    from ..io import ChunkStore, file_sha256, write_json
    from ..outputs import output_unit
    from ..report import fit_figures, fit_summary

    if output is not None and output_dir is not None and output != output_dir:
        raise InvalidParameterError("give -o/--output only (--output-dir is its deprecated spelling)")
    output = output or output_dir
    if power_law_method is not None and not power_law:
        raise InvalidParameterError("--power-law-method chooses how the --power-law row is fitted: add --power-law")
    executor = _executor_spec(executor, processes)

    path = Path(model)
    if model.endswith(".h5") or path.is_file():
        if not path.is_file():
            raise InvalidParameterError(f"--model: no such file {path}")
        name = path.name.removesuffix(".h5")
    elif model in MODELS:
        found = find_data_file(model)
        if found is None:
            raise InvalidParameterError(
                f"no expert-sequence data for {model} in {data_dir()}/: run `isingmoe extract --model {model}` "
                f"(or add --random-init for random-weight data), or pass --model FILE.h5")
        path, name = found, model
    else:
        raise InvalidParameterError(
            f"--model must be an alias ({', '.join(MODELS)}) or an expert-sequence .h5 file, got {model!r}")
    out_dir = output or Path("fits") / name
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidParameterError(f"-o/--output {out_dir} is a file: fit writes a directory")
    fit_file, summary_file = out_dir / "fit.h5", out_dir / "summary.json"
    layer_list = _int_list(layers, "--layers")
    variant_list = [v.strip() for v in variants.split(",")] if variants else None
    declared = [summary_file, *_figure_paths(out_dir / n for n in FIT_FIGURES)]
    declared += [out_dir / "lattice.h5", *_figure_paths([out_dir / "lattice"])]
    data = load_experts(path, layers=layer_list)
    _check_routing_cost(data, max_distance, "fit")
    if lattice and len(data.layers) < 2:
        raise InvalidParameterError("--lattice needs at least two MoE layers (--layers with two or more)")
    if lattice and data.token_ids is None:
        raise InvalidParameterError("--lattice fits token fields and needs the token ids of the routed text; this "
                                    "file has none: re-extract it with `isingmoe extract`")
    with output_unit(fit_file, others=declared, overwrite=overwrite) as unit:
        with open_executor(executor) as pool:
            report = fit_expert_data(data, variants=variant_list, max_range=max_range, test_fraction=test_fraction,
                                     max_distance=max_distance, n_bootstrap=n_bootstrap, dropped=dropped, seed=seed,
                                     decomposition=decomposition, gof_distance=gof_distance, power_law=power_law,
                                     power_law_method=power_law_method or "pseudo-likelihood", topic_chain=topic_chain,
                                     progress=not as_json, executor=pool, checkpoint=fit_file, overwrite=overwrite)
        unit.discard_after_commit(ChunkStore(fit_file, "fit-layers", {}).directory)
        sha = file_sha256(path)
        write_fit_report(report, unit.path(fit_file), overwrite=True, input_sha256=sha)
        staged = fit_figures(report, unit.path(fit_file).parent)
        figures = [out_dir / p.name for p in staged]
        payload, lines = fit_summary(report)
        if lattice:
            from ..fit.lattice.analysis import analyze_lattice, lattice_figure, write_lattice_report

            lat = analyze_lattice(data, method=lattice_method, test_fraction=test_fraction,
                                  gof_distance=min(32, max_distance), seed=seed, progress=not as_json)
            write_lattice_report(lat, unit.path(out_dir / "lattice.h5"), overwrite=True, input_sha256=sha)
            figures += [out_dir / p.name for p in lattice_figure(lat, unit.path(fit_file).parent)]
            payload["lattice"] = lat.summary()
            report.params["lattice"] = lat.params
            lines += lat.lines() + [f"wrote {out_dir / 'lattice.h5'}"]
        payload.update({"input_sha256": sha, "fit_file": str(fit_file), "figures": [str(p) for p in figures]})
        write_json(unit.path(summary_file), payload, kind="fit-summary", params=report.params, seed=seed,
                   overwrite=True)
    lines += [f"wrote {fit_file}", f"wrote {summary_file}", f"figures in {out_dir}/ (PNG and PDF)"]
    _emit(payload, as_json, lines)

