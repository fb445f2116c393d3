"""The layer x position lattice: data, parametrisation and sufficient statistics.

Sites ``(l, i)``: layer ``l = 0 .. Λ-1`` of the routed sequence (the MoE layers in order), token
position ``i = 0 .. n_i - 1`` (``n_i`` the sequence's length); state ``x[l, i]`` = the top-1 expert
of that layer (``q`` experts in every layer). Given the token ids ``t`` of a sequence,

.. math::

    \\log P(x | t) = \\sum_{l, i} T_l(r(t_i), x_{l,i})
                   + \\sum_l \\sum_{i < n - 1} J_l(x_{l,i}, x_{l,i+1})
                   + \\sum_{(l, m)} \\sum_i K_{lm}(x_{l,i}, x_{m,i}) - \\log Z(t),

with token fields ``T_l`` (one row per frequent token id, the rest pooled in one row, as in
:class:`~ising_moe.fit.conditional.ConditionalChain`; ``token_rows=0``: one row, a homogeneous
field per layer), couplings ``J_l`` along the text within each layer (``"potts"``: ``J_l (delta -
1/q)``; ``"full"``: a zero-sum q x q matrix; ``"none"``) and **cross-layer couplings** ``K_lm``
between the experts of one token in layers ``l < m <= l + cross_range``: full zero-sum q x q
matrices (expert ``e`` of layer ``l`` has nothing to do with expert ``e`` of layer ``m``). With no
cross-layer coupling the lattice is ``Λ`` independent conditional chains.

Gauge: every field row is zero-sum, every coupling matrix zero-sum in rows and columns (the
double-centred part is what the distribution determines; row/column shifts of ``K`` are token
fields, those of ``J`` token fields plus end effects). Parameters live in the orthonormal zero-sum
basis ``B`` (q, q-1): ``T = t B^T``, ``J = B j B^T``, ``K = B k B^T``, so ``theta`` has no flat
direction and the fitted parameters are unique; reported arrays are the expanded (q-indexed) ones.

The log-weight is linear in the parameters: ``log P(x | t) = theta . phi(x, t) - log Z(t)`` with
the sufficient statistics ``phi`` (:meth:`LatticeLayout.statistics`): counts of (layer, token row,
state), of neighbouring pairs per layer and of cross-layer pairs, projected on the basis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._util import as_int
from ...errors import InvalidParameterError
from ...mc.lattice import transposed
from ..params import zero_sum_basis
from . import _kernels as LK

__all__ = ["LATTICE_COUPLINGS", "LatticeData", "LatticeLayout"]

LATTICE_COUPLINGS = ("potts", "full", "none")


@dataclass(frozen=True, eq=False)
class LatticeData:
    """Validated lattice data: states of every layer, token rows and lengths.

    Attributes
    ----------
    states : ndarray of int64, shape (n_sequences, n_layers, n_sites)
        Top-1 expert per layer and position (0 beyond a sequence's length).
    rows : ndarray of int64, shape (n_sequences, n_sites)
        Token-field row of every position (0 beyond the length).
    lengths : ndarray of int64, shape (n_sequences,)
        Every position below the length is observed in every layer (no hidden sites).
    n_states : int
    """

    states: np.ndarray
    rows: np.ndarray
    lengths: np.ndarray
    n_states: int

    @property
    def n_sequences(self) -> int:
        return self.states.shape[0]

    @property
    def n_layers(self) -> int:
        return self.states.shape[1]

    @property
    def n_sites(self) -> int:
        return self.states.shape[2]

    @property
    def n_tokens(self) -> int:
        """Token positions (columns), each with ``n_layers`` sites."""
        return int(self.lengths.sum())

    @classmethod
    def from_arrays(cls, states, rows=None, lengths=None, n_states=None) -> LatticeData:
        """Validate ``states`` (S, Λ, n) with token ``rows`` (S, n) (default: one row) and ``lengths`` (S,)."""
        x = np.asarray(states)
        if x.ndim != 3 or min(x.shape) < 1 or x.shape[2] < 2:
            raise InvalidParameterError(f"states must have shape (n_sequences, n_layers, n_positions >= 2), got "
                                        f"{x.shape}")
        if not np.issubdtype(x.dtype, np.integer):
            raise InvalidParameterError(f"states must be integer expert ids, got dtype {x.dtype}")
        s, _, n = x.shape
        lengths = np.full(s, n, np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (s,) or lengths.min() < 2 or lengths.max() > n:
            raise InvalidParameterError(f"lengths must be {s} integers in 2..{n}")
        inside = np.arange(n)[None, :] < lengths[:, None]
        valid = x.transpose(0, 2, 1)[inside]
        if valid.min() < 0:
            raise InvalidParameterError(f"states must be >= 0, found {valid.min()}")
        n_states = int(valid.max()) + 1 if n_states is None else as_int(n_states, "n_states", minimum=2)
        if n_states < 2 or valid.max() >= n_states:
            raise InvalidParameterError(f"states must be < n_states = {n_states}, found {valid.max()}")
        r = np.zeros((s, n), np.int64) if rows is None else np.asarray(rows)
        if r.shape != (s, n) or not np.issubdtype(r.dtype, np.integer) or (r[inside] < 0).any():
            raise InvalidParameterError(f"token rows must be integers >= 0 of shape {(s, n)}")
        x = np.where(inside[:, None, :], x, 0).astype(np.int64)
        r = np.where(inside, r, 0).astype(np.int64)
        return cls(np.ascontiguousarray(x), np.ascontiguousarray(r), lengths, n_states)

    def subset(self, index) -> LatticeData:
        index = np.asarray(index)
        return LatticeData(self.states[index], self.rows[index], self.lengths[index], self.n_states)


class LatticeLayout:
    """``theta`` (flat) <-> the lattice's parameter arrays, and the sufficient statistics.

    Parameters
    ----------
    n_layers, n_states : int
    n_rows : int
        Token-field rows (>= 1; one row: a homogeneous field per layer).
    couplings : str
        Within-layer couplings along the text, one of :data:`LATTICE_COUPLINGS`.
    cross_range : int
        Cross-layer couplings between layers ``l < m <= l + cross_range`` (0: none, 1: adjacent
        layers, 2: also next-nearest layers).
    """

    def __init__(self, n_layers, n_states, n_rows=1, couplings="potts", cross_range=1):
        self.n_layers = lam = as_int(n_layers, "n_layers", minimum=1)
        self.n_states = q = as_int(n_states, "n_states", minimum=2)
        self.n_rows = as_int(n_rows, "n_rows", minimum=1)
        if couplings not in LATTICE_COUPLINGS:
            raise InvalidParameterError(f"couplings must be one of {LATTICE_COUPLINGS}, got {couplings!r}")
        self.couplings = couplings
        self.cross_range = as_int(cross_range, "cross_range", 0, max(lam - 1, 0))
        self.pairs = np.array([(l, l + d) for d in range(1, self.cross_range + 1) for l in range(lam - d)],
                              dtype=np.int64).reshape(-1, 2)
        self.basis = zero_sum_basis(q)
        m = q - 1
        n_j = {"potts": 1, "full": m * m, "none": 0}[couplings]
        self._sizes = {"token": lam * self.n_rows * m, "coupling": lam * n_j, "cross": len(self.pairs) * m * m}
        offsets = np.cumsum([0] + list(self._sizes.values()))
        self.slices = {k: slice(int(a), int(b)) for k, a, b in zip(self._sizes, offsets[:-1], offsets[1:])}
        self.n_params = int(offsets[-1])

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    def describe(self) -> dict:
        return {"n_layers": self.n_layers, "n_states": self.n_states, "n_rows": self.n_rows,
                "couplings": self.couplings, "cross_range": self.cross_range}

    def same_as(self, other: LatticeLayout) -> bool:
        return self.describe() == other.describe()

    # ------------------------------------------------------------------ theta <-> arrays
    def expand(self, theta) -> dict:
        """Parameter arrays: ``token`` (Λ, R, q), ``coupling`` (Λ, q, q), ``cross`` (P, q, q)."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_params,):
            raise InvalidParameterError(f"theta must have {self.n_params} entries, got shape {theta.shape}")
        lam, q, b = self.n_layers, self.n_states, self.basis
        m = q - 1
        token = theta[self.slices["token"]].reshape(lam, self.n_rows, m) @ b.T
        if self.couplings == "potts":
            coupling = theta[self.slices["coupling"]][:, None, None] * (np.eye(q) - 1.0 / q)[None]
        elif self.couplings == "full":
            coupling = b @ theta[self.slices["coupling"]].reshape(lam, m, m) @ b.T
        else:
            coupling = np.zeros((lam, q, q))
        cross = b @ theta[self.slices["cross"]].reshape(self.n_pairs, m, m) @ b.T
        return {"token": np.ascontiguousarray(token), "coupling": np.ascontiguousarray(coupling),
                "cross": np.ascontiguousarray(cross).reshape(self.n_pairs, q, q)}

    def project(self, arrays) -> np.ndarray:
        """``theta`` of parameter arrays (their zero-sum part: the inverse of :meth:`expand` on it).

        Also the map of q-indexed statistics (counts, gradients) onto ``theta``'s coordinates:
        ``d f / d theta = project(d f / d arrays)`` for arrays given by :meth:`expand`, except that
        a Potts coupling's coordinate is the trace of its centred matrix, as for the parameter.
        """
        b, q = self.basis, self.n_states
        lam, m = self.n_layers, q - 1
        out = np.zeros(self.n_params)
        out[self.slices["token"]] = (np.asarray(arrays["token"], float) @ b).ravel()
        if self.couplings == "potts":
            c = np.asarray(arrays["coupling"], float)
            centred = np.einsum("lab,ab->l", c, np.eye(q) - 1.0 / q)
            out[self.slices["coupling"]] = centred
        elif self.couplings == "full":
            out[self.slices["coupling"]] = (b.T @ np.asarray(arrays["coupling"], float) @ b).reshape(lam * m * m)
        if self.n_pairs:
            out[self.slices["cross"]] = (b.T @ np.asarray(arrays["cross"], float) @ b).ravel()
        return out

    def project_parameters(self, arrays) -> np.ndarray:
        """``theta`` whose :meth:`expand` is the zero-sum part of ``arrays`` (Potts: the Potts part)."""
        theta = self.project(arrays)
        if self.couplings == "potts":  # <J, (I - 1/q)> = J (q - 1) for J (I - 1/q)
            theta[self.slices["coupling"]] /= self.n_states - 1
        return theta

    # ------------------------------------------------------------------ statistics
    def counts(self, data: LatticeData) -> dict:
        """q-indexed counts of the data: ``token`` (Λ, R, q), ``coupling`` (Λ, q, q), ``cross`` (P, q, q)."""
        self.check(data)
        tok = np.zeros((self.n_layers, self.n_rows, self.n_states))
        coup = np.zeros((self.n_layers, self.n_states, self.n_states))
        cross = np.zeros((max(self.n_pairs, 1), self.n_states, self.n_states))
        LK.lattice_counts(data.states, data.rows, data.lengths, self.pairs, tok, coup, cross)
        return {"token": tok, "coupling": coup, "cross": cross[: self.n_pairs]}

    def statistics(self, data: LatticeData) -> np.ndarray:
        """Sufficient statistics ``phi`` summed over the sequences, shape (n_params,)."""
        return self.project(self.counts(data))

    def statistics_per_sequence(self, data: LatticeData) -> np.ndarray:
        """``phi`` of every sequence, shape (n_sequences, n_params)."""
        self.check(data)
        lam, q, s = self.n_layers, self.n_states, data.n_sequences
        tok = np.zeros((s, lam, self.n_rows, q))
        coup = np.zeros((s, lam, q, q))
        cross = np.zeros((s, max(self.n_pairs, 1), q, q))
        LK.lattice_counts_per_sequence(data.states, data.rows, data.lengths, self.pairs, tok, coup, cross)
        return self.project_batch(tok, coup, cross[:, : self.n_pairs])

    def moments(self, data: LatticeData) -> tuple[np.ndarray, np.ndarray]:
        """Mean over the sequences of ``phi`` (n_params,) and a variance scale of each coordinate.

        The variance scale treats the count cells of one sequence as uncorrelated:
        ``sum_cells B^2 Var(count)`` (exact for one count per cell). It is a preconditioner (Monte
        Carlo learning), not an error: it costs O(S Λ n), while the exact per-sequence variances
        need :meth:`statistics_per_sequence` (S x n_params).
        """
        from .pseudo_likelihood import chunk_bounds

        self.check(data)
        lam, q, rr = self.n_layers, self.n_states, self.n_rows
        bounds = chunk_bounds(data.n_sequences)
        k = len(bounds) - 1
        p = max(self.n_pairs, 1)
        arrays = [np.zeros((k, lam, rr, q)), np.zeros((k, lam, rr, q)), np.zeros((k, lam, q, q)),
                  np.zeros((k, lam, q, q)), np.zeros((k, p, q, q)), np.zeros((k, p, q, q))]
        LK.lattice_moments(data.states, data.rows, data.lengths, self.pairs, bounds, *arrays)
        n = data.n_sequences
        t_sum, t_sq, c_sum, c_sq, x_sum, x_sq = (a.sum(axis=0) for a in arrays)
        mean = self.project({"token": t_sum / n, "coupling": c_sum / n, "cross": x_sum[: self.n_pairs] / n})
        b2 = self.basis**2
        var = np.zeros(self.n_params)
        var[self.slices["token"]] = ((t_sq / n - (t_sum / n) ** 2) @ b2).ravel()
        vc = c_sq / n - (c_sum / n) ** 2
        if self.couplings == "potts":
            var[self.slices["coupling"]] = np.einsum("lab,ab->l", vc, (np.eye(q) - 1.0 / q) ** 2)
        elif self.couplings == "full":
            var[self.slices["coupling"]] = (b2.T @ vc @ b2).ravel()
        if self.n_pairs:
            vx = x_sq[: self.n_pairs] / n - (x_sum[: self.n_pairs] / n) ** 2
            var[self.slices["cross"]] = (b2.T @ vx @ b2).ravel()
        return mean, np.maximum(var, 0.0)

    def conditional_moments(self, data: LatticeData, params) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`moments` Rao-Blackwellised: configurations ``data`` under the parameters ``params``
        (:meth:`expand`), every site's indicator ``1[x_{l,i} = a]`` replaced by its conditional
        probability ``p_{l,i}(a)`` given the rest of its sequence (an unbiased estimate of the same
        mean with less noise; a pair cell averages the estimates of its two sites' conditionals).

        The variance scale is ``sum_cells B^2 sum_sites p (1 - p)`` per sequence: the diagonal of the
        pseudo-likelihood's Fisher information, the curvature a coordinate's step should see. The
        spread of counts across sequences (:meth:`moments`) also holds how often each token occurs
        in each sequence, up to ``1 / (1 - p)`` times larger for a token routed with probability
        ``p``: steps that small are why Monte Carlo learning crawled on predictable tokens.
        """
        from .pseudo_likelihood import chunk_bounds

        self.check(data)
        lam, q, rr = self.n_layers, self.n_states, self.n_rows
        bounds = chunk_bounds(data.n_sequences)
        k = len(bounds) - 1
        n_p = max(self.n_pairs, 1)
        shapes = [(k, lam, rr, q), (k, lam, q, q), (k, lam, q, q), (k, n_p, q, q), (k, n_p, q, q)]
        mean, var = tuple(np.zeros(sh) for sh in shapes), tuple(np.zeros(sh) for sh in shapes)
        cross = params["cross"] if self.n_pairs else np.zeros((1, q, q))
        LK.conditional_moments(data.states, data.rows, data.lengths, params["token"], params["coupling"],
                               transposed(params["coupling"]), cross, transposed(cross), self.pairs, bounds, mean, var)
        n = data.n_sequences

        def per_sequence(parts):
            tok, coup, coup_t, cr, cr_t = (a.sum(axis=0) for a in parts)
            return (tok / n, (coup + transposed(coup_t)) / (2 * n),
                    ((cr + transposed(cr_t)) / (2 * n))[: self.n_pairs])

        t, c, x = per_sequence(mean)
        mean_theta = self.project({"token": t, "coupling": c, "cross": x})
        vt, vc, vx = per_sequence(var)
        b2 = self.basis**2
        var_theta = np.zeros(self.n_params)
        var_theta[self.slices["token"]] = (vt @ b2).ravel()
        if self.couplings == "potts":
            var_theta[self.slices["coupling"]] = np.einsum("lab,ab->l", vc, (np.eye(q) - 1.0 / q) ** 2)
        elif self.couplings == "full":
            var_theta[self.slices["coupling"]] = (b2.T @ vc @ b2).ravel()
        if self.n_pairs:
            var_theta[self.slices["cross"]] = (b2.T @ vx @ b2).ravel()
        return mean_theta, var_theta

    def project_batch(self, tok, coup, cross) -> np.ndarray:
        """:meth:`project` of a batch of q-indexed arrays (leading axis: sequences)."""
        b, q = self.basis, self.n_states
        s = tok.shape[0]
        parts = [(tok @ b).reshape(s, -1)]
        if self.couplings == "potts":
            parts.append(np.einsum("slab,ab->sl", coup, np.eye(q) - 1.0 / q))
        elif self.couplings == "full":
            parts.append((b.T @ coup @ b).reshape(s, -1))
        if self.n_pairs:
            parts.append((b.T @ cross @ b).reshape(s, -1))
        return np.concatenate(parts, axis=1)

    def log_weights(self, theta, states, rows, lengths) -> np.ndarray:
        """Unnormalised ``log P`` (``theta . phi``) of every configuration, shape (n,). For oracles."""
        data = LatticeData.from_arrays(states, rows, lengths, self.n_states)
        return self.statistics_per_sequence(data) @ np.asarray(theta, float)

    def check(self, data: LatticeData) -> None:
        if data.n_layers != self.n_layers or data.n_states != self.n_states:
            raise InvalidParameterError(f"data of {data.n_layers} layers x {data.n_states} states, the model has "
                                        f"{self.n_layers} x {self.n_states}")
        if data.rows.size and data.rows.max() >= self.n_rows:
            raise InvalidParameterError(f"token row {data.rows.max()} outside the model's {self.n_rows} rows")
