"""Product-state forward-backward against brute-force enumeration; Kronecker step against dense."""

import itertools

import numpy as np
import pytest

from ising_moe import InvalidParameterError
from ising_moe.exact import product as P


def _kron_log(factors):
    """Dense log W of a Kronecker product of log factors (each (n_f, n_f))."""
    out = np.zeros((1, 1))
    for f in factors:
        out = (out[:, None, :, None] + f[None, :, None, :]).reshape(out.shape[0] * f.shape[0], -1)
    return out


def _brute(unary, log_w, length):
    """Enumerate every configuration of one sequence: log Z, site marginals, bond pair sums, and all
    two-site joints. ``log_w``: (n_bonds, S, S)."""
    size = unary.shape[1]
    confs = np.array(list(itertools.product(range(size), repeat=length)))
    logp = unary[np.arange(length), confs].sum(axis=1)
    for i in range(length - 1):
        logp = logp + log_w[min(i, log_w.shape[0] - 1)][confs[:, i], confs[:, i + 1]]
    m = logp.max()
    log_z = m + np.log(np.exp(logp - m).sum())
    p = np.exp(logp - log_z)
    marg = np.zeros((length, size))
    for i in range(length):
        np.add.at(marg[i], confs[:, i], p)
    pair = np.zeros((size, size))
    for i in range(length - 1):
        np.add.at(pair, (confs[:, i], confs[:, i + 1]), p)
    joint = np.zeros((length, length, size, size))
    for i in range(length):
        for j in range(length):
            np.add.at(joint[i, j], (confs[:, i], confs[:, j]), p)
    return log_z, marg, pair, joint, confs, p


