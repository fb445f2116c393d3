"""Exact lattice: the transfer operator along the text whose state is a whole column.

The column of position ``i`` is the tuple ``(x_{0,i}, .., x_{Λ-1,i})``, one of ``q^Λ`` joint states
(row-major index, layer 0 most significant: :func:`~ising_moe.exact.product.unravel`). Given the
tokens the lattice is a chain of columns with

- the per-site unary ``u_i(c) = sum_l T_l(r(t_i), c_l) + sum_{(l,m)} K_lm(c_l, c_m)`` (token fields
  and every cross-layer coupling live inside one column), one table ``U[r, c]`` per token row;
- the transition ``W(c, c') = prod_l exp(J_l(c_l, c'_l))``: a Kronecker product of the per-layer
  q x q matrices, applied factor by factor in ``O(Λ q^{Λ+1})`` per step instead of the dense
  ``O(q^{2Λ})`` (the shared :mod:`ising_moe.exact.product` forward-backward).

So ``log Z(t)``, the likelihood, its exact gradient (data minus model moments: site marginals
summed per token row for the fields and cross-layer couplings, the per-factor bond statistics for
the couplings) and exact samples (forward filtering, backward sampling) cost
``O(n Λ q^{Λ+1})`` per sequence: exact for the shipped organisms (4 layers x 8 experts: 4,096
column states). The site potentials depend on the token only, so the passes read one table row
per token row (``rows=`` of :mod:`ising_moe.exact.product`); passes that return marginals run in
batches whose marginals stay below :data:`MAX_BATCH_DOUBLES` doubles.
"""

from __future__ import annotations

import math

import numpy as np

from ..._util import RngLike, as_generator
from ...errors import InvalidParameterError
from ...exact.product import Transition, forward_backward, log_partition, unravel
from ...exact.product import sample as product_sample
from . import _kernels as LK
from .params import LatticeData, LatticeLayout

__all__ = ["MAX_COLUMN_STATES", "ExactLattice", "column_digits"]

#: largest column (q^Λ) the exact fitter accepts (an organism: 8^4 = 4096)
MAX_COLUMN_STATES = 32768
#: marginal doubles per batch of sequences (memory bound of a pass that returns marginals: ~8 x this bytes)
MAX_BATCH_DOUBLES = 1 << 22


def column_digits(n_layers: int, n_states: int) -> np.ndarray:
    """State of every layer in every column state: shape (q^Λ, Λ), layer 0 most significant."""
    return unravel(np.arange(n_states**n_layers), (n_states,) * n_layers)


