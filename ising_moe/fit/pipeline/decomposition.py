"""What a layer's routing depends on: the nested table of issues 14 and 22 behind ``isingmoe fit``.

One layer's expert sequences with their token ids are split into the same training and test
sequences as the variants of :func:`~ising_moe.fit.pipeline.compare_layer`. The rows (:data:`ROW_SPECS`)
are conditional chains (:class:`~ising_moe.fit.conditional.ConditionalChain`,
:class:`~ising_moe.fit.conditional.ChainMixture`), each with a stated *parent*, the row it adds one
ingredient to::

    independent (global rates)
    +position          parent independent        position alone
    +token             parent independent        token identity
    +token+position    parent +token             position given the token
    +couplings         parent +token+position    neighbours given token and position
    +sequence latent   parent +couplings         a sequence-level topic (K and what it varies selected)
    +range-2           parent +sequence latent   a Potts coupling at distance 2

Each row is fitted on the training sequences, warm-started from its parent, and scored exactly on
the test sequences. The gain of a row is its held-out log-likelihood per token minus its parent's
(bits/token), with the error of the paired difference over test sequences:

    gain = sum_s [log2 p_row(x_s) - log2 p_parent(x_s)] / n_tokens,  error = sqrt(n_s) std_s(...) / n_tokens.

Every sentence is read off this table (:meth:`LayerDecomposition.sentence`). Adding a row (a
new model of the same sequences) is one entry of :data:`ROW_SPECS`: a name, its parent, the words of
the sentence and a function ``fit(context, parent_model) -> (model, info)``.

The held-out gain answers "does the ingredient predict new sequences better?", the question of the
table. The likelihood-ratio statistic of ``+token+position`` against ``+token`` on the training data
(``position_lr``, chi-square p-value with the added parameters as degrees of freedom) answers
another one, "are the position fields exactly zero?", which thousands of tokens reject for
effects far too small to predict anything: it is stored (``summary.json``, ``fit.h5``), not printed.

The sequence latent is a :class:`~ising_moe.fit.conditional.ChainMixture` whose number of
components ``K`` and what differs between components (``vary``: expert biases, or biases and
couplings) are chosen by the log-likelihood of validation sequences split off the training
sequences (never the test sequences): ``vary`` at ``K = 2``, then ``K = 3, 4, ...`` until a ``K``
fits no better than the best so far by more than two paired errors over the validation sequences
(the choice is then inside the range tried) or ``max_components``
(then the choice is at the edge, and the sentence says so); the chosen model is refitted on all
training sequences.

The best row (largest held-out likelihood) gets its exact model ``C(r)`` on the test sequences
(conditional on their tokens, averaged as the empirical estimator averages) against the empirical
``C(r)`` of the same sequences: residual z per distance, chi-square with the influence covariance,
and a calibrated verdict (:attr:`~ising_moe.fit.conditional.GoodnessOfFit.consistent`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import ConvergenceWarning, InvalidParameterError, SparseDataWarning

log = logging.getLogger(__name__)

__all__ = ["ALTERNATIVE_ROWS", "ROWS", "ROW_SPECS", "RowSpec", "LayerDecomposition", "decompose_layer"]

_LN2 = math.log(2)
_COMMON = {"tol": 1e-4}  # ~1e-4 of a parameter's error at 1e5 tokens: far below the paired errors
#: validation share of the training sequences for the latent row's choice of K and vary
LATENT_VALIDATION = 0.2
#: a larger latent model is chosen when its validation gain exceeds this many paired errors
LATENT_MARGIN = 2.0


@dataclass(frozen=True)
class _Context:
    """What a row's fit needs: the training split, and the choices of earlier rows."""

    train: tuple
    n_states: int
    token_rows: int
    seed: int
    max_components: int
    latent_vary: tuple
    chosen: dict = field(default_factory=dict)
    power_law_method: str = "pseudo-likelihood"


def _chain(**kwargs) -> Callable:
    def fit(ctx: _Context, parent):
        from ..conditional import ConditionalChain

        opts = {"token_rows": ctx.token_rows, **kwargs, **_COMMON}
        return ConditionalChain(**opts).fit(*ctx.train, n_states=ctx.n_states, init=parent), {}

    return fit


def _take(arrays, rows):
    return tuple(a[rows] for a in arrays)


