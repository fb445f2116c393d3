"""Data and parametrisation of conditional chains (linear-chain CRFs) and their mixtures.

A conditional chain gives sequence ``s`` (states ``x``, token ids ``t``) the probability

.. math::

    P(x | t) = \\frac{1}{Z(t)} \\exp\\Big(\\sum_i [P(i, x_i) + T(t_i, x_i)]
               + \\sum_i J(x_i, x_{i+1}) + J_2 \\sum_i (\\delta_{x_i x_{i+2}} - 1/q)\\Big),

with position fields ``P`` (free, smooth, block-wise, homogeneous or absent), token fields ``T``
(one row per frequent token id, the other ids pooled in one row) and couplings ``J`` (Potts
``J (delta - 1/q)``, a full zero-sum matrix, or none). A mixture of ``K`` such chains draws every
sequence from component ``k`` with probability ``pi_k``.

Gauge (internal, for optimisation): every field row is zero-sum over states through the orthonormal
basis ``B`` of :func:`~ising_moe.fit.params.zero_sum_basis`; with position fields present, one token
row (the pooled row when it has tokens, else the most frequent token) is the reference, fixed at
zero, so that ``P`` and ``T`` are identifiable and the L2 prior shrinks rare tokens towards it.

Prior (:meth:`CRFLayout.penalty`): precision ``l2`` on every parameter of ``theta`` except, with
token fields, the homogeneous part of free or block-wise position fields. Those fields are the reference token's
fields at each position; an L2 prior on each of the ``G`` groups pulls their mean towards zero with
precision ``G l2``, which biases every rare state of the reference token (+0.5, 8 standard errors,
on data with 128 positions). The prior therefore penalises the deviations of the ``G`` groups from
their mean with ``l2`` and the mean itself with ``l2`` once, as one field row:
``l2/2 (|W - 1 m^T|^2 + |m|^2)``. (Cosine position fields carry the mean in their first
coefficient, already penalised once.)
Reported parameters move the count-weighted mean of the token rows into the position fields (see
:meth:`CRFLayout.reported`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.special

from ..._util import as_int
from ...errors import InvalidParameterError
from ..data import ChainData
from ..params import zero_sum_basis
from . import _kernels as CK

__all__ = [
    "CRF_COUPLINGS",
    "MIXTURE_VARY",
    "POSITION_VARIANTS",
    "CRFLayout",
    "ConditionalData",
    "TokenVocabulary",
    "position_basis",
]

POSITION_VARIANTS = ("position", "smooth:K", "blocks:B", "homogeneous", "none")
CRF_COUPLINGS = ("potts", "full", "none")
MIXTURE_VARY = ("bias", "couplings", "fields", "all")


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class ConditionalData:
    """Validated state sequences with their token ids.

    Attributes
    ----------
    chain : ChainData
        States, observed sites and lengths (hidden sites inside a length are summed over).
    tokens : ndarray of int64, shape (n_sequences, n_sites) or None
        Token ids (0 outside the lengths).
    holes : ndarray of bool, shape (n_sequences,)
        Sequences with hidden sites.
    """

    chain: ChainData
    tokens: np.ndarray | None
    holes: np.ndarray

    @property
    def n_sequences(self) -> int:
        return self.chain.states.shape[0]

    @classmethod
    def from_arrays(cls, states, tokens=None, mask=None, lengths=None, n_states=None) -> ConditionalData:
        chain = states if isinstance(states, ChainData) else ChainData.from_arrays(states, mask, lengths, n_states)
        inside = np.arange(chain.n_sites)[None, :] < chain.lengths[:, None]
        tok = None
        if tokens is not None:
            tok = np.asarray(tokens)
            if tok.shape != chain.states.shape or not np.issubdtype(tok.dtype, np.integer):
                raise InvalidParameterError(f"tokens must be integer token ids of shape {chain.states.shape}, got "
                                            f"{tok.shape} {tok.dtype}")
            if (tok[inside] < 0).any():
                raise InvalidParameterError("token ids must be >= 0 inside every sequence's length")
            tok = np.ascontiguousarray(np.where(inside, tok, 0).astype(np.int64))
        holes = np.zeros(chain.states.shape[0], dtype=bool)
        holes[chain.hole_rows] = True
        return cls(chain, tok, holes)

    def subset(self, rows) -> ConditionalData:
        rows = np.asarray(rows)
        tok = None if self.tokens is None else self.tokens[rows]
        return ConditionalData(self.chain.subset(rows), tok, self.holes[rows])


@dataclass(frozen=True, eq=False)
class TokenVocabulary:
    """The token ids that get their own field row, most frequent first; others share row ``len(ids)``.

    Attributes
    ----------
    ids : ndarray of int64, shape (N,)
    counts : ndarray of int64, shape (N + 1,)
        Training occurrences of every row (the last: the pooled ids).
    """

    ids: np.ndarray
    counts: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.ids) + 1

    @classmethod
    def build(cls, data: ConditionalData, n_rows: int) -> TokenVocabulary:
        """The ``n_rows`` most frequent token ids inside the sequences' lengths (ties: smaller id)."""
        n_rows = as_int(n_rows, "token_rows", minimum=1)
        if data.tokens is None:
            raise InvalidParameterError("token fields need token ids: pass tokens= (or token_rows=0)")
        inside = np.arange(data.chain.n_sites)[None, :] < data.chain.lengths[:, None]
        ids, counts = np.unique(data.tokens[inside], return_counts=True)
        order = np.lexsort((ids, -counts))[:n_rows]
        vocab = ids[order].astype(np.int64)
        other = int(counts.sum() - counts[order].sum())
        return cls(vocab, np.concatenate([counts[order], [other]]).astype(np.int64))

    def rows(self, tokens: np.ndarray) -> np.ndarray:
        """Field row of every token id (``len(ids)`` for ids outside the vocabulary)."""
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, tokens), 0, max(len(sorted_ids) - 1, 0))
        hit = sorted_ids[pos] == tokens if len(sorted_ids) else np.zeros(tokens.shape, bool)
        return np.ascontiguousarray(np.where(hit, order[pos], len(self.ids)).astype(np.int64))


