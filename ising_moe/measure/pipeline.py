"""All measurements of an expert-sequence file, layer by layer (behind ``isingmoe measure``)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._util import as_int
from ..data import DEFAULT_DROPPED
from ..errors import InvalidParameterError
from .balance import LoadBalance, StaticRouting, load_balance, static_routing
from .correlation import CorrelationEstimate, correlation_function
from .correlation_length import CorrelationLength, fit_correlation_length
from .locality import LocalRoutingConsistency, local_routing_consistency
from .probe import expert_features, positional_probe
from .rates import PositionTest, RateEstimate, position_dependence, position_rates

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LayerStatistics:
    """Every statistic of one MoE layer (top-1 states unless stated).

    ``xi_by_block`` maps a block size ``b`` to the :class:`CorrelationLength` of ``C_b(r)`` (pairs inside
    one block of ``b`` consecutive positions, ``1 <= r <= b - 1``): the decay length of correlations
    between tokens at most ``b - 1`` apart. For a chain with a single exponential decay it equals the
    chain's ``xi`` once the window ends inside the block; growth with ``b`` means correlations decay
    more slowly at larger separations than any single exponential. A failed fit has ``success`` False
    and NaN values (never ``1e5``); ``capped`` marks a window that reaches ``b - 1``.
    """

    layer: int
    n_states: int
    rates: RateEstimate
    indicator_rates: RateEstimate | None
    position_test: PositionTest
    correlation: CorrelationEstimate
    indicator_correlation: CorrelationEstimate | None
    xi: CorrelationLength
    xi_by_block: dict
    load: LoadBalance
    static: StaticRouting
    lrc: LocalRoutingConsistency
    dropped_by_position: np.ndarray | None
    #: Switch data: the position test with drops excluded and with the router's choice (``{policy: PositionTest}``)
    drop_position_tests: dict | None = None


@dataclass(frozen=True, eq=False)
class Measurements:
    """Result of :func:`measure`: per-layer statistics, probes, and the run's parameters."""

    layers: list
    probes: list
    params: dict
    source: dict

    def layer(self, layer: int) -> LayerStatistics:
        for stats in self.layers:
            if stats.layer == layer:
                return stats
        raise InvalidParameterError(f"layer {layer} was not measured; measured: {[s.layer for s in self.layers]}")