def _fit_latent(ctx: _Context, parent):
    """The sequence latent: K and vary by validation likelihood (see the module docstring)."""
    from ..conditional import ChainMixture

    n_seq = len(ctx.train[0])
    n_val = max(2, round(LATENT_VALIDATION * n_seq))
    order = np.random.default_rng([ctx.seed, 22]).permutation(n_seq)
    val, fit_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
    part, held = _take(ctx.train, fit_rows), _take(ctx.train, val)
    n_val_tokens = max(int(held[2].sum()), 1)
    opts = {"position": "position", "token_rows": ctx.token_rows, "couplings": "potts", "n_init": 1,
            "rng": ctx.seed, **_COMMON}
    scores, models, per_seq = {}, {}, {}

    def trial(vary, k, init):
        m = ChainMixture(n_components=k, vary=vary, **opts).fit(*part, n_states=ctx.n_states, init=init)
        per_seq[(vary, k)] = m.log_likelihood(*held)
        scores[(vary, k)] = float(per_seq[(vary, k)].sum() / n_val_tokens / _LN2)
        models[(vary, k)] = m

    def better(new, old):
        """The larger model only when it fits the validation sequences better by more than
        :data:`LATENT_MARGIN` paired errors (else the simpler one: no choice driven by noise)."""
        g, e = _paired(per_seq[new], per_seq[old], n_val_tokens)
        return g > LATENT_MARGIN * (e if math.isfinite(e) else 0.0)

    # what differs between topics, chosen at K = 2; then K = 3, 4, ... with it
    trial("bias", 2, parent)
    vary = "bias"
    for other in ctx.latent_vary:
        if other != "bias":
            trial(other, 2, models[("bias", 2)])
            if better((other, 2), (vary, 2)):
                vary = other
    best_k, at_edge = 2, ctx.max_components == 2
    for k in range(3, ctx.max_components + 1):
        trial(vary, k, parent)
        if better((vary, k), (vary, best_k)):
            best_k = k
            at_edge = k == ctx.max_components
        else:
            break  # K fits no better than the best: the choice is inside the range tried
    chosen = (vary, best_k)
    vary, k = chosen
    model = ChainMixture(n_components=k, vary=vary, **opts).fit(*ctx.train, n_states=ctx.n_states,
                                                               init=models[chosen])
    ctx.chosen.update({"n_components": k, "vary": vary})
    info = {"n_components": k, "vary": vary, "at_edge": at_edge, "max_components": ctx.max_components,
            "validation_sequences": int(n_val),
            "validation_bits_per_token": {f"{v}:K={kk}": sc for (v, kk), sc in scores.items()}}
    return model, info


def _fit_range2(ctx: _Context, parent):
    from ..conditional import ChainMixture

    if "n_components" not in ctx.chosen:
        raise InvalidParameterError("the range-2 row needs the sequence-latent row")
    model = ChainMixture(position="position", token_rows=ctx.token_rows, couplings="potts", n_init=1, rng=ctx.seed,
                         n_components=ctx.chosen["n_components"], vary=ctx.chosen["vary"], max_range=2,
                         **_COMMON).fit(*ctx.train, n_states=ctx.n_states, init=parent)
    return model, {}


def _fit_power_law(ctx: _Context, parent):
    """``+couplings`` with power-law Potts couplings ``J / r^(1 + sigma)`` up to the exact range
    (fields and ``J`` warm-started from the parent; pseudo-likelihood fit, or with
    ``power_law_method = "max-likelihood"`` exact maximum likelihood started from it; exact held-out
    score either way)."""
    from ..power_law import PowerLawMaxLikelihood, PowerLawPseudoLikelihood, exact_range

    res = parent.result_
    k = res.couplings[0]
    q = k.shape[0]
    j_potts = float(np.trace(k) / q - (k.sum() - np.trace(k)) / (q * q - q))
    init = {"coupling": j_potts, "sigma": 1.0, "position": res.position_fields[0], "token": res.token_fields[0]}
    if ctx.power_law_method not in POWER_LAW_METHODS:
        raise InvalidParameterError(f"power_law_method must be one of {POWER_LAW_METHODS}, got "
                                    f"{ctx.power_law_method!r}")
    cls = PowerLawMaxLikelihood if ctx.power_law_method == "max-likelihood" else PowerLawPseudoLikelihood
    model = cls(max_range=exact_range(ctx.n_states), position=True,
                token_rows=ctx.token_rows).fit(*ctx.train, n_states=ctx.n_states, init=init)
    sigma = float(model.sigma_)
    info = {"coupling": float(model.coupling_), "sigma": sigma if math.isfinite(sigma) else None,
            "max_range": int(model.max_range_), "success": bool(model.success_), "method": ctx.power_law_method}
    if model.max_range_ < 2:
        info["sigma_note"] = "not identified: the exact range is 1 (w(1) = 1 for every sigma)"
    return model, info


