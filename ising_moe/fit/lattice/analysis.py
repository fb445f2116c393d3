"""The lattice analysis of expert sequences behind ``isingmoe fit --lattice``.

On a held-out split of the sequences (every layer's top-1 expert, the router's choice for dropped
tokens):

1. **Per adjacent layer pair** ``(l, l+1)``: a two-layer lattice with and without its cross-layer
   coupling, both fitted on the training sequences; the held-out gain (exact log-likelihood of the
   pair's columns, ``q^2`` states) in bits per token, with the paired error over test sequences:
   what the cross-layer coupling adds beyond the two layers' own chains.
2. **The whole lattice** (every layer, cross-layer couplings up to ``cross_range``): the fitted
   couplings (their strengths at a glance), its exact held-out gain over independent layers where
   the column is small enough to score (``q^Λ <=`` :data:`MAX_SCORE_STATES`), the model's
   cross-layer mutual information beside the empirical one for every pair of layers, and each
   layer's model ``C(r)`` against the data (the goodness of fit of
   :func:`~ising_moe.fit.conditional.goodness_of_fit`), from draws of the fitted model given the test
   sequences' tokens.

Mutual information: the plug-in estimate ``sum p(a,b) log2 p(a,b) / (p(a) p(b))`` of the experts of
two layers at one token, pooled over the test tokens; the model's from its joint (exact pair
marginals, or the draws) on the same tokens, the same estimator. Its error: bootstrap over test
sequences.

Methods (``method``): ``"auto"`` fits the pairs exactly where their column has at most
:data:`MAX_EXACT_PAIR_STATES` states (``q <= 32``), else by pseudo-likelihood, and the whole
lattice by Monte Carlo learning from its pseudo-likelihood fit. Pseudo-likelihood is consistent,
but on routing whose experts are nearly determined by the token it can be far from the maximum
of the likelihood the pairs are scored by: on ``olmoe-tiny`` layers 2-3 its cross-layer gain was
-0.41 ± 0.01 bits/token where the exact fit's is +0.079 ± 0.003 (0-1: +0.054 against +0.059).
``"exact"`` fits every model exactly (columns up to
:data:`~ising_moe.fit.lattice.exact.MAX_COLUMN_STATES`); ``"pseudo-likelihood"`` and
``"monte-carlo"`` fit every model that way. Every fitted model is scored by the exact likelihood
where it can be.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..._util import as_int
from ...errors import InvalidParameterError
from .model import ConditionalLattice, LatticeFitResult

__all__ = ["LatticeReport", "analyze_lattice", "crosslayer_mutual_information", "lattice_figure", "mutual_information",
           "plot_lattice", "write_lattice_report", "MAX_SCORE_STATES"]

_LN2 = math.log(2.0)
#: largest column scored exactly on the held-out sequences (one forward pass per test sequence)
MAX_SCORE_STATES = 4096
#: fewest held-out sequences whose paired and bootstrap errors the lattice report shows
MIN_TEST_SEQUENCES = 4
#: largest pair column (q^2) that ``method="auto"`` fits exactly
MAX_EXACT_PAIR_STATES = 1024


@dataclass(frozen=True, eq=False)
class LatticeReport:
    """Result of :func:`analyze_lattice` (bits are base-2; gains per token position).

    Attributes
    ----------
    layers : list of int
        The MoE layers, in order (lattice rows).
    method : str
    params : dict
    source : dict
    n_train, n_test : int
        Sequences.
    n_test_tokens : int
    adjacent : ndarray of int, shape (Λ - 1, 2)
        Indices (into ``layers``) of the adjacent pairs.
    pair_gain, pair_gain_error : ndarray, shape (Λ - 1,)
        Held-out bits/token the cross-layer coupling of each adjacent pair adds (paired error).
    full_gain, full_gain_error : float
        Held-out bits/token of the whole lattice over independent layers (NaN when not scored).
    mi_empirical, mi_empirical_error, mi_model : ndarray, shape (Λ, Λ)
        Cross-layer mutual information (bits) of the test tokens; diagonal NaN.
    cross_pairs : ndarray of int, shape (P, 2)
    strength_within : ndarray, shape (Λ,)
        Frobenius norm (nats) of each layer's zero-sum coupling matrix along the text.
    strength_cross : ndarray, shape (P,)
        The same for each cross-layer coupling.
    fit : LatticeFitResult
        The whole lattice.
    correlation_model, correlation_empirical, correlation_error : ndarray, shape (Λ, R + 1)
        ``C(r)`` per layer on the test sequences: the model's (from its draws) and the data's.
    gof : list of dict
        Per layer: ``max_abs_z``, ``chi2``, ``p_value``, ``dof``, ``consistent`` (|z| <= 3 and p > 0.01;
        None when the correlated chi-square cannot be computed: fewer test sequences than distances).
    notes : list of str
    seconds : float
    """

    layers: list
    method: str
    params: dict
    source: dict
    n_train: int
    n_test: int
    n_test_tokens: int
    adjacent: np.ndarray
    pair_gain: np.ndarray
    pair_gain_error: np.ndarray
    full_gain: float
    full_gain_error: float
    mi_empirical: np.ndarray
    mi_empirical_error: np.ndarray
    mi_model: np.ndarray
    cross_pairs: np.ndarray
    strength_within: np.ndarray
    strength_cross: np.ndarray
    fit: LatticeFitResult = field(repr=False)
    correlation_model: np.ndarray = field(repr=False)
    correlation_empirical: np.ndarray = field(repr=False)
    correlation_error: np.ndarray = field(repr=False)
    gof: list = field(repr=False)
    notes: list = field(default_factory=list)
    seconds: float = math.nan

    def summary(self) -> dict:
        """A JSON-ready dict (bits; NaN for numbers the data do not support)."""
        lay = self.layers
        return {
            "layers": lay, "method": self.method, "n_train": self.n_train, "n_test": self.n_test,
            "adjacent_pairs": [{"layers": [lay[a], lay[b]], "gain_bits_per_token": float(g),
                                "gain_error": float(e), "mi_empirical_bits": float(self.mi_empirical[a, b]),
                                "mi_empirical_error": float(self.mi_empirical_error[a, b]),
                                "mi_model_bits": float(self.mi_model[a, b])}
                               for (a, b), g, e in zip(self.adjacent, self.pair_gain, self.pair_gain_error)],
            "full_gain_bits_per_token": self.full_gain, "full_gain_error": self.full_gain_error,
            "strength_within": {str(lay[k]): float(v) for k, v in enumerate(self.strength_within)},
            "strength_cross": {f"{lay[a]}-{lay[b]}": float(v) for (a, b), v in zip(self.cross_pairs,
                                                                                    self.strength_cross)},
            "whole_lattice_converged": bool(self.fit.success),
            "fit": {"method": self.fit.method, "success": self.fit.success, "message": self.fit.message,
                    "n_params": self.fit.n_params, "seconds": self.fit.seconds},
            "goodness_of_fit": {str(lay[k]): g for k, g in enumerate(self.gof)},
            "notes": self.notes, "seconds": self.seconds,
        }

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        from ...data import subject_label

        out = [f"lattice ({self.method}, layers {', '.join(map(str, self.layers))}; {self.n_test} held-out "
               f"sequences of {subject_label(self.source)}): cross-layer coupling gain per adjacent pair [bits/token], "
               f"MI empirical / model [bits]"]
        if not self.fit.success:
            out.append(f"  FLAG: the whole-lattice fit ({self.fit.method}) did not converge ({self.fit.message}): "
                       "the model MI, the whole-lattice gain and the model C(r) below are those of a fit that "
                       "was still moving (the pair gains are separate fits)")
        for (a, b), g, e in zip(self.adjacent, self.pair_gain, self.pair_gain_error):
            out.append(f"  layers {self.layers[a]}-{self.layers[b]}: {g:+.4f} ± {e:.4f}; MI "
                       f"{self.mi_empirical[a, b]:.3f} ± {self.mi_empirical_error[a, b]:.3f} / "
                       f"{self.mi_model[a, b]:.3f}")
        if math.isfinite(self.full_gain):
            out.append(f"  whole lattice over independent layers: {self.full_gain:+.4f} ± {self.full_gain_error:.4f} "
                       f"bits/token")
        bad = [str(self.layers[k]) for k, g in enumerate(self.gof) if g["consistent"] is False]
        untested = [str(self.layers[k]) for k, g in enumerate(self.gof) if g["consistent"] is None]
        if untested:
            out.append(f"  model C(r) vs data: n/a in layer(s) {', '.join(untested)} ({self.gof[0]['message']})")
        if bad:
            detail = "; ".join(f"layer {self.layers[k]} max|z| = {g['max_abs_z']:.1f}, p = {g['p_value']:.2g}"
                               for k, g in enumerate(self.gof) if g["consistent"] is False)
            out.append(f"  model C(r) not consistent with the data (|z| > 3 or p <= 0.01) in layer(s) "
                       f"{', '.join(bad)}: {detail}")
        elif not untested:
            out.append("  model C(r) consistent with the data in every layer (|z| <= 3 and p > 0.01)")
        out += [f"  note: {n}" for n in self.notes]
        return out


def mutual_information(joint) -> float:
    """Plug-in mutual information (bits) of a joint count or probability table (a, b)."""
    p = np.asarray(joint, dtype=float)
    total = p.sum()
    if total <= 0:
        return math.nan
    p = p / total
    pa, pb = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    ok = p > 0
    return float((p[ok] * np.log2(p[ok] / (pa @ pb)[ok])).sum())


def crosslayer_mutual_information(data, layers=None, *, n_bootstrap: int = 100, seed: int = 0) -> dict:
    """In-sample plug-in mutual information (bits) between the top-1 experts of two layers at one
    token, for every pair of layers of an :class:`~ising_moe.data.ExpertSequences`, pooled over every
    valid token (the router's choice for dropped tokens).

    Returns a dict with ``layers``, ``mi`` (Λ, Λ), ``error`` (bootstrap over sequences), ``bias``
    (the plug-in's leading upward bias ``(q - 1)^2 / (2 N ln 2)``) and ``n_tokens``.
    """
    layer_ids = list(data.layers) if layers is None else [int(x) for x in layers]
    q = data.n_experts
    states = np.stack([data.states(layer, dropped="router")[0] for layer in layer_ids], axis=1).astype(np.int64)
    mask = np.asarray(data.mask, bool)
    s, lam, n = states.shape
    joint = np.zeros((s, lam, lam, q, q))
    seq = np.broadcast_to(np.arange(s)[:, None], (s, n))[mask]
    for a in range(lam):
        for b in range(a + 1, lam):
            np.add.at(joint, (seq, a, b, states[:, a][mask], states[:, b][mask]), 1.0)
    mi = _mi_matrix(joint.sum(axis=0))
    rng = np.random.default_rng(seed)
    boots = [_mi_matrix(np.tensordot(np.bincount(rng.integers(0, s, s), minlength=s).astype(float), joint, axes=1))
             for _ in range(as_int(n_bootstrap, "n_bootstrap", minimum=2))]
    n_tok = int(mask.sum())
    return {"layers": layer_ids, "mi": mi, "error": np.std(np.array(boots), axis=0, ddof=1),
            "bias": (q - 1) ** 2 / (2 * n_tok * _LN2), "n_tokens": n_tok}


def _joint_per_sequence(states, lengths, q):
    """Per-sequence joint counts of every layer pair: (S, Λ, Λ, q, q)."""
    s, lam, n = states.shape
    inside = np.arange(n)[None, :] < lengths[:, None]
    out = np.zeros((s, lam, lam, q, q))
    seq = np.broadcast_to(np.arange(s)[:, None], (s, n))[inside]
    for a in range(lam):
        for b in range(a + 1, lam):
            np.add.at(out, (seq, a, b, states[:, a][inside], states[:, b][inside]), 1.0)
    return out


def _mi_matrix(joint):
    lam = joint.shape[0]
    out = np.full((lam, lam), np.nan)
    for a in range(lam):
        for b in range(a + 1, lam):
            out[a, b] = out[b, a] = mutual_information(joint[a, b])
    return out


def _paired(new, old, n_tokens):
    d = (new - old) / _LN2
    err = float(math.sqrt(len(d)) * d.std(ddof=1) / n_tokens) if len(d) > 1 else math.nan
    return float(d.sum() / n_tokens), err


def _fit(method, states, tokens, lengths, q, token_rows, couplings, cross_range, l2, seed, mc_options):
    model = ConditionalLattice(method=method, couplings=couplings, cross_range=cross_range, token_rows=token_rows,
                               l2=l2, standard_errors=False, random_state=seed, mc_options=mc_options)
    return model.fit(states, tokens, lengths, n_states=q)


def analyze_lattice(data, *, layers=None, method: str = "auto", couplings: str = "potts", cross_range: int = 1,
                    token_rows: int = 1000, l2: float = 1.0, test_fraction: float = 0.2, gof_distance: int = 32,
                    n_draws: int = 4, n_bootstrap: int = 100, mc_options=None, seed: int = 0,
                    progress: bool = False) -> LatticeReport:
    """Fit the lattice to an :class:`~ising_moe.data.ExpertSequences` (see the module docstring).

    Parameters
    ----------
    data : ExpertSequences
        Needs token ids (for ``token_rows > 0``) and at least two layers.
    layers : sequence of int, optional
        MoE layers, in order (default: all).
    method : str
        ``"auto"``, ``"exact"``, ``"pseudo-likelihood"`` or ``"monte-carlo"``.
    couplings, cross_range, token_rows, l2 : as :class:`ConditionalLattice`
    test_fraction : float
    gof_distance : int
        Largest ``r`` of the ``C(r)`` comparison.
    n_draws : int
        Draws of the fitted lattice per test sequence (model ``C(r)``, and MI where not exact).
    n_bootstrap : int
        Bootstrap replicates of the empirical MI.
    mc_options : dict, optional
        Options of :func:`~ising_moe.fit.mc_learning.mc_learning`.
    seed : int
    progress : bool
        A progress bar on stderr over the fits (each adjacent pair, the whole lattice, the rest).
    """
    from ...measure import correlation_function
    from ..conditional import goodness_of_fit

    t_start = time.perf_counter()
    if method not in ("auto", "exact", "pseudo-likelihood", "monte-carlo"):
        raise InvalidParameterError(f"method must be auto, exact, pseudo-likelihood or monte-carlo, got {method!r}")
    layer_ids = list(data.layers) if layers is None else [int(x) for x in layers]
    if len(layer_ids) < 2:
        raise InvalidParameterError("the lattice needs at least two MoE layers (--layers with two or more)")
    if token_rows and data.token_ids is None:
        raise InvalidParameterError("the lattice's token fields need the token ids of the routed text, and this file "
                                    "has none: re-extract it with `isingmoe extract`")
    if not 0 < test_fraction < 1:
        raise InvalidParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_draws = as_int(n_draws, "n_draws", minimum=1)
    q = data.n_experts
    states = np.stack([data.states(layer, dropped="router")[0] for layer in layer_ids], axis=1).astype(np.int64)
    mask = data.mask
    lengths = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
    inside = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    holes = (inside & ~mask).any(axis=1)
    keep = mask.any(axis=1) & (lengths >= 2) & ~holes
    notes = []
    if holes.any():
        notes.append(f"{int(holes.sum())} sequences with invalid positions inside their length left out (the "
                     "lattice has no hidden sites)")
    states, lengths = states[keep], lengths[keep]
    tokens = None if data.token_ids is None or not token_rows else np.asarray(data.token_ids)[keep]
    n_seq = len(lengths)
    n_test = max(1, round(test_fraction * n_seq))
    if n_seq - n_test < 2 or n_test < MIN_TEST_SEQUENCES:
        raise InvalidParameterError(
            f"{n_seq} usable sequences give {n_test} held-out and {n_seq - n_test} training sequences: the paired "
            f"and bootstrap errors need at least {MIN_TEST_SEQUENCES} held-out and 2 training sequences (more "
            f"sequences, or a larger test fraction)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_seq)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    lam = len(layer_ids)
    tok = (lambda idx: None) if tokens is None else (lambda idx: tokens[idx])
    pair_method = method
    if method == "auto":
        pair_method = "exact" if q**2 <= MAX_EXACT_PAIR_STATES else "pseudo-likelihood"
    full_method = "monte-carlo" if method == "auto" else method
    seeds = np.random.SeedSequence(seed).spawn(lam + 2)
    test_tokens = int(lengths[test].sum())

    from tqdm.auto import tqdm

    bar = tqdm(total=lam + 1, desc="lattice", unit="fit", disable=not progress or None)
    # 1. adjacent pairs: with vs without their cross-layer coupling, exact held-out likelihood
    adjacent = np.array([(k, k + 1) for k in range(lam - 1)], dtype=np.int64)
    gain, gain_err = np.full(lam - 1, np.nan), np.full(lam - 1, np.nan)
    for k, (a, b) in enumerate(adjacent):
        sub = states[:, [a, b]]
        s_seed = int(seeds[k].generate_state(1)[0])
        ll = []
        for cr in (1, 0):
            model = _fit(pair_method, sub[train], tok(train), lengths[train], q, token_rows, couplings, cr, l2,
                         s_seed, mc_options)
            ll.append(model.log_likelihood(sub[test], tok(test), lengths[test]))
        gain[k], gain_err[k] = _paired(ll[0], ll[1], test_tokens)
        bar.update()

    # 2. the whole lattice
    full_seed = int(seeds[lam].generate_state(1)[0])
    cross_range = min(as_int(cross_range, "cross_range", minimum=1), lam - 1)
    model = _fit(full_method, states[train], tok(train), lengths[train], q, token_rows, couplings, cross_range, l2,
                 full_seed, mc_options)
    bar.update()
    full_gain = full_err = math.nan
    if q**lam <= MAX_SCORE_STATES:
        indep = _fit("pseudo-likelihood" if method == "auto" else method, states[train], tok(train), lengths[train], q,
                     token_rows, couplings, 0, l2, full_seed, mc_options)
        full_gain, full_err = _paired(model.log_likelihood(states[test], tok(test), lengths[test]),
                                      indep.log_likelihood(states[test], tok(test), lengths[test]), test_tokens)
    else:
        notes.append(f"whole-lattice gain not scored: {q}^{lam} column states (> {MAX_SCORE_STATES})")
    # draws of the fitted model given the test tokens (exact FFBS for small columns, else the sampler)
    gen = np.random.default_rng(seeds[lam + 1])
    rep = np.repeat(test, n_draws)
    draws = model.sample(tok(rep), lengths[rep], n_sites=states.shape[2], rng=gen, n_sweeps=500)
    bar.update()
    bar.close()

    # mutual information, empirical (bootstrap over test sequences) and model
    joint_seq = _joint_per_sequence(states[test], lengths[test], q)
    mi_emp = _mi_matrix(joint_seq.sum(axis=0))
    boot_rng = np.random.default_rng(seeds[lam + 1].spawn(1)[0])
    boots = []
    for _ in range(as_int(n_bootstrap, "n_bootstrap", minimum=2)):
        w = np.bincount(boot_rng.integers(0, n_test, n_test), minlength=n_test).astype(float)
        boots.append(_mi_matrix(np.tensordot(w, joint_seq, axes=1)))
    mi_err = np.std(np.array(boots), axis=0, ddof=1)
    bias = (q - 1) ** 2 / (2 * test_tokens * math.log(2))
    if bias > 0.01:
        notes.append(f"plug-in MI is biased up by about (q - 1)^2 / (2 N ln 2) = {bias:.2g} bits on these "
                     f"{test_tokens} test tokens (the empirical MI's, and the model's where it comes from draws)")
    if q**lam <= MAX_SCORE_STATES and full_method == "exact":
        pm = model.exact().pair_marginals(model.lattice_data(states[test], tok(test), lengths[test]))
        mi_model = _mi_matrix(pm)
    else:
        mi_model = _mi_matrix(_joint_per_sequence(draws, lengths[rep], q).sum(axis=0))

    # C(r) per layer: model draws vs the test data
    r_max = min(as_int(gof_distance, "gof_distance", minimum=1), int(lengths[test].max()) - 1)
    pos = np.arange(states.shape[2])[None, :]
    c_model = np.full((lam, r_max + 1), np.nan)
    c_emp = np.full((lam, r_max + 1), np.nan)
    c_err = np.full((lam, r_max + 1), np.nan)
    gof = []
    for k in range(lam):
        emp = correlation_function(states[test, k], pos < lengths[test, None], q, r_max, n_null=0)
        mod = correlation_function(draws[:, k], pos < lengths[rep, None], q, r_max, n_null=0)
        g = goodness_of_fit(mod.values, emp)
        c_model[k], c_emp[k], c_err[k] = mod.values, emp.values, emp.errors
        testable = math.isfinite(g.p_value)  # the correlated chi-square needs more sequences than distances
        gof.append({"max_abs_z": g.max_abs_z, "chi2": g.chi2, "p_value": g.p_value, "dof": g.dof,
                    "consistent": g.consistent if testable else None, "message": g.message,
                    "model_error_ratio": float(1 / math.sqrt(n_draws))})
    notes.append(f"model C(r) and MI from {n_draws} draws per test sequence: their Monte Carlo error (about "
                 f"{1 / math.sqrt(n_draws):.2f} of the empirical error) is not in the z-scores")
    strength = model.result_.coupling_strength()
    params = {"layers": layer_ids, "method": method, "pair_method": pair_method, "full_method": full_method,
              "couplings": couplings, "cross_range": cross_range, "token_rows": token_rows, "l2": l2,
              "test_fraction": test_fraction, "gof_distance": gof_distance, "n_draws": n_draws,
              "n_bootstrap": n_bootstrap, "mc_options": mc_options or {}, "seed": seed, "dropped": "router"}
    source = {"model_id": getattr(data, "model_id", ""), "weights": getattr(data, "weights", ""),
              "model_alias": getattr(data, "attrs", {}).get("model_alias", ""),
              "path": None if getattr(data, "path", None) is None else str(data.path)}
    return LatticeReport(
        layers=layer_ids, method=method, params=params, source=source, n_train=len(train), n_test=n_test,
        n_test_tokens=test_tokens, adjacent=adjacent, pair_gain=gain, pair_gain_error=gain_err, full_gain=full_gain,
        full_gain_error=full_err, mi_empirical=mi_emp, mi_empirical_error=mi_err, mi_model=mi_model,
        cross_pairs=model.pairs_, strength_within=strength["within"], strength_cross=strength["cross"],
        fit=model.result_, correlation_model=c_model, correlation_empirical=c_emp, correlation_error=c_err, gof=gof,
        notes=notes, seconds=time.perf_counter() - t_start)


def plot_lattice(report: LatticeReport, axes=None):
    """Couplings at a glance (left) and empirical vs model cross-layer MI (right); returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    ax1, ax2 = axes
    lay = report.layers
    x = np.arange(len(lay))
    ax1.bar(x, report.strength_within, 0.35, label="within layer l (along the text), at l")
    pos = np.array([(a + b) / 2 for a, b in report.cross_pairs], dtype=float)
    ax1.bar(pos, report.strength_cross, 0.35, label="cross-layer (l, m), at (l + m) / 2")
    ax1.set_xticks(x, [str(v) for v in lay])
    ax1.set_xlabel("layer")
    ax1.set_ylabel("coupling strength ||J||_F [nats]")
    ax1.legend(fontsize="small")
    flag = "" if report.fit.success else "\n(FLAG: fit not converged, still moving)"
    ax1.set_title("fitted couplings (zero-sum gauge)" + flag, fontsize="medium")
    lam = len(lay)
    pairs = [(a, b) for a in range(lam) for b in range(a + 1, lam)]
    emp = np.array([report.mi_empirical[a, b] for a, b in pairs])
    err = np.array([report.mi_empirical_error[a, b] for a, b in pairs])
    mod = np.array([report.mi_model[a, b] for a, b in pairs])
    for (a, b), e, s, m in zip(pairs, emp, err, mod):
        ax2.errorbar(e, m, xerr=s, fmt="o", capsize=2, label=f"{lay[a]}-{lay[b]} (distance {b - a})")
    top = max(float(np.nanmax(np.r_[emp, mod])), 1e-3) * 1.1
    ax2.plot([0, top], [0, top], "k--", lw=0.8)
    ax2.set_xlim(0, top)
    ax2.set_ylim(0, top)
    ax2.set_xlabel("empirical MI [bits] (test tokens)")
    ax2.set_ylabel("model MI [bits]")
    ax2.legend(fontsize="x-small")
    ax2.set_title("cross-layer mutual information of one token's experts" + flag, fontsize="medium")
    return ax1, ax2


def write_lattice_report(report: LatticeReport, path, *, overwrite: bool = False, input_sha256: str = "") -> None:
    """Write a :class:`LatticeReport` to HDF5 (kind ``"lattice"``; provenance, ``finished`` last)."""
    import json

    from ...io import atomic_h5, strict_json, write_array

    attrs = {"model_id": report.source.get("model_id") or "unknown",
             "weights": report.source.get("weights") or "unknown",
             "input_path": str(report.source.get("path") or ""), "input_sha256": input_sha256,
             "summary": strict_json(report.summary()), "layers": np.asarray(report.layers, dtype=np.int64)}
    coords = {"layer": np.asarray(report.layers, dtype=np.int64)}
    with atomic_h5(path, kind="lattice", params=report.params, seed=report.params.get("seed"), overwrite=overwrite,
                   attrs=attrs) as f:
        write_array(f, "pair_gain", report.pair_gain, ("adjacent_pair",), units="bits/token")
        write_array(f, "pair_gain_error", report.pair_gain_error, ("adjacent_pair",), units="bits/token")
        write_array(f, "adjacent_pairs", report.adjacent, ("adjacent_pair", "end"))
        for name in ("mi_empirical", "mi_empirical_error", "mi_model"):
            write_array(f, name, getattr(report, name), ("layer", "layer_other"), coords=coords, units="bits")
        for name in ("correlation_model", "correlation_empirical", "correlation_error"):
            write_array(f, name, getattr(report, name), ("layer", "distance"), coords=coords)
        g = f.create_group("fit")
        fit = report.fit
        for key in ("method", "success", "message", "n_iter", "seconds", "n_params", "n_tokens", "log_likelihood",
                    "pseudo_log_likelihood"):
            g.attrs[key] = getattr(fit, key)
        g.attrs["layout"] = json.dumps(fit.layout)
        write_array(g, "token_fields", fit.token_fields, ("layer", "token_row", "state"), coords=coords)
        write_array(g, "couplings", fit.couplings, ("layer", "state", "state_right"), coords=coords)
        write_array(g, "cross_couplings", fit.cross_couplings, ("cross_pair", "state", "state_other"))
        write_array(g, "cross_pairs", fit.pairs, ("cross_pair", "end"))
        write_array(g, "theta", fit.theta, ("parameter",))
        if fit.mc_stderr is not None:
            write_array(g, "theta_mc_stderr", fit.mc_stderr, ("parameter",))


def lattice_figure(report: LatticeReport, out_dir) -> list:
    """Save :func:`plot_lattice` as ``lattice.png`` and ``lattice.pdf`` in ``out_dir``; returns the paths."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    from ...data import subject_label
    from ...plot import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    plot_lattice(report, axes=axes)
    fig.suptitle(f"{subject_label(report.source)}\nlayer x position lattice ({report.fit.method}): couplings and "
                 f"cross-layer mutual information (held-out tokens)")
    return save_figure(fig, Path(out_dir) / "lattice")
