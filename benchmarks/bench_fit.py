"""Exact maximum-likelihood fit speed (position-dependent fields, Potts coupling, q = 8), against a
plain NumPy/SciPy implementation of the same likelihood in the same run: vectorised (over
sequences) clamped forward-backward for the data term, forward-backward for log Z, L-BFGS on the
same parameters. Prints JSON with times, ratios and the final log-likelihoods (equal to ~1e-6).

    python benchmarks/bench_fit.py [--quick] [--only errors|bias]

Also: the cost of standard errors (the fit, then the first access of ``fields_stderr``, which
computes them lazily), and the O(1/N) upward bias of the coupling caused by free position fields,
against smooth (``field_smoothing``) and block fields, paired over the same samples.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import emit
from scipy import optimize
from scipy.special import logsumexp

from ising_moe import PottsChain, exact
from ising_moe.errors import SparseDataWarning
from ising_moe.fit import ChainMaxLikelihood
from ising_moe.fit.params import zero_sum_basis


def numpy_fit(x, q, l2, tol):
    """Plain implementation: parameters = zero-sum position fields (basis B) and a Potts J."""
    n_seq, n = x.shape
    b = zero_sum_basis(q)
    p_potts = np.eye(q) - 1.0 / q
    onehot = (x[:, :, None] == np.arange(q)).astype(float)
    n_tokens = x.size

    def objective(theta):
        h = theta[:-1].reshape(n, q - 1) @ b.T
        jmat = theta[-1] * p_potts
        w = np.exp(jmat)
        # data term: clamped forward-backward of every sequence (vectorised over sequences)
        e = np.exp(h)[None, :, :] * onehot
        alpha = np.empty((n_seq, n, q))
        scale = np.empty((n_seq, n))
        a = e[:, 0]
        scale[:, 0] = a.sum(axis=1)
        alpha[:, 0] = a / scale[:, 0, None]
        for i in range(1, n):
            a = (alpha[:, i - 1] @ w) * e[:, i]
            scale[:, i] = a.sum(axis=1)
            alpha[:, i] = a / scale[:, i, None]
        ll_data = np.log(scale).sum()
        beta = np.ones((n_seq, q))
        site = np.zeros((n, q))
        pair = np.zeros((q, q))
        site[n - 1] = alpha[:, n - 1].sum(axis=0)
        for i in range(n - 2, -1, -1):
            nxt = e[:, i + 1] * beta
            pair += np.einsum("sa,ab,sb,s->ab", alpha[:, i], w, nxt, 1.0 / scale[:, i + 1])
            beta = (nxt @ w.T) / scale[:, i + 1, None]
            site[i] = (alpha[:, i] * beta).sum(axis=0)
        # model term: one forward-backward of the free chain in log space
        la = np.empty((n, q))
        la[0] = h[0]
        for i in range(1, n):
            la[i] = logsumexp(la[i - 1][:, None] + jmat, axis=0) + h[i]
        log_z = logsumexp(la[-1])
        lb = np.zeros((n, q))
        for i in range(n - 2, -1, -1):
            lb[i] = logsumexp(jmat + h[i + 1][None, :] + lb[i + 1][None, :], axis=1)
        marg = np.exp(la + lb - log_z)
        mpair = np.zeros((q, q))
        for i in range(n - 1):
            mpair += np.exp(la[i][:, None] + jmat + h[i + 1][None, :] + lb[i + 1][None, :] - log_z)
        ll = ll_data - n_seq * log_z
        g_h = site - n_seq * marg
        g_j = pair - n_seq * mpair
        grad = np.concatenate([(g_h @ b).ravel(), [np.sum(g_j * p_potts)]])
        value = -ll + 0.5 * l2 * theta @ theta
        return value / n_tokens, (-grad + l2 * theta) / n_tokens

    res = optimize.minimize(objective, np.zeros(n * (q - 1) + 1), jac=True, method="L-BFGS-B",
                            options={"gtol": tol, "ftol": 1e-15, "maxiter": 5000})
    return res, -objective(res.x)[0] * n_tokens


def standard_error_cost(x_all):
    """Seconds of the fit and of the first access of its standard errors (L = 512, q = 8)."""
    t0 = time.perf_counter()
    fit = ChainMaxLikelihood(couplings="potts").fit(x_all)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    _ = fit.result_.fields_stderr  # computed here, on first access
    return {"n_sequences": len(x_all), "fit_s": t_fit, "first_stderr_access_s": time.perf_counter() - t0,
            "coupling_stderr": float(fit.result_.couplings_stderr[0, 0, 0, 0] / (1 - 1 / 8))}


def position_field_bias(n_rep: int, n_seq: int = 50, n: int = 64, q: int = 4, coupling: float = 1.0):
    """Bias of the Potts coupling with free position fields, smooth fields and block fields.

    Samples from a chain with smooth true fields; every variant is fitted to the same samples, so
    the differences are paired. Free fields (``n (q - 1)`` nuisance parameters, each estimated
    from ``N`` tokens) fit sampling noise that neighbouring sites share, and the coupling absorbs it.
    """
    i = np.arange(n)[:, None]
    fields = 0.5 * np.sin(2 * np.pi * i / n + 2 * np.pi * np.arange(q)[None, :] / q)
    model = PottsChain.potts(n, q, coupling=coupling, field=fields)
    variants = {"free position fields": {"bias_correction": "none"},
                "free position fields, jackknife (default)": {"bias_correction": "jackknife"}, "field_smoothing=20": {"field_smoothing": 20.0},
                "field_smoothing=200": {"field_smoothing": 200.0}, "blocks:16": {"fields": "blocks:16"}}
    est = {k: [] for k in variants}
    for rep in range(n_rep):
        x = exact.sample(model, n_seq, rng=1000 + rep)
        for name, kw in variants.items():
            fit = ChainMaxLikelihood(couplings="potts", l2=1e-3, standard_errors=False, **kw).fit(x)
            est[name].append(fit.potts_coupling_ - coupling)
    free = np.array(est["free position fields"])
    out = {"n_sequences": n_seq, "n_sites": n, "n_states": q, "coupling": coupling, "replicas": n_rep}
    for name, v in est.items():
        v = np.array(v)
        out[name] = {"bias": float(v.mean()), "bias_error": float(v.std(ddof=1) / np.sqrt(n_rep)),
                     "minus_free": float((v - free).mean()),
                     "minus_free_error": float((v - free).std(ddof=1) / np.sqrt(n_rep))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("errors", "bias"), default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore", SparseDataWarning)  # tiny warm-up fit; not part of the benchmark
    if args.only == "bias":
        emit("fit_bias", {"position_field_bias": position_field_bias(20 if args.quick else 60)})
        return
    q, n = 8, 512
    rng = np.random.default_rng(0)
    fields = 0.5 * rng.normal(size=(n, q))
    model = PottsChain.potts(n, q, coupling=1.2, field=fields)
    n_max = 2000 if args.quick else 10_000
    x_all = exact.sample(model, n_max, rng=1)
    results = {}
    _ = ChainMaxLikelihood().fit(x_all[:20, :32]).result_.fields_stderr  # JIT warm-up (fit and errors)
    if args.only == "errors":
        emit("fit_errors", {"standard_errors": standard_error_cost(x_all[:2000])})
        return
    # head-to-head at the size where the plain implementation is practical
    n_cmp = 500 if args.quick else 2000
    x = x_all[:n_cmp]
    t0 = time.perf_counter()
    ours = ChainMaxLikelihood(couplings="potts", standard_errors=False, l2=0.1, bias_correction="none").fit(x)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    res, ll_np = numpy_fit(x, q, 0.1, 1e-7)
    t_np = time.perf_counter() - t0
    results["head_to_head"] = {
        "n_sequences": n_cmp, "n_positions": n, "n_states": q,
        "ising_moe_s": t_ours, "numpy_scipy_s": t_np, "speedup": t_np / t_ours,
        "ising_moe_log_likelihood_with_prior":
            ours.result_.log_likelihood - 0.05 * ours.result_.theta @ ours.result_.theta,
        "numpy_log_likelihood_with_prior": ll_np, "numpy_iterations": int(res.nit),
        "ising_moe_iterations": ours.result_.n_iter,
    }
    scaling = []
    for size in ([500, 1000, 2000] if args.quick else [1000, 2000, 5000, 10_000]):
        t0 = time.perf_counter()
        fit = ChainMaxLikelihood(couplings="potts", standard_errors=False, bias_correction="none").fit(x_all[:size])
        scaling.append({"n_sequences": size, "n_states": q, "seconds": time.perf_counter() - t0,
                        "iterations": fit.result_.n_iter})
    for qq in ((2, 16) if args.quick else (2, 4, 16, 32)):
        m = PottsChain.potts(n, qq, coupling=1.2, field=0.5 * rng.normal(size=(n, qq)))
        xq = exact.sample(m, 2000, rng=2)
        t0 = time.perf_counter()
        fit = ChainMaxLikelihood(couplings="potts", standard_errors=False, bias_correction="none").fit(xq)
        scaling.append({"n_sequences": 2000, "n_states": qq, "seconds": time.perf_counter() - t0,
                        "iterations": fit.result_.n_iter})
    results["scaling"] = scaling
    # the target case, with standard errors (lazy: the fit, then their first access), and a masked
    # version (20% hidden tokens)
    results["standard_errors"] = standard_error_cost(x_all)
    mask = rng.random(x_all.shape) > 0.2
    t0 = time.perf_counter()
    ChainMaxLikelihood(couplings="potts", standard_errors=False, bias_correction="none").fit(x_all, mask, np.full(len(x_all), n))
    results["target_fit_20pct_hidden_s"] = time.perf_counter() - t0
    results["target_n_sequences"] = n_max
    results["position_field_bias"] = position_field_bias(20 if args.quick else 60)
    emit("fit", results)


if __name__ == "__main__":
    main()
