"""Parameter sweeps of Monte Carlo runs: grids of points, resumable, one HDF5 file.

A sweep is a list of points (dicts of the parameters below) built from a grid; each point runs
:func:`~ising_moe.mc.simulate` with its own seed, ``SeedSequence(seed, spawn_key=(index,))``, so
its result does not depend on which other points ran, in which order, or in which process.
Finished points are staged atomically (:class:`~ising_moe.io.ChunkStore`): a sweep killed at any
moment and restarted with the same command continues and ends with the same file as an
uninterrupted one (a group per point, ``finished`` written last in each).

Point parameters (defaults in :data:`DEFAULTS`): ``model`` ("potts", "ising", "long-range",
"power-law"), ``n_states``, ``n_sites``, ``beta``, ``coupling``, ``field`` (potts: one value per
state or ``None``; ising: ``h``), ``alpha`` and ``max_range`` (long-range power law, cut off),
``sigma`` (power-law chain: Potts couplings ``J / r^(1 + sigma)`` at every distance, no cutoff),
``periodic``, ``update``, ``n_sweeps``, ``n_burnin``, ``n_chains``, ``max_distance``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from .._util import as_int
from ..chain import LongRangeChain, PottsChain
from ..errors import DataFormatError, InvalidParameterError
from ..io import ChunkStore, atomic_h5, write_array
from ..power_law import PowerLawChain
from .observables import exact_observables
from .samplers import UPDATES, simulate

log = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "expand_grid", "grid_size", "largest_point", "observable_names", "load_spec", "build_model", "validate_point", "run_point", "run_sweep",
           "read_sweep"]

DEFAULTS: dict[str, Any] = {
    "model": "potts", "n_states": 2, "n_sites": 64, "beta": 1.0, "coupling": 1.0, "field": None,
    "alpha": 1.5, "max_range": None, "periodic": False, "update": "heat-bath", "n_sweeps": 2000,
    "n_burnin": 200, "n_chains": 4, "max_distance": 8, "sigma": 1.0,
}
_MODELS = ("potts", "ising", "long-range", "power-law")


def expand_grid(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product over the list-valued entries of ``spec`` (others are fixed).

    A ``field`` list of numbers is one value (the fields of the states); a list of lists is a grid.
    Points are ordered with the last key varying fastest.
    """
    axes = _axes(spec)
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def _axes(spec: dict[str, Any]) -> dict[str, list]:
    unknown = set(spec) - set(DEFAULTS)
    if unknown:
        raise InvalidParameterError(f"unknown sweep parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    axes = {}
    for key, value in {**DEFAULTS, **spec}.items():
        is_grid = isinstance(value, (list, tuple)) and not (
            key == "field" and all(isinstance(v, (int, float)) for v in value))
        axes[key] = list(value) if is_grid else [value]
        if is_grid and not value:
            raise InvalidParameterError(f"sweep parameter {key!r} has an empty list")
    return axes


def grid_size(spec: dict[str, Any]) -> int:
    """Number of points of a sweep spec, without building them."""
    return int(np.prod([len(v) for v in _axes(spec).values()], dtype=object))


def largest_point(spec: dict[str, Any]) -> dict[str, Any]:
    """A point with the largest value of every numeric axis (for resource estimates)."""
    out = {}
    for key, values in _axes(spec).items():
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out[key] = max(numeric) if numeric and len(numeric) == len(values) else values[0]
    return out


def observable_names(n_states: int, max_distance: int) -> list[str]:
    """Observables a point reports (and a sweep can plot)."""
    names = ["energy_per_site"] + [f"occupation:{a}" for a in range(min(n_states, 16))]
    if n_states == 2:
        names.append("magnetisation")
    return names + [f"overlap:{r}" for r in range(1, max_distance + 1)]


def load_spec(path) -> dict[str, Any]:
    """Sweep parameters from a TOML or JSON file (a flat table; lists are grid axes)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidParameterError(f"cannot read sweep file {path}: {exc.strerror}") from None
    try:
        spec = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataFormatError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({exc})") from None
    if not isinstance(spec, dict):
        raise DataFormatError(f"{path}: expected a table of parameters")
    return spec.get("sweep", spec)


def build_model(point: dict[str, Any]):
    """The chain of one sweep point."""
    kind = point["model"]
    if kind not in _MODELS:
        raise InvalidParameterError(f"model must be one of {_MODELS}, got {kind!r}")
    n, q = point["n_sites"], point["n_states"]
    field = point["field"]
    if kind == "ising":
        if isinstance(field, (list, tuple)):
            raise InvalidParameterError(f"Ising takes one field value h, got {len(field)} values ({field})")
        return PottsChain.ising(n, point["coupling"], 0.0 if field is None else field, beta=point["beta"],
                                periodic=point["periodic"])
    if kind == "potts":
        return PottsChain.potts(n, q, point["coupling"], field, beta=point["beta"], periodic=point["periodic"])
    if kind == "power-law":
        return PowerLawChain.potts(n, q, point["coupling"], point["sigma"], field, beta=point["beta"],
                                   periodic=point["periodic"])
    max_range = point["max_range"]
    if max_range is not None:
        limit = (n - 1) // 2 if point["periodic"] else n - 1
        as_int(max_range, "max_range (--max-range, the long-range cutoff)", 1, limit)
    return LongRangeChain.power_law(n, q, point["coupling"], point["alpha"], max_range, field,
                                    beta=point["beta"], periodic=point["periodic"])


def validate_point(point: dict[str, Any]) -> None:
    """Raise :class:`InvalidParameterError` for an invalid sweep point."""
    build_model(point)
    if point["update"] not in UPDATES:
        raise InvalidParameterError(f"unknown update {point['update']!r}; choose from {', '.join(UPDATES)}")
    for key in ("n_sweeps", "n_chains"):
        as_int(point[key], key, minimum=1)
    as_int(point["n_burnin"], "n_burnin", minimum=0)
    as_int(point["max_distance"], "max_distance", 0, point["n_sites"] - 1)


def point_names(model, max_distance: int) -> list[str]:
    return observable_names(model.n_states, max_distance)


def run_point(point: dict[str, Any], seed: int, index: int) -> dict[str, np.ndarray]:
    """Simulate one point; returns the arrays stored for it."""
    model = build_model(point)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    run = simulate(model, point["update"], point["n_sweeps"], n_chains=point["n_chains"],
                   n_burnin=point["n_burnin"], rng=rng, max_distance=point["max_distance"])
    names = point_names(model, point["max_distance"])
    exact = exact_observables(model, point["max_distance"]) or {}
    stats = [run.stats(name) for name in names]
    out = {
        "observable": np.array(names, dtype="S"),
        "mean": np.array([s.mean for s in stats]),
        "error": np.array([s.error for s in stats]),
        "tau": np.array([s.tau for s in stats]),
        "ess": np.array([s.ess for s in stats]),
        "rhat": np.array([s.rhat for s in stats]),
        "flagged": np.array([bool(s.problems()) for s in stats]),
        "exact": np.array([exact.get(name, np.nan) for name in names]),
        "energy": run.energy,
        "marginals": run.marginals(),
        "acceptance": run.acceptance,
    }
    if point["max_distance"] > 0:
        out["correlation"] = run.correlation_function()
    return out


def run_sweep(spec: dict[str, Any], output, *, seed: int = 0, processes: int = 1, overwrite: bool = False,
              progress: bool = True, executor=None, unit=None) -> Path:
    """Run a sweep and write it to ``output`` (HDF5, a group ``point_XXXX`` per point).

    Parameters
    ----------
    spec : dict
        Parameters; list values are grid axes (see :func:`expand_grid`).
    output : path-like
    seed : int
        Master seed; point ``k`` uses ``SeedSequence(seed, spawn_key=(k,))``.
    processes : int, default 1
        Local worker processes when no ``executor`` is given (shorthand for
        ``executor=ising_moe.executors.process_executor(processes)``).
    overwrite : bool
        Replace an existing output and discard an interrupted sweep's partial work.
    executor : concurrent.futures.Executor, optional
        Where the points run (see :mod:`ising_moe.executors`); the file is bit-identical for any
        executor. Finished points are staged as they arrive, so a sweep interrupted under any
        executor resumes.
    unit : ising_moe.outputs.OutputUnit, optional
        Write the file into this unit of outputs (the CLI adds the sweep's figures to it);
        by default the sweep has its own.
    """
    points = expand_grid(spec)
    for point in points:
        validate_point(point)
    seed = as_int(seed, "seed", minimum=0)
    processes = as_int(processes, "processes", minimum=1)
    output = Path(output)
    params = {"spec": spec, "points": points, "seed": seed}
    with contextlib.ExitStack() as stack:
        if unit is None:
            from ..outputs import output_unit

            unit = stack.enter_context(output_unit(output, overwrite=overwrite))
        store = ChunkStore(output, "sweep", params).open(overwrite=overwrite)
        stack.callback(store.close)
        todo = [k for k in range(len(points)) if k not in store.done()]
        if executor is None and processes > 1 and len(todo) > 1:
            from ..executors import process_executor

            executor = stack.enter_context(process_executor(min(processes, len(todo))))
        try:
            _run_points(points, todo, seed, store, executor, progress)
        except BaseException:
            if not store.done():
                store.remove()  # nothing finished to resume: leave no state behind
            raise
        _write_sweep(unit.path(output), points, params, seed, store)
        unit.discard_after_commit(store.directory)
    return output


def _run_points(points, todo, seed, store, executor, progress) -> None:
    """Run the points ``todo`` on ``executor``, staging each result as it arrives."""
    from tqdm.auto import tqdm

    from ..executors import run_tasks

    with tqdm(total=len(points), initial=len(points) - len(todo), unit="point", desc="sweep",
              disable=not progress or None) as bar:
        for i, data in run_tasks(executor, run_point, [(points[k], seed, k) for k in todo]):
            store.write(todo[i], data)
            bar.update()


def _write_sweep(path, points, params, seed, store) -> None:
    with atomic_h5(path, kind="sweep", params=params, seed=seed, overwrite=True, created=store.created) as f:
        f.attrs["n_points"] = len(points)
        for k, point in enumerate(points):
            data = store.read(k)
            g = f.create_group(f"point_{k:04d}")
            g.attrs["params"] = json.dumps(point, sort_keys=True)
            g.attrs["spawn_key"] = k
            g.attrs["finished"] = False
            names = [n.decode() for n in data["observable"]]
            coords = {"observable": np.array(names, dtype="S")}
            for key in ("mean", "error", "tau", "ess", "rhat", "exact"):
                write_array(g, key, data[key], ("observable",), coords)
            if "flagged" in data:  # ising_moe.stats.Stats.problems(): the error is not to be trusted
                write_array(g, "flagged", data["flagged"].astype(bool), ("observable",), coords)
            write_array(g, "energy", data["energy"], ("chain", "sweep"))
            write_array(g, "marginals", data["marginals"], ("position", "state"))
            write_array(g, "acceptance", data["acceptance"], ("chain",))
            if "correlation" in data:
                write_array(g, "correlation", data["correlation"], ("distance",))
            g.attrs["finished"] = True


def read_sweep(path) -> list[dict[str, Any]]:
    """Points of a sweep file: ``params`` and per observable ``mean``, ``error``, ``exact``, ... ."""
    from ..io import open_h5, read_array

    out = []
    with open_h5(path, kind="sweep") as f:
        groups = sorted(k for k in f if k.startswith("point_"))
        if not groups:
            raise DataFormatError(f"{path} holds no sweep points")
        for name in groups:
            g = f[name]
            if not bool(g.attrs.get("finished", False)):
                raise DataFormatError(f"{path}:{name} is unfinished")
            try:
                params = json.loads(g.attrs["params"])
            except (KeyError, TypeError, json.JSONDecodeError):
                raise DataFormatError(f"{path}:{name} has malformed params") from None
            names = [n.decode() for n in read_array(g, "observable", kinds="S")]
            entry = {"params": params, "observables": names}
            for key in ("mean", "error", "tau", "ess", "rhat", "exact"):
                entry[key] = dict(zip(names, read_array(g, key, kinds="f", shape=(len(names),))))
            flagged = read_array(g, "flagged", kinds="b", shape=(len(names),), required=False)
            if flagged is not None:
                entry["flagged"] = dict(zip(names, flagged.astype(bool)))
            corr = read_array(g, "correlation", kinds="f", ndim=1, required=False)
            entry["correlation"] = corr
            out.append(entry)
    return out