def measure(data, *, layers=None, max_distance: int = 64, block_sizes=(8, 16, 32, 64, 128, 256),
            dropped: str = DEFAULT_DROPPED, n_null: int = 4, n_bootstrap: int = 200,
            segment_lengths=(2, 4, 8, 16, 32, 64), probe: bool = True, probe_blocks=(2, 8, 32, 128),
            max_probe_tokens: int = 20000, n_position_blocks: int = 16, seed: int = 0,
            progress: bool = False, executor=None, processes: int = 1) -> Measurements:
    """All statistics of an :class:`~ising_moe.data.ExpertSequences`, layer by layer.

    Parameters
    ----------
    data : ExpertSequences
    layers : sequence of int, optional
        Model block indices (default all).
    max_distance : int
        Largest ``r`` of ``C(r)`` (capped at ``n_positions - 1``).
    block_sizes : sequence of int
        Block sizes of ``xi`` vs block size (those above ``n_positions`` are dropped).
    dropped : {"router", "exclude", "state"}
        Switch capacity drops: the router's choice (default: the statistically valid choice for
        "what the router wants"; drops are not missing at random, a token is dropped because its
        expert is full, so excluding them creates position dependence), masked out (what the
        experts executed), or an extra state. Whatever the policy, Switch data also get the
        position test under both "exclude" and "router" (``drop_position_tests``): the difference
        is the position effect the drops themselves produce.
    n_null, n_bootstrap : int
        Shuffles for the null, bootstrap replicates over sequences.
    segment_lengths : sequence of int
        Window lengths of the local routing consistency metrics.
    probe : bool
        Run the positional probes (scikit-learn).
    probe_blocks : sequence of int
        Numbers of position blocks the probe predicts (besides parity).
    seed : int
        Seed of every resampling (results are reproducible).
    executor : concurrent.futures.Executor, optional
        Where the layers run (see :mod:`ising_moe.executors`); each layer's seed is spawned from
        ``seed``, so results are bit-identical for any executor. ``processes > 1`` without an
        executor means that many local worker processes.
    """
    from tqdm.auto import tqdm

    from ..data import read_hidden_states, subject_label
    from ..executors import process_executor, run_tasks

    layer_ids = list(data.layers) if layers is None else [int(x) for x in layers]
    for layer in layer_ids:
        data.layer_index(layer)
    n = data.n_positions
    max_distance = min(as_int(max_distance, "max_distance", 1), n - 1)
    n_bootstrap = as_int(n_bootstrap, "n_bootstrap", minimum=2)
    n_null = as_int(n_null, "n_null", minimum=0)
    processes = as_int(processes, "processes", minimum=1)
    blocks = tuple(b for b in (as_int(b, "block size", minimum=2) for b in block_sizes) if b <= n)
    seeds = np.random.SeedSequence(seed).spawn(len(layer_ids) + 1)
    options = {"max_distance": max_distance, "blocks": blocks, "dropped": dropped, "n_null": n_null,
               "n_bootstrap": n_bootstrap, "segment_lengths": segment_lengths,
               "n_position_blocks": n_position_blocks, "seed": seed}
    out = [None] * len(layer_ids)
    tasks = [(_layer_view(data, layer), layer, ss, options) for layer, ss in zip(layer_ids, seeds)]
    with contextlib.ExitStack() as stack:
        if executor is None and processes > 1 and len(tasks) > 1:
            executor = stack.enter_context(process_executor(min(processes, len(tasks))))
        with tqdm(total=len(tasks), desc="measure", unit="layer", disable=not progress or None) as bar:
            for index, stats in run_tasks(executor, _measure_layer, tasks):
                out[index] = stats
                bar.update()
    probes = []
    if probe:
        gen = np.random.default_rng(seeds[-1])
        idx = [data.layer_index(layer) for layer in layer_ids]
        feats, pos, tokens = expert_features(data.experts[:, idx], data.mask, data.n_experts, max_probe_tokens, gen)
        probes += positional_probe(feats, pos, n, probe_blocks, label="experts", rng=gen)
        if data.path is not None:
            for layer in layer_ids:
                hidden = read_hidden_states(data.path, layer)
                if hidden is not None:
                    probes += positional_probe(hidden[tokens], pos, n, probe_blocks, label=f"hidden:{layer}", rng=gen)
    params = {"layers": layer_ids, "max_distance": max_distance, "block_sizes": list(blocks), "dropped": dropped,
              "n_null": n_null, "n_bootstrap": n_bootstrap, "segment_lengths": list(segment_lengths),
              "probe": probe, "probe_blocks": list(probe_blocks), "max_probe_tokens": max_probe_tokens,
              "n_position_blocks": n_position_blocks, "seed": seed}
    source: dict[str, Any] = {"model_id": data.model_id, "weights": data.weights, "subject": subject_label(data),
                              "path": None if data.path is None else str(data.path)}
    return Measurements(out, probes, params, source)


