"""Held-out baselines: Kneser-Ney against hand-computed values and a brute-force reference, the
targets against the model's, the document bootstrap against its nominal coverage."""

import itertools

import numpy as np
import pytest

from ising_moe.errors import InvalidParameterError
from ising_moe.train.baselines import (
    KneserNey,
    causal_targets,
    document_estimate,
    document_totals,
    bin_totals,
    paired_difference,
    span_positions,
    span_targets,
)
from ising_moe.train.corpus import span_corrupt


def _ref_kn(seqs, order, v):
    """Brute force, straight from the formula: dictionaries of counts, recursion per query."""
    grams = {k: {} for k in range(1, order + 2)}
    for s in seqs:
        for k in range(1, order + 2):
            for i in range(len(s) - k + 1):
                g = tuple(s[i:i + k])
                grams[k][g] = grams[k].get(g, 0) + 1

    def counts(k, top):
        if top:
            return grams[k]
        cont = {}
        for g in grams[k + 1]:
            cont[g[1:]] = cont.get(g[1:], 0) + 1
        return cont

    def discount(c):
        n1 = sum(1 for x in c.values() if x == 1)
        n2 = sum(1 for x in c.values() if x == 2)
        return n1 / (n1 + 2 * n2) if n1 else 0.5

    def p(k, h, w, top):
        if k == 0:
            return 1.0 / v
        c = counts(k, top)
        d = discount(c)
        lower = p(k - 1, h[1:], w, False)
        total = sum(x for g, x in c.items() if g[:-1] == h)
        if total == 0:
            return lower
        types = sum(1 for g, x in c.items() if g[:-1] == h and x > 0)
        return max(c.get(h + (w,), 0) - d, 0) / total + d * types / total * lower

    def prob(history, w):
        h = []
        for x in reversed(history[len(history) - (order - 1):] if order > 1 else []):
            if x < 0:  # only the run of known tokens just before the target counts
                break
            h.insert(0, x)
        h = tuple(h)
        return p(len(h) + 1, h, w, True)

    return prob


def test_bigram_hand_computed():
    # corpus 0 1 0 1 2: bigrams (0,1) x2, (1,0), (1,2): D2 = n1/(n1 + 2 n2) = 2/4; every token has
    # one left neighbour type, so D1 = 1 and the continuation unigram is uniform (1/3)
    kn = KneserNey(2, 3).fit([[0, 1, 0, 1, 2]])
    assert kn.discounts_[(2, "raw")] == 0.5 and kn.discounts_[(1, "cont")] == 1.0
    np.testing.assert_allclose(kn.distribution([0]), [1 / 12, 1.5 / 2 + 1 / 12, 1 / 12], rtol=1e-14)
    np.testing.assert_allclose(kn.distribution([1]), [5 / 12, 1 / 6, 5 / 12], rtol=1e-14)
    np.testing.assert_allclose(kn.distribution([2]), [1 / 3] * 3, rtol=1e-14)  # unseen history


def test_unigram_hand_computed():
    # counts 0:3, 1:1, 2:0 (V = 3): n1 = 1, n2 = 0 -> D = 1; P(w) = max(c - 1, 0)/4 + 1 * 2/4 / 3
    kn = KneserNey(1, 3).fit([[0, 0, 1, 0]])
    np.testing.assert_allclose(kn.distribution([]), [2 / 4 + 1 / 6, 1 / 6, 1 / 6], rtol=1e-14)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_matches_brute_force_and_normalised(order):
    rng = np.random.default_rng(order)
    v = 5
    seqs = [rng.choice(v, size=n, p=[0.4, 0.25, 0.2, 0.1, 0.05]) for n in (30, 17, 2, 9)]
    kn = KneserNey(order, v).fit(seqs)
    ref = _ref_kn([list(map(int, s)) for s in seqs], order, v)
    histories = [h for n in range(0, 3) for h in itertools.product(range(-1, v), repeat=n)]
    for h in histories:
        hist = np.array(h, dtype=np.int64)
        dist = kn.distribution(hist)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12), h
        assert (dist > 0).all()
        expected = [ref(list(h), w) for w in range(v)]
        np.testing.assert_allclose(dist, expected, rtol=1e-12, err_msg=str(h))


def test_short_history_is_the_lower_order_model():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 6, 40) for _ in range(5)]
    tri, bi = KneserNey(3, 6).fit(seqs), KneserNey(2, 6).fit(seqs)
    for u in range(6):
        np.testing.assert_allclose(tri.distribution([-1, u]), bi.distribution([u]), rtol=1e-14)
    # and a full history does use the trigram counts (negative control)
    assert not np.allclose(tri.distribution([1, 2]), bi.distribution([2]))


