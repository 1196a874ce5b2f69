"""gradlab.theory_rnn against closed forms and against wide simulated cells: the back-propagated state's per-step
factor, its profile through time, and Pascanu et al.'s bound."""

import math

import pytest
import torch

from gradlab import theory_rnn
from gradlab.activations import ACTIVATIONS
from gradlab.inits import get_init
from gradlab.rnn import RNN

F64 = torch.float64
N_IN, WIDTH, N_OUT, BATCH, STEPS, Q_X = 16, 256, 10, 256, 48, 4.0
BULK = range(12, STEPS - 4)  # q_t has settled (within a percent) from step ~10 on
SIGMA_U2 = N_IN * get_init("xavier_uniform").variance(N_IN, WIDTH)  # U: xavier_uniform, (N_IN, WIDTH)
KNOWN_SLOPES = {"tanh": 1.0, "relu": 1.0, "linear": 1.0, "sigmoid": 0.25, "softplus": 1.0, "leaky_relu": 1.0,
                "elu": 1.0}  # max |phi'|, by hand


def simulated_state_grad_rms(activation: str, recurrent_gain: float, recurrent_init: str = "orthogonal",
                             seed: int = 0) -> torch.Tensor:
    """sqrt(mean_b ||dL/dh_t||^2) for t = 1..STEPS of a wide float64 cell on Gaussian inputs of mean square Q_X, from
    a random dL/dlogits at the last step."""
    net = RNN(N_IN, WIDTH, N_OUT, activation=activation, init="xavier_uniform", recurrent_init=recurrent_init,
              recurrent_gain=recurrent_gain, seed=seed, dtype=F64)
    gen = torch.Generator().manual_seed(1000 + seed)
    x = math.sqrt(Q_X) * torch.randn(BATCH, STEPS, N_IN, generator=gen, dtype=F64)
    trace = net.trace(x)
    dh = net.backprop(trace, torch.randn(BATCH, N_OUT, generator=gen, dtype=F64)).dh  # (B, T, width)
    return dh.pow(2).sum(-1).mean(0).sqrt()


def measured_bulk_factor(rms: torch.Tensor) -> float:
    """Geometric mean of state_grad_rms(t) / state_grad_rms(t+1) over BULK (t counted from 1)."""
    first, last = BULK[0], BULK[-1]
    return float((rms[first - 1] / rms[last - 1]) ** (1 / (last - first)))


@pytest.mark.parametrize("gain", [0.5, 0.9, 1.0, 1.3, 2.0])
def test_a_linear_orthogonal_cell_carries_the_gradient_back_by_its_gain_exactly(gain: float):
    assert theory_rnn.bulk_factor("linear", gain**2, SIGMA_U2, Q_X) == pytest.approx(gain, rel=1e-12)
    rms = simulated_state_grad_rms("linear", gain)
    torch.testing.assert_close(rms[:-1] / rms[1:], torch.full((STEPS - 1,), gain, dtype=F64), rtol=1e-10, atol=0)


@pytest.mark.parametrize("sigma_w2", [0.25, 1.0, 2.25])
def test_a_tanh_cell_at_small_lengths_has_the_factor_sqrt_sigma_w2(sigma_w2: float):
    """tanh'(0) = 1 and tanh' = 1 - u^2 + O(u^4): sqrt(chi(q)) -> sigma_w as q -> 0, with slope -sigma_w q."""
    for q in (1e-4, 1e-6):
        expected = math.sqrt(sigma_w2) * (1 - q)  # sqrt(sigma_w^2 (1 - 2q + O(q^2)))
        assert theory_rnn.step_factor("tanh", q, sigma_w2) == pytest.approx(expected, rel=1e-7)


def test_the_lengths_start_from_the_input_alone_and_settle_at_the_fixed_point():
    lengths = theory_rnn.state_lengths("tanh", 200, 1.44, SIGMA_U2, Q_X)
    assert lengths[0] == pytest.approx(SIGMA_U2 * Q_X)  # h_0 = 0
    q_star = theory_rnn.state_fixed_point("tanh", 1.44, SIGMA_U2, Q_X)
    assert lengths[-1] == pytest.approx(q_star, rel=1e-9)
    relu = theory_rnn.state_fixed_point("relu", 1.0, SIGMA_U2, Q_X)  # q = q / 2 + c: q* = 2c
    assert relu == pytest.approx(2 * SIGMA_U2 * Q_X, rel=1e-9)


