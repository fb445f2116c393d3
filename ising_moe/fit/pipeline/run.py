"""The per-layer fit pipeline behind ``isingmoe fit``: splits, variants, bootstrap, Monte Carlo check."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from ..._util import as_int
from ...data import DEFAULT_DROPPED, DROPPED_POLICIES
from ...errors import InvalidParameterError
from .decomposition import decompose_layer
from .drops import drop_position_effect
from .indicators import compare_indicators
from .layer import (
    DEFAULT_VARIANTS,
    MAIN_PRIORITY,
    MAX_DEFAULT_FULL_STATES,
    compare_layer,
    variant_fitter,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FitReport:
    """Result of :func:`fit_expert_data`: per-layer comparisons and provenance."""

    layers: list
    params: dict
    source: dict
    note: str | None


def _layer_job(args):
    states, mask, lengths, n_states, layer, kwargs, threads, topk, both, decomposition = args
    if threads:
        import numba

        numba.set_num_threads(threads)
    result = compare_layer(states, mask, lengths, n_states, layer, **kwargs)
    if topk is not None:
        experts, topk_mask, n_experts = topk
        indicators = compare_indicators(experts, topk_mask, lengths, n_experts,
                                        test_fraction=kwargs["test_fraction"], seed=kwargs["seed"])
        result = dataclasses.replace(result, indicators=indicators)
    if both is not None:
        router, excluded, n_experts = both
        drops = drop_position_effect(router, excluded, lengths, n_experts, test_fraction=kwargs["test_fraction"],
                                     seed=kwargs["seed"])
        result = dataclasses.replace(result, drops=drops)
    if decomposition is not None:
        tokens, options = decomposition
        table = decompose_layer(states, mask, lengths, tokens, n_states, layer, test_fraction=kwargs["test_fraction"],
                                seed=kwargs["seed"], **options)
        result = dataclasses.replace(result, decomposition=table)
    return result


def default_variants(n_states: int) -> list[str]:
    """The variants fitted when none are named: :data:`DEFAULT_VARIANTS`, without ``full`` above
    :data:`MAX_DEFAULT_FULL_STATES` states."""
    return [v for v in DEFAULT_VARIANTS if v != "full" or n_states <= MAX_DEFAULT_FULL_STATES]


def fit_expert_data(data, *, layers=None, variants=None, max_range: int = 1, test_fraction: float = 0.2,
                    max_distance: int = 64, n_bootstrap: int = 6, mc_sweeps: int = 2000, dropped: str = DEFAULT_DROPPED,
                    indicators: bool = True, decomposition: bool | None = None, gof_distance: int | None = None,
                    power_law: bool = False, power_law_method: str = "pseudo-likelihood", token_rows: int = 1000, topic_chain: bool = False, seed: int = 0,
                    processes: int = 1, progress: bool = False,
                    executor=None, checkpoint=None, overwrite: bool = False) -> FitReport:
    """Run :func:`compare_layer` on every layer of an :class:`~ising_moe.data.ExpertSequences`.

    Layers are independent tasks with seeds spawned from ``seed``: they run on ``executor`` (any
    :class:`concurrent.futures.Executor`, see :mod:`ising_moe.executors`; ``processes > 1`` without
    one means that many local worker processes) with bit-identical results for any executor.
    With ``checkpoint`` (the path of the fit file to be written), each finished layer is kept in
    ``<checkpoint>.partial/``: a run killed at any moment and started again with the same data and
    parameters fits only the missing layers; other parameters are refused unless ``overwrite``.
    The caller removes the partial directory once its outputs are written
    (``fit_checkpoint(checkpoint, data, report.params).remove()``).

    ``variants`` defaults to :func:`default_variants`; ``max_range >= 2`` adds the variants
    ``range2 .. range<max_range>``. For top-k routing
    (``top_k > 1``) the top-1 expert is the Potts chain and, with ``indicators``, every expert's
    indicator is also fitted as an Ising chain (:func:`compare_indicators`). Layers run in
    ``processes`` worker processes (each layer's seed is spawned from ``seed``, so results do not
    depend on it).

    ``dropped`` (Switch capacity drops): ``"router"`` (default) fits what the router wants, every
    token at the router's choice. Drops are not missing at random (a token is dropped because its
    expert is full), so ``"exclude"`` creates position dependence that the router does not have;
    with ``"router"`` the fit and ``isingmoe measure`` (same default) describe the same sequences.
    For data with drops each layer also gets a :class:`~ising_moe.fit.pipeline.drops.DropEffect`: how much
    of the position effect the drops themselves produce.

    ``decomposition`` (default: on when the data have token ids) adds each layer's nested table
    (:func:`~ising_moe.fit.pipeline.decomposition.decompose_layer`: token, position given the token,
    neighbours, sequence topic; ``token_rows`` token ids with their own fields; the ``+range-2`` row
    with ``max_range >= 2`` or at most 16 states) in the layer's task, and the best row's C(r) against
    the empirical one for ``r = 1..gof_distance`` (default ``min(64, max_distance)``);
    ``power_law`` adds its ``+power-law couplings`` row (opt-in: about 10x the latent row's cost),
    fitted by ``power_law_method`` (``"pseudo-likelihood"`` or ``"max-likelihood"``, exact and costlier); with
    ``topic_chain``, also the topic chain beside the table (:mod:`~ising_moe.fit.pipeline.topic`).
    """
    layer_ids = list(data.layers) if layers is None else [int(x) for x in layers]
    for layer in layer_ids:
        data.layer_index(layer)
    max_range = as_int(max_range, "max_range", 1, 4)
    n_bootstrap = as_int(n_bootstrap, "n_bootstrap", minimum=0)
    mc_sweeps = as_int(mc_sweeps, "mc_sweeps", minimum=0)
    processes = as_int(processes, "processes", minimum=1)
    variants = default_variants(data.n_experts) if variants is None else list(variants)
    variants = list(dict.fromkeys(variants + [f"range{r}" for r in range(2, max_range + 1)]))
    for name in variants:
        variant_fitter(name, 2)  # validates the names before any work
    seeds = np.random.SeedSequence(seed).spawn(len(layer_ids))
    if decomposition is None:  # on by default when it can run: token ids, and >= 2 training and >= 2 held-out sequences
        n_test = max(1, round(test_fraction * data.n_sequences)) if 0 < test_fraction < 1 else 0
        decomposition = data.token_ids is not None and n_test >= 2 and data.n_sequences - n_test >= 2
    if decomposition and data.token_ids is None:
        raise InvalidParameterError(
            "the decomposition needs the token ids of the routed text, and this file has none: re-extract it "
            "with `isingmoe extract` (which stores token_ids) or pass --no-decomposition")
    if gof_distance is not None and not 1 <= int(gof_distance) <= 64:
        raise InvalidParameterError(f"--gof-distance must be between 1 and 64 (the goodness of fit compares C(r) "
                                    f"for r = 1..64 at most), got {gof_distance}")
    gof_distance = min(64, max_distance) if gof_distance is None else int(gof_distance)
    token_rows = as_int(token_rows, "token_rows", minimum=0)
    range2 = max_range >= 2 or data.n_experts <= 16
    decomposition_options = {"token_rows": token_rows, "range2": range2, "gof_distance": gof_distance}
    # opt-in rows only when asked: the parameters of earlier (resumable) runs stay as they were
    if power_law:
        decomposition_options["power_law"] = True
        if power_law_method != "pseudo-likelihood":
            decomposition_options["power_law_method"] = power_law_method
    if topic_chain:
        decomposition_options["topic"] = True
    kwargs = {"variants": variants, "test_fraction": test_fraction, "max_distance": max_distance,
              "n_bootstrap": n_bootstrap, "mc_sweeps": mc_sweeps}
    jobs = []
    if not 0 < test_fraction < 1:
        raise InvalidParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if dropped not in DROPPED_POLICIES:
        raise InvalidParameterError(f"dropped must be one of {DROPPED_POLICIES}, got {dropped!r}")
    for layer, ss in zip(layer_ids, seeds):
        x, m, q = data.states(layer, dropped=dropped)
        # chain length: the sequence's tokens (padding excluded); dropped tokens inside are hidden sites
        lengths = data.mask.shape[1] - np.argmax(data.mask[:, ::-1], axis=1)
        keep = m.any(axis=1) & (lengths >= 2)
        if keep.sum() < 3:
            raise InvalidParameterError(
                f"layer {layer}: only {int(keep.sum())} of {len(keep)} sequences have two or more valid tokens; "
                "a chain fit needs sequences of at least two tokens, and at least 3 of them (training and "
                "held-out): extract longer sequences (--max-length) or more of them")
        both = None  # the layer under both drop policies, for the DropEffect
        if data.dropped is not None and data.dropped[:, data.layer_index(layer)].any():
            both = (*((xx[keep], mm[keep]) for xx, mm, _ in (data.states(layer, dropped=policy)
                                                               for policy in ("router", "exclude"))), data.n_experts)
        job_kwargs = {**kwargs, "seed": int(ss.generate_state(1)[0]), "xi_seed": seed}
        topk = None
        if data.top_k > 1 and indicators:
            li = data.layer_index(layer)
            # the indicators follow the dropped policy ("state" has no indicator: drops excluded)
            topk_mask = data.mask if data.dropped is None or dropped == "router" else data.mask & ~data.dropped[:, li]
            topk = (data.experts[keep, li].astype(np.int64), topk_mask[keep], data.n_experts)
        dec = (data.token_ids[keep], decomposition_options) if decomposition else None
        jobs.append((x[keep], m[keep], lengths[keep], q, layer, job_kwargs, 1 if processes > 1 else 0, topk, both,
                     dec))
    params = {"layers": layer_ids, "variants": variants, "max_range": max_range, "test_fraction": test_fraction,
              "max_distance": max_distance, "n_bootstrap": n_bootstrap, "mc_sweeps": mc_sweeps,
              "dropped": dropped, "indicators": indicators and data.top_k > 1, "seed": seed,
              "decomposition": bool(decomposition),
              **({"decomposition_" + k: v for k, v in decomposition_options.items()} if decomposition else {}),
              "main_variant": next((v for v in MAIN_PRIORITY if v in variants), variants[-1])}
    source = {"model_id": data.model_id, "weights": data.weights, "model_alias": data.attrs.get("model_alias", ""),
              "path": None if data.path is None else str(data.path), "tokenizer": data.attrs.get("tokenizer", "")}
    store = None if checkpoint is None else fit_checkpoint(checkpoint, data, params).open(overwrite=overwrite)
    try:
        results = _run_layers(jobs, executor, processes, store, progress)
    except BaseException:
        if store is not None and not store.done():
            store.remove()  # nothing finished to resume: leave no state behind
        raise
    finally:
        if store is not None:
            store.close()
    return FitReport(results, params, source, data.provenance_note)


def fit_checkpoint(path, data, params):
    """The :class:`~ising_moe.io.ChunkStore` keeping the finished layers of a fit to ``path``
    (keyed on the data's content, the parameters and the package version)."""
    import hashlib

    from ..._version import __version__
    from ...io import ChunkStore

    digest = hashlib.sha256()
    for array in (data.experts, data.mask, data.dropped):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return ChunkStore(path, "fit-layers", {"params": params, "data_sha256": digest.hexdigest(),
                                           "ising_moe_version": __version__})


def _run_layers(jobs, executor, processes, store, progress) -> list:
    """Every layer's result, in order: from the checkpoint when there, else computed on ``executor``."""
    import contextlib

    from tqdm.auto import tqdm

    from ...executors import SerialExecutor, process_executor, run_tasks

    results = [None] * len(jobs)
    if store is not None:
        for index in sorted(store.done()):
            results[index] = store.read_object(index)
    todo = [i for i, r in enumerate(results) if r is None]
    with contextlib.ExitStack() as stack:
        if executor is None and processes > 1 and len(todo) > 1:
            executor = stack.enter_context(process_executor(min(processes, len(todo))))
        tasks = [(jobs[k],) for k in todo]
        if len(todo) == 1 and executor is not None and not isinstance(executor, SerialExecutor):
            # one layer to fit: it runs here and its bootstrap refits become the parallel tasks
            job = list(jobs[todo[0]])
            job[5] = {**job[5], "executor": executor}
            tasks, executor = [(tuple(job),)], None
        with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="fit", unit="layer",
                  disable=not progress or None) as bar:
            for i, result in run_tasks(executor, _layer_job, tasks):
                results[todo[i]] = result
                if store is not None:
                    store.write_object(todo[i], result)
                bar.update()
    return results