def position_basis(position: str, n_sites: int) -> np.ndarray | None:
    """Basis ``Phi`` (n_sites, G) of the position fields ``P = Phi W B^T``; ``None`` for free fields.

    ``smooth:K``: the first ``K`` cosine (DCT-II) functions ``cos(pi k (i + 1/2) / n)``, orthogonal on
    the sites; ``blocks:B``: indicators of ``B`` equal blocks of consecutive sites.
    """
    if position == "position":
        return None
    if position == "homogeneous":
        return np.ones((n_sites, 1))
    if position == "none":
        return np.zeros((n_sites, 0))
    kind, _, arg = position.partition(":")
    if kind not in ("smooth", "blocks") or not arg:
        raise InvalidParameterError(f"position must be one of {POSITION_VARIANTS}, got {position!r}")
    try:
        k = int(arg)
    except ValueError:
        raise InvalidParameterError(f"position {kind}:K needs an integer K, got {position!r}") from None
    as_int(k, f"number of {kind} basis functions", 1, n_sites)
    i = np.arange(n_sites)
    if kind == "smooth":
        return np.cos(np.pi * np.arange(k)[None, :] * (i[:, None] + 0.5) / n_sites)
    return (i[:, None] * k // n_sites == np.arange(k)[None, :]).astype(float)


# ----------------------------------------------------------------------------- parametrisation
class CRFLayout:
    """``theta`` (flat) <-> parameters of ``K`` conditional chains, and the kernel's tables.

    Parameters
    ----------
    n_sites, n_states : int
    position : str
        One of :data:`POSITION_VARIANTS`.
    n_token_rows : int
        Rows of the token table, the pooled row included (0: no token fields).
    reference_row : int
        Token row fixed at zero (-1: none; used when position fields are present).
    couplings : str
        One of :data:`CRF_COUPLINGS`.
    max_range : int
        1, or 2 for an extra Potts coupling ``J2`` at distance 2.
    n_components : int
    vary : str
        What differs between components: ``"bias"`` (a homogeneous field offset per component,
        zero-sum over components when the chains have position or token fields; everything else
        shared), ``"couplings"`` (the offsets and the couplings), ``"fields"`` (position and token
        fields; couplings shared) or ``"all"``.
    """

    def __init__(self, n_sites, n_states, position="position", n_token_rows=0, reference_row=-1,
                 couplings="potts", max_range=1, n_components=1, vary="bias"):
        self.n_sites = as_int(n_sites, "n_sites", minimum=2)
        self.n_states = q = as_int(n_states, "n_states", minimum=2)
        self.position = position
        self.phi = position_basis(position, n_sites)
        self.n_token_rows = as_int(n_token_rows, "n_token_rows", minimum=0)
        self.reference_row = int(reference_row)
        if couplings not in CRF_COUPLINGS:
            raise InvalidParameterError(f"couplings must be one of {CRF_COUPLINGS}, got {couplings!r}")
        self.couplings = couplings
        self.max_range = as_int(max_range, "max_range", 1, 2)
        self.n_components = n_comp = as_int(n_components, "n_components", minimum=1)
        if vary not in MIXTURE_VARY:
            raise InvalidParameterError(f"vary must be one of {MIXTURE_VARY}, got {vary!r}")
        self.vary = vary
        self.b = zero_sum_basis(q)
        n_groups = n_sites if self.phi is None else self.phi.shape[1]
        free_rows = self.n_token_rows - (1 if 0 <= self.reference_row < self.n_token_rows else 0)
        has_fields = n_groups > 0 or self.n_token_rows > 0
        sizes = {"position": n_groups * (q - 1), "token": free_rows * (q - 1),
                 "coupling": {"potts": 1, "full": (q - 1) ** 2, "none": 0}[couplings],
                 "coupling2": 1 if self.max_range == 2 else 0}
        own = {"bias": (), "couplings": ("coupling", "coupling2"), "fields": ("position", "token"),
               "all": ("position", "token", "coupling", "coupling2")}
        per_comp = set(own[vary]) if n_comp > 1 else set()
        self.slots, offset = {}, 0
        for name, size in sizes.items():
            if name in per_comp:
                self.slots[name] = [slice(offset + k * size, offset + (k + 1) * size) for k in range(n_comp)]
                offset += n_comp * size
            else:
                self.slots[name] = [slice(offset, offset + size)] * n_comp
                offset += size
        # component field offsets: zero-sum over components when the shared fields can absorb the mean
        self.n_bias = 0
        if n_comp > 1 and (vary in ("bias", "couplings") or not has_fields):
            self.bias_basis = (scipy.linalg.null_space(np.ones((1, n_comp)))
                               if has_fields and vary in ("bias", "couplings") else np.eye(n_comp))
            self.n_bias = self.bias_basis.shape[1]
        self.bias_slot = slice(offset, offset + self.n_bias * (q - 1))
        offset += self.n_bias * (q - 1)
        self.logit_slot = slice(offset, offset + n_comp - 1)
        self.n_params = offset + n_comp - 1
        self.free_rows = np.array([r for r in range(self.n_token_rows) if r != self.reference_row], dtype=np.int64)
        self.sizes = sizes

    @property
    def n_groups(self) -> int:
        return self.n_sites if self.phi is None else self.phi.shape[1]

    def _mean_penalised_once(self) -> bool:
        # only where the position fields are a reference token's fields (without token fields the
        # prior is ChainMaxLikelihood's); free or block-wise fields: all-ones coefficients are the mean
        return (self.n_token_rows > 0 and 0 <= self.reference_row and self.n_groups > 1
                and (self.phi is None or self.position.startswith("blocks")))

    def penalty(self, theta) -> tuple[float, np.ndarray]:
        """``(theta^T Lambda theta / 2, Lambda theta)``: the prior per unit ``l2`` (see the module
        docstring; ``Lambda`` is the identity except on the homogeneous part of the position fields)."""
        theta = np.asarray(theta, dtype=float)
        grad = theta.copy()
        if self._mean_penalised_once():
            g, q1 = self.n_groups, self.n_states - 1
            for sl in dict.fromkeys((s.start, s.stop) for s in self.slots["position"]):
                w = theta[sl[0]: sl[1]].reshape(g, q1)
                # |W|^2 - (G - 1)|m|^2 = |W - 1 m^T|^2 + |m|^2
                grad[sl[0]: sl[1]] -= np.tile((g - 1) / g * w.mean(axis=0), g)
        return 0.5 * float(theta @ grad), grad

    def field_groups(self):
        """``(slice, weights)`` of every block of ``q - 1`` field parameters of ``theta`` (for the
        preconditioner): ``weights`` (K, n) of each block on the sites' position fields, or a token
        row as an int, per component."""
        out = []
        q1 = self.n_states - 1
        for k in range(self.n_components):
            if k > 0 and self.slots["position"][k] == self.slots["position"][0]:
                break
            start = self.slots["position"][k].start
            for gidx in range(self.n_groups):
                out.append((slice(start + gidx * q1, start + (gidx + 1) * q1), ("position", k, gidx)))
        for k in range(self.n_components):
            if k > 0 and self.slots["token"][k] == self.slots["token"][0]:
                break
            start = self.slots["token"][k].start
            for m, row in enumerate(self.free_rows):
                out.append((slice(start + m * q1, start + (m + 1) * q1), ("token", k, int(row))))
        for m in range(self.n_bias):
            out.append((slice(self.bias_slot.start + m * q1, self.bias_slot.start + (m + 1) * q1), ("bias", m, 0)))
        return out

    # ------------------------------------------------------------------ maps
    def expand(self, theta) -> dict:
        """Parameters of every component: ``position`` (K, n, q), ``token`` (K, R, q), ``coupling``
        (K, q, q), ``potts`` (K,) (the Potts ``J``, 0 otherwise), ``coupling2`` (K,), ``log_pi`` (K,)."""
        theta = np.asarray(theta, dtype=float)
        q, n, n_comp = self.n_states, self.n_sites, self.n_components
        rows = max(self.n_token_rows, 1)
        pos = np.zeros((n_comp, n, q))
        tok = np.zeros((n_comp, rows, q))
        coup = np.zeros((n_comp, q, q))
        potts = np.zeros(n_comp)
        j2 = np.zeros(n_comp)
        bias = np.zeros((n_comp, q))
        if self.n_bias:
            bias = self.bias_basis @ theta[self.bias_slot].reshape(self.n_bias, q - 1) @ self.b.T
        for k in range(n_comp):
            w = theta[self.slots["position"][k]].reshape(self.n_groups, q - 1) @ self.b.T
            pos[k] = (w if self.phi is None else self.phi @ w) + bias[k]
            if self.n_token_rows:
                tok[k, self.free_rows] = theta[self.slots["token"][k]].reshape(-1, q - 1) @ self.b.T
            c = theta[self.slots["coupling"][k]]
            if self.couplings == "potts":
                potts[k] = c[0]
                coup[k] = c[0] * (np.eye(q) - 1.0 / q)
            elif self.couplings == "full":
                coup[k] = self.b @ c.reshape(q - 1, q - 1) @ self.b.T
            if self.max_range == 2:
                j2[k] = theta[self.slots["coupling2"][k]][0]
        logits = np.concatenate([[0.0], theta[self.logit_slot]])
        log_pi = logits - scipy.special.logsumexp(logits)
        return {"position": pos, "token": tok, "coupling": coup, "potts": potts, "coupling2": j2, "log_pi": log_pi}

    def adjoint(self, g_pos, g_tok, g_pair, g_j2, g_logpi) -> np.ndarray:
        """Gradient with respect to ``theta`` from gradients with respect to the expanded parameters.

        ``g_pair`` (K, q, q) are pair-moment differences whose entries sum to zero per component
        (data and model have the same number of bonds): the Potts gradient is then its trace.
        """
        n_comp = self.n_components
        grad = np.zeros(self.n_params)
        for k in range(n_comp):
            gw = g_pos[k] if self.phi is None else self.phi.T @ g_pos[k]
            grad[self.slots["position"][k]] += (gw @ self.b).ravel()
            if self.n_token_rows:
                grad[self.slots["token"][k]] += (g_tok[k, self.free_rows] @ self.b).ravel()
            if self.couplings == "potts":
                grad[self.slots["coupling"][k]] += np.trace(g_pair[k])
            elif self.couplings == "full":
                grad[self.slots["coupling"][k]] += (self.b.T @ g_pair[k] @ self.b).ravel()
            if self.max_range == 2:
                grad[self.slots["coupling2"][k]] += g_j2[k]
        if self.n_bias:
            per_comp = g_pos.sum(axis=1) @ self.b  # (K, q - 1)
            grad[self.bias_slot] = (self.bias_basis.T @ per_comp).ravel()
        grad[self.logit_slot] = g_logpi[1:]
        return grad

    def tables(self, params: dict):
        """Kernel arguments ``(pw, pshift, tw, tshift, wc, cshift, g, g2, j2shift, kind)``."""
        q = self.n_states

        def exp_rows(a):
            shift = a.max(axis=-1)
            return np.ascontiguousarray(np.exp(a - shift[..., None])), np.ascontiguousarray(shift)

        pw, pshift = exp_rows(params["position"])
        tw, tshift = exp_rows(params["token"])
        n_comp = self.n_components
        kind = {"none": CK.KIND_NONE, "potts": CK.KIND_POTTS, "full": CK.KIND_FULL}[self.couplings]
        potts = params["potts"]
        g = np.expm1(potts)
        if self.couplings == "full":
            shift = params["coupling"].max(axis=(1, 2))
            wc = np.exp(params["coupling"] - shift[:, None, None])
            cshift = shift
        else:  # exp(J (delta - 1/q)) = exp(-J/q) (1 + g delta)
            wc = np.ones((n_comp, q, q)) + g[:, None, None] * np.eye(q)
            cshift = -potts / q
        j2 = params["coupling2"]
        return (pw, pshift, tw, tshift, np.ascontiguousarray(wc), np.ascontiguousarray(cshift, dtype=float), g,
                np.expm1(j2), -j2 / q, kind)

    def project(self, params: dict) -> np.ndarray:
        """``theta`` of given (component-wise) parameters, by least squares within the layout after
        moving the reference token row into the position fields (initial guesses, warm starts)."""
        q, n_comp = self.n_states, self.n_components
        theta = np.zeros(self.n_params)
        pos = np.array(params["position"], dtype=float).reshape(-1, self.n_sites, q)
        tok = np.array(params["token"], dtype=float)
        tok = tok.reshape(-1, tok.shape[-2], q)
        pos = np.broadcast_to(pos, (n_comp,) + pos.shape[1:]).copy()
        tok = np.broadcast_to(tok, (n_comp,) + tok.shape[1:]).copy()
        pos -= pos.mean(axis=2, keepdims=True)
        tok -= tok.mean(axis=2, keepdims=True)
        if self.n_token_rows and tok.shape[1] != self.n_token_rows:
            raise InvalidParameterError(f"init has {tok.shape[1]} token rows, the layout {self.n_token_rows}")
        if self.n_token_rows and 0 <= self.reference_row:
            pos += tok[:, self.reference_row][:, None, :]
            tok -= tok[:, self.reference_row][:, None, :]
        if self.n_bias:
            mean = pos.mean(axis=1)  # (K, q): the homogeneous part per component
            coef = np.linalg.lstsq(self.bias_basis, mean @ self.b, rcond=None)[0]
            theta[self.bias_slot] = coef.ravel()
            pos -= (self.bias_basis @ coef @ self.b.T)[:, None, :]
        blocks = {name: [] for name in ("position", "token", "coupling", "coupling2")}
        coup = np.broadcast_to(params.get("coupling", np.zeros((q, q))), (n_comp, q, q))
        coup2 = np.broadcast_to(params.get("coupling2", 0.0), (n_comp,))
        for k in range(n_comp):
            if self.phi is None:
                w = pos[k] @ self.b
            elif self.n_groups:
                w = np.linalg.lstsq(self.phi, pos[k], rcond=None)[0] @ self.b
            else:
                w = np.zeros((0, q - 1))
            blocks["position"].append(w.ravel())
            blocks["token"].append((tok[k, self.free_rows] @ self.b).ravel() if self.n_token_rows else np.zeros(0))
            if self.couplings == "potts":
                blocks["coupling"].append(np.array([np.trace(coup[k] @ (np.eye(q) - 1.0 / q)) / (q - 1)]))
            elif self.couplings == "full":
                blocks["coupling"].append((self.b.T @ coup[k] @ self.b).ravel())
            else:
                blocks["coupling"].append(np.zeros(0))
            blocks["coupling2"].append(np.array([coup2[k]]) if self.max_range == 2 else np.zeros(0))
        for name, values in blocks.items():
            slots = self.slots[name]
            if slots[0] == slots[-1]:  # shared by the components: their mean
                theta[slots[0]] = np.mean(values, axis=0)
            else:
                for sl, v in zip(slots, values):
                    theta[sl] = v
        if n_comp > 1 and "log_pi" in params:
            lp = np.asarray(params["log_pi"], dtype=float)
            theta[self.logit_slot] = lp[1:] - lp[0]
        return theta

    def reported(self, params: dict, token_counts: np.ndarray | None) -> dict:
        """Parameters in the reported gauge: zero-sum rows; with position fields, the token rows'
        mean weighted by ``token_counts`` (R,) moved into the position fields of each component."""
        out = {k: np.array(v) for k, v in params.items()}
        if self.n_token_rows and self.n_groups and token_counts is not None and token_counts.sum() > 0:
            w = token_counts / token_counts.sum()
            mean = np.einsum("r,kra->ka", w, out["token"])
            out["token"] -= mean[:, None, :]
            out["position"] += mean[:, None, :]
        return out
