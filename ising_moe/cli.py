"""The ``isingmoe`` command line: parses options, calls the library, writes, prints a summary.

User errors (bad options, malformed files, missing weights) exit with status 2 and a one-line
message, never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import click
import numpy as np

from ._version import __version__
from .errors import InvalidParameterError, IsingMoeError

log = logging.getLogger(__name__)


class _Group(click.Group):
    """Turns the library's named errors into ``Error: ...`` and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except IsingMoeError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted: rerun the same command to resume.", err=True)
            sys.exit(130)


def _emit(payload: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=_json_default, allow_nan=True))
    else:
        for line in lines:
            click.echo(line)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else ("nan" if math.isnan(x) else f"{x:.10g}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="isingmoe")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """ising-moe: statistical physics of Mixture-of-Experts routing.

    Extract expert sequences from MoE models, measure their spatial statistics, simulate and
    solve Potts/Ising chains exactly, and fit chains to routing data.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def _parse_fields(text: str | None, n_states: int):
    """``--field``: comma-separated values per state, or a ``.npy`` file of shape (q,) or (n, q)."""
    if text is None:
        return None
    path = Path(text)
    if text.endswith(".npy"):
        if not path.is_file():
            raise InvalidParameterError(f"--field: no such file {path}")
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InvalidParameterError(f"--field: {path} is not a NumPy array file ({exc})") from None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidParameterError(
            f"--field must be {n_states} comma-separated numbers or a .npy file, got {text!r}"
        ) from None
    if len(values) != n_states:
        raise InvalidParameterError(f"--field has {len(values)} values, expected n_states = {n_states}")
    return np.array(values)


@main.command()
@click.option("--n-states", "-q", type=int, default=2, show_default=True, help="Number of states q.")
@click.option("--n-sites", "-n", type=int, default=512, show_default=True)
@click.option("--beta", type=float, default=1.0, show_default=True, help="Inverse temperature.")
@click.option("--coupling", "-J", type=float, default=1.0, show_default=True,
              help="Potts coupling J (J delta_ab); with --ising the Ising J.")
@click.option("--field", "-h", "field", type=str, default=None,
              help="Fields h(a): q comma-separated numbers, or a .npy of shape (q,) or (n_sites, q). "
                   "With --ising: one number h.")
@click.option("--ising", is_flag=True, help="Ising form -J s s' - h s (forces q = 2).")
@click.option("--periodic", is_flag=True, help="Periodic boundary (default open).")
@click.option("--max-distance", type=int, default=None, help="Largest r of C(r) [default: min(64, n_sites - 1)].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write C(r), per-state C_a(r) and marginals to this HDF5 file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def exact(n_states, n_sites, beta, coupling, field, ising, periodic, max_distance, output, overwrite,
          as_json):
    """Exact transfer-matrix solution: log Z, free energy per site, correlation length."""
    from .chain import PottsChain
    from .exact import solve
    from .io import atomic_h5, write_array

    if ising:
        h = 0.0 if field is None else _one(field, "--field", float)
        model = PottsChain.ising(n_sites, coupling, h, beta=beta, periodic=periodic)
    else:
        model = PottsChain.potts(n_sites, n_states, coupling, _parse_fields(field, n_states),
                                 beta=beta, periodic=periodic)
    if max_distance is None:
        max_distance = min(64, n_sites - 1)
    if not 0 <= max_distance < n_sites:
        raise InvalidParameterError(f"--max-distance must be in 0..{n_sites - 1}, got {max_distance}")
    sol = solve(model)
    xi = sol.correlation_length()
    result = {
        "n_states": model.n_states, "n_sites": n_sites, "beta": beta, "periodic": periodic,
        "log_partition": sol.log_partition, "free_energy_per_site": sol.free_energy,
        "correlation_length": xi,
        "xi_method": "spectral" if model.homogeneous else "decay of C(r)",
    }
    if output is not None:
        params = {"n_states": model.n_states, "n_sites": n_sites, "beta": beta, "coupling": coupling,
                  "field": None if field is None else str(field), "ising": ising, "periodic": periodic,
                  "max_distance": max_distance}
        c_state = sol.correlation_function(max_distance, per_state=True)
        with atomic_h5(output, kind="exact", params=params, overwrite=overwrite) as f:
            for key in ("log_partition", "free_energy_per_site", "correlation_length"):
                f.attrs[key] = result[key]
            write_array(f, "marginals", sol.marginals, ("position", "state"))
            write_array(f, "correlation", c_state.sum(axis=1), ("distance",))
            write_array(f, "state_correlation", c_state, ("distance", "state"))
            write_array(f, "fields", model.site_fields(), ("position", "state"))
        result["output"] = str(output)
    _emit(result, as_json, [
        f"{model!r}",
        f"log Z                 {_fmt(result['log_partition'])}",
        f"free energy per site  {_fmt(result['free_energy_per_site'])}",
        f"correlation length    {_fmt(xi)}  ({result['xi_method']})",
        *([f"wrote {output}"] if output else []),
    ])


def _int_list(text: str | None, option: str) -> list[int] | None:
    """``--layers 1,3,5`` style options."""
    if text is None or text == "":
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise InvalidParameterError(f"{option} must be comma-separated integers, got {text!r}") from None


@main.command()
@click.option("--model", "-m", default="switch-8", show_default=True,
              help="Alias (switch-8/16/32/64/128, olmoe, mixtral, qwen-moe), hub id, or local directory.")
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="Text file, directory or JSONL [default: the shipped corpus data/corpus/kjv.txt.gz].")
@click.option("--layers", default=None, help="MoE block indices to record, e.g. 1,3,5 [default: all].")
@click.option("--max-length", type=int, default=512, show_default=True, help="Tokens per sequence.")
@click.option("--n-sequences", type=int, default=1000, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=None,
              help="[default: bf16 on GPU, fp32 on CPU]")
