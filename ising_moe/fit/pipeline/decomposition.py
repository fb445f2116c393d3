"""What a layer's routing depends on: the nested table of issue 14 behind ``isingmoe fit``.

One layer's expert sequences with their token ids are split into the same training and test
sequences as the variants of :func:`~ising_moe.fit.pipeline.compare_layer`; the nested models

    independent (global rates) -> +position -> +token -> +token+position -> +couplings
    -> +sequence latent -> +range-2

(:class:`~ising_moe.fit.conditional.ConditionalChain`, :class:`~ising_moe.fit.conditional.ChainMixture`)
are fitted in order on the training sequences, each warm-started from the previous one, and scored
exactly on the test sequences. The gain of a row is its held-out log-likelihood per token minus the
previous row's (bits/token), with the error of the paired difference over test sequences:

    gain = sum_s [log2 p_new(x_s) - log2 p_old(x_s)] / n_tokens,  error = sqrt(n_s) std_s(...) / n_tokens.

"Does the router use position beyond the token?" is answered twice: the held-out gain of
``+token+position`` over ``+token``, and the likelihood-ratio statistic
``2 [log L(+token+position) - log L(+token)]`` on the training data with the number of added
parameters as degrees of freedom (chi-square p-value; the fits are MAP with a weak L2 prior, so the
statistic is a slight underestimate of the unpenalised one: a conservative test).

The best row (largest held-out likelihood) gets its exact model ``C(r)`` on the test sequences
(conditional on their tokens, averaged as the empirical estimator averages) against the empirical
``C(r)`` of the same sequences: residual z per distance, chi-square with the influence covariance.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ...errors import ConvergenceWarning, InvalidParameterError, SparseDataWarning

log = logging.getLogger(__name__)

__all__ = ["ROWS", "LayerDecomposition", "decompose_layer"]

#: the rows of the nested table, in order
ROWS = ("independent", "+position", "+token", "+token+position", "+couplings", "+sequence latent", "+range-2")
_LN2 = math.log(2)


def _row_models(token_rows: int, n_components: int, seed: int) -> dict:
    from ..conditional import ChainMixture, ConditionalChain

    common = {"tol": 1e-4}  # ~1e-4 of a parameter's error at 1e5 tokens: far below the paired errors
    mix = {"position": "position", "token_rows": token_rows, "couplings": "potts", "n_components": n_components,
           "vary": "bias", "n_init": 1, "rng": seed, **common}
    return {
        "independent": (ConditionalChain, {"position": "homogeneous", "token_rows": 0, "couplings": "none", **common}),
        "+position": (ConditionalChain, {"position": "position", "token_rows": 0, "couplings": "none", **common}),
        "+token": (ConditionalChain, {"position": "none", "token_rows": token_rows, "couplings": "none", **common}),
        "+token+position": (ConditionalChain, {"position": "position", "token_rows": token_rows, "couplings": "none",
                                               **common}),
        "+couplings": (ConditionalChain, {"position": "position", "token_rows": token_rows, "couplings": "potts",
                                          **common}),
        "+sequence latent": (ChainMixture, mix),
        "+range-2": (ChainMixture, {**mix, "max_range": 2}),
    }


@dataclass(frozen=True, eq=False)
class LayerDecomposition:
    """The nested table of one layer (all likelihoods in bits/token of the test sequences).

    Attributes
    ----------
    layer : int
    rows : tuple of str
        :data:`ROWS` (a row not fitted has NaN entries and a reason in ``skipped``).
    heldout : ndarray, shape (n_rows,)
        Test log-likelihood per token [bits/token].
    gain, gain_error : ndarray, shape (n_rows,)
        Paired gain over the previous fitted row and its error [bits/token] (NaN for the first row).
    n_parameters : ndarray of int, shape (n_rows,)
    converged : ndarray of bool, shape (n_rows,)
    fit_seconds : ndarray, shape (n_rows,)
    skipped : dict of str -> str
        Rows not fitted and why.
    position_lr, position_lr_dof, position_lr_p : float, int, float
        Likelihood-ratio test of position fields beyond the token fields on the training data.
    n_components : int
        Components of the latent row (chosen by training BIC among the candidates).
    latent_bic : dict of int -> float
        Training BIC of every candidate number of components.
    component_weights : ndarray, shape (n_components,)
    bic_prefers_latent : bool
        Training BIC of the latent row below that of ``+couplings``.
    best : str
        Row with the largest held-out likelihood.
    gof : dict
        Goodness of fit of the best row on the test sequences: ``distances``, ``model``,
        ``empirical``, ``errors``, ``z``, ``chi2``, ``dof``, ``p_value``, ``max_abs_z``,
        ``consistent``, ``message`` (empty dict when not computed).
    n_train, n_test, n_test_tokens, token_rows : int
    seconds : float
    topic : TopicRow or None
        The topic chain (a hidden topic moving along the text; :mod:`.topic`), beside the table:
        its gains are over ``+couplings`` and ``+sequence latent``.
    """

    layer: int
    rows: tuple
    heldout: np.ndarray
    gain: np.ndarray
    gain_error: np.ndarray
    n_parameters: np.ndarray
    converged: np.ndarray
    fit_seconds: np.ndarray
    skipped: dict
    position_lr: float
    position_lr_dof: int
    position_lr_p: float
    n_components: int
    component_weights: np.ndarray
    bic_prefers_latent: bool
    best: str
    gof: dict
    latent_bic: dict
    n_train: int
    n_test: int
    n_test_tokens: int
    token_rows: int
    seconds: float
    topic: object = None

    def gain_of(self, row: str) -> tuple[float, float]:
        i = self.rows.index(row)
        return float(self.gain[i]), float(self.gain_error[i])

    def sentence(self) -> str:
        """One plain sentence: what token, position given the token, neighbours and topic add."""
        # (imported here: the report layer sits above the fitters)
        from ...report.measure import fmt_pm

        def part(label, row):
            g, e = self.gain_of(row)
            if not math.isfinite(g):
                return f"{label} n/a ({self.skipped.get(row, 'not fitted')})"
            return f"{label} {fmt_pm(g, e, 2)}"

        edge = ", the largest tried: more may fit better" if self.latent_bic and len(self.latent_bic) > 1 and \
            self.n_components == max(self.latent_bic) else ""
        lr = (f"LR test {_fmt_p(self.position_lr_p)}, chi2={self.position_lr:.1f}/{self.position_lr_dof} dof"
              if math.isfinite(self.position_lr_p) else "LR test n/a")
        text = (f"{part('token identity adds', '+token')} bits/token, "
                f"{part('position given the token', '+token+position')} ({lr}), "
                f"{part('neighbours', '+couplings')}, "
                f"{part(f'sequence topic (K = {self.n_components}{edge})', '+sequence latent')}")
        if "+range-2" not in self.skipped:
            text += f", {part('distance-2 coupling', '+range-2')}"
        if self.topic is not None:
            text += f"; {self.topic.sentence()}"
        return text

    def gof_sentence(self) -> str:
        """Whether the best model's C(r) residuals are consistent with noise."""
        if not self.gof:
            return "goodness of fit n/a"
        g = self.gof
        head = (f"best model {self.best}: C(r) for r = 1..{int(g['distances'][-1])} on test sequences, "
                f"max |z| = {g['max_abs_z']:.1f}, chi2/dof = {g['chi2']:.1f}/{g['dof']} ({_fmt_p(g['p_value'])})")
        if g["consistent"]:
            return head + ": residuals consistent with noise"
        z = np.asarray(g["z"])
        bad = np.asarray(g["distances"])[np.abs(np.nan_to_num(z)) > 3]
        if bad.size == 0:
            where = "correlated excess across distances (only the chi-square rejects)"
        else:
            sign = "more" if np.nanmean(z[np.abs(np.nan_to_num(z)) > 3]) > 0 else "less"
            where = (f"the data have {sign} same-expert correlation than the model at r = "
                     f"{_ranges(bad)}")
            if sign == "more" and bad.size >= len(z) / 2:
                where += (" (a long-range excess: sequence-level composition beyond the "
                          f"{self.n_components}-component latent, or long-range token statistics)")
        return head + f": NOT consistent with noise; unexplained structure: {where}"


