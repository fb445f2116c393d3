"""Exact forward-backward over a product state: chains whose site state is a tuple of factors.

A site's state is a tuple ``x = (x_1, .., x_F)`` with ``x_f in {0..n_f - 1}``, stored as the joint
row-major index (``np.ravel_multi_index(x, factor_sizes)``; :func:`unravel` inverts it), so there are
``S = prod_f n_f`` joint states. ``N`` sequences of up to ``L`` sites each have the distribution

.. math::

    P(x_0, .., x_{\\ell - 1}) = \\frac{1}{Z} \\exp\\Big[\\sum_{i < \\ell} u_i(x_i)
        + \\sum_{i < \\ell - 1} \\log W_i(x_i, x_{i+1})\\Big],

``u`` the per-sequence, per-site log-potentials over the joint state (``log_unary``, shape
``(N, L, S)``; ``-inf`` forbids a state, e.g. to clamp an observed factor) and ``ell`` its length
(``lengths``; sites beyond are ignored). The transition (:class:`Transition`) is either

- ``Transition.dense(log_w)``: ``log W`` of shape ``(S, S)`` (every bond) or ``(L - 1, S, S)``
  (bond ``i`` joins sites ``i`` and ``i + 1``): ``O(S^2)`` per site;
- ``Transition.kronecker(log_w_1, .., log_w_F)``: ``W(x, y) = prod_f W_f(x_f, y_f)``, each factor
  ``(n_f, n_f)`` or ``(L - 1, n_f, n_f)``, applied factor by factor: ``O(S sum_f n_f)`` per site.
  Couplings *within* a site (between factors) belong in ``log_unary``.

Every pass is exact (scaled messages; log-weights are shifted by their maximum per site and per
bond factor before exponentiating, so ``log Z`` stays finite for any finite potentials; a factor
entry more than ~700 below its maximum counts as zero).

Functions
---------
``forward_backward(log_unary, transition, lengths, weights=...)`` -> :class:`ProductChainResult`:
    ``log_partition`` (N,), joint site ``marginals`` (N, L, S) (optional), ``site_counts`` (L, S)
    (``sum_n w_n`` marginals), ``pair_counts`` = ``sum_n w_n sum_i P(x_i = x, x_{i+1} = y)``: one
    (S, S) array for a dense transition, a tuple of per-factor (n_f, n_f) arrays
    ``sum_n w_n sum_i P(x_{f,i} = a, x_{f,i+1} = b)`` for a Kronecker one. These are the expected
    sufficient statistics of the unaries and transitions: the gradient of ``sum_n w_n log Z_n``
    with respect to ``u_{n,i}(x)`` is ``w_n marginals[n, i, x]``, and with respect to a factor's
    ``log W_f(a, b)`` (shared by all bonds) ``pair_counts[f][a, b]``. ``groups=`` (N, L) sums the
    marginals per site group (``group_counts``, e.g. per token id) without storing them.
``log_partition(log_unary, transition, lengths)`` -> (N,): ``log Z`` by the forward pass alone.
``sample(log_unary, transition, lengths, rng)`` -> (N, L) exact draws (forward filtering, backward
    sampling), ``-1`` beyond the length.
``two_point(log_unary, transition, factor, max_distance, lengths, observed)`` -> (L, R + 1, n_f, n_f):
    ``sum_n P(x_{f,i} = a, x_{f,i+r} = b)`` over the sequences observed at ``i`` and ``i + r``
    (same-state probabilities, ``C(r)`` of one factor).

Work is split over sequences in fixed chunks: results do not depend on the number of threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._util import RngLike, as_generator, as_int, frozen
from ..errors import InvalidParameterError
from . import _product_kernels as PK

__all__ = ["Transition", "ProductChainResult", "forward_backward", "log_partition", "sample", "two_point", "unravel",
           "MAX_DENSE_STATES"]

#: fixed work split over sequences
N_CHUNKS = 16
#: largest joint state count of a dense transition (its pair statistics are S x S per chunk)
MAX_DENSE_STATES = 1024


def _log_table(value, name: str, last: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim not in (2, 3) or arr.shape[-1] != arr.shape[-2]:
        raise InvalidParameterError(f"{name} must have shape (n, n) or (n_bonds, n, n), got {arr.shape}")
    if last is not None and arr.shape[-1] != last:
        raise InvalidParameterError(f"{name} must be {last} x {last}, got {arr.shape[-2:]}")
    if np.isnan(arr).any() or np.isposinf(arr).any():
        raise InvalidParameterError(f"{name} has NaN or +inf entries (use -inf for a forbidden transition)")
    return arr if arr.ndim == 3 else arr[None]


@dataclass(frozen=True, eq=False)
class Transition:
    """Log-weights of the bond between neighbouring sites (build with :meth:`dense` or :meth:`kronecker`).

    Attributes
    ----------
    kind : {"dense", "kronecker"}
    factor_sizes : tuple of int
        ``(S,)`` for a dense transition.
    log_weights : tuple of ndarray
        Dense: one array (n_tables, S, S); Kronecker: one (n_tables, n_f, n_f) per factor
        (``n_tables`` 1 for a homogeneous chain, else ``L - 1``).
    """

    kind: str
    factor_sizes: tuple
    log_weights: tuple

    @classmethod
    def dense(cls, log_weights) -> Transition:
        """``log W`` of shape (S, S) or (L - 1, S, S)."""
        arr = _log_table(log_weights, "log_weights", None)
        if arr.shape[-1] > MAX_DENSE_STATES:
            raise InvalidParameterError(f"a dense transition of {arr.shape[-1]} states is too large "
                                        f"(at most {MAX_DENSE_STATES}): use Transition.kronecker")
        return cls("dense", (arr.shape[-1],), (frozen(arr),))

    @classmethod
    def kronecker(cls, *log_factors) -> Transition:
        """``W = kron_f W_f``: one ``log W_f`` of shape (n_f, n_f) or (L - 1, n_f, n_f) per factor."""
        if not log_factors:
            raise InvalidParameterError("pass at least one factor")
        arrs = [_log_table(a, f"factor {f}", None) for f, a in enumerate(log_factors)]
        n_tab = {a.shape[0] for a in arrs}
        if len(n_tab - {1}) > 1:
            raise InvalidParameterError(f"per-bond factors must have the same number of bonds, got {sorted(n_tab)}")
        return cls("kronecker", tuple(a.shape[-1] for a in arrs), tuple(frozen(a) for a in arrs))

    @property
    def n_states(self) -> int:
        return math.prod(self.factor_sizes)

    @property
    def n_tables(self) -> int:
        return max(a.shape[0] for a in self.log_weights)

    def _packed(self, n_sites: int):
        """Shifted, exponentiated tables for the kernels: ``(kind, dense, fac, potts, sizes, strides, tshift)``
        (``potts[t, f]``: factor ``f`` of table ``t`` has one diagonal and one off-diagonal value, applied
        in ``O(S)``)."""
        if self.n_tables not in (1, n_sites - 1) and n_sites > 1:
            raise InvalidParameterError(f"per-bond transitions have {self.n_tables} bonds; sequences of {n_sites} "
                                        f"sites need {n_sites - 1} (or one table for every bond)")
        n_tab = self.n_tables
        sizes = np.array(self.factor_sizes, dtype=np.int64)
        strides = np.array([math.prod(self.factor_sizes[f + 1:]) for f in range(len(sizes))], dtype=np.int64)
        tshift = np.zeros(n_tab)
        if self.kind == "dense":
            arr = self.log_weights[0]
            shift = arr.max(axis=(1, 2))
            if not np.isfinite(shift).all():
                raise InvalidParameterError("a transition table is -inf everywhere: no sequence has nonzero weight")
            dense = np.ascontiguousarray(np.broadcast_to(np.exp(arr - shift[:, None, None]), (n_tab,) + arr.shape[1:]))
            tshift += np.broadcast_to(shift, (n_tab,))
            return PK.DENSE, dense, np.zeros((1, 1, 1, 1)), np.zeros((1, 1), np.bool_), sizes, strides, tshift
        nmax = int(sizes.max())
        fac = np.zeros((n_tab, len(sizes), nmax, nmax))
        potts = np.zeros((n_tab, len(sizes)), np.bool_)
        for f, arr in enumerate(self.log_weights):
            shift = arr.max(axis=(1, 2))
            if not np.isfinite(shift).all():
                raise InvalidParameterError(f"factor {f} is -inf everywhere: no sequence has nonzero weight")
            n = arr.shape[-1]
            fac[:, f, :n, :n] = np.exp(arr - shift[:, None, None])
            tshift += np.broadcast_to(shift, (n_tab,))
            if n >= 2:
                w = fac[:, f, :n, :n]
                off = ~np.eye(n, dtype=bool)
                potts[:, f] = ((w[:, np.eye(n, dtype=bool)] == w[:, :1, :1].reshape(-1, 1)).all(axis=1)
                               & (w[:, off] == w[:, :1, 1:2].reshape(-1, 1)).all(axis=1))
        return PK.KRON, np.zeros((1, 1, 1)), fac, potts, sizes, strides, tshift


@dataclass(frozen=True, eq=False)
class ProductChainResult:
    """Result of :func:`forward_backward`.

    Attributes
    ----------
    log_partition : ndarray, shape (N,)
        ``log Z`` of every sequence (``-inf`` where no configuration has weight).
    marginals : ndarray, shape (N, L, S), or None
        ``P(x_i = x)`` (zero beyond the length; NaN for a zero-weight sequence).
    site_counts : ndarray, shape (L, S)
        ``sum_n w_n P_n(x_i = x)``.
    pair_counts : ndarray (S, S) or tuple of ndarray (n_f, n_f) (``pairs="diagonal"``: (n_f,)), or None
        Bond marginals summed over bonds and weighted sequences (see the module docstring).
    factor_sizes : tuple of int
    group_counts : ndarray, shape (G, S), or None
        ``sum_n w_n sum_{i in group g} P_n(x_i = x)`` when ``groups`` were given.
    """

    log_partition: np.ndarray
    marginals: np.ndarray | None
    site_counts: np.ndarray
    pair_counts: object
    factor_sizes: tuple
    group_counts: np.ndarray | None = None

    def factor_marginals(self, factor: int) -> np.ndarray:
        """``P(x_{f,i} = a)``, shape (N, L, n_f) (requires ``marginals``)."""
        if self.marginals is None:
            raise InvalidParameterError("marginals were not computed: call forward_backward(..., marginals=True)")
        f = as_int(factor, "factor", 0, len(self.factor_sizes) - 1)
        m = self.marginals.reshape(self.marginals.shape[:2] + tuple(self.factor_sizes))
        axes = tuple(2 + g for g in range(len(self.factor_sizes)) if g != f)
        return m.sum(axis=axes)


def unravel(joint, factor_sizes) -> np.ndarray:
    """Factor states of joint indices: shape ``joint.shape + (F,)`` (``-1`` stays ``-1``)."""
    j = np.asarray(joint, dtype=np.int64)
    out = np.stack(np.unravel_index(np.maximum(j, 0), tuple(factor_sizes)), axis=-1)
    out[j < 0] = -1
    return out


def _prepare(log_unary, transition: Transition, lengths, rows=None):
    """Validate; the site weights as a table: ``(site_weight (G, S), site_max (G,), site_index (N, L),
    lengths, packed transition)`` (see :mod:`._product_kernels`)."""
    if not isinstance(transition, Transition):
        raise InvalidParameterError(f"transition must be a Transition (Transition.dense or .kronecker), "
                                    f"got {type(transition).__name__}")
    table = np.ascontiguousarray(log_unary, dtype=float)
    if rows is None:
        if table.ndim != 3:
            raise InvalidParameterError(f"log_unary must have shape (n_sequences, n_sites, n_states), got "
                                        f"{table.shape}")
        n_seq, n_sites, size = table.shape
        table = table.reshape(n_seq * n_sites, size)
        index = np.arange(n_seq * n_sites, dtype=np.int64).reshape(n_seq, n_sites)
    else:
        index = np.ascontiguousarray(rows, dtype=np.int64)
        if table.ndim != 2 or index.ndim != 2:
            raise InvalidParameterError(f"with rows, log_unary must have shape (n_rows, n_states) and rows "
                                        f"(n_sequences, n_sites), got {table.shape} and {index.shape}")
        (n_seq, n_sites), size = index.shape, table.shape[1]
    if size != transition.n_states:
        raise InvalidParameterError(f"log_unary has {size} states per site, the transition {transition.n_states} "
                                    f"(= prod {transition.factor_sizes})")
    if lengths is None:
        lens = np.full(n_seq, n_sites, dtype=np.int64)
    else:
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        if lens.shape != (n_seq,) or (lens < 1).any() or (lens > n_sites).any():
            raise InvalidParameterError(f"lengths must be {n_seq} integers in 1..{n_sites}")
    if rows is not None:
        inside = np.arange(n_sites)[None, :] < lens[:, None]
        if (index[inside] < 0).any() or (index[inside] >= table.shape[0]).any():
            raise InvalidParameterError(f"rows must index log_unary's {table.shape[0]} rows inside every length")
        index = np.where(inside, index, 0)  # sites past a length are never read
    site_max = table.max(axis=1)  # NaN where a row has a NaN, +inf where it has +inf
    if np.isnan(site_max).any() or np.isposinf(site_max).any():
        raise InvalidParameterError("log_unary has NaN or +inf entries (use -inf for a forbidden state)")
    # exp in NumPy (vectorised, in one buffer) rather than in the kernels: f = exp(u - max u) per row
    site_weight = np.subtract(table, np.where(np.isfinite(site_max), site_max, 0.0)[:, None])
    np.exp(site_weight, out=site_weight)
    return site_weight, site_max, index, lens, transition._packed(n_sites)


def forward_backward(log_unary, transition: Transition, lengths=None, *, weights=None, marginals: bool = True,
                     pairs: bool = True, groups=None, n_groups: int | None = None, rows=None) -> ProductChainResult:
    """Exact ``log Z``, site marginals and summed pair statistics of every sequence.

    Parameters
    ----------
    log_unary : array_like, shape (N, L, S), or (G, S) with ``rows``
    transition : Transition
    lengths : array_like of int, shape (N,), optional
        Sites of each sequence (default ``L``).
    weights : array_like, shape (N,), optional
        Weights of the sequences in ``site_counts`` and ``pair_counts`` (default 1).
    marginals : bool, default True
        Return the per-sequence joint marginals (N, L, S) (memory!).
    pairs : bool or "diagonal", default True
        Compute ``pair_counts``; ``"diagonal"`` (Kronecker transitions): only the diagonal of every
        factor's pair counts, each of shape (n_f,) (all the gradient of a Potts factor needs;
        ``O(S)`` instead of ``O(S n_f)`` per site and factor).
    groups : array_like of int, shape (N, L), optional
        A group id in ``0..n_groups - 1`` for every site (e.g. the token at that site): the weighted
        marginals summed per group come back as ``group_counts`` (G, S) without storing the
        per-sequence marginals.
    n_groups : int, optional
        ``G`` (default ``max(groups) + 1``).
    rows : array_like of int, shape (N, L), optional
        Site ``i`` of sequence ``n`` has the potentials ``log_unary[rows[n, i]]`` (a table of ``G``
        rows, e.g. one per token: no (N, L, S) array is built). Also for :func:`log_partition`,
        :func:`sample` and :func:`two_point`.

    Returns
    -------
    ProductChainResult
    """
    site_weight, site_max, index, lens, packed = _prepare(log_unary, transition, lengths, rows)
    (n_seq, n_sites), size = index.shape, site_weight.shape[1]
    w = np.ones(n_seq) if weights is None else np.ascontiguousarray(weights, dtype=float)
    if w.shape != (n_seq,) or not np.isfinite(w).all():
        raise InvalidParameterError(f"weights must be {n_seq} finite numbers")
    kind, dense, fac, potts, sizes, strides, tshift = packed
    if pairs not in (True, False, "diagonal"):
        raise InvalidParameterError(f"pairs must be True, False or 'diagonal', got {pairs!r}")
    diagonal = pairs == "diagonal" and kind == PK.KRON
    want_pairs = 0 if pairs is False else (2 if diagonal else 1)
    n_chunks = max(1, min(N_CHUNKS, n_seq))
    log_z = np.empty(n_seq)
    marg = np.empty((n_seq, n_sites, size)) if marginals else np.empty((1, 1, 1))
    site = np.zeros((n_chunks, n_sites, size))
    want_dense = pairs is not False and kind == PK.DENSE
    pd = np.zeros((n_chunks, size, size) if want_dense else (n_chunks, 1, 1))
    nmax = fac.shape[-1]
    pk = np.zeros((n_chunks, len(sizes), nmax, nmax) if pairs is not False and kind == PK.KRON else (n_chunks, 1, 1, 1))
    if groups is None:
        grp, n_grp = np.zeros((0, 0), np.int64), 0
    else:
        grp = np.ascontiguousarray(groups, dtype=np.int64)
        if grp.shape != (n_seq, n_sites):
            raise InvalidParameterError(f"groups must have shape {(n_seq, n_sites)}, got {grp.shape}")
        inside = np.arange(n_sites)[None, :] < lens[:, None]
        n_grp = int(grp[inside].max()) + 1 if n_groups is None else as_int(n_groups, "n_groups", minimum=1)
        if (grp[inside] < 0).any() or (grp[inside] >= n_grp).any():
            raise InvalidParameterError(f"groups must be in 0..{n_grp - 1} inside every sequence's length")
    gs = np.zeros((n_chunks, max(n_grp, 1), size) if n_grp else (n_chunks, 1, 1))
    PK.product_pass(site_weight, site_max, index, lens, w, kind, dense, fac, potts, sizes, strides, tshift, n_chunks, bool(marginals),
                    want_pairs, grp, log_z, marg, site, pd, pk, gs)
    pair_counts = None
    if pairs is not False:
        if kind == PK.DENSE:
            pair_counts = frozen(pd.sum(axis=0))
        elif diagonal:
            total = pk.sum(axis=0)
            pair_counts = tuple(frozen(np.diag(total[f, :n, :n]).copy()) for f, n in enumerate(transition.factor_sizes))
        else:
            total = pk.sum(axis=0)
            pair_counts = tuple(frozen(total[f, :n, :n].copy()) for f, n in enumerate(transition.factor_sizes))
    return ProductChainResult(log_partition=frozen(log_z), marginals=frozen(marg) if marginals else None,
                              site_counts=frozen(site.sum(axis=0)), pair_counts=pair_counts,
                              factor_sizes=transition.factor_sizes,
                              group_counts=frozen(gs.sum(axis=0)) if n_grp else None)


def log_partition(log_unary, transition: Transition, lengths=None, *, rows=None) -> np.ndarray:
    """``log Z`` of every sequence, shape (N,): the forward pass of :func:`forward_backward` alone
    (``-inf`` for a sequence with zero weight)."""
    site_weight, site_max, index, lens, packed = _prepare(log_unary, transition, lengths, rows)
    out = np.empty(index.shape[0])
    PK.product_log_z(site_weight, site_max, index, lens, *packed, max(1, min(N_CHUNKS, index.shape[0])), out)
    return frozen(out)


def sample(log_unary, transition: Transition, lengths=None, rng: RngLike = None, *, rows=None) -> np.ndarray:
    """One exact draw per sequence (forward filtering, backward sampling).

    Returns
    -------
    ndarray of int64, shape (N, L)
        Joint state indices (:func:`unravel` for the factors); ``-1`` beyond the length and for a
        sequence of zero weight. Repeat rows of ``log_unary`` for several draws of one sequence.
    """
    site_weight, site_max, index, lens, packed = _prepare(log_unary, transition, lengths, rows)
    gen = as_generator(rng)
    uniforms = gen.random(index.shape)
    out = np.empty(index.shape, dtype=np.int64)
    PK.product_sample(site_weight, site_max, index, lens, *packed, uniforms, max(1, min(N_CHUNKS, index.shape[0])), out)
    return out


def two_point(log_unary, transition: Transition, factor: int, max_distance: int, lengths=None,
              observed=None, *, rows=None) -> np.ndarray:
    """Two-site marginals of one factor summed over sequences.

    Parameters
    ----------
    factor : int
        Which factor ``f``.
    max_distance : int
        ``R``.
    observed : array_like of bool, shape (N, L), optional
        Sites that count (default: all within the length); the pair ``(i, i + r)`` of sequence ``n``
        counts when both are observed.

    Returns
    -------
    ndarray, shape (L, R + 1, n_f, n_f)
        ``sum_n P_n(x_{f,i} = a, x_{f,i+r} = b)``; ``trace`` over ``(a, b)`` gives the same-state sums.
    """
    site_weight, site_max, index, lens, packed = _prepare(log_unary, transition, lengths, rows)
    n_seq, n_sites = index.shape
    f = as_int(factor, "factor", 0, len(transition.factor_sizes) - 1)
    r_max = as_int(max_distance, "max_distance", 0, max(n_sites - 1, 0))
    obs = np.ones((n_seq, n_sites), bool) if observed is None else np.ascontiguousarray(observed, dtype=bool)
    if obs.shape != (n_seq, n_sites):
        raise InvalidParameterError(f"observed must have shape {(n_seq, n_sites)}, got {obs.shape}")
    n_chunks = max(1, min(N_CHUNKS, n_seq))
    n = transition.factor_sizes[f]
    out = np.zeros((n_chunks, n_sites, r_max + 1, n, n))
    PK.product_two_point(site_weight, site_max, index, lens, obs, *packed, f, r_max, n_chunks, out)
    return frozen(out.sum(axis=0))
