"""The nested decomposition of issue 14 for one layer: 1e4 sequences x 512 positions, q = 8, 1000 token
rows, on the numba threads given (default 2), and the conditional chain (CRF) against a plain
NumPy/SciPy implementation of the same likelihood in the same run. Prints JSON.

Data: exact samples (:func:`ising_moe.fit.conditional.sampling.sample_chains`) of a known mixture of
two conditional chains (Zipf token ids over 5000 ids, smooth position fields, token fields, Potts
coupling 0.6, component offsets; no distance-2 coupling), split 80/20 into training and test
sequences. Every model of the table is fitted on the training sequences, warm-started from the
previous one, and scored on the test sequences (bits per token, paired errors over sequences).

Baseline: position + token fields + Potts coupling, the same parametrisation and prior, vectorised
(over sequences) forward-backward in NumPy for the value and exact gradient, SciPy L-BFGS-B without
preconditioning; timed on a subset of the training sequences (it needs a few GB for all of them)
beside this package's fit of the same subset.

    python benchmarks/bench_decomposition.py [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time

import numba
import numpy as np
from _common import best_time, emit
from scipy import optimize

from ising_moe.fit.conditional import ConditionalChain
from ising_moe.fit.conditional.sampling import sample_chains
from ising_moe.fit.conditional.goodness import model_correlation_function
from ising_moe.fit.conditional.mixture import ChainMixture
from ising_moe.fit.params import zero_sum_basis

#: the nested table: (row name, model class, hyperparameters)
TABLE = [
    ("independent", ConditionalChain, {"position": "homogeneous", "token_rows": 0, "couplings": "none"}),
    ("+position", ConditionalChain, {"position": "position", "token_rows": 0, "couplings": "none"}),
    ("+token", ConditionalChain, {"position": "none", "token_rows": 1000, "couplings": "none"}),
    ("+token+position", ConditionalChain, {"position": "position", "token_rows": 1000, "couplings": "none"}),
    ("+couplings", ConditionalChain, {"position": "position", "token_rows": 1000, "couplings": "potts"}),
    ("+sequence latent", ChainMixture, {"position": "position", "token_rows": 1000, "couplings": "potts",
                                        "n_components": 2, "n_init": 1, "rng": 0}),
    ("+range-2", ChainMixture, {"position": "position", "token_rows": 1000, "couplings": "potts",
                                "n_components": 2, "max_range": 2, "rng": 0}),
]


def simulate(n_seq, n, q, rng):
    vocab = 5000
    pos = 0.3 * np.sin(np.arange(n)[:, None] / 60 + np.arange(q)[None, :])
    pos[0] += 2.0 * (np.arange(q) == 0) - 0.25
    tok = rng.normal(size=(vocab, q))
    tok -= tok.mean(axis=1, keepdims=True)
    bias = 0.5 * rng.normal(size=(2, q))
    bias -= bias.mean(axis=0)
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    tokens = rng.choice(vocab, size=(n_seq, n), p=p / p.sum())
    x, _ = sample_chains(pos[None] + bias[:, None], tok, 0.6 * (np.eye(q) - 1.0 / q), tokens, weights=[0.5, 0.5],
                         rng=rng)
    return x, tokens


def numpy_crf_fit(x, rows, n_rows, l2, tol, evaluate_only=False):
    """Plain implementation: zero-sum position fields, token rows (the last, pooled row fixed at 0)
    and a Potts coupling; exact value and gradient by vectorised forward-backward; L-BFGS-B."""
    n_seq, n = x.shape
    q = int(x.max()) + 1
    b = zero_sum_basis(q)
    onehot = (x[:, :, None] == np.arange(q)).astype(float)
    same = (x[:, 1:] == x[:, :-1]).sum()
    n_pos, n_tok = n * (q - 1), (n_rows - 1) * (q - 1)

    def objective(theta):
        pos = theta[:n_pos].reshape(n, q - 1) @ b.T
        tok = np.vstack([theta[n_pos: n_pos + n_tok].reshape(n_rows - 1, q - 1) @ b.T, np.zeros((1, q))])
        j = theta[-1]
        h = pos[None] + tok[rows]
        shift = h.max(axis=2, keepdims=True)
        f = np.exp(h - shift)
        g = math.expm1(j)  # W = exp(-j/q) (1 + g delta)
        alpha = np.empty((n_seq, n, q))
        scale = np.empty((n_seq, n))
        a = f[:, 0]
        for i in range(n):
            if i:
                a = (1.0 + g * alpha[:, i - 1]) * f[:, i]
            scale[:, i] = a.sum(axis=1)
            alpha[:, i] = a / scale[:, i, None]
        log_z = np.log(scale).sum() + shift.sum() - n_seq * (n - 1) * j / q
        ll = (h * onehot).sum() + j * (same - n_seq * (n - 1) / q) - log_z
        beta = np.ones((n_seq, q))
        marg = np.empty((n_seq, n, q))
        marg[:, -1] = alpha[:, -1]
        model_same = 0.0
        for i in range(n - 2, -1, -1):
            u = f[:, i + 1] * beta / scale[:, i + 1, None]
            model_same += ((1.0 + g) * (alpha[:, i] * u).sum())
            beta = u.sum(axis=1, keepdims=True) + g * u
            marg[:, i] = alpha[:, i] * beta
        d = onehot - marg
        g_tok = np.stack([np.bincount(rows.ravel(), weights=d[..., a].ravel(), minlength=n_rows) for a in range(q)],
                         axis=1)
        grad = np.concatenate([(d.sum(axis=0) @ b).ravel(), (g_tok[:-1] @ b).ravel(), [same - model_same]])
        n_tokens = x.size
        return (-ll + 0.5 * l2 * theta @ theta) / n_tokens, (-grad + l2 * theta) / n_tokens

    if evaluate_only:
        return None, objective
    theta0 = np.zeros(n_pos + n_tok + 1)
    res = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B",
                            options={"gtol": tol, "ftol": 1e-15, "maxiter": 20000, "maxcor": 30})
    return res, objective


def paired(new, old, n_tokens):
    d = (new - old) / math.log(2)
    return float(d.sum() / n_tokens), float(math.sqrt(len(d)) * d.std(ddof=1) / n_tokens)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2000 sequences, a smaller baseline subset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-sequences", type=int, default=10_000)
    args = parser.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    q, n = 8, 512
    n_seq = 2000 if args.quick else args.n_sequences
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    x, tokens = simulate(n_seq, n, q, rng)
    results = {"n_sequences": n_seq, "n_positions": n, "n_states": q, "token_rows": 1000,
               "simulation_s": time.perf_counter() - t0}
    # JIT warm-up (compiled once per machine, cached afterwards): not part of the timings
    warm = ChainMixture(n_components=2, token_rows=10, max_range=2, max_iter=2, n_init=1, rng=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm.fit(x[:20, :32], tokens[:20, :32])
        ConditionalChain(token_rows=10, max_iter=2).fit(x[:20, :32], tokens[:20, :32])
        ConditionalChain(token_rows=10, couplings="none", max_iter=2).fit(x[:20, :32], tokens[:20, :32])
    n_test = n_seq // 5
    train, test = slice(n_test, None), slice(0, n_test)
    test_tokens = x[test].size
    rows, prev, prev_ll, total, models = [], None, None, 0.0, {}
    cpu0 = time.process_time()
    for name, cls, kwargs in TABLE:
        t = time.perf_counter()
        model = cls(**kwargs).fit(x[train], tokens[train], init=prev)
        fit_s = time.perf_counter() - t
        ll = model.log_likelihood(x[test], tokens[test])
        total += time.perf_counter() - t
        res = model.result_
        row = {"model": name, "fit_s": fit_s, "score_s": time.perf_counter() - t - fit_s, "iterations": res.n_iter,
               "n_parameters": res.n_parameters, "success": res.success,
               "heldout_bits_per_token": float(ll.sum() / test_tokens / math.log(2))}
        if prev_ll is not None:
            row["gain_bits_per_token"], row["gain_error"] = paired(ll, prev_ll, test_tokens)
        rows.append(row)
        prev, prev_ll, models[name] = model, ll, model
    results["table"] = rows
    results["table_total_s"] = total
    results["table_cpu_s"] = time.process_time() - cpu0
    # exact model C(r), r <= 64, on the test sequences (the goodness-of-fit input)
    # (range 2 on a fifth of them: O(q^3) per propagation step instead of O(q^2); scaled)
    results["model_correlation_r64_s"] = {}
    for name in ("+couplings", "+sequence latent", "+range-2"):
        share = 5 if name == "+range-2" else 1
        t = time.perf_counter()
        model_correlation_function(models[name], tokens[test][: n_test // share], max_distance=64)
        results["model_correlation_r64_s"][name] = (time.perf_counter() - t) * share
    results["model_correlation_note"] = "all test sequences; +range-2 timed on a fifth of them and scaled"
    # head-to-head with the plain implementation on a subset (its fit needs ~10x more iterations)
    n_sub = 50 if args.quick else 100
    sub = slice(n_test, n_test + n_sub)
    t = time.perf_counter()
    ours = ConditionalChain(token_rows=1000, couplings="potts").fit(x[sub], tokens[sub])
    ours_s = time.perf_counter() - t
    rows_sub = ours.vocabulary_.rows(tokens[sub])
    t = time.perf_counter()
    res, _ = numpy_crf_fit(x[sub], rows_sub, ours.vocabulary_.n_rows, ours.l2, ours.tol)
    numpy_s = time.perf_counter() - t
    # one objective-and-gradient evaluation each on a larger subset (time per evaluation)
    n_eval = 200 if args.quick else 1000
    ev = slice(n_test, n_test + n_eval)
    from ising_moe.fit.conditional.objective import CRFObjective

    data, _, rows_ev, w = ours._prepare(x[ev], tokens[ev], None, None, None, None)
    rows_ev = ours.vocabulary_.rows(tokens[ev])
    obj = CRFObjective(data, rows_ev, ours.layout_, ours.l2, w)
    _, objective_ev = numpy_crf_fit(x[ev], rows_ev, ours.vocabulary_.n_rows, ours.l2, ours.tol, evaluate_only=True)
    numpy_eval_s = best_time(lambda: objective_ev(ours.theta_), repeat=2)
    ours_eval_s = best_time(lambda: obj(ours.theta_), repeat=3)
    np.testing.assert_allclose(objective_ev(ours.theta_)[1], obj(ours.theta_)[1], rtol=1e-8, atol=1e-12)
    ours_value = (-ours.result_.log_likelihood + 0.5 * ours.l2 * ours.theta_ @ ours.theta_) / x[sub].size
    results["head_to_head"] = {
        "fit_n_sequences": n_sub, "ising_moe_fit_s": ours_s, "numpy_scipy_fit_s": numpy_s,
        "fit_speedup": numpy_s / ours_s, "ising_moe_iterations": ours.result_.n_iter,
        "numpy_iterations": int(res.nit), "ising_moe_objective_per_token": float(ours_value),
        "numpy_objective_per_token": float(res.fun), "evaluation_n_sequences": n_eval,
        "ising_moe_evaluation_s": ours_eval_s, "numpy_evaluation_s": numpy_eval_s,
        "evaluation_speedup": numpy_eval_s / ours_eval_s,
        "numpy_table_estimate_s": numpy_s * (n_seq - n_test) / n_sub * len(TABLE),
        "note": ("the plain fit is timed on fit_n_sequences; its evaluation scales linearly with the sequences, "
                 "so numpy_table_estimate_s assumes its iteration count for every model of the table"),
    }
    emit("decomposition", results)


if __name__ == "__main__":
    main()