@click.option("--device", default=None, help="cuda, cuda:1, cpu [default: cuda if available].")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="[default: data/<model>.h5, data/<model>.random-init.h5 with --random-init]")
@click.option("--random-init", is_flag=True, help="Random weights from the real configuration (seeded).")
@click.option("--reduced", is_flag=True, help="With --random-init: the reduced-size variant (olmoe).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--router-probs", is_flag=True, help="Also store chosen experts' probabilities and router entropy.")
@click.option("--hidden-states", is_flag=True, help="Also store router-input hidden states (large).")
@click.option("--text-field", default="text", show_default=True, help="JSONL field holding the text.")
@click.option("--packing", type=click.Choice(["concat", "document"]), default="concat", show_default=True,
              help="Full windows of the concatenated corpus, or one padded sequence per document.")
@click.option("--padding-side", type=click.Choice(["right", "left"]), default="right", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the output and discard interrupted partial work.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def extract(model, corpus, layers, max_length, n_sequences, batch_size, dtype, device, revision, output,
            random_init, reduced, seed, router_probs, hidden_states, text_field, packing, padding_side,
            overwrite, as_json):
    """Extract top-k expert sequences from a MoE model into HDF5 (resumable)."""
    from .errors import require

    require("torch", "extract", "isingmoe extract")
    from .extract import extract as run_extract

    result = run_extract(
        model, corpus, output=output, layers=_int_list(layers, "--layers"), max_length=max_length,
        n_sequences=n_sequences, batch_size=batch_size, dtype=dtype, device=device, revision=revision,
        random_init=random_init, reduced=reduced, seed=seed, router_probs=router_probs,
        hidden_states=hidden_states, text_field=text_field, packing=packing, padding_side=padding_side,
        overwrite=overwrite, progress=not as_json)
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    lines = [
        f"wrote {result.path}{' (resumed)' if result.resumed else ''}",
        f"model {result.model_id}: {result.n_experts} experts, top-{result.top_k}, MoE layers {result.layers}",
        f"{result.n_sequences} sequences, {result.n_tokens} tokens, tokenizer {result.tokenizer}",
    ]
    if result.drop_fraction is not None:
        lines.append("capacity drops by layer: " + ", ".join(
            f"{layer}: {frac:.1%}" for layer, frac in zip(result.layers, result.drop_fraction)))
    if result.weights == "random-init":
        lines.append("NOTE: RANDOM-INIT weights, not a trained model: use this data to test pipelines only.")
    _emit(payload, as_json, lines)


def _grid(text: str | None, option: str, kind=float):
    """A grid option: ``a,b,c`` or ``start:stop:num`` (linspace); one value gives a scalar."""
    if text is None:
        return None
    try:
        if ":" in text:
            start, stop, num = text.split(":")
            values = np.linspace(float(start), float(stop), int(num)).tolist()
        else:
            values = [kind(v) if kind is not str else v.strip() for v in text.split(",")]
    except ValueError:
        raise InvalidParameterError(
            f"{option} must be comma-separated values or start:stop:num, got {text!r}") from None
    return values[0] if len(values) == 1 else values


_SIM_OPTIONS = [
    click.option("--model-kind", "kind", type=click.Choice(["potts", "ising", "long-range"]), default=None,
                 help="Chain type [default: potts]."),
    click.option("--n-states", "-q", default=None, help="Number of states q."),
    click.option("--n-sites", "-n", default=None, help="Number of sites."),
    click.option("--beta", default=None, help="Inverse temperature."),
    click.option("--coupling", "-J", default=None, help="J (Potts delta coupling; Ising J; long-range prefactor)."),
    click.option("--field", "-h", "field", default=None,
                 help="Potts: q comma-separated fields; Ising: h."),
    click.option("--alpha", default=None, help="Long-range exponent: J(r) = J r^-alpha."),
    click.option("--max-range", default=None, help="Long-range cutoff distance [default: all pairs]."),
    click.option("--periodic/--open", default=None, help="Boundary [default: open]."),
    click.option("--update", default=None, help="metropolis, metropolis-random, heat-bath, swendsen-wang, wolff."),
    click.option("--n-sweeps", default=None, help="Measured sweeps."),
    click.option("--n-burnin", default=None, help="Discarded sweeps."),
    click.option("--n-chains", default=None, help="Independent chains."),
    click.option("--max-distance", default=None, help="Largest r of the measured overlap / C(r)."),
]


def _sim_options(func):
    for option in reversed(_SIM_OPTIONS):
        func = option(func)
    return func


def _sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic, update, n_sweeps,
              n_burnin, n_chains, max_distance, grid: bool) -> dict:
    """Sweep/simulate parameters from options (only those given)."""
    parse = (lambda text, opt, k=float: _grid(text, opt, k)) if grid else \
        (lambda text, opt, k=float: None if text is None else _one(text, opt, k))
    spec = {
        "model": kind, "n_states": parse(n_states, "--n-states", int), "n_sites": parse(n_sites, "--n-sites", int),
        "beta": parse(beta, "--beta"), "coupling": parse(coupling, "--coupling"),
        "alpha": parse(alpha, "--alpha"), "max_range": parse(max_range, "--max-range", int),
        "periodic": periodic, "update": parse(update, "--update", str), "n_sweeps": parse(n_sweeps, "--n-sweeps", int),
        "n_burnin": parse(n_burnin, "--n-burnin", int), "n_chains": parse(n_chains, "--n-chains", int),
        "max_distance": parse(max_distance, "--max-distance", int),
    }
    if field is not None:
        values = [_one(v, "--field", float) for v in field.split(",")]
        spec["field"] = values[0] if len(values) == 1 else values
    return {k: v for k, v in spec.items() if v is not None}