#: fits of the +power-law couplings row
POWER_LAW_METHODS = ("pseudo-likelihood", "max-likelihood")


def _power_law_correlation(model, test, n_states: int, r_max: int, rng, n_draws: int = 8) -> dict:
    """The +power-law couplings row's model ``C(r)`` against the test data's, ``r = 1..r_max``.

    The model's: ``n_draws`` exact draws of every test sequence given its tokens (forward filtering,
    backward sampling), masked as the data; both through :func:`correlation_function`.
    """
    x_te, tok_te, m_te, len_te = test
    draws = model.sample(n_draws, tok_te, len_te, rng=rng)  # (S, D, n)
    n = draws.shape[-1]
    sim = np.where(draws >= 0, draws, 0).reshape(-1, n)
    mask = np.repeat(np.asarray(m_te, bool)[:, None, :], n_draws, axis=1).reshape(-1, n)
    from ...measure import correlation_function

    model_c = correlation_function(sim, mask, n_states, r_max, (), 0, rng)
    emp = correlation_function(x_te, m_te, n_states, r_max, (), 0, rng)
    d = np.arange(1, r_max + 1)
    return {"distances": d.tolist(), "model": model_c.values[d].tolist(), "model_errors": model_c.errors[d].tolist(),
            "empirical": emp.values[d].tolist(), "errors": emp.errors[d].tolist(), "model_draws": int(n_draws)}


@dataclass(frozen=True)
class RowSpec:
    """One row of the nested table.

    Attributes
    ----------
    name : str
        Column label.
    parent : str or None
        The row whose model this one extends: its gain is over the parent.
    label : str
        What the row adds, in the sentence ("token identity").
    fit : callable
        ``fit(context, parent_model) -> (fitted model, info dict)``; the model has
        ``log_likelihood(states, tokens, mask, lengths)`` (per sequence) and ``result_``
        (``n_parameters``, ``success``, ``log_likelihood``).
    """

    name: str
    parent: str | None
    label: str
    fit: Callable


#: the rows of the nested table, in order (a parent precedes its children)
ROW_SPECS = (
    RowSpec("independent", None, "global expert rates", _chain(position="homogeneous", token_rows=0,
                                                                couplings="none")),
    RowSpec("+position", "independent", "position alone", _chain(position="position", token_rows=0,
                                                                 couplings="none")),
    RowSpec("+token", "independent", "token identity", _chain(position="none", couplings="none")),
    RowSpec("+token+position", "+token", "position given the token", _chain(position="position", couplings="none")),
    RowSpec("+couplings", "+token+position", "neighbours given token and position",
            _chain(position="position", couplings="potts")),
    RowSpec("+sequence latent", "+couplings", "a sequence topic", _fit_latent),
    RowSpec("+range-2", "+sequence latent", "a distance-2 coupling", _fit_range2),
    # an alternative to the latent, scored against +couplings; opt-in (about 10x the latent row's cost)
    RowSpec("+power-law couplings", "+couplings", "power-law couplings J/r^(1+sigma) up to the exact range",
            _fit_power_law),
)
#: rows that are alternatives to the series (not candidates for the goodness of fit: no exact model C(r))
ALTERNATIVE_ROWS = ("+power-law couplings",)
ROWS = tuple(spec.name for spec in ROW_SPECS)


def _verdict(g: float, e: float) -> str:
    """Words for a held-out gain ``g +- e`` (bits/token)."""
    if not math.isfinite(e) or abs(g) <= 3 * e:
        return "nothing measurable"
    return "a gain" if g > 0 else "a loss (worse on held-out sequences: over-fitting)"