def test_the_profile_is_zero_at_the_last_step_and_telescopes_the_step_factors():
    profile = theory_rnn.log10_state_grad_profile("tanh", 5, 0.81, SIGMA_U2, Q_X)
    lengths = theory_rnn.state_lengths("tanh", 5, 0.81, SIGMA_U2, Q_X)
    assert len(profile) == 5 and profile[-1] == 0.0
    # one step back from T multiplies by sqrt(chi(q_T)), sigma_w^2 E[tanh'(sqrt(q_T) z)^2] by Monte Carlo
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=F64)
    chi_last = 0.81 * float((1 - torch.tanh(math.sqrt(lengths[-1]) * z) ** 2).pow(2).mean())
    assert profile[-2] == pytest.approx(0.5 * math.log10(chi_last), abs=1e-3)


@pytest.mark.parametrize(("activation", "gain"), [("tanh", 0.8), ("tanh", 1.0), ("tanh", 1.2), ("tanh", 1.6),
                                                  ("relu", 1.0), ("relu", 1.3)])
def test_the_bulk_factor_matches_a_wide_simulated_cell(activation: str, gain: float):
    rms = simulated_state_grad_rms(activation, gain)
    measured = measured_bulk_factor(rms)
    predicted = theory_rnn.bulk_factor(activation, gain**2, SIGMA_U2, Q_X)
    assert measured == pytest.approx(predicted, rel=0.03)


@pytest.mark.parametrize("gain", [0.8, 1.2])
def test_the_profile_matches_a_simulated_cell_from_the_last_step_back(gain: float):
    rms = simulated_state_grad_rms("tanh", gain, seed=3)
    measured = torch.log10(rms / rms[-1])
    predicted = torch.tensor(theory_rnn.log10_state_grad_profile("tanh", STEPS, gain**2, SIGMA_U2, Q_X), dtype=F64)
    torch.testing.assert_close(measured, predicted, rtol=0, atol=0.03 * STEPS * abs(math.log10(gain)) + 0.02)


@pytest.mark.parametrize("activation", sorted(KNOWN_SLOPES))
def test_max_slope_of_the_registry_matches_the_known_values(activation: str):
    assert theory_rnn.max_slope(activation) == pytest.approx(KNOWN_SLOPES[activation], rel=1e-9)


def test_every_activation_has_a_finite_positive_max_slope():
    for name in ACTIVATIONS:
        assert 0 < theory_rnn.max_slope(name) < math.inf


@pytest.mark.parametrize(("activation", "gain"), [("tanh", 0.95), ("relu", 0.9), ("sigmoid", 3.5)])
def test_below_pascanus_bound_every_examples_gradient_shrinks_every_step(activation: str, gain: float):
    """Orthogonal W times gain is normal, rho = gain: ||dL/dh_{t-1}|| <= gain max|phi'| ||dL/dh_t|| < ||dL/dh_t||."""
    assert theory_rnn.pascanu_side(activation, gain) == theory_rnn.VANISHES
    net = RNN(N_IN, WIDTH, N_OUT, activation=activation, recurrent_gain=gain, seed=1, dtype=F64)
    assert float(torch.linalg.eigvals(net.W).abs().max()) == pytest.approx(gain, rel=1e-9)
    gen = torch.Generator().manual_seed(7)
    trace = net.trace(math.sqrt(Q_X) * torch.randn(BATCH, STEPS, N_IN, generator=gen, dtype=F64))
    dh = net.backprop(trace, torch.randn(BATCH, N_OUT, generator=gen, dtype=F64)).dh
    norms = dh.norm(dim=-1)  # (B, T)
    bound = gain * theory_rnn.max_slope(activation)
    assert bound < 1
    assert (norms[:, :-1] <= bound * norms[:, 1:] * (1 + 1e-12)).all()


@pytest.mark.parametrize(("activation", "gain"), [("tanh", 1.5), ("sigmoid", 4.5)])
def test_above_pascanus_bound_vanishing_is_not_ruled_out(activation: str, gain: float):
    assert theory_rnn.pascanu_side(activation, gain) == theory_rnn.NOT_RULED_OUT