def empirical_correlations(states, mask, n_states: int, max_distance: int, *, layer: int, seed: int,
                           block_sizes=(), n_null: int = 4, n_bootstrap: int = 200, token_ids=None):
    """Empirical ``C(r)`` (with nulls) and its correlation length: the one code path of ``measure`` and ``fit``.

    The resampling (nulls, bootstrap of ``xi``) draws from its own stream seeded by ``(seed, layer)``,
    so the two commands print the same ``C(r)``, window and ``xi`` for the same data and options.

    Returns
    -------
    corr : CorrelationEstimate
    xi : CorrelationLength
    xi_by_block : dict of int -> CorrelationLength
    """
    gen = np.random.default_rng([int(seed), int(layer), 0x78])
    corr = correlation_function(states, mask, n_states, max_distance, block_sizes, n_null, gen, token_ids=token_ids)
    boot = np.random.default_rng([int(seed), int(layer), 0x79])
    xi = fit_correlation_length(corr.distances, corr.values, corr.errors, influence=corr.influence,
                                n_bootstrap=n_bootstrap, rng=boot, n_effective=corr.n_effective)
    xi_blocks = {b: fit_correlation_length(corr.distances, corr.block_values[b], corr.block_errors[b],
                                           influence=corr.block_influence[b], r_max=b - 1,
                                           n_bootstrap=n_bootstrap, rng=boot, allow_capped=True,
                                           n_effective=corr.n_effective)
                 for b in corr.block_sizes}
    return corr, xi, xi_blocks


def _layer_view(data, layer: int):
    """The data of one layer only (what a worker needs to measure it)."""
    import dataclasses

    li = data.layer_index(layer)
    pick = slice(li, li + 1)
    return dataclasses.replace(
        data, experts=data.experts[:, pick], layers=data.layers[pick],
        dropped=None if data.dropped is None else data.dropped[:, pick],
        router_probs=None if data.router_probs is None else data.router_probs[:, pick],
        router_entropy=None if data.router_entropy is None else data.router_entropy[:, pick])


def _measure_layer(data, layer: int, seed_sequence, options: dict) -> LayerStatistics:
    """Every statistic of one layer (a picklable task with its own seed)."""
    max_distance, blocks, dropped = options["max_distance"], options["blocks"], options["dropped"]
    n_null, n_bootstrap = options["n_null"], options["n_bootstrap"]
    segment_lengths, n_position_blocks = options["segment_lengths"], options["n_position_blocks"]
    n = data.n_positions
    gen = np.random.default_rng(seed_sequence)
    x, m, q = data.states(layer, dropped=dropped)
    corr, xi, xi_blocks = empirical_correlations(x, m, q, max_distance, layer=layer, seed=options["seed"],
                                                 block_sizes=blocks, n_null=n_null, n_bootstrap=n_bootstrap,
                                                 token_ids=data.token_ids)
    li = data.layer_index(layer)
    topk_mask = data.mask.copy()
    drop_tests = None
    if data.dropped is not None:
        if dropped == "exclude":
            topk_mask &= ~data.dropped[:, li]
        drop_tests = {}
        for policy in ("exclude", "router"):
            xp, mp, qp = data.states(layer, dropped=policy)
            drop_tests[policy] = position_dependence(xp, mp, qp, min(n_position_blocks, n), rng=gen)
    topk = data.experts[:, li]
    ind_rates = ind_corr = None
    if data.top_k > 1:
        ind_rates = position_rates(topk, topk_mask, data.n_experts)
        ind_corr = correlation_function(topk, topk_mask, data.n_experts, max_distance, (), 0, gen)
    dropped_by_position = None
    if data.dropped is not None:
        dropped_by_position = (data.dropped[:, li] & data.mask).sum(axis=0) / np.maximum(data.mask.sum(axis=0), 1)
    return LayerStatistics(
        layer=layer, n_states=q, rates=position_rates(x, m, q), indicator_rates=ind_rates,
        position_test=position_dependence(x, m, q, min(n_position_blocks, n), rng=gen),
        correlation=corr, indicator_correlation=ind_corr, xi=xi, xi_by_block=xi_blocks,
        load=load_balance(x, m, q, n_bootstrap, gen), static=static_routing(topk, topk_mask, data.n_experts, gen),
        lrc=local_routing_consistency(topk, topk_mask, data.n_experts, segment_lengths, n_bootstrap, gen),
        dropped_by_position=dropped_by_position, drop_position_tests=drop_tests,
    )
