import numpy as np
import pytest

from ising_moe import (
    InvalidParameterError,
    LongRangeChain,
    PottsChain,
    ising_to_potts,
    potts_to_ising,
    spins_to_states,
    states_to_spins,
)
from ising_moe.exact import log_partition, marginals


def test_validation_messages():
    with pytest.raises(InvalidParameterError, match="n_sites must be >= 2"):
        PottsChain(1, np.eye(2))
    with pytest.raises(InvalidParameterError, match="square"):
        PottsChain(4, np.ones((2, 3)))
    with pytest.raises(InvalidParameterError, match="n_states must be >= 2"):
        PottsChain(4, np.ones((1, 1)))
    with pytest.raises(InvalidParameterError, match="finite"):
        PottsChain(4, np.array([[np.nan, 0], [0, 1]]))
    with pytest.raises(InvalidParameterError, match=r"per-bond couplings need shape \(4, 2, 2\)"):
        PottsChain(4, np.ones((3, 2, 2)), periodic=True)
    with pytest.raises(InvalidParameterError, match="fields must have shape"):
        PottsChain(4, np.eye(3), np.zeros((5, 3)))
    with pytest.raises(InvalidParameterError, match="beta must be >= 0"):
        PottsChain(4, np.eye(3), beta=-1)
    with pytest.raises(InvalidParameterError, match="max_distance"):
        LongRangeChain(5, np.ones((3, 2, 2)), periodic=True)


def test_model_is_frozen():
    m = PottsChain.potts(5, 3, 1.0)
    with pytest.raises(ValueError):
        m.couplings[0, 0] = 2.0
    with pytest.raises(AttributeError):
        m.beta = 2.0
    m2 = m.replace(beta=2.0)
    assert m2.beta == 2.0 and m.beta == 1.0


def test_energy_by_hand():
    m = PottsChain(3, np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.5, -0.5], [0.0, 1.0], [2.0, 0.0]]))
    # s = (0, 1, 1): fields 0.5 + 1.0 + 0.0, bonds J01 + J11 = 2 + 4
    assert m.energy([[0, 1, 1]])[0] == pytest.approx(-(1.5 + 6.0))
    mp = m.replace(periodic=True, couplings=np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert mp.energy([[0, 1, 1]])[0] == pytest.approx(-(1.5 + 6.0 + 3.0))


def test_ising_form_matches_spins():
    rng = np.random.default_rng(0)
    j, h = 0.7, -0.3
    m = PottsChain.ising(6, j, h, periodic=True)
    s = rng.integers(0, 2, size=(20, 6))
    sigma = states_to_spins(s)
    e = -j * (sigma * np.roll(sigma, -1, axis=1)).sum(1) - h * sigma.sum(1)
    np.testing.assert_allclose(m.energy(s), e, rtol=1e-13)


@pytest.mark.parametrize("periodic", [False, True])
def test_potts_to_ising_roundtrip_general_couplings(periodic):
    rng = np.random.default_rng(1)
    n = 7
    m = PottsChain(n, rng.normal(size=(2, 2)), rng.normal(size=(n, 2)), periodic=periodic)
    j, h, offset = potts_to_ising(m)
    back = PottsChain.ising(n, j, h, periodic=periodic)
    s = rng.integers(0, 2, size=(50, n))
    np.testing.assert_allclose(m.energy(s), back.energy(s) + offset, rtol=1e-12, atol=1e-12)
    assert log_partition(back) == pytest.approx(log_partition(m) + offset, rel=1e-12)
    np.testing.assert_allclose(marginals(back), marginals(m), rtol=1e-12)


def test_ising_to_potts_shapes_and_spins():
    c, f = ising_to_potts([1.0, 2.0], [0.1, 0.2, 0.3])
    assert c.shape == (2, 2, 2) and f.shape == (3, 2)
    np.testing.assert_array_equal(spins_to_states([-1, 1, 1]), [0, 1, 1])
    with pytest.raises(InvalidParameterError, match="-1 or \\+1"):
        spins_to_states([0, 1])
    with pytest.raises(InvalidParameterError, match="0 or 1"):
        states_to_spins([2])


def test_energy_rejects_bad_samples():
    m = PottsChain.potts(4, 3)
    with pytest.raises(InvalidParameterError, match="the model has 4"):
        m.energy(np.zeros((2, 5), dtype=int))
    with pytest.raises(InvalidParameterError, match="states in 0..2"):
        m.energy(np.full((2, 4), 3))
    with pytest.raises(InvalidParameterError, match="Ising spins"):
        m.energy(np.full((2, 4), -1))


def test_long_range_energy_matches_nearest_neighbour_case():
    rng = np.random.default_rng(2)
    j = rng.normal(size=(3, 3))
    h = rng.normal(size=(6, 3))
    for periodic in (False, True):
        nn = PottsChain(6, j, h, periodic=periodic)
        lr = LongRangeChain(6, j[None], h, periodic=periodic)
        s = rng.integers(0, 3, size=(30, 6))
        np.testing.assert_allclose(lr.energy(s), nn.energy(s), rtol=1e-13)
    pl = LongRangeChain.power_law(10, 2, coupling=1.0, alpha=1.5)
    assert pl.max_distance == 9
    assert pl.couplings[1, 0, 0] == pytest.approx(2 ** -1.5)