@dataclass(frozen=True, eq=False)
class LayerDecomposition:
    """The nested table of one layer (all likelihoods in bits/token of the test sequences).

    Attributes
    ----------
    layer : int
    rows : tuple of str
        :data:`ROWS` (a row not fitted has NaN entries and a reason in ``skipped``).
    parents : tuple of str or None
        The parent (reference) of every row.
    heldout : ndarray, shape (n_rows,)
        Test log-likelihood per token [bits/token].
    gain, gain_error : ndarray, shape (n_rows,)
        Paired gain over the row's parent and its error [bits/token] (NaN for the first row).
    n_parameters : ndarray of int, shape (n_rows,)
    converged : ndarray of bool, shape (n_rows,)
    fit_seconds : ndarray, shape (n_rows,)
    skipped : dict of str -> str
        Rows not fitted and why.
    position_lr, position_lr_dof, position_lr_p : float, int, float
        Likelihood-ratio test of position fields beyond the token fields on the training data
        (whether they are exactly zero; not printed: see the module docstring).
    n_components : int
        Components of the latent row (0 when it was not fitted).
    component_weights : ndarray, shape (n_components,)
    latent : dict
        The latent row's choice: ``n_components``, ``vary``, ``at_edge``, ``max_components`` and the
        validation log-likelihood of every candidate (empty when not fitted).
    best : str
        Row with the largest held-out likelihood.
    gof : dict
        Goodness of fit of the best row on the test sequences: ``distances``, ``model``,
        ``empirical``, ``errors``, ``z``, ``chi2``, ``dof``, ``p_value``, ``max_abs_z``,
        ``max_z_p_value``, ``z_threshold``, ``consistent``, ``message`` (empty dict when not computed).
    n_train, n_test, n_test_tokens, token_rows : int
    seconds : float
    power_law : dict
        The ``+power-law couplings`` row's fit: ``coupling`` (J), ``sigma`` (None where ``R = 1``
        leaves it unidentified, with ``sigma_note``), ``max_range`` (R), ``success``, ``method``
        and ``correlation``: the model's ``C(r)`` (exact draws given the test tokens) against the
        test data's, ``distances``, ``model``, ``model_errors``, ``empirical``, ``errors`` (empty when
        not fitted).
    topic : TopicRow or None
        The topic chain (a hidden topic moving along the text; :mod:`.topic`), beside the table:
        its gains are over ``+couplings`` and ``+sequence latent``.
    """

    layer: int
    rows: tuple
    parents: tuple
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
    latent: dict
    best: str
    gof: dict
    n_train: int
    n_test: int
    n_test_tokens: int
    token_rows: int
    seconds: float
    labels: tuple = ()
    power_law: dict = field(default_factory=dict)
    topic: object = None

    def gain_of(self, row: str) -> tuple[float, float]:
        i = self.rows.index(row)
        return float(self.gain[i]), float(self.gain_error[i])

    def parent_of(self, row: str) -> str | None:
        return self.parents[self.rows.index(row)]

    def _label(self, row: str) -> str:
        if row in self.rows and len(self.labels) == len(self.rows):
            return self.labels[self.rows.index(row)]
        return row

    def sentence(self) -> str:
        """Plain sentences read off the nested table: every row's gain over its stated parent."""
        from ...report.measure import fmt_pm

        parts = []
        for row, parent in zip(self.rows, self.parents):
            if parent is None:
                continue
            label = self._label(row)
            if row == "+sequence latent" and self.latent:
                lat = self.latent
                label += (f" (K = {lat['n_components']} chosen among 2..{lat['max_components']} by validation "
                          f"likelihood{': at the edge of the range, more may fit better' if lat['at_edge'] else ''}"
                          f"; topics differ in {'expert biases' if lat['vary'] == 'bias' else lat['vary']})")
            ref = "global expert rates" if parent == "independent" else f"the {parent} row"
            g, e = self.gain_of(row)
            if not math.isfinite(g):
                if row in ALTERNATIVE_ROWS and self.skipped.get(row, "").startswith("not fitted (opt in"):
                    continue  # an opt-in row nobody asked for
                parts.append(f"{label} over {ref}: n/a ({self.skipped.get(row, 'not fitted')})")
                continue
            parts.append(f"{label} over {ref}: {fmt_pm(g, e, 2)} bits/token, {_verdict(g, e)}")
        text = "held-out gain of " + "; ".join(parts)
        if self.topic is not None:
            text += f"; {self.topic.sentence()}"
        return text

    def gof_sentence(self) -> str:
        """Whether the best model's C(r) residuals are consistent with noise (calibrated rule)."""
        if not self.gof:
            return "goodness of fit n/a"
        g = self.gof
        head = (f"best model {self.best}: C(r) for r = 1..{int(g['distances'][-1])} on test sequences, "
                f"chi2/dof = {g['chi2']:.1f}/{g['dof']} ({_fmt_p(g['p_value'])}), max |z| = {g['max_abs_z']:.1f} "
                f"({_fmt_p(g.get('max_z_p_value', math.nan))} for the largest of {g['dof']} |z|)")
        if g["consistent"]:
            return head + ": residuals consistent with noise (both p >= 0.01)"
        z = np.asarray(g["z"])
        cut = g.get("z_threshold", 3.0)
        bad = np.asarray(g["distances"])[np.abs(np.nan_to_num(z)) > cut]
        if bad.size == 0:
            where = "a correlated excess across distances (only the chi-square rejects)"
        else:
            from ...report.measure import fmt_ranges

            sign = "more" if np.nanmean(z[np.abs(np.nan_to_num(z)) > cut]) > 0 else "less"
            where = (f"the data have {sign} same-expert correlation than the model at r = {fmt_ranges(bad)} "
                     f"(|z| > {cut:.2f}, the multiplicity-corrected 1% level)")
        return head + f": NOT consistent with noise; unexplained structure: {where}"


