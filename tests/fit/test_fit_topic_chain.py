"""TopicChain: exact likelihood against enumeration, exact gradient, recovery of a planted topic chain,
the no-switching and no-topic limits, and the negative control."""

import itertools
import math
import warnings

import numpy as np
import pytest

from ising_moe import InvalidParameterError
from ising_moe.exact import product as PR
from ising_moe.fit.conditional import ChainMixture, ConditionalChain, TopicChain
from ising_moe.fit.conditional.model import _layout_for
from ising_moe.fit.conditional.params import ConditionalData, TokenVocabulary
from ising_moe.fit.conditional.topic_chain import TopicObjective
from topic_oracles import plant


def _objective(x, t, mask, k, q):
    data = ConditionalData.from_arrays(x, t, mask, None, q)
    vocab = TokenVocabulary.build(data, 3)
    layout = _layout_for("position", "potts", 1, data.chain.n_sites, q, vocab, k, "bias")
    return TopicObjective(data, vocab.rows(data.tokens), layout, 0.0, np.array([1.0, 2.0, 0.5]))


def _brute_log_likelihood(obj, theta, s):
    """log P(observed experts | tokens) of sequence s by enumerating every (z, s) configuration."""
    u, params = obj.unary(theta)
    u = u[s]
    L, k, q = u.shape
    J = params["coupling"][0]
    kappa = theta[-1]
    obs = obj.data.chain.observed[s]
    x = obj.data.chain.states[s]
    length = obj.data.chain.lengths[s]
    log_w, keep = [], []
    for zc in itertools.product(range(k), repeat=length):
        for sc in itertools.product(range(q), repeat=length):
            e = sum(u[i, zc[i], sc[i]] for i in range(length))
            e += sum(J[sc[i], sc[i + 1]] + kappa * (zc[i] == zc[i + 1]) for i in range(length - 1))
            log_w.append(e)
            keep.append(all(sc[i] == x[i] for i in range(length) if obs[i]))
    log_w, keep = np.array(log_w), np.array(keep)
    top = log_w.max()
    return math.log(np.exp(log_w[keep] - top).sum()) - math.log(np.exp(log_w - top).sum())


def test_likelihood_and_gradient_are_exact():
    rng = np.random.default_rng(0)
    q, k = 3, 2
    x = rng.integers(0, q, size=(3, 4))
    t = rng.integers(0, 5, size=(3, 4))
    mask = np.ones((3, 4), bool)
    mask[1, 1] = False   # a hidden site: the joint clamped pass
    mask[2, 3] = False   # a shorter sequence: the topic-only clamped pass
    obj = _objective(x, t, mask, k, q)
    theta = rng.normal(scale=0.7, size=obj.n_params)
    ll, total, grad = obj.log_likelihoods(theta, want_grad=True)
    for s in range(3):
        assert ll[s] == pytest.approx(_brute_log_likelihood(obj, theta, s), rel=1e-10, abs=1e-12)
    assert total == pytest.approx(obj.weights @ ll, rel=1e-12)
    h = 1e-6
    for j in range(obj.n_params):
        e = np.zeros(obj.n_params)
        e[j] = h
        num = (obj.log_likelihoods(theta + e)[1] - obj.log_likelihoods(theta - e)[1]) / (2 * h)
        assert grad[j] == pytest.approx(num, rel=1e-5, abs=1e-7)


def test_one_topic_is_the_conditional_chain():
    x, _, t = plant(40, 12, 3, 1, 0.0, 0.0, 0.4, 6, 0.8, seed=1)
    base = ConditionalChain(token_rows=6, tol=1e-7).fit(x, t, n_states=3)
    one = TopicChain(n_topics=1, token_rows=6, tol=1e-7).fit(x, t, n_states=3, init=base)
    np.testing.assert_allclose(one.log_likelihood(x, t), base.log_likelihood(x, t), atol=1e-6)


@pytest.fixture(scope="module")
def planted():
    x, z, t = plant(160, 48, 4, 2, 3.0, 1.2, 0.5, 10, 0.5, seed=2)
    return x, z, t


def test_recovers_switching_rate_and_persistence(planted):
    """Parameters, rho and xi_topic of the fit match those of the true model within bootstrap errors."""
    x, z, t = planted
    common = dict(position="homogeneous", token_rows=10, tol=1e-5)
    fit = TopicChain(n_topics=2, n_init=2, rng=0, **common).fit(x, t, n_states=4)
    assert fit.result_.success
    assert fit.stay_weight_ == pytest.approx(3.0, abs=0.4)
    # the same quantities of the true model on the same tokens (exact, no sampling noise)
    truth = TopicChain(n_topics=2, **common).fit(x, t, n_states=4, init=fit)  # continued: same layout
    theta = truth.theta_full_.copy()
    theta[-1] = 3.0
    truth.theta_full_ = theta
    st_fit = fit.topic_statistics(t, max_distance=12)
    st_true = truth.topic_statistics(t, max_distance=12)
    # bootstrap over sequences (warm-started refits)
    gen = np.random.default_rng(5)
    rho, xi = [], []
    for _ in range(6):
        w = gen.multinomial(len(x), np.ones(len(x)) / len(x)).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = TopicChain(n_topics=2, **common).fit(x, t, n_states=4, sample_weight=w, init=fit)
        st = b.topic_statistics(t, max_distance=12)
        rho.append(st.switching_rate)
        xi.append(st.persistence_length)
    rho_se, xi_se = np.std(rho, ddof=1), np.std(xi, ddof=1)
    empirical_rho = (z[:, 1:] != z[:, :-1]).mean()
    assert abs(st_fit.switching_rate - empirical_rho) < 4 * rho_se + 0.005
    assert abs(st_fit.persistence_length - st_true.persistence_length) < 4 * xi_se + 0.5
    assert 5 < st_fit.persistence_length < 30
    # the topics found are the planted ones (up to the label order)
    post = fit.predict(x, t)
    agree = max((post == z).mean(), (post == 1 - z).mean())
    assert agree > 0.8