def _fmt_p(p: float) -> str:
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.2g}"


def _ranges(r) -> str:
    r = [int(v) for v in r]
    out, start = [], r[0]
    for a, b in zip(r, r[1:] + [None]):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)


def _paired(new, old, n_tokens):
    d = (new - old) / _LN2
    err = float(math.sqrt(len(d)) * d.std(ddof=1) / n_tokens) if len(d) > 1 else math.nan
    return float(d.sum() / n_tokens), err


def decompose_layer(states, mask, lengths, tokens, n_states: int, layer: int, *, test_fraction: float = 0.2,
                    seed: int = 0, token_rows: int = 1000, n_components=(2, 3), range2: bool = False,
                    gof_distance: int = 64, topic: bool = False) -> LayerDecomposition:
    """Fit the nested table (:data:`ROWS`) to one layer and check the best row's ``C(r)``.

    Parameters
    ----------
    states : ndarray of int, shape (n_sequences, n_positions)
    mask : ndarray of bool, shape (n_sequences, n_positions)
    lengths : ndarray of int, shape (n_sequences,)
    tokens : ndarray of int, shape (n_sequences, n_positions)
        Token ids of the routed text.
    n_states, layer : int
    test_fraction : float
        Held-out share; the split is the one :func:`compare_layer` draws from the same ``seed``.
    token_rows : int
        Token ids with their own field row (the rest pooled).
    n_components : int or sequence of int
        Candidate components of the latent row (``vary="bias"``: each sequence's component shifts the
        expert biases; one start each, warm from ``+couplings``); the one with the lowest training BIC
        is the row (and the number of components of ``+range-2``).
    range2 : bool
        Fit the ``+range-2`` row (about q times the cost of a range-1 row).
    gof_distance : int
        Largest ``r`` of the goodness of fit (capped at the sequence length - 1).
    topic : bool
        Fit the topic chain beside the table (:func:`~ising_moe.fit.pipeline.topic.fit_topic_row`).
    """
    from scipy import stats

    from ...measure import correlation_function
    from ..conditional import goodness_of_fit, model_correlation_function

    t_start = time.perf_counter()
    states, mask = np.asarray(states), np.asarray(mask, bool)
    tokens = np.asarray(tokens)
    if tokens.shape != states.shape:
        raise InvalidParameterError(f"token ids have shape {tokens.shape}, the expert sequences {states.shape}")
    n_seq, n = states.shape
    n_test = max(1, round(test_fraction * n_seq))
    if n_seq - n_test < 2 or n_test < 2:
        raise InvalidParameterError(f"{n_seq} sequences are too few for the decomposition's held-out split")
    rng = np.random.default_rng(seed)  # the same permutation as compare_layer's first draw
    order = rng.permutation(n_seq)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    tokens = np.where(mask, tokens, 0)
    split = {name: (states[idx], tokens[idx], mask[idx], lengths[idx]) for name, idx in (("train", train),
                                                                                          ("test", test))}
    n_test_tokens = int(mask[test].sum())
    candidates = tuple(sorted({int(kk) for kk in np.atleast_1d(n_components)}))
    if not candidates or candidates[0] < 2:
        raise InvalidParameterError(f"the latent row needs candidates of at least 2 components, got {n_components}")
    chosen, bics = candidates[0], {}
    models = _row_models(token_rows, candidates[0], seed)
    k = len(ROWS)
    heldout, gain, gain_err = (np.full(k, np.nan) for _ in range(3))
    n_par, converged, seconds = np.zeros(k, np.int64), np.zeros(k, bool), np.full(k, np.nan)
    skipped, fitted, per_seq = {}, {}, {}
    if not range2:
        skipped["+range-2"] = "not fitted (pass --max-range 2: about q times the cost of a range-1 row)"
    prev, prev_ll = None, None
    for i, name in enumerate(ROWS):
        if name in skipped:
            continue
        cls, kwargs = models[name]
        t = time.perf_counter()
        try:
            with warnings.catch_warnings():  # convergence is reported in the table
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", SparseDataWarning)
                if name == "+sequence latent":  # K by the training BIC among the candidates
                    trials = [cls(**{**kwargs, "n_components": kk}).fit(*split["train"], n_states=n_states,
                                                                        init=prev) for kk in candidates]
                    bics = {kk: m.result_.bic for kk, m in zip(candidates, trials)}
                    model = trials[int(np.argmin([bics[kk] for kk in candidates]))]
                    chosen = int(model.n_components)
                elif name == "+range-2":
                    model = cls(**{**kwargs, "n_components": chosen}).fit(*split["train"], n_states=n_states,
                                                                          init=prev)
                else:
                    model = cls(**kwargs).fit(*split["train"], n_states=n_states, init=prev)
        except Exception as exc:  # noqa: BLE001 -- one failing row is reported, never aborts the table
            log.warning("layer %s: decomposition row %s failed: %s", layer, name, exc)
            skipped[name] = f"fit failed: {exc}"
            continue
        seconds[i] = time.perf_counter() - t
        ll = model.log_likelihood(*split["test"])
        heldout[i] = float(ll.sum() / n_test_tokens / _LN2)
        n_par[i], converged[i] = model.result_.n_parameters, model.result_.success
        if prev_ll is not None:
            gain[i], gain_err[i] = _paired(ll, prev_ll, n_test_tokens)
        fitted[name], per_seq[name] = model, ll
        prev, prev_ll = model, ll
    lr, dof, p = math.nan, 0, math.nan
    if "+token" in fitted and "+token+position" in fitted:
        lr = max(0.0, 2.0 * (fitted["+token+position"].result_.log_likelihood - fitted["+token"].result_.log_likelihood))
        dof = int(fitted["+token+position"].result_.n_parameters - fitted["+token"].result_.n_parameters)
        p = float(stats.chi2.sf(lr, dof)) if dof > 0 else math.nan
    latent = fitted.get("+sequence latent")
    weights = latent.result_.weights if latent is not None else np.zeros(0)
    bic_latent = bool(latent is not None and "+couplings" in fitted
                      and latent.result_.bic < fitted["+couplings"].result_.bic)
    best = max(fitted, key=lambda name: heldout[ROWS.index(name)])
    gof = {}
    r_max = min(int(gof_distance), n - 1)
    if r_max >= 1:
        x_te, tok_te, m_te, len_te = split["test"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model_c = model_correlation_function(fitted[best], tok_te, m_te, len_te, max_distance=r_max,
                                                     tol=1e-10)
            emp = correlation_function(x_te, m_te, n_states, r_max, (), 0, rng)
            g = goodness_of_fit(model_c, emp, r_min=1, r_max=r_max)
            gof = {"distances": g.distances, "model": g.model, "empirical": g.empirical, "errors": g.errors,
                   "z": g.z, "chi2": float(g.chi2), "dof": int(g.dof), "p_value": float(g.p_value),
                   "max_abs_z": float(g.max_abs_z), "consistent": bool(g.consistent), "message": g.message,
                   "model_full": np.asarray(model_c, float)}
        except Exception as exc:  # noqa: BLE001 -- reported as n/a
            log.warning("layer %s: goodness of fit failed: %s", layer, exc)
    topic_row = None
    if topic and "+couplings" in fitted:
        from .topic import fit_topic_row

        try:
            topic_row = fit_topic_row(split["train"], split["test"], n_states, base=fitted["+couplings"],
                                      reference_ll=per_seq["+couplings"], latent_ll=per_seq.get("+sequence latent"),
                                      seed=seed, token_rows=token_rows, gof_distance=gof_distance)
            topic_row = dataclasses.replace(topic_row, posterior_rows=test[topic_row.posterior_rows])
        except Exception as exc:  # noqa: BLE001 -- reported, never aborts the table
            log.warning("layer %s: topic chain failed: %s", layer, exc)
            skipped["+topic chain"] = f"fit failed: {exc}"
    return LayerDecomposition(
        layer=layer, rows=ROWS, heldout=heldout, gain=gain, gain_error=gain_err, n_parameters=n_par,
        converged=converged, fit_seconds=seconds, skipped=skipped, position_lr=lr, position_lr_dof=dof,
        position_lr_p=p, n_components=chosen, component_weights=np.asarray(weights, float),
        latent_bic={int(kk): float(v) for kk, v in bics.items()},
        bic_prefers_latent=bic_latent, best=best, gof=gof, n_train=len(train), n_test=len(test),
        n_test_tokens=n_test_tokens, token_rows=token_rows, seconds=time.perf_counter() - t_start, topic=topic_row)