def _fmt_p(p: float) -> str:
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.2g}"


def _size_and_success(model) -> tuple[int, bool]:
    return model.result_.n_parameters, model.result_.success


def _paired(new, old, n_tokens):
    d = (new - old) / _LN2
    err = float(math.sqrt(len(d)) * d.std(ddof=1) / n_tokens) if len(d) > 1 else math.nan
    return float(d.sum() / n_tokens), err


def decompose_layer(states, mask, lengths, tokens, n_states: int, layer: int, *, test_fraction: float = 0.2,
                    seed: int = 0, token_rows: int = 1000, max_components: int = 5,
                    latent_vary=("bias", "couplings"), range2: bool = False,
                    gof_distance: int = 64, power_law: bool = False, topic: bool = False,
                    power_law_method: str = "pseudo-likelihood") -> LayerDecomposition:
    """Fit the nested table (:data:`ROW_SPECS`) to one layer and check the best row's ``C(r)``.

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
    max_components : int
        Largest number of components the latent row tries (``K = 2, 3, ...`` stops earlier at the
        first ``K`` that fits the validation sequences worse than the best so far).
    latent_vary : sequence of str
        What may differ between the latent row's components (``ChainMixture``'s ``vary``), chosen
        by validation likelihood at the chosen ``K``.
    range2 : bool
        Fit the ``+range-2`` row (about q times the cost of a range-1 row).
    gof_distance : int
        Largest ``r`` of the goodness of fit (capped at the sequence length - 1).
    power_law : bool, default False
        Fit the ``+power-law couplings`` row (scored against ``+couplings``; about 10x the cost of
        the latent row, hence opt-in).
    power_law_method : {"pseudo-likelihood", "max-likelihood"}, default "pseudo-likelihood"
        Its fit: :class:`~ising_moe.fit.power_law.PowerLawPseudoLikelihood`, or exact maximum
        likelihood (:class:`~ising_moe.fit.power_law.PowerLawMaxLikelihood`, started from the
        pseudo-likelihood fit; ``O(L q^(R+1))`` per sequence and iteration, many times the
        pseudo-likelihood's cost at ``q = 8``, hence not the default).
    topic : bool, default False
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
    if int(max_components) < 2:
        raise InvalidParameterError(f"the latent row needs max_components >= 2, got {max_components}")
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
    ctx = _Context(split["train"], n_states, token_rows, seed, int(max_components), tuple(latent_vary),
                   power_law_method=power_law_method)
    k = len(ROW_SPECS)
    heldout, gain, gain_err = (np.full(k, np.nan) for _ in range(3))
    n_par, converged, seconds = np.zeros(k, np.int64), np.zeros(k, bool), np.full(k, np.nan)
    skipped, fitted, per_seq, infos = {}, {}, {}, {}
    if not range2:
        skipped["+range-2"] = "not fitted (pass --max-range 2: about q times the cost of a range-1 row)"
    if not power_law:
        skipped["+power-law couplings"] = "not fitted (opt in: --power-law; about 10x the cost of the latent row)"
    for i, spec in enumerate(ROW_SPECS):
        if spec.name in skipped:
            continue
        if spec.parent is not None and spec.parent not in fitted:
            skipped[spec.name] = f"its parent {spec.parent} was not fitted"
            continue
        t = time.perf_counter()
        try:
            with warnings.catch_warnings():  # convergence is reported in the table
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", SparseDataWarning)
                model, infos[spec.name] = spec.fit(ctx, fitted.get(spec.parent))
        except Exception as exc:  # noqa: BLE001 -- one failing row is reported, never aborts the table
            log.warning("layer %s: decomposition row %s failed: %s", layer, spec.name, exc)
            skipped[spec.name] = f"fit failed: {exc}"
            continue
        seconds[i] = time.perf_counter() - t
        ll = model.log_likelihood(*split["test"])
        heldout[i] = float(ll.sum() / n_test_tokens / _LN2)
        n_par[i], converged[i] = _size_and_success(model)
        if spec.parent is not None:
            gain[i], gain_err[i] = _paired(ll, per_seq[spec.parent], n_test_tokens)
        fitted[spec.name], per_seq[spec.name] = model, ll
        if spec.name == "+power-law couplings":
            r_pl = min(int(gof_distance), n - 1, int(np.asarray(split["test"][3]).max()) - 1)
            if r_pl >= 1:
                infos[spec.name]["correlation"] = _power_law_correlation(model, split["test"], n_states, r_pl,
                                                                         np.random.default_rng(seed))
    lr, dof, p = math.nan, 0, math.nan
    if "+token" in fitted and "+token+position" in fitted:
        lr = max(0.0, 2.0 * (fitted["+token+position"].result_.log_likelihood - fitted["+token"].result_.log_likelihood))
        dof = int(fitted["+token+position"].result_.n_parameters - fitted["+token"].result_.n_parameters)
        p = float(stats.chi2.sf(lr, dof)) if dof > 0 else math.nan
    latent = fitted.get("+sequence latent")
    weights = latent.result_.weights if latent is not None else np.zeros(0)
    best = max((name for name in fitted if name not in ALTERNATIVE_ROWS), key=lambda name: heldout[ROWS.index(name)])
    gof = {}
    x_te, tok_te, m_te, len_te = split["test"]
    # distances no test sequence reaches have no pairs: nothing to compare there
    r_max = min(int(gof_distance), n - 1, int(np.asarray(len_te).max()) - 1)
    if r_max >= 1:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model_c = model_correlation_function(fitted[best], tok_te, m_te, len_te, max_distance=r_max,
                                                     tol=1e-10)
            emp = correlation_function(x_te, m_te, n_states, r_max, (), 0, rng)
            g = goodness_of_fit(model_c, emp, r_min=1, r_max=r_max)
            gof = {"distances": g.distances, "model": g.model, "empirical": g.empirical, "errors": g.errors,
                   "z": g.z, "chi2": float(g.chi2), "dof": int(g.dof), "p_value": float(g.p_value),
                   "max_abs_z": float(g.max_abs_z), "max_z_p_value": float(g.max_z_p_value),
                   "z_threshold": float(g.z_threshold), "consistent": bool(g.consistent), "message": g.message,
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
        layer=layer, rows=ROWS, parents=tuple(spec.parent for spec in ROW_SPECS), heldout=heldout, gain=gain,
        gain_error=gain_err, n_parameters=n_par, converged=converged, fit_seconds=seconds, skipped=skipped,
        position_lr=lr, position_lr_dof=dof, position_lr_p=p,
        n_components=int(latent.n_components) if latent is not None else 0,
        component_weights=np.asarray(weights, float), latent=infos.get("+sequence latent", {}), best=best, gof=gof,
        n_train=len(train), n_test=len(test), n_test_tokens=n_test_tokens, token_rows=token_rows,
        seconds=time.perf_counter() - t_start, labels=tuple(spec.label for spec in ROW_SPECS),
        power_law=infos.get("+power-law couplings", {}), topic=topic_row)
