"""Lattice speed: the exact column step, and one Monte Carlo learning fit of an OLMoE-shaped problem.

1. ``log Z`` of lattices given their tokens (Λ layers x q experts, n positions): the shipped exact
   column forward pass (Kronecker step, ``ising_moe.exact.product``) against a plain NumPy forward
   pass with the dense q^Λ x q^Λ column transfer matrix, batched over the sequences (one BLAS
   matrix product per position), in the same run; both checked to agree. Ratio = dense / Kronecker.
   Also the same Kronecker step written in plain NumPy (``tensordot`` per layer): what the step
   itself gains over the dense matrix, apart from the kernel's implementation.
2. One Monte Carlo learning fit (heat-bath persistent chains, one per training sequence, from the
   pseudo-likelihood fit) of data drawn from a planted lattice of OLMoE's shape (16 layers x 64
   experts; token fields of 200 token rows; Potts couplings along the text; full adjacent
   cross-layer couplings): the time of the planted data, of the pseudo-likelihood fit and of the
   Monte Carlo learning (per iteration, sweep and moments apart; CPU time too), and the agreement
   of the couplings with pseudo-likelihood and with the planted values. The default size is
   reduced (40 x 64) so that a run takes minutes; the issue's size, about 25 minutes on 2 cores:

       python benchmarks/bench_lattice.py --skip-column --mc-sequences 1000 --mc-positions 256 \
           --mc-data-sweeps 100 --mc-cache /tmp/olmoe_shape.npz

The CPU-time ratio of part 1 is reported for single-threaded runs (``NUMBA_NUM_THREADS=1
OMP_NUM_THREADS=1``), the figure least disturbed by other jobs on a shared machine.

    python benchmarks/bench_lattice.py [--layers 4 --states 8 --positions 256 --sequences 8]
                                       [--mc-sequences 40 --mc-positions 64 --mc-window 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from _common import best_cpu_time, best_time, emit

from ising_moe.fit.lattice import ExactLattice, LatticeData, LatticeLayout
from ising_moe.fit.lattice.pseudo_likelihood import PseudoLikelihood, minimize_lbfgs, parameter_scale


def dense_log_partition(ex: ExactLattice, rows):
    """Plain NumPy: scaled forward recursion with the dense column transfer matrix, batched over sequences."""
    d = ex.digits
    coupling = ex.params["coupling"]
    log_w = sum(coupling[l][d[:, l][:, None], d[:, l][None, :]] for l in range(d.shape[1]))
    shift = log_w.max()
    w = np.exp(log_w - shift)
    u = ex.unary[rows]  # (B, n, S)
    m = u.max(axis=2, keepdims=True)
    f = np.exp(u - m)
    a = f[:, 0]
    s = a.sum(axis=1)
    log_z = m[:, 0, 0] + np.log(s)
    a = a / s[:, None]
    for i in range(1, rows.shape[1]):
        a = (a @ w) * f[:, i]
        s = a.sum(axis=1)
        log_z += shift + m[:, i, 0] + np.log(s)
        a /= s[:, None]
    return log_z


def kronecker_numpy_log_partition(ex: ExactLattice, rows):
    """Plain NumPy with the Kronecker step: one ``tensordot`` per layer and position (batched)."""
    lam, q = ex.digits.shape[1], ex.layout.n_states
    coupling = ex.params["coupling"]
    shifts = coupling.max(axis=(1, 2))
    ws = np.exp(coupling - shifts[:, None, None])
    u = ex.unary[rows]
    m = u.max(axis=2, keepdims=True)
    f = np.exp(u - m)
    b = rows.shape[0]
    a = f[:, 0]
    s = a.sum(axis=1)
    log_z = m[:, 0, 0] + np.log(s)
    a = a / s[:, None]
    for i in range(1, rows.shape[1]):
        t = a.reshape((b,) + (q,) * lam)
        for l in range(lam):
            t = np.moveaxis(np.tensordot(t, ws[l], axes=([1 + l], [0])), -1, 1 + l)
        a = t.reshape(b, -1) * f[:, i]
        s = a.sum(axis=1)
        log_z += shifts.sum() + m[:, i, 0] + np.log(s)
        a /= s[:, None]
    return log_z


def column_benchmark(lam, q, n, n_seq, seed=0):
    lay = LatticeLayout(lam, q, n_rows=50, couplings="full", cross_range=1)
    rng = np.random.default_rng(seed)
    ex = ExactLattice(lay, 0.3 * rng.normal(size=lay.n_params))
    rows = rng.integers(0, 50, (n_seq, n))
    data = LatticeData.from_arrays(np.zeros((n_seq, lam, n), np.int64), rows, None, q)
    ref = dense_log_partition(ex, rows)
    kron = ex.log_partition(data)
    t_kron = best_time(lambda: ex.log_partition(data), repeat=2)
    t_dense = best_time(lambda: dense_log_partition(ex, rows), repeat=1)
    kron_np = kronecker_numpy_log_partition(ex, rows)
    t_kron_np = best_time(lambda: kronecker_numpy_log_partition(ex, rows), repeat=2)
    cpu = {}
    if numba.get_num_threads() == 1:
        cpu = {"kronecker_cpu_seconds": best_cpu_time(lambda: ex.log_partition(data), repeat=2),
               "dense_numpy_cpu_seconds": best_cpu_time(lambda: dense_log_partition(ex, rows), repeat=1)}
        cpu["cpu_ratio"] = cpu["dense_numpy_cpu_seconds"] / cpu["kronecker_cpu_seconds"]
    s = q**lam
    return {**cpu, "layers": lam, "states": q, "column_states": s, "positions": n, "sequences": n_seq,
            "max_abs_diff_log_z": float(np.abs(ref - kron).max()),
            "max_abs_diff_log_z_kronecker_numpy": float(np.abs(ref - kron_np).max()),
            "kronecker_seconds": t_kron, "dense_numpy_seconds": t_dense, "ratio": t_dense / t_kron,
            "kronecker_numpy_seconds": t_kron_np, "ratio_dense_over_kronecker_numpy": t_dense / t_kron_np,
            "flop_ratio": s / (lam * q)}


def log(msg):
    """Progress on stderr (the JSON goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def planted_olmoe_like(lam, q, n_seq, n, n_rows, seed=0, n_sweeps=300):
    """Data from a planted lattice, drawn by ``n_sweeps`` heat-bath sweeps from random states."""
    from ising_moe.mc.lattice import LatticeState, LatticeTarget, sweep

    lay = LatticeLayout(lam, q, n_rows=n_rows, couplings="potts", cross_range=1)
    rng = np.random.default_rng(seed)
    theta = np.zeros(lay.n_params)
    theta[lay.slices["token"]] = rng.normal(size=lay.slices["token"].stop)
    theta[lay.slices["coupling"]] = rng.uniform(0.5, 1.5, lam)
    theta[lay.slices["cross"]] = 0.4 * rng.normal(size=lay.n_params - lay.slices["cross"].start)
    # Zipf-like token rows, as in text
    p_rows = 1.0 / np.arange(1, n_rows + 1)
    rows = rng.choice(n_rows, size=(n_seq, n), p=p_rows / p_rows.sum())
    p = lay.expand(theta)
    target = LatticeTarget(p["token"], p["coupling"], p["cross"], lay.pairs, rows, np.full(n_seq, n))
    state = sweep(target, LatticeState.initial(target, rng), n_sweeps)
    return lay, theta, LatticeData.from_arrays(state.spins, rows, None, q)


def mc_benchmark(lam, q, n_seq, n, n_rows, window, seed=0, data_sweeps=300, max_windows=4, cache=None):
    """Planted data, pseudo-likelihood, then Monte Carlo learning as ``ConditionalLattice`` runs it
    (Rao-Blackwellised moments, step 0.2, one stationarity block per parameter kind). ``cache``
    (an ``.npz`` path): the data and the pseudo-likelihood fit are read from it when it holds this
    run's arguments, else written to it (a rerun redoes only the Monte Carlo learning)."""
    from ising_moe.fit.mc_learning import mc_learning
    from ising_moe.mc.lattice import LatticeState, LatticeTarget, sweep

    key = np.array([lam, q, n_seq, n, n_rows, seed, data_sweeps])
    lay = LatticeLayout(lam, q, n_rows=n_rows, couplings="potts", cross_range=1)
    if cache is not None and Path(cache).is_file() and np.array_equal(np.load(cache)["key"], key):
        z = np.load(cache)
        theta_true, theta_pl = z["theta_true"], z["theta_pl"]
        data = LatticeData.from_arrays(z["states"], z["rows"], None, q)
        t_data, c_data, t_pl, c_pl = (float(v) for v in z["timing"][:4])
        it_pl = int(z["timing"][4])
        ok_pl, msg_pl = bool(z["ok_pl"]), str(z["msg_pl"])
        log(f"data and pseudo-likelihood fit read from {cache}")
    else:
        log(f"planted data: {n_seq} x {n} x {lam} layers, q = {q}, {data_sweeps} sweeps")
        t0, c0 = time.perf_counter(), time.process_time()
        lay, theta_true, data = planted_olmoe_like(lam, q, n_seq, n, n_rows, seed, data_sweeps)
        t_data, c_data = time.perf_counter() - t0, time.process_time() - c0
        log(f"data drawn in {t_data:.0f} s; pseudo-likelihood ({lay.n_params} parameters)")
        t0, c0 = time.perf_counter(), time.process_time()
        pl = PseudoLikelihood(lay, data, l2=0.1)
        theta_pl, ok_pl, msg_pl, it_pl = minimize_lbfgs(pl, np.zeros(lay.n_params), parameter_scale(lay, data, 0.1),
                                                        500, 1e-6)
        t_pl, c_pl = time.perf_counter() - t0, time.process_time() - c0
        if cache is not None:
            np.savez(cache, key=key, theta_true=theta_true, theta_pl=theta_pl, states=data.states, rows=data.rows,
                     timing=[t_data, c_data, t_pl, c_pl, it_pl], ok_pl=ok_pl, msg_pl=msg_pl)
    log(f"pseudo-likelihood: {t_pl:.0f} s, {it_pl} iterations, {msg_pl}; Monte Carlo learning")
    stats = lay.statistics(data)
    p = lay.expand(theta_pl)
    target = LatticeTarget(p["token"], p["coupling"], p["cross"], lay.pairs, data.rows, data.lengths)
    chains = LatticeState.initial(target, seed, start=data.states)
    timing = {"sweep": 0.0, "statistics": 0.0}

    def model_moments(theta, state):
        t = time.perf_counter()
        q_ = lay.expand(theta)
        sweep(target.with_parameters(q_["token"], q_["coupling"], q_["cross"]), state, 1)
        timing["sweep"] += time.perf_counter() - t
        t = time.perf_counter()
        mean, var = lay.conditional_moments(LatticeData(state.spins, data.rows, data.lengths, q), q_)
        timing["statistics"] += time.perf_counter() - t
        return mean, var, state

    t0, c0 = time.perf_counter(), time.process_time()
    blocks = [sl for sl in lay.slices.values() if sl.stop > sl.start]
    res, _ = mc_learning(theta_pl, stats / n_seq, model_moments, chains, l2=0.1 / n_seq, window=window,
                         n_batches=10, max_windows=max_windows, step=0.2, blocks=blocks)
    t_mc, c_mc = time.perf_counter() - t0, time.process_time() - c0
    log(f"Monte Carlo learning: {t_mc:.0f} s, {res.n_iter} iterations, {res.message}")
    sl = slice(lay.slices["coupling"].start, lay.n_params)  # couplings along the text and across layers
    diff = res.theta[sl] - theta_pl[sl]
    sites = n_seq * n * lam
    target_sites = 1000 * 256 * 16
    per_iter = t_mc / res.n_iter
    return {
        "layers": lam, "states": q, "sequences": n_seq, "positions": n, "token_rows": n_rows, "sites": sites,
        "n_params": lay.n_params, "data_seconds": t_data, "data_cpu_seconds": c_data, "data_sweeps": data_sweeps,
        "pl_seconds": t_pl, "pl_cpu_seconds": c_pl, "pl_iterations": it_pl, "pl_success": ok_pl,
        "pl_message": msg_pl, "mc_seconds": t_mc, "mc_cpu_seconds": c_mc, "mc_iterations": res.n_iter, "mc_success": res.success, "mc_message": res.message,
        "seconds_per_iteration": per_iter, "sweep_seconds_per_iteration": timing["sweep"] / res.n_iter,
        "statistics_seconds_per_iteration": timing["statistics"] / res.n_iter,
        "ns_per_site_update": 1e9 * timing["sweep"] / res.n_iter / sites,
        "extrapolated_seconds_per_iteration_olmoe_shape": per_iter * target_sites / sites,
        "extrapolated_seconds_same_iterations_olmoe_shape": t_mc * target_sites / sites,
        "coupling_rms_mc_minus_pl": float(np.sqrt(np.mean(diff**2))),
        "coupling_max_abs_mc_minus_pl": float(np.abs(diff).max()),
        "sites_per_parameter": sites / lay.n_params,
        "coupling_rms_pl_minus_true": float(np.sqrt(np.mean((theta_pl[sl] - theta_true[sl]) ** 2))),
        "coupling_rms_mc_minus_true": float(np.sqrt(np.mean((res.theta[sl] - theta_true[sl]) ** 2))),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--states", type=int, default=8)
    ap.add_argument("--positions", type=int, default=256)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--mc-layers", type=int, default=16)
    ap.add_argument("--mc-states", type=int, default=64)
    ap.add_argument("--mc-sequences", type=int, default=40)
    ap.add_argument("--mc-positions", type=int, default=64)
    ap.add_argument("--mc-token-rows", type=int, default=200)
    ap.add_argument("--mc-window", type=int, default=40)
    ap.add_argument("--mc-data-sweeps", type=int, default=300)
    ap.add_argument("--mc-max-windows", type=int, default=4)
    ap.add_argument("--mc-cache", type=Path, default=None,
                    help="npz file keeping the planted data and the pseudo-likelihood fit between runs")
    ap.add_argument("--skip-mc", action="store_true")
    ap.add_argument("--skip-column", action="store_true")
    args = ap.parse_args()
    results = {}
    if not args.skip_column:
        results["column"] = column_benchmark(args.layers, args.states, args.positions, args.sequences)
    if not args.skip_mc:
        results["mc_learning"] = mc_benchmark(args.mc_layers, args.mc_states, args.mc_sequences, args.mc_positions,
                                              args.mc_token_rows, args.mc_window, data_sweeps=args.mc_data_sweeps,
                                              max_windows=args.mc_max_windows, cache=args.mc_cache)
    emit("lattice", results)


if __name__ == "__main__":
    main()