def test_counts_do_not_cross_documents():
    joined = KneserNey(2, 3).fit([[0, 1, 2, 0]])
    split = KneserNey(2, 3).fit([[0, 1], [2, 0]])
    assert 1 * 3 + 2 in joined.raw_[2]["keys"]
    assert 1 * 3 + 2 not in split.raw_[2]["keys"]  # (1, 2) only across the boundary
    assert joined.n_train_tokens_ == split.n_train_tokens_ == 4


def test_bad_input():
    with pytest.raises(InvalidParameterError, match="tokens must lie"):
        KneserNey(2, 3).fit([[0, 3]])
    with pytest.raises(InvalidParameterError, match="order"):
        KneserNey(6, 3).fit([[0, 1]])
    with pytest.raises(InvalidParameterError, match="no training tokens"):
        KneserNey(2, 3).fit([[]])


def test_causal_targets_are_the_model_targets():
    windows = [np.array([5, 6, 7, 8]), np.array([9, 10])]
    t = causal_targets(windows, max_history=2)
    # the model's labels after the shift: logits[:, :-1] predict ids[:, 1:]
    np.testing.assert_array_equal(t.target, [6, 7, 8, 10])
    np.testing.assert_array_equal(t.history, [[-1, 5], [5, 6], [6, 7], [-1, 9]])
    np.testing.assert_array_equal(t.position, [1, 2, 3, 1])
    np.testing.assert_array_equal(t.window, [0, 0, 0, 1])


def test_span_targets_recover_the_removed_tokens():
    sentinels = list(range(100, 132))
    rng = np.random.default_rng(3)
    windows = [rng.integers(2, 50, n) for n in (64, 40, 200)]
    pairs = [span_corrupt(w, np.random.default_rng([0, 2, i]), 0.15, 3.0, sentinels) for i, w in enumerate(windows)]
    t = span_targets(windows, pairs, sentinels)
    for i, (w, (inp, tgt)) in enumerate(zip(windows, pairs)):
        rows = t.window == i
        text = [x for x in tgt[:-1] if x not in sentinels]
        np.testing.assert_array_equal(t.target[rows], text)
        pos = t.position[rows]
        np.testing.assert_array_equal(t.history[rows][:, 1], w[pos - 1])
        # the kept tokens plus the span tokens are the whole window
        kept = [x for x in inp[:-1] if x not in sentinels]
        assert len(kept) + len(text) == len(w)
    # a target that does not belong to the window is refused
    inp, tgt = pairs[0]
    with pytest.raises(InvalidParameterError, match="do not fit"):
        span_positions(windows[1], inp, tgt, sentinels)


def test_document_estimate_and_paired_difference():
    nll = np.array([10.0, 20.0, 30.0])
    n = np.array([5.0, 5.0, 10.0])
    e = document_estimate(nll, n, n_bootstrap=500)
    assert e.value == pytest.approx(60 / 20) and e.low <= e.value <= e.high
    assert e.n_documents == 3 and e.n_targets == 20
    d = paired_difference(nll, n, nll, n, n_bootstrap=200)
    assert d.value == 0 and d.low == 0 and d.high == 0
    s, c = document_totals(np.array([1.0, 2.0, 4.0]), np.array([0, 1, 1]), np.array([1, 0]), 3)
    np.testing.assert_array_equal(s, [6.0, 1.0, 0.0])
    np.testing.assert_array_equal(c, [2.0, 1.0, 0.0])


def test_document_bootstrap_coverage():
    # documents with their own mean loss (between-document variance) and unequal lengths: the
    # 95% interval of the ratio estimator covers the population value in about 95% of samples
    truth, covered, n_rep = 3.0, 0, 300
    rng = np.random.default_rng(7)
    for rep in range(n_rep):
        n = rng.integers(20, 400, 60).astype(float)
        mean = truth + rng.normal(0, 0.4, 60)
        nll = n * mean + rng.normal(0, 1.0, 60) * np.sqrt(n)
        e = document_estimate(nll, n, n_bootstrap=400, seed=rep)
        covered += e.low <= truth <= e.high
    assert 0.88 <= covered / n_rep <= 0.99
    # negative control: intervals that ignore the between-document variance (token-level
    # binomial-style error) cover far less often
    naive = 0
    rng = np.random.default_rng(7)
    for rep in range(n_rep):
        n = rng.integers(20, 400, 60).astype(float)
        mean = truth + rng.normal(0, 0.4, 60)
        nll = n * mean + rng.normal(0, 1.0, 60) * np.sqrt(n)
        value, se = nll.sum() / n.sum(), 1.0 / np.sqrt(n.sum())
        naive += abs(value - truth) <= 1.96 * se
    assert naive / n_rep < 0.6


def test_bin_totals_select_window_positions():
    windows = [np.arange(10), np.arange(3)]
    t = causal_targets(windows)
    values = t.position.astype(float)  # nll = position, to see which targets are summed
    s, c = bin_totals(values, t, np.array([0, 1]), 2, 2, 4)
    np.testing.assert_array_equal(s, [2 + 3 + 4, 2])
    np.testing.assert_array_equal(c, [3, 1])
