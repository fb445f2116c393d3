"""Measurement speed: all statistics of 1e4 sequences x 512 positions x 6 layers (q = 8), and the
correlation function against a straightforward NumPy implementation in the same run; the parts
added for issues 10/14 timed apart (each null, moe-lrc's online SCH, the GLS xi fit with its
bootstrap). Prints JSON.

    python benchmarks/bench_measure.py [--n-sequences 10000] [--layers 6] [--no-probe]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import best_time, emit

from ising_moe import PottsChain, exact
from ising_moe import measure as M
from ising_moe.measure.correlation import _pair_statistics as pair_statistics
from ising_moe.data import ExpertSequences


def numpy_correlation(x, q, max_distance):
    """Reference point estimate of C(r) and C_a(r) with position-dependent marginals, plain NumPy."""
    onehot = (x[:, :, None] == np.arange(q)).astype(np.float64)
    p = onehot.mean(axis=0)
    out = np.empty((max_distance + 1, q))
    for r in range(max_distance + 1):
        joint = np.einsum("snq,snq->nq", onehot[:, : x.shape[1] - r], onehot[:, r:]) / x.shape[0]
        out[r] = (joint - p[: x.shape[1] - r] * p[r:]).mean(axis=0)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-sequences", type=int, default=10_000)
    parser.add_argument("--n-positions", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--max-distance", type=int, default=64)
    parser.add_argument("--no-probe", action="store_true")
    args = parser.parse_args()
    q, n = 8, args.n_positions
    rng = np.random.default_rng(0)
    fields = 0.3 * np.sin(np.arange(n)[:, None] / 40 + np.arange(q)[None, :])
    layers = []
    for layer in range(args.layers):
        model = PottsChain.potts(n, q, coupling=1.0 + 0.3 * layer, field=fields)
        layers.append(exact.sample(model, args.n_sequences, rng=rng))
    experts = np.stack(layers, axis=1)[..., None].astype(np.uint8)
    tokens = rng.integers(0, 5000, size=(args.n_sequences, n))
    data = ExpertSequences(experts, np.ones((args.n_sequences, n), bool), q, token_ids=tokens,
                           attrs={"model_id": "benchmark", "weights": "synthetic"})
    x = layers[0]
    small = slice(0, 200)
    M.correlation_function(x[small], None, q, 8, (8,), 1, rng=0)  # JIT warm-up
    M.local_routing_consistency(x[small, :, None], None, q, (2,), 2, rng=0)
    t_numpy = best_time(lambda: numpy_correlation(x, q, args.max_distance), repeat=1)
    t_point = best_time(lambda: pair_statistics(*M.as_routing(x, None, q), args.max_distance), repeat=1)
    t_full_c = best_time(lambda: M.correlation_function(x, None, q, args.max_distance, (8, 16, 32, 64, 128, 256),
                                                        4, rng=0), repeat=1)
    ref = numpy_correlation(x, q, args.max_distance)
    ours = M.correlation_function(x, None, q, args.max_distance, n_null=0, rng=0)
    # same point estimate up to the N / (N - 1) bias correction
    assert np.allclose(ours.per_state * (args.n_sequences - 1) / args.n_sequences, ref, atol=1e-12)
    from ising_moe.measure import correlation as corr_mod

    ids, mask, _ = M.as_routing(x, None, q)
    gen = np.random.default_rng(1)
    t_null = {name: best_time(lambda f=f: corr_mod._null_curve(f(), mask, q, args.max_distance), repeat=1)
              for name, f in (("position", lambda: corr_mod._shuffle_within_positions(ids, mask, gen)),
                              ("sequence", lambda: corr_mod._shuffle_within_sequences(ids, mask, gen)),
                              ("token", lambda: corr_mod._permute_within_tokens(ids, mask, tokens, gen)))}
    t_lrc = best_time(lambda: M.local_routing_consistency(ids, mask, q, (2, 4, 8, 16, 32, 64), 200, rng=0), repeat=1)
    t_xi = best_time(lambda: M.fit_correlation_length(ours.distances, ours.values, ours.errors,
                                                      influence=ours.influence, rng=0), repeat=1)
    t0 = time.perf_counter()
    M.measure(data, max_distance=args.max_distance, probe=not args.no_probe, seed=0)
    t_all = time.perf_counter() - t0
    emit("measure", {
        "n_sequences": args.n_sequences, "n_positions": n, "n_layers": args.layers, "n_states": q,
        "max_distance": args.max_distance,
        "numpy_correlation_one_layer_s": t_numpy,
        "point_estimate_one_layer_s": t_point,
        "correlation_with_errors_blocks_null_one_layer_s": t_full_c,
        "speedup_point_estimate_vs_numpy": t_numpy / t_point,
        "speedup_full_vs_numpy_point_estimate": t_numpy / t_full_c,
        "one_null_shuffle_one_layer_s": t_null,
        "srp_sch_static_and_online_six_lengths_one_layer_s": t_lrc,
        "xi_gls_fit_200_bootstrap_s": t_xi,
        "all_statistics_all_layers_s": t_all,
    })


if __name__ == "__main__":
    main()