def _one(text: str, option: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise InvalidParameterError(f"{option} must be one {kind.__name__} value, got {text!r}") from None


@main.command()
@_sim_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write time series, marginals and statistics to this HDF5 file.")
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def simulate(kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic, update, n_sweeps, n_burnin,
             n_chains, max_distance, seed, output, overwrite, as_json):
    """Monte Carlo simulation of one parameter point, compared with the exact solution."""
    from .io import atomic_h5, write_array
    from .mc import simulate as run_simulation
    from .mc.observables import exact_observables
    from .mc.sweep import DEFAULTS, build_model, point_names, validate_point

    point = {**DEFAULTS, **_sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic,
                                     update, n_sweeps, n_burnin, n_chains, max_distance, grid=False)}
    validate_point(point)
    model = build_model(point)
    run = run_simulation(model, point["update"], point["n_sweeps"], n_chains=point["n_chains"],
                         n_burnin=point["n_burnin"], rng=seed, max_distance=point["max_distance"])
    exact = exact_observables(model, point["max_distance"]) or {}
    rows = []
    for name in point_names(model, point["max_distance"]):
        st = run.stats(name)
        ex = exact.get(name)
        rows.append({"observable": name, "mean": st.mean, "error": st.error, "tau": st.tau, "ess": st.ess,
                     "rhat": st.rhat, "exact": ex, "z": None if ex is None else st.z_score(ex)})
    if output is not None:
        with atomic_h5(output, kind="mc", params=point, seed=seed, overwrite=overwrite) as f:
            write_array(f, "energy", run.energy, ("chain", "sweep"))
            write_array(f, "occupation", run.occupation, ("chain", "sweep", "state"))
            if point["max_distance"] > 0:
                write_array(f, "overlap", run.overlap, ("chain", "sweep", "distance"))
                write_array(f, "correlation", run.correlation_function(), ("distance",))
            write_array(f, "marginals", run.marginals(), ("position", "state"))
            write_array(f, "final_spins", run.state.spins, ("chain", "position"))
            f.attrs["summary"] = json.dumps(rows, default=_json_default)
    lines = [f"{model!r}, {point['update']}, {point['n_chains']} chains x {point['n_sweeps']} sweeps",
             f"{'observable':<18}{'MC':>26}{'tau':>8}{'exact':>14}{'z':>7}"]
    for r in rows:
        st = f"{r['mean']:.6f} ± {r['error']:.6f}"
        ex = "" if r["exact"] is None else f"{r['exact']:.6f}"
        z = "" if r["z"] is None else f"{r['z']:+.2f}"
        lines.append(f"{r['observable']:<18}{st:>26}{r['tau']:>8.2f}{ex:>14}{z:>7}")
    if output is not None:
        lines.append(f"wrote {output}")
    _emit({"params": point, "seed": seed, "observables": rows}, as_json, lines)


