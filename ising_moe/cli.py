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


def _parse_fields(text: str | None, n_states: int, n_sites: int):
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
        h = 0.0 if field is None else _scalar(field, "--field")
        model = PottsChain.ising(n_sites, coupling, h, beta=beta, periodic=periodic)
    else:
        model = PottsChain.potts(n_sites, n_states, coupling, _parse_fields(field, n_states, n_sites),
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


def _scalar(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidParameterError(f"{option} must be a number, got {text!r}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