def test_held_out_selects_the_planted_number_of_topics(planted):
    from ising_moe.fit.conditional.topic_chain import select_n_topics

    x, _, t = planted
    sel = select_n_topics(x, t, candidates=(1, 2, 3), rng=0, position="homogeneous", token_rows=10, n_init=1,
                          tol=1e-4)
    assert sel.chosen == 2
    assert not sel.at_edge


def test_no_switching_matches_the_mixture():
    """Sequence-level topics: kappa is large and the held-out likelihood is the mixture's."""
    rng = np.random.default_rng(3)
    n_seq, L, q = 120, 32, 4
    comp = rng.integers(0, 2, n_seq)
    z = np.repeat(comp[:, None], L, axis=1)
    x, _, t = plant(n_seq, L, q, 2, 0.0, 0.0, 0.4, 8, 0.5, seed=4, topics=False)
    # resample experts with a per-sequence bias: a sequence mixture
    bias = np.array([[1.0, -1.0, 0, 0], [-1.0, 1.0, 0, 0]])
    tok = 0.5 * np.random.default_rng(4).normal(size=(8, q))
    for s in range(n_seq):
        u = (tok[t[s]] + bias[comp[s]])[None]
        x[s] = PR.sample(u, PR.Transition.kronecker(0.4 * (np.eye(q) - 1 / q)), rng=rng)[0]
    train, test = slice(0, 90), slice(90, None)
    common = dict(position="homogeneous", token_rows=8, tol=1e-5)
    mix = ChainMixture(n_components=2, n_init=2, rng=0, **common).fit(x[train], t[train], n_states=q)
    top = TopicChain(n_topics=2, n_init=2, rng=0, **common).fit(x[train], t[train], n_states=q)
    assert top.stay_weight_ > 5
    assert top.switching_rate_ < 0.01
    d = top.log_likelihood(x[test], t[test]) - mix.log_likelihood(x[test], t[test])
    n_tok = x[test].size
    assert abs(d.sum() / n_tok) < 3 * math.sqrt(len(d)) * d.std(ddof=1) / n_tok + 1e-3
    assert (z == z).all()


def test_negative_control_has_no_topic_structure():
    """No topics planted: no held-out gain from a second topic, and no persistence length."""
    from ising_moe.fit.conditional.topic_chain import select_n_topics

    x, _, t = plant(120, 32, 4, 1, 0.0, 0.0, 0.5, 8, 0.6, seed=6, topics=False)
    sel = select_n_topics(x, t, candidates=(1, 2), rng=0, position="homogeneous", token_rows=8, n_init=1, tol=1e-4)
    assert sel.chosen == 1
    assert sel.gain[1] <= 2 * sel.gain_error[1]
    st = sel.fits[0].topic_statistics(t, max_distance=8)
    assert math.isnan(st.persistence_length) and st.reason


def test_sampling_and_model_correlation(planted):
    """The model's exact C(r) matches the C(r) of its own exact samples."""
    from ising_moe.measure import correlation_function

    x, _, t = planted
    fit = TopicChain(n_topics=2, position="homogeneous", token_rows=10, n_init=1, rng=0, tol=1e-4).fit(
        x, t, n_states=4)
    reps = np.repeat(t, 2, axis=0)
    model_c = fit.model_correlation_function(reps, max_distance=8)
    xs, zs = fit.sample(reps, rng=9)
    assert xs.shape == reps.shape and zs.max() == 1
    emp = correlation_function(xs, np.ones(xs.shape, bool), 4, 8, (), 0, np.random.default_rng(0))
    z = (emp.values[1:] - model_c[1:]) / emp.errors[1:]
    assert np.abs(z).max() < 5
    # negative control: the C(r) of a topic-free model does not match
    base = ConditionalChain(position="homogeneous", token_rows=10, tol=1e-4).fit(x, t, n_states=4)
    from ising_moe.fit.conditional import model_correlation_function

    wrong = model_correlation_function(base, reps, max_distance=8)
    assert np.abs((emp.values[1:] - wrong[1:]) / emp.errors[1:]).max() > 5


def test_bad_input_is_named(planted):
    x, _, t = planted
    with pytest.raises(InvalidParameterError, match="n_topics"):
        TopicChain(n_topics=0).fit(x, t, n_states=4)
    with pytest.raises(InvalidParameterError, match="not fitted"):
        TopicChain().predict_proba(x, t)
    with pytest.raises(InvalidParameterError, match="kappa_init"):
        TopicChain(kappa_init=[np.nan]).fit(x, t, n_states=4)