@main.command()
@click.argument("spec_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_sim_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("sweep.h5"),
              show_default=True)
@click.option("--processes", "-p", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--x", "x_param", default="beta", show_default=True, help="Parameter on the plot's x axis.")
@click.option("--observable", default="energy_per_site", show_default=True, help="Observable to plot.")
@click.option("--overwrite", is_flag=True, help="Replace the output and discard interrupted partial work.")
@click.option("--json", "as_json", is_flag=True)
def sweep(spec_file, kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic, update, n_sweeps,
          n_burnin, n_chains, max_distance, seed, output, processes, x_param, observable, overwrite, as_json):
    """Monte Carlo over a parameter grid (resumable; rerun the same command after an interruption).

    Grid options take comma lists (--update heat-bath,wolff) or start:stop:num (--beta 0.2:2:10);
    SPEC_FILE (TOML or JSON) gives the same parameters, which the options override.
    """
    from .mc.sweep import load_spec, read_sweep, run_sweep
    from .plot import plot_sweep, save_figure

    spec = load_spec(spec_file) if spec_file else {}
    spec.update(_sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic, update,
                          n_sweeps, n_burnin, n_chains, max_distance, grid=True))
    path = run_sweep(spec, output, seed=seed, processes=processes, overwrite=overwrite, progress=not as_json)
    points = read_sweep(path)
    figures = []
    if x_param in points[0]["params"]:
        figures = save_figure(plot_sweep(points, x=x_param, observable=observable), path.with_suffix(""))
    worst = max((abs((p["mean"][o] - p["exact"][o]) / p["error"][o]) for p in points for o in p["mean"]
                 if np.isfinite(p["exact"][o]) and p["error"][o] > 0), default=None)
    payload = {"output": str(path), "n_points": len(points), "figures": [str(f) for f in figures],
               "max_abs_z_vs_exact": worst}
    lines = [f"wrote {path}: {len(points)} points", *(f"figure {f}" for f in figures)]
    if worst is not None:
        lines.append(f"largest |z| of MC against exact values: {worst:.2f}")
    _emit(payload, as_json, lines)


@main.command()
@click.argument("data_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--layers", default=None, help="MoE block indices, e.g. 1,3 [default: all].")
@click.option("--max-distance", type=int, default=64, show_default=True, help="Largest r of C(r).")
@click.option("--block-sizes", default="8,16,32,64,128,256", show_default=True, help="Block sizes for xi(b).")
@click.option("--dropped", type=click.Choice(["exclude", "state", "router"]), default="exclude", show_default=True,
              help="Switch capacity drops: masked out, an extra state, or the router's choice.")