@pytest.mark.parametrize("sizes,per_bond", [((2, 3), False), ((3, 2), True), ((2, 2, 2), False), ((4,), True)])
def test_kronecker_matches_enumeration(sizes, per_bond):
    rng = np.random.default_rng(abs(hash((sizes, per_bond))) % 2**32)
    n_seq, n_sites = 3, 4
    size = int(np.prod(sizes))
    unary = rng.normal(size=(n_seq, n_sites, size))
    unary[1, 2, 0] = -np.inf  # a forbidden state
    nb = n_sites - 1 if per_bond else 1
    factors = [rng.normal(scale=1.5, size=(nb, n, n)) for n in sizes]
    trans = P.Transition.kronecker(*(f if per_bond else f[0] for f in factors))
    log_w = np.stack([_kron_log([f[b] for f in factors]) for b in range(nb)])
    lengths = np.array([4, 3, 1])
    weights = np.array([1.0, 0.5, 2.0])
    res = P.forward_backward(unary, trans, lengths, weights=weights)
    dense = P.forward_backward(unary, P.Transition.dense(log_w if per_bond else log_w[0]), lengths, weights=weights)
    site = np.zeros((n_sites, size))
    pair_total = np.zeros((size, size))
    for s in range(n_seq):
        log_z, marg, pair, _, _, _ = _brute(unary[s], log_w, lengths[s])
        assert res.log_partition[s] == pytest.approx(log_z, rel=1e-12, abs=1e-12)
        assert dense.log_partition[s] == pytest.approx(log_z, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(res.marginals[s, : lengths[s]], marg, atol=1e-12)
        np.testing.assert_allclose(dense.marginals[s, : lengths[s]], marg, atol=1e-12)
        assert (res.marginals[s, lengths[s]:] == 0).all()
        site[: lengths[s]] += weights[s] * marg
        pair_total += weights[s] * pair
    np.testing.assert_allclose(res.site_counts, site, atol=1e-12)
    np.testing.assert_allclose(dense.pair_counts, pair_total, atol=1e-12)
    # per-factor pair counts are the marginals of the dense pair counts
    tens = pair_total.reshape(sizes + sizes)
    for f, n in enumerate(sizes):
        keep = [g for g in range(2 * len(sizes)) if g not in (f, f + len(sizes))]
        np.testing.assert_allclose(res.pair_counts[f], tens.sum(axis=tuple(keep)), atol=1e-12)
    np.testing.assert_allclose(res.factor_marginals(0).sum(axis=2)[0], 1.0, atol=1e-12)
    groups = rng.integers(0, 3, size=(n_seq, n_sites))
    grouped = P.forward_backward(unary, trans, lengths, weights=weights, marginals=False, groups=groups, n_groups=4)
    want = np.zeros((4, size))
    for s in range(n_seq):
        for i in range(lengths[s]):
            want[groups[s, i]] += weights[s] * res.marginals[s, i]
    np.testing.assert_allclose(grouped.group_counts, want, atol=1e-12)
    assert grouped.marginals is None


def test_pair_counts_are_the_gradient_of_log_z():
    """d(sum_n w_n log Z_n)/d log W_f(a, b) = pair_counts[f][a, b] (central differences)."""
    rng = np.random.default_rng(5)
    sizes = (2, 3)
    unary = rng.normal(size=(2, 5, 6))
    factors = [rng.normal(size=(n, n)) for n in sizes]
    w = np.array([1.0, 3.0])
    res = P.forward_backward(unary, P.Transition.kronecker(*factors), weights=w)
    h = 1e-6
    for f, n in enumerate(sizes):
        for a, b in [(0, 1), (n - 1, n - 1)]:
            plus = [x.copy() for x in factors]
            minus = [x.copy() for x in factors]
            plus[f][a, b] += h
            minus[f][a, b] -= h
            lp = w @ P.forward_backward(unary, P.Transition.kronecker(*plus), pairs=False).log_partition
            lm = w @ P.forward_backward(unary, P.Transition.kronecker(*minus), pairs=False).log_partition
            assert (lp - lm) / (2 * h) == pytest.approx(res.pair_counts[f][a, b], rel=1e-6)


def test_large_potentials_stay_finite():
    rng = np.random.default_rng(2)
    # weights up to e^{900}, bonds spanning e^{300} (below the ~700 underflow range of one step)
    unary = 100.0 * rng.normal(size=(1, 6, 4))
    factors = [np.array([[900.0, 600.0], [600.0, 900.0]]), 50.0 * rng.normal(size=(2, 2))]
    res = P.forward_backward(unary, P.Transition.kronecker(*factors))
    log_z = _brute(unary[0], _kron_log(factors)[None], 6)[0]
    assert res.log_partition[0] == pytest.approx(log_z, rel=1e-12)


def test_two_point_matches_enumeration():
    rng = np.random.default_rng(3)
    sizes = (3, 2)
    unary = rng.normal(size=(2, 5, 6))
    factors = [rng.normal(size=(4, n, n)) for n in sizes]
    log_w = np.stack([_kron_log([f[b] for f in factors]) for b in range(4)])
    lengths = np.array([5, 4])
    observed = np.ones((2, 5), bool)
    observed[0, 2] = False
    trans = P.Transition.kronecker(*factors)
    for f in (0, 1):
        got = P.two_point(unary, trans, f, 3, lengths, observed)
        want = np.zeros_like(got)
        for s in range(2):
            _, _, _, joint, _, _ = _brute(unary[s], log_w, lengths[s])
            jt = joint.reshape((lengths[s], lengths[s]) + sizes + sizes)
            keep = [g for g in range(4) if g not in (f, f + 2)]
            jf = jt.sum(axis=tuple(2 + k for k in keep))
            for i in range(lengths[s]):
                for r in range(4):
                    if i + r < lengths[s] and observed[s, i] and observed[s, i + r]:
                        want[i, r] += jf[i, i + r]
        np.testing.assert_allclose(got, want, atol=1e-12)
    dense = P.two_point(unary, P.Transition.dense(log_w), 0, 3, lengths, observed)
    np.testing.assert_allclose(dense.reshape(5, 4, -1).sum(-1), got.reshape(5, 4, -1).sum(-1), atol=1e-12)


def test_sampling_matches_exact_distribution():
    """Chi-square of 20000 FFBS draws against the enumerated distribution; a wrong model is rejected."""
    from scipy import stats

    rng = np.random.default_rng(4)
    sizes = (2, 2)
    unary = rng.normal(size=(1, 3, 4))
    factors = [rng.normal(size=(2, 2)) for _ in sizes]
    trans = P.Transition.kronecker(*factors)
    n = 20000
    draws = P.sample(np.repeat(unary, n, axis=0), trans, rng=11)
    _, _, _, _, confs, p = _brute(unary[0], _kron_log(factors)[None], 3)
    codes = draws @ np.array([16, 4, 1])
    counts = np.bincount(codes, minlength=64)
    want_codes = confs @ np.array([16, 4, 1])
    expected = np.zeros(64)
    expected[want_codes] = n * p
    assert stats.chisquare(counts[want_codes], expected[want_codes]).pvalue > 1e-3
    wrong = P.sample(np.repeat(unary * 0, n, axis=0), trans, rng=11) @ np.array([16, 4, 1])
    assert stats.chisquare(np.bincount(wrong, minlength=64)[want_codes], expected[want_codes]).pvalue < 1e-6
    assert (P.unravel(draws[:2], sizes) == np.stack(np.unravel_index(draws[:2], sizes), -1)).all()
    # deterministic for a seed, and -1 beyond the length
    short = P.sample(unary, trans, lengths=[2], rng=1)
    assert short[0, 2] == -1 and (short == P.sample(unary, trans, lengths=[2], rng=1)).all()


def test_kernels_match_python():
    """The jitted pass and its pure-Python original agree bit for bit."""
    from ising_moe.exact import _product_kernels as PK

    rng = np.random.default_rng(6)
    unary = rng.normal(size=(3, 4, 6))
    trans = P.Transition.kronecker(rng.normal(size=(2, 2)), rng.normal(size=(3, 3)))
    site_weight, site_max, index, lens, packed = P._prepare(unary, trans, None)
    assert not packed[3].any()  # random factors are not Potts
    outs = []
    for fn in (PK.product_pass, PK.product_pass.py_func):
        log_z, marg = np.empty(3), np.empty((3, 4, 6))
        site, pd, pk = np.zeros((2, 4, 6)), np.zeros((2, 1, 1)), np.zeros((2, 2, 3, 3))
        gs = np.zeros((2, 3, 6))
        fn(site_weight, site_max, index, lens, np.ones(3), *packed, 2, True, 1, np.arange(12).reshape(3, 4) % 3, log_z, marg, site, pd,
           pk, gs)
        outs.append((log_z, marg, site, pk, gs))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def test_log_partition_alone_matches_forward_backward():
    """The forward-only pass gives the same log Z (dense and Kronecker, ragged, a zero-weight sequence)."""
    rng = np.random.default_rng(8)
    unary = rng.normal(size=(4, 6, 12))
    unary[3, 2] = -np.inf
    factors = [rng.normal(size=(3, 3)), rng.normal(size=(4, 4))]
    for trans in (P.Transition.kronecker(*factors), P.Transition.dense(_kron_log(factors))):
        full = P.forward_backward(unary, trans, lengths=[6, 4, 1, 6]).log_partition
        alone = P.log_partition(unary, trans, lengths=[6, 4, 1, 6])
        np.testing.assert_allclose(alone, full, rtol=1e-13)
        assert alone[3] == -np.inf


def test_row_table_equals_per_site_potentials():
    """``rows=``: a (G, S) table indexed per site gives what the (N, L, S) array it stands for gives."""
    rng = np.random.default_rng(9)
    table = rng.normal(size=(5, 12))
    table[4, :3] = -np.inf
    rows = rng.integers(0, 5, (4, 7))
    lengths = [7, 5, 2, 7]
    trans = P.Transition.kronecker(rng.normal(size=(3, 3)), rng.normal(size=(4, 4)))
    full = P.forward_backward(table[rows], trans, lengths)
    indexed = P.forward_backward(table, trans, lengths, rows=rows)
    np.testing.assert_allclose(indexed.log_partition, full.log_partition, rtol=1e-13)
    np.testing.assert_allclose(indexed.marginals, full.marginals, atol=1e-13)
    for a, b in zip(indexed.pair_counts, full.pair_counts):
        np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(P.log_partition(table, trans, lengths, rows=rows), full.log_partition, rtol=1e-13)
    assert (P.sample(table, trans, lengths, rng=3, rows=rows) == P.sample(table[rows], trans, lengths, rng=3)).all()
    np.testing.assert_allclose(P.two_point(table, trans, 1, 3, lengths, rows=rows),
                               P.two_point(table[rows], trans, 1, 3, lengths), atol=1e-12)
    rows[0, 0] = 5  # outside the table inside a length
    with pytest.raises(InvalidParameterError, match="rows"):
        P.log_partition(table, trans, lengths, rows=rows)


def test_bad_input_is_named():
    t = P.Transition.kronecker(np.zeros((2, 2)), np.zeros((3, 3)))
    with pytest.raises(InvalidParameterError, match="states per site"):
        P.forward_backward(np.zeros((1, 3, 5)), t)
    with pytest.raises(InvalidParameterError, match="lengths"):
        P.forward_backward(np.zeros((1, 3, 6)), t, lengths=[4])
    with pytest.raises(InvalidParameterError, match="NaN"):
        P.Transition.dense(np.full((2, 2), np.nan))
    with pytest.raises(InvalidParameterError, match="bonds"):
        P.forward_backward(np.zeros((1, 3, 4)), P.Transition.dense(np.zeros((5, 4, 4))))
    with pytest.raises(InvalidParameterError, match="Transition"):
        P.forward_backward(np.zeros((1, 3, 4)), np.zeros((4, 4)))
    res = P.forward_backward(np.full((1, 2, 6), -np.inf), t)
    assert res.log_partition[0] == -np.inf


def test_potts_factors_take_the_fast_path():
    """Potts-form factors (one diagonal, one off-diagonal value) use the O(S) contraction; results equal
    the dense chain's, and the diagonal-only pair counts equal the full ones' diagonals."""
    rng = np.random.default_rng(7)
    sizes = (3, 4, 2)
    unary = rng.normal(size=(3, 5, 24))
    factors = [2.0 * np.eye(3), 0.7 * (np.eye(4) - 0.25), rng.normal(size=(2, 2))]
    trans = P.Transition.kronecker(*factors)
    *_, packed = P._prepare(unary, trans, None)
    assert packed[3].tolist() == [[True, True, False]]
    res = P.forward_backward(unary, trans, lengths=[5, 3, 1])
    dense = P.forward_backward(unary, P.Transition.dense(_kron_log(factors)), lengths=[5, 3, 1])
    np.testing.assert_allclose(res.log_partition, dense.log_partition, rtol=1e-12)
    np.testing.assert_allclose(res.marginals, dense.marginals, atol=1e-12)
    diag = P.forward_backward(unary, trans, lengths=[5, 3, 1], pairs="diagonal", marginals=False)
    for f in range(3):
        np.testing.assert_allclose(diag.pair_counts[f], np.diag(res.pair_counts[f]), atol=1e-12)