class ExactLattice:
    """Exact column computations for one layout and parameter vector.

    Parameters
    ----------
    layout : LatticeLayout
    theta : ndarray, shape (n_params,)
    """

    def __init__(self, layout: LatticeLayout, theta):
        size = self.check_size(layout)
        self.layout, self.theta = layout, np.asarray(theta, dtype=float)
        self.params = p = layout.expand(self.theta)
        self.size = size
        self.digits = column_digits(layout.n_layers, layout.n_states)
        d = self.digits
        unary = np.zeros((layout.n_rows, size))
        for l in range(layout.n_layers):
            unary += p["token"][l][:, d[:, l]]
        for k, (a, b) in enumerate(layout.pairs):
            unary += p["cross"][k][d[:, a], d[:, b]][None, :]
        self.unary = unary
        self.transition = Transition.kronecker(*p["coupling"])

    @staticmethod
    def check_size(layout: LatticeLayout) -> int:
        """The column's joint state count; :class:`InvalidParameterError` above :data:`MAX_COLUMN_STATES`."""
        size = layout.n_states**layout.n_layers
        if size > MAX_COLUMN_STATES:
            raise InvalidParameterError(
                f"a column of {layout.n_layers} layers x {layout.n_states} states has {size} joint states, more than "
                f"the exact solver's {MAX_COLUMN_STATES}: fit with method='pseudo-likelihood' or 'monte-carlo'")
        return size

    def _batches(self, n_sequences: int, n_sites: int):
        """Sequence index batches whose (B, n, q^Λ) marginals stay within :data:`MAX_BATCH_DOUBLES`."""
        per = max(1, MAX_BATCH_DOUBLES // (n_sites * self.size))
        for start in range(0, n_sequences, per):
            yield np.arange(start, min(start + per, n_sequences))

    def log_partition(self, data: LatticeData) -> np.ndarray:
        """``log Z(t)`` of every sequence, shape (S,).

        Without cross-layer couplings the layers are independent chains: ``log Z`` is the sum of
        the layers' (q states per step instead of ``q^Λ``).
        """
        self.layout.check(data)
        lay = self.layout
        if lay.n_pairs == 0 and lay.n_layers > 1:
            out = np.zeros(data.n_sequences)
            for l in range(lay.n_layers):
                one = LatticeLayout(1, lay.n_states, lay.n_rows, lay.couplings, 0)
                theta = one.project_parameters({"token": self.params["token"][l:l + 1],
                                                "coupling": self.params["coupling"][l:l + 1],
                                                "cross": np.zeros((0, lay.n_states, lay.n_states))})
                out += ExactLattice(one, theta).log_partition(LatticeData(data.states[:, l:l + 1], data.rows,
                                                                          data.lengths, data.n_states))
            return out
        # the potentials depend on the token only: one row of self.unary per token row
        return np.array(log_partition(self.unary, self.transition, data.lengths, rows=data.rows))

    def log_likelihood(self, data: LatticeData) -> np.ndarray:
        """Exact ``log P(x | t)`` of every sequence, shape (S,)."""
        phi = self.layout.statistics_per_sequence(data)
        return phi @ self.theta - self.log_partition(data)

    def expected_counts(self, data: LatticeData, want_row_marginals: bool = False):
        """``log Z`` (S,) and the model's expected q-indexed counts on the sequences of ``data``
        (their tokens and lengths): ``token`` (Λ, R, q), ``coupling`` (Λ, q, q), ``cross`` (P, q, q);
        with ``want_row_marginals`` also the column marginals summed per token row (R, q^Λ)."""
        lay = self.layout
        lay.check(data)
        q, lam = lay.n_states, lay.n_layers
        log_z = np.empty(data.n_sequences)
        per_row = np.zeros((lay.n_rows, self.size))
        coup = np.zeros((lam, q, q))
        for idx in self._batches(data.n_sequences, data.n_sites):
            res = forward_backward(self.unary, self.transition, data.lengths[idx], marginals=True, pairs=True,
                                   rows=data.rows[idx])
            log_z[idx] = res.log_partition
            LK.add_row_marginals(res.marginals, data.rows[idx], data.lengths[idx], per_row)
            coup += np.stack(res.pair_counts)
        total = per_row.sum(axis=0).reshape((q,) * lam)
        tok = np.stack([per_row.reshape((lay.n_rows,) + (q,) * lam).sum(
            axis=tuple(1 + m for m in range(lam) if m != l)) for l in range(lam)])
        cross = np.zeros((lay.n_pairs, q, q))
        for k, (a, b) in enumerate(lay.pairs):
            cross[k] = total.sum(axis=tuple(m for m in range(lam) if m not in (a, b)))
        counts = {"token": tok, "coupling": coup, "cross": cross}
        if want_row_marginals:
            counts["row_marginals"] = per_row
        return log_z, counts

    def log_likelihood_and_gradient(self, data: LatticeData, stats=None):
        """Total ``log P(x | t)`` over the sequences and its gradient in ``theta`` (data minus model moments)."""
        stats = self.layout.statistics(data) if stats is None else stats
        log_z, counts = self.expected_counts(data)
        return float(stats @ self.theta - log_z.sum()), stats - self.layout.project(counts)

    def sample(self, rows, lengths, rng: RngLike = None) -> np.ndarray:
        """One exact draw per sequence (rows (S, n), lengths (S,)): states (S, Λ, n), 0 beyond the length."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        gen = as_generator(rng)
        n = rows.shape[1]
        out = np.zeros((rows.shape[0], self.layout.n_layers, n), dtype=np.int64)
        for idx in self._batches(rows.shape[0], n):
            joint = product_sample(self.unary, self.transition, lengths[idx], gen, rows=rows[idx])
            out[idx] = np.maximum(unravel(joint, (self.layout.n_states,) * self.layout.n_layers), 0).transpose(0, 2, 1)
        return out

    def pair_marginals(self, data: LatticeData) -> np.ndarray:
        """Model joint of the experts of layers ``l`` and ``m`` of one token, pooled over the
        positions of ``data``: shape (Λ, Λ, q, q), each (l, m) block summing to one."""
        lam, q = self.layout.n_layers, self.layout.n_states
        _, counts = self.expected_counts(data, want_row_marginals=True)
        total = counts["row_marginals"].sum(axis=0).reshape((q,) * lam)
        total /= total.sum()
        out = np.zeros((lam, lam, q, q))
        for a in range(lam):
            for b in range(lam):
                if a == b:
                    out[a, b] = np.diag(total.sum(axis=tuple(m for m in range(lam) if m != a)))
                else:
                    joint = total.sum(axis=tuple(m for m in range(lam) if m not in (a, b)))
                    out[a, b] = joint if a < b else joint.T
        return out


def column_cost(n_layers: int, n_states: int) -> dict:
    """Operations per site of the Kronecker and the dense column step (for reports and benchmarks)."""
    s = n_states**n_layers
    return {"column_states": s, "kronecker": n_layers * s * n_states, "dense": s * s,
            "ratio": s / (n_layers * n_states) if s else math.nan}