@click.option("--bootstrap", "n_bootstrap", type=int, default=200, show_default=True)
@click.option("--no-probe", is_flag=True, help="Skip the positional probes (scikit-learn).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="[default: DATA_FILE with suffix .stats.h5]")
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def measure(data_file, layers, max_distance, block_sizes, dropped, n_bootstrap, no_probe, seed, output,
            overwrite, as_json):
    """Empirical spatial statistics of an expert-sequence file, with error bars and figures."""
    from .data import load_experts
    from .io import file_sha256
    from .measure import measure as run_measure
    from .measure import write_measurements
    from .report import measurement_figures, measurement_summary

    output = output or data_file.with_name(data_file.name.removesuffix(".h5") + ".stats.h5")
    if output.exists() and not overwrite:
        from .errors import OutputExistsError

        raise OutputExistsError(f"{output} exists: pass --overwrite to replace it")
    data = load_experts(data_file, layers=_int_list(layers, "--layers"))
    result = run_measure(data, max_distance=max_distance, block_sizes=_int_list(block_sizes, "--block-sizes") or (),
                         dropped=dropped, n_bootstrap=n_bootstrap, probe=not no_probe, seed=seed,
                         progress=not as_json)
    write_measurements(result, output, overwrite=overwrite, input_path=data_file, input_sha256=file_sha256(data_file))
    figures = measurement_figures(result, output.with_name(output.name.removesuffix(".h5")))
    payload, lines = measurement_summary(result, data)
    payload.update({"output": str(output), "figures": [str(f) for f in figures]})
    lines += [f"wrote {output}", *(f"figure {f}" for f in figures)]
    _emit(payload, as_json, lines)


@main.command()
@click.option("--model", "-m", "model", required=True,
              help="Alias (switch-8, ...: the matching file in data/) or an expert-sequence HDF5 file.")
@click.option("--layers", default=None, help="MoE block indices, e.g. 1,3 [default: all].")
@click.option("--variants", default=None,
              help="Comma-separated variants [default: independent,potts,full,potts-homogeneous]; also "
                   "potts-bond, full-bond, full-homogeneous, pseudo-likelihood, mean-field, range<R>.")
@click.option("--max-range", type=int, default=1, show_default=True,
              help="Also fit couplings up to this distance (variants range2 .. range<R>; 1: none).")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Held-out share of sequences.")
@click.option("--max-distance", type=int, default=32, show_default=True, help="Largest r compared.")
@click.option("--bootstrap", "n_bootstrap", type=int, default=6, show_default=True,
              help="Bootstrap refits for the fitted xi's error.")
@click.option("--dropped", type=click.Choice(["exclude", "state", "router"]), default="exclude", show_default=True)
@click.option("--processes", "-p", type=int, default=1, show_default=True, help="Layers in parallel processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="[default: fits/<model>]")
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def fit(model, layers, variants, max_range, test_fraction, max_distance, n_bootstrap, dropped, processes, seed,
        output_dir, overwrite, as_json):
    """Fit Potts chains to expert sequences and compare fitted with empirical correlations."""
    from .data import load_experts
    from .fit.compare import fit_expert_data, write_fit_report
    from .io import file_sha256, write_json
    from .models import MODELS, data_dir, find_data_file
    from .report import fit_figures, fit_summary

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
    out_dir = output_dir or Path("fits") / name
    fit_file, summary_file = out_dir / "fit.h5", out_dir / "summary.json"
    for target in (fit_file, summary_file):
        if target.exists() and not overwrite:
            from .errors import OutputExistsError

            raise OutputExistsError(f"{target} exists: pass --overwrite to replace it")
    data = load_experts(path, layers=_int_list(layers, "--layers"))
    variant_list = [v.strip() for v in variants.split(",")] if variants else None
    report = fit_expert_data(data, variants=variant_list, max_range=max_range, test_fraction=test_fraction,
                             max_distance=max_distance, n_bootstrap=n_bootstrap, dropped=dropped, seed=seed,
                             processes=processes, progress=not as_json)
    sha = file_sha256(path)
    write_fit_report(report, fit_file, overwrite=overwrite, input_sha256=sha)
    figures = fit_figures(report, out_dir)
    payload, lines = fit_summary(report)
    payload.update({"input_sha256": sha, "fit_file": str(fit_file), "figures": [str(p) for p in figures]})
    write_json(summary_file, payload, kind="fit-summary", params=report.params, seed=seed, overwrite=overwrite)
    lines += [f"wrote {fit_file}", f"wrote {summary_file}", f"figures in {out_dir}/ (PNG and PDF)"]
    _emit(payload, as_json, lines)


if __name__ == "__main__":  # pragma: no cover
    main()


from .cli_train import train_command as _train_command  # noqa: E402  (own file: the CLI is being split)

main.add_command(_train_command)
