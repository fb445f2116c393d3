"""Commands on Potts/Ising chains: ``exact``, ``simulate``, ``sweep``."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import click
import numpy as np

from ..errors import InvalidParameterError

log = logging.getLogger(__name__)

from ._main import (
    SEED,
    _emit,
    _executor_spec,
    _fmt,
    _grid,
    _json_default,
    _one,
    _parse_fields,
    executor_options,
    main,
)


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
    from ..chain import PottsChain
    from ..exact import solve
    from ..io import atomic_h5, write_array
    from ..outputs import output_unit

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
        with output_unit(output, overwrite=overwrite) as unit, \
                atomic_h5(unit.path(output), kind="exact", params=params, overwrite=True) as f:
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



@main.command()
@_sim_options
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write time series, marginals and statistics to this HDF5 file.")
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def simulate(kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic, update, n_sweeps, n_burnin,
             n_chains, max_distance, seed, output, overwrite, as_json):
    """Monte Carlo simulation of one parameter point, compared with the exact solution."""
    from ..mc import simulate as run_simulation
    from ..mc.observables import exact_observables
    from ..mc.sweep import DEFAULTS, build_model, point_names, validate_point
    from ..outputs import output_unit

    point = {**DEFAULTS, **_sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic,
                                     update, n_sweeps, n_burnin, n_chains, max_distance, grid=False)}
    validate_point(point)
    model = build_model(point)
    unit_or_none = contextlib.nullcontext() if output is None else output_unit(output, overwrite=overwrite)
    with unit_or_none as unit:  # locked and checked before the run
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
            _write_simulation(unit.path(output), point, seed, run, rows)
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


def _write_simulation(path, point, seed, run, rows) -> None:
    from ..io import atomic_h5, write_array

    with atomic_h5(path, kind="mc", params=point, seed=seed, overwrite=True) as f:
        write_array(f, "energy", run.energy, ("chain", "sweep"))
        write_array(f, "occupation", run.occupation, ("chain", "sweep", "state"))
        if point["max_distance"] > 0:
            write_array(f, "overlap", run.overlap, ("chain", "sweep", "distance"))
            write_array(f, "correlation", run.correlation_function(), ("distance",))
        write_array(f, "marginals", run.marginals(), ("position", "state"))
        write_array(f, "final_spins", run.state.spins, ("chain", "position"))
        f.attrs["summary"] = json.dumps(rows, default=_json_default)


@main.command()
@click.argument("spec_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_sim_options
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("sweep.h5"),
              show_default=True)
@executor_options
@click.option("--x", "x_param", default="beta", show_default=True, help="Parameter on the plot's x axis.")
@click.option("--observable", default="energy_per_site", show_default=True, help="Observable to plot.")
@click.option("--overwrite", is_flag=True, help="Replace the output and discard interrupted partial work.")
@click.option("--json", "as_json", is_flag=True)
def sweep(spec_file, kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic, update, n_sweeps,
          n_burnin, n_chains, max_distance, seed, output, executor, processes, x_param, observable, overwrite,
          as_json):
    """Monte Carlo over a parameter grid (resumable; rerun the same command after an interruption).

    Grid options take comma lists (--update heat-bath,wolff) or start:stop:num (--beta 0.2:2:10);
    SPEC_FILE (TOML or JSON) gives the same parameters, which the options override.
    """
    from ..executors import open_executor
    from ..mc.sweep import expand_grid, load_spec, read_sweep, run_sweep, validate_point
    from ..outputs import output_unit
    from ..plot import plot_sweep, save_figure

    spec = load_spec(spec_file) if spec_file else {}
    spec.update(_sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, max_range, periodic, update,
                          n_sweeps, n_burnin, n_chains, max_distance, grid=True))
    executor = _executor_spec(executor, processes)
    for point in expand_grid(spec):  # every check before any state is created
        validate_point(point)
    stem = output.with_suffix("")
    figures = []
    with output_unit(output, others=[Path(f"{stem}.png"), Path(f"{stem}.pdf")], overwrite=overwrite) as unit, \
            open_executor(executor) as pool:
        run_sweep(spec, output, seed=seed, overwrite=overwrite, progress=not as_json, executor=pool, unit=unit)
        points = read_sweep(unit.path(output))
        if x_param in points[0]["params"]:
            staged = save_figure(plot_sweep(points, x=x_param, observable=observable), unit.path(output).with_suffix(""))
            figures = [output.parent / p.name for p in staged]
    path = output
    worst = max((abs((p["mean"][o] - p["exact"][o]) / p["error"][o]) for p in points for o in p["mean"]
                 if np.isfinite(p["exact"][o]) and p["error"][o] > 0), default=None)
    payload = {"output": str(path), "n_points": len(points), "figures": [str(f) for f in figures],
               "max_abs_z_vs_exact": worst}
    lines = [f"wrote {path}: {len(points)} points", *(f"figure {f}" for f in figures)]
    if worst is not None:
        lines.append(f"largest |z| of MC against exact values: {worst:.2f}")
    _emit(payload, as_json, lines)


