"""Commands on Potts/Ising chains: ``exact``, ``simulate``, ``sweep``."""

from __future__ import annotations

import contextlib
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
    _one,
    _parse_fields,
    executor_options,
    main,
)


class _Count(click.ParamType):
    """A non-negative integer that may be written as ``2e9`` (sizes are refused later, with an
    estimate of their memory and time, rather than as badly formed numbers)."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        if not number.is_integer():
            self.fail(f"{value!r} is not an integer", param, ctx)
        return int(number)


COUNT = _Count()
#: ``simulate`` without --n-chains runs max(4, q) chains (every ordered state seeded) up to this many
MAX_DEFAULT_CHAINS = 16
#: a sweep grid with more points runs only with --yes
MAX_POINTS_UNCONFIRMED = 10_000


def _integer(text: str) -> int:
    """An integer written as ``2000`` or ``2e3`` (ValueError otherwise)."""
    number = float(text)
    if not number.is_integer():
        raise ValueError(text)
    return int(number)


@main.command()
@click.option("--n-states", "-q", type=COUNT, default=2, show_default=True, help="Number of states q.")
@click.option("--n-sites", "-n", type=COUNT, default=512, show_default=True)
@click.option("--beta", type=float, default=1.0, show_default=True, help="Inverse temperature.")
@click.option("--coupling", "-J", type=float, default=1.0, show_default=True,
              help="Potts coupling J (J delta_ab); with --ising the Ising J.")
@click.option("--field", "field", type=str, default=None,
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
    from .._util import as_int
    from ..chain import PottsChain
    from ..exact import solve
    from ..io import atomic_h5, write_array
    from ..mc.resources import check_cost, exact_cost
    from ..outputs import output_unit

    as_int(n_states, "n_states", minimum=2)
    as_int(n_sites, "n_sites", minimum=2)
    check_cost(*exact_cost(n_sites, 2 if ising else n_states, periodic), "this exact solution")
    if ising:
        if field is not None and "," in field:
            raise InvalidParameterError(f"Ising takes one field value h, got --field {field}")
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



#: the samplers' update names (ising_moe.mc.UPDATES; not imported here to keep `--help` fast)
_UPDATE_NAMES = ("metropolis", "metropolis-random", "heat-bath", "swendsen-wang", "wolff")


def _sim_option_list(grid: bool) -> list:
    """Options of ``simulate`` (typed: one value each) and ``sweep`` (text: comma lists or
    start:stop:num grids)."""
    def typed(kind):
        return str if grid else kind

    note = " Comma list or start:stop:num for a grid." if grid else ""
    return [
        click.option("--model-kind", "kind", type=click.Choice(["potts", "ising", "long-range", "power-law"]), default=None,
                     help="Chain type [default: potts]."),
        click.option("--n-states", "-q", type=typed(COUNT), default=None, help="Number of states q." + note),
        click.option("--n-sites", "-n", type=typed(COUNT), default=None, help="Number of sites." + note),
        click.option("--beta", type=typed(float), default=None, help="Inverse temperature." + note),
        click.option("--coupling", "-J", type=typed(float), default=None,
                     help="J (Potts delta coupling; Ising J; long-range prefactor)." + note),
        click.option("--field", "field", default=None, help="Potts: q comma-separated fields; Ising: one h."),
        click.option("--alpha", type=typed(float), default=None, help="Long-range exponent: J(r) = J r^-alpha." + note),
        click.option("--sigma", type=typed(float), default=None,
                     help="Power-law chain: Potts J(r) = J / r^(1 + sigma) at every distance, no cutoff "
                          "(rings sum the images) [default: 1]." + note),
        click.option("--max-range", type=typed(COUNT), default=None,
                     help="Long-range cutoff distance >= 1 [default: all pairs]." + note),
        click.option("--periodic/--open", default=None, help="Boundary [default: open]."),
        click.option("--update", type=str if grid else click.Choice(_UPDATE_NAMES), default=None,
                     help=("Update(s): " if grid else "Update: ") + ", ".join(_UPDATE_NAMES) + " [default: heat-bath]."),
        click.option("--n-sweeps", type=typed(COUNT), default=None, help="Measured sweeps." + note),
        click.option("--n-burnin", type=typed(COUNT), default=None, help="Discarded sweeps." + note),
        click.option("--n-chains", type=typed(COUNT), default=None, help="Independent chains." + note),
        click.option("--max-distance", type=typed(COUNT), default=None,
                     help="Largest r of the measured overlap / C(r)." + note),
    ]


def _sim_options(grid: bool):
    def decorate(func):
        for option in reversed(_sim_option_list(grid)):
            func = option(func)
        return func
    return decorate


def _sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, sigma, max_range, periodic, update, n_sweeps,
              n_burnin, n_chains, max_distance, grid: bool) -> dict:
    """Sweep/simulate parameters from options (only those given)."""
    parse = (lambda text, opt, k=float: _grid(text, opt, _integer if k is int else k)) if grid else \
        (lambda value, opt, k=float: value)
    spec = {
        "model": kind, "n_states": parse(n_states, "--n-states", int), "n_sites": parse(n_sites, "--n-sites", int),
        "beta": parse(beta, "--beta"), "coupling": parse(coupling, "--coupling"),
        "alpha": parse(alpha, "--alpha"), "sigma": parse(sigma, "--sigma"), "max_range": parse(max_range, "--max-range", int),
        "periodic": periodic, "update": parse(update, "--update", str), "n_sweeps": parse(n_sweeps, "--n-sweeps", int),
        "n_burnin": parse(n_burnin, "--n-burnin", int), "n_chains": parse(n_chains, "--n-chains", int),
        "max_distance": parse(max_distance, "--max-distance", int),
    }
    if field is not None:
        values = [_one(v, "--field", float) for v in field.split(",")]
        spec["field"] = values[0] if len(values) == 1 else values
    return {k: v for k, v in spec.items() if v is not None}


@main.command()
@_sim_options(grid=False)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write time series, marginals and statistics to this HDF5 file.")
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def simulate(kind, n_states, n_sites, beta, coupling, field, alpha, sigma, max_range, periodic, update, n_sweeps,
             n_burnin, n_chains, max_distance, seed, output, overwrite, as_json):
    """Monte Carlo simulation of one parameter point, compared with the exact solution.

    The table reports, per observable, the mean with its autocorrelation-corrected error, tau (in
    sweeps), n/tau (sweeps per chain over tau), split R-hat over chains started in different
    ordered states, and the exact value with z = (MC - exact) / error. Without --n-chains every
    ordered state is seeded (max(4, q) chains, at most 16). An observable is flagged (!, with the
    reason) when its error bar is not to be trusted: n/tau < 50 (tau with its estimation error),
    R-hat > 1.01, chains disagreeing beyond their errors, a mean fed by fewer than 25 events near
    its bound, or no variation at all (then the error is not estimable: an event never seen is
    printed as an upper limit by the rule of three, and z is n/a).
    """
    from ..mc import simulate as run_simulation
    from ..mc.observables import exact_observables
    from ..mc.resources import check_cost, simulation_cost
    from ..mc.samplers import faster_update
    from ..mc.sweep import DEFAULTS, build_model, point_names, validate_point
    from ..outputs import output_unit

    point = {**DEFAULTS, **_sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, sigma, max_range,
                                     periodic, update, n_sweeps, n_burnin, n_chains, max_distance, grid=False)}
    if n_chains is None and point["model"] != "ising":  # seed every ordered state where that is cheap
        point["n_chains"] = min(max(point["n_chains"], int(point["n_states"])), MAX_DEFAULT_CHAINS)
    check_cost(*simulation_cost(point), "this simulation")  # before any model allocates its tables
    validate_point(point)
    model = build_model(point)
    unit_or_none = contextlib.nullcontext() if output is None else output_unit(output, overwrite=overwrite)
    with unit_or_none as unit:  # locked and checked before the run
        run = run_simulation(model, point["update"], point["n_sweeps"], n_chains=point["n_chains"],
                             n_burnin=point["n_burnin"], rng=seed, max_distance=point["max_distance"],
                             count_sites=output is not None)  # marginals are written, not printed
        exact = exact_observables(model, point["max_distance"]) or {}
        rows = []
        for name in point_names(model, point["max_distance"]):
            st = run.stats(name)
            ex = exact.get(name)
            z = None if ex is None else st.z_score(ex)
            rows.append({"observable": name, "mean": st.mean, "error": st.error, "limit": st.limit,
                         "value": st.value_text(6), "tau": st.tau, "n_over_tau": st.n_over_tau, "ess": st.ess,
                         "rhat": st.rhat, "chains_p": st.chains_p, "exact": ex,
                         "z": None if z is None or np.isnan(z) else z, "flags": st.problems()})
        if output is not None:
            _write_simulation(unit.path(output), point, seed, run, rows)
    flagged = [r["observable"] for r in rows if r["flags"]]
    advice = None
    if flagged:
        faster = faster_update(model, point["update"])
        advice = (f"{len(flagged)} observable(s) flagged: their errors are unreliable; "
                  + (f"{faster} mixes faster than {point['update']} on this chain (use --update), or run longer"
                     if faster else "run longer (--n-sweeps)"))
        if all(r["flags"][0].startswith("no variation") for r in rows if r["flags"]):
            advice = (f"{len(flagged)} observable(s) never varied: no error is estimable; a limit by the rule "
                      "of three is printed where the observable has a bound")
    lines = [(f"{model!r}, {point['update']}, {point['n_chains']} chains x {point['n_sweeps']} sweeps "
              f"({_start_text(model, point['n_chains'])})"),
             f"{'observable':<18}{'MC':>26}{'tau':>9}{'n/tau':>9}{'R-hat':>8}{'exact':>12}{'z':>8}"]
    for r in rows:
        ex = "" if r["exact"] is None else f"{r['exact']:.6f}"
        z = "" if r["exact"] is None else _z_text(r["z"])
        rhat = "n/a" if not np.isfinite(r["rhat"]) else f"{r['rhat']:.3f}"
        tau = "n/a" if not np.isfinite(r["tau"]) else f"{r['tau']:.3g}"
        n_tau = "n/a" if not np.isfinite(r["n_over_tau"]) else f"{r['n_over_tau']:.3g}"
        flag = "  !" if r["flags"] else ""
        lines.append(f"{r['observable']:<18}{r['value']:>26}{tau:>9}{n_tau:>9}{rhat:>8}{ex:>12}{z:>8}{flag}")
    for r in rows:
        if r["flags"]:
            lines.append(f"! {r['observable']}: {'; '.join(r['flags'])}")
    if flagged:
        lines.append(f"! {advice}")
    if output is not None:
        lines.append(f"wrote {output}")
    _emit({"params": point, "seed": seed, "observables": rows, "flagged": flagged, "advice": advice},
               as_json, lines)


def _z_text(z) -> str:
    """``+1.23``, ``-inf``, or ``n/a`` when the run carries no error (no variation)."""
    if z is None or np.isnan(z):
        return "n/a"
    return f"{z:+.2f}" if np.isfinite(z) else ("-inf" if z < 0 else "+inf")


def _start_text(model, n_chains: int) -> str:
    q = model.n_states
    if n_chains >= q:
        extra = n_chains - q
        return f"chains start in all {q} ordered states" + (f" and {extra} at random" if extra else "")
    return f"chains start in the {n_chains} of {q} ordered states of lowest energy"


def _write_simulation(path, point, seed, run, rows) -> None:
    from ..io import atomic_h5, strict_json, write_array

    with atomic_h5(path, kind="mc", params=point, seed=seed, overwrite=True) as f:
        write_array(f, "energy", run.energy, ("chain", "sweep"))
        write_array(f, "occupation", run.occupation, ("chain", "sweep", "state"))
        if point["max_distance"] > 0:
            write_array(f, "overlap", run.overlap, ("chain", "sweep", "distance"))
            write_array(f, "correlation", run.correlation_function(), ("distance",))
        write_array(f, "marginals", run.marginals(), ("position", "state"))
        write_array(f, "final_spins", run.state.spins, ("chain", "position"))
        f.attrs["summary"] = strict_json(rows)


@main.command()
@click.argument("spec_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_sim_options(grid=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("sweep.h5"),
              show_default=True)
@executor_options
@click.option("--x", "x_param", default="beta", show_default=True, help="Parameter on the plot's x axis.")
@click.option("--observable", default="energy_per_site", show_default=True, help="Observable to plot.")
@click.option("--overwrite", is_flag=True, help="Replace the output and discard interrupted partial work.")
@click.option("--yes", "confirmed", is_flag=True,
              help=f"Run a grid of more than {MAX_POINTS_UNCONFIRMED} points (refused without it).")
@click.option("--json", "as_json", is_flag=True)
def sweep(spec_file, kind, n_states, n_sites, beta, coupling, field, alpha, sigma, max_range, periodic, update,
          n_sweeps,
          n_burnin, n_chains, max_distance, seed, output, executor, processes, x_param, observable, overwrite,
          confirmed,
          as_json):
    """Monte Carlo over a parameter grid (resumable; rerun the same command after an interruption).

    Grid options take comma lists (--update heat-bath,wolff) or start:stop:num (--beta 0.2:2:10);
    SPEC_FILE (TOML or JSON) gives the same parameters, which the options override.
    """
    from ..executors import open_executor
    from ..mc.sweep import expand_grid, load_spec, read_sweep, run_sweep, validate_point
    from ..outputs import output_unit
    from ..plot import plot_sweep, save_figure
    from ..stats import MAX_RHAT, MIN_N_OVER_TAU

    spec = load_spec(spec_file) if spec_file else {}
    spec.update(_sim_spec(kind, n_states, n_sites, beta, coupling, field, alpha, sigma, max_range, periodic,
                          update, n_sweeps, n_burnin, n_chains, max_distance, grid=True))
    _check_sweep(spec, x_param, observable, confirmed)
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
    unreliable = [k for k, p in enumerate(points) if any(
        p["flagged"][o] if "flagged" in p else
        (p["rhat"][o] > MAX_RHAT or p["params"]["n_sweeps"] / p["tau"][o] < MIN_N_OVER_TAU) for o in p["mean"])]
    payload = {"output": str(path), "n_points": len(points), "figures": [str(f) for f in figures],
               "max_abs_z_vs_exact": worst, "unreliable_points": unreliable}
    lines = [f"wrote {path}: {len(points)} points", *(f"figure {f}" for f in figures)]
    if worst is not None:
        lines.append(f"largest |z| of MC against exact values: {worst:.2f}")
    if unreliable:
        lines.append(f"! {len(unreliable)} point(s) with flagged observables "
                     f"(errors unreliable: see ising_moe.stats.Stats.problems): {unreliable[:20]}{' ...' if len(unreliable) > 20 else ''}")
    _emit(payload, as_json, lines)


def _check_sweep(spec: dict, x_param: str, observable: str, confirmed: bool) -> None:
    """Refuse unknown plot names, grids too large to run unasked, and points too large to run."""
    from .._util import as_int
    from ..mc.resources import check_cost, describe_seconds, simulation_cost
    from ..mc.sweep import DEFAULTS, grid_size, largest_point, observable_names

    if x_param not in DEFAULTS:
        raise InvalidParameterError(f"--x {x_param!r} is not a sweep parameter; choose one of {', '.join(DEFAULTS)}")
    n_points = grid_size(spec)
    try:
        memory, seconds = simulation_cost(largest_point(spec))
    except (TypeError, ValueError):  # a malformed value: the point validation names it
        memory, seconds = 0.0, 0.0
    check_cost(memory, seconds, "the largest point of this sweep")
    if n_points > MAX_POINTS_UNCONFIRMED and not confirmed:
        raise InvalidParameterError(
            f"the sweep grid has {n_points} points (up to about {describe_seconds(n_points * seconds)} in all); "
            "pass --yes to run it")
    merged = {**DEFAULTS, **spec}
    qs = merged["n_states"] if isinstance(merged["n_states"], list) else [merged["n_states"]]
    rs = merged["max_distance"] if isinstance(merged["max_distance"], list) else [merged["max_distance"]]
    valid = None
    for q in qs:
        for r in rs:
            names = observable_names(as_int(q, "n_states", minimum=2), as_int(r, "max_distance", minimum=0))
            valid = names if valid is None else [n for n in valid if n in names]
    if observable not in valid:
        raise InvalidParameterError(
            f"--observable {observable!r} is not measured at every point; choose one of {', '.join(valid)}")


