"""Residual mean-field theory (Yang and Schoenholz 2017): closed forms, and wide residual networks at init.

The wide networks are simulated here, in float64 with autograd, straight from the definition (h^1 = z^1 = x W^1;
z^l = phi(h^{l-1}) W^l, h^l = h^{l-1} + alpha z^l for l = 2..depth-1; logits = phi(h^{depth-1}) W^depth), and
once more with gradlab's own MLP(arch="residual").
"""

import math

import numpy as np
import pytest
import torch

from gradlab.theory import (
    log10_delta_rms_profile,
    log10_first_to_last_ratios,
    stream_lengths,
)
from theory_views import delta_rms_ratios, hidden_second_moments

DEPTH, WIDTH, BATCH, SEEDS = 20, 512, 128, (0, 1, 2, 3)
SIZES = [64, *[WIDTH] * (DEPTH - 1), 10]
BULK = np.arange(3, DEPTH - 1)  # the layers whose per-block growth is compared (the report trims the same ends)
ALPHAS = [1.0, 0.5, 1 / math.sqrt(10)]
# sigma_w^2 = fan_in Var[W] of a square layer, from each sampler's definition: U[-a, a] has variance a^2 / 3
SQUARE_SIGMA_W2 = {"uniform": 1 / 3, "xavier_uniform": 1.0, "kaiming_normal": 2.0, "lecun_normal": 1.0}
PHI = {"relu": torch.relu, "tanh": torch.tanh}
WIDE_CASES = [("relu", "kaiming_normal", 1.0), ("relu", "kaiming_normal", 1 / math.sqrt(DEPTH)),
              ("tanh", "xavier_uniform", 1.0), ("tanh", "xavier_uniform", 1 / math.sqrt(DEPTH))]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- closed forms -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", ALPHAS)
def test_relu_with_kaiming_grows_the_stream_by_one_plus_alpha_squared_per_block(alpha):
    """sigma_w^2 = 2 and E[relu(u)^2] = q / 2: each block adds alpha^2 q to q."""
    lengths = stream_lengths([10, *[64] * 7, 3], "relu", "kaiming_normal", 0.7, arch="residual", residual_scale=alpha)
    assert lengths == pytest.approx([2 * 0.7 * (1 + alpha**2) ** k for k in range(7)], rel=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_relu_with_kaiming_passes_the_gradient_back_with_gain_sqrt_one_plus_alpha_squared(alpha):
    """E[relu'^2] = 1/2: each block multiplies ||dL/dh||^2 by 1 + alpha^2; the readout's chi is 2 * 1/2 = 1."""
    depth = 8
    ratios = delta_rms_ratios([10, *[64] * (depth - 1), 3], "relu", "kaiming_normal", 0.7, arch="residual",
                              residual_scale=alpha)
    # delta(1) = ||dL/dh^1||, delta(l) = alpha ||dL/dh^l|| for l = 2..depth-1, delta(depth-1) = alpha delta(depth)
    expected = [math.sqrt(1 + alpha**2) / alpha, *[math.sqrt(1 + alpha**2)] * (depth - 3), alpha]
    assert ratios == pytest.approx(expected, rel=1e-12)
    profile = log10_delta_rms_profile([10, *[64] * (depth - 1), 3], "relu", "kaiming_normal", [0.2, 0.7, 3.0],
                                      arch="residual", residual_scale=alpha)
    gain = math.log10(1 + alpha**2) / 2
    expected_profile = [(depth - 2) * gain, *[math.log10(alpha) + (depth - 1 - l) * gain for l in range(2, depth)], 0]
    assert profile == pytest.approx(expected_profile, abs=1e-12)  # ReLU is homogeneous: no input length matters


@pytest.mark.parametrize("init", sorted(SQUARE_SIGMA_W2))
@pytest.mark.parametrize("alpha", ALPHAS)
def test_linear_residual_network_grows_by_one_plus_alpha_squared_sigma_w2(init, alpha):
    sigma_w2, depth = SQUARE_SIGMA_W2[init], 7
    sizes = [32] * (depth + 1)
    lengths = stream_lengths(sizes, "linear", init, 1.3, arch="residual", residual_scale=alpha)
    assert lengths == pytest.approx([sigma_w2 * 1.3 * (1 + alpha**2 * sigma_w2) ** k for k in range(depth - 1)],
                                    rel=1e-12)
    ratios = delta_rms_ratios(sizes, "linear", init, 1.3, arch="residual", residual_scale=alpha)
    gain = math.sqrt(1 + alpha**2 * sigma_w2)
    assert ratios == pytest.approx([gain / alpha, *[gain] * (depth - 3), alpha * math.sqrt(sigma_w2)], rel=1e-12)


def test_a_residual_network_without_middle_blocks_is_the_plain_two_layer_network():
    """depth 2: h^1 = z^1 feeds the readout through phi, exactly as a plain network's hidden layer does."""
    for activation, init in (("tanh", "xavier_uniform"), ("gelu", "kaiming_normal")):
        plain = log10_delta_rms_profile([64, 48, 10], activation, init, [0.5, 2.0])
        residual = log10_delta_rms_profile([64, 48, 10], activation, init, [0.5, 2.0], arch="residual",
                                           residual_scale=0.3)
        assert residual == pytest.approx(plain, abs=1e-12)


def test_relu_hidden_second_moment_is_half_the_plain_length_and_the_whole_residual_stream():
    """Plain: h^l = relu(z^l) holds q/2 = q0 (kaiming's fixed point); residual: h^l is the stream itself."""
    sizes, q0s = [10, *[64] * 5, 3], [0.5, 1.5]
    assert hidden_second_moments(sizes, "relu", "kaiming_normal", q0s) == pytest.approx([1.0] * 5, rel=1e-12)
    residual = hidden_second_moments(sizes, "relu", "kaiming_normal", q0s, arch="residual", residual_scale=1.0)
    assert residual == pytest.approx([2.0 * 2**k for k in range(5)], rel=1e-12)


@pytest.mark.parametrize("activation, init, alpha", [("relu", "xavier_uniform", 0.4), ("tanh", "normal", 1.0),
                                                     ("gelu", "kaiming_normal", 1 / math.sqrt(12))])
def test_residual_first_to_last_ratio_by_depth_is_the_profile_at_layer_1(activation, init, alpha):
    q0s = [0.3, 0.9, 2.5]
    by_depth = log10_first_to_last_ratios(64, 32, 10, [1, 2, 5, 12], activation, init, q0s, arch="residual",
                                          residual_scale=alpha)
    assert by_depth[1] == 0.0
    for depth in (2, 5, 12):
        profile = log10_delta_rms_profile([64, *[32] * (depth - 1), 10], activation, init, q0s, arch="residual",
                                          residual_scale=alpha)
        assert by_depth[depth] == pytest.approx(profile[0], abs=1e-12)


def test_unknown_arch_is_rejected_by_name():
    with pytest.raises(ValueError, match="Unknown arch 'resnet'"):
        stream_lengths([4, 8, 2], "relu", "kaiming_normal", 1.0, arch="resnet")


# --- wide networks at init --------------------------------------------------------------------------------------

def sample(init: str, fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
    """Weights of the variance each init defines, drawn here (not by gradlab.inits)."""
    if init == "kaiming_normal":
        return torch.randn(fan_in, fan_out, generator=gen, dtype=torch.float64) * math.sqrt(2 / fan_in)
    bound = math.sqrt(6 / (fan_in + fan_out))  # xavier_uniform
    return (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound


def inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BATCH inputs of unequal lengths (q0 from 0.25 to 2.25), and random dL/dlogits."""
    gen = torch.Generator().manual_seed(1000 + seed)
    scale = torch.linspace(0.5, 1.5, BATCH, dtype=torch.float64)[:, None]
    x = torch.randn(BATCH, SIZES[0], dtype=torch.float64, generator=gen) * scale
    return x, torch.randn(BATCH, SIZES[-1], dtype=torch.float64, generator=gen)


def simulate(activation: str, init: str, alpha: float, seed: int) -> tuple[list[float], list[float], torch.Tensor]:
    """A residual network by its definition: mean over examples of each h^l's mean square, delta_rms per layer
    (autograd's dL/dz^l, rms over examples of its norm), and the inputs' q0."""
    gen, phi = torch.Generator().manual_seed(seed), PHI[activation]
    weights = [sample(init, n_in, n_out, gen) for n_in, n_out in zip(SIZES[:-1], SIZES[1:], strict=True)]
    x, dlogits = inputs(seed)
    h = x.requires_grad_() @ weights[0]  # h^1 = z^1; x requires grad so that autograd reaches z^1
    zs, hs = [h], [h]
    for w in weights[1:-1]:
        zs.append(phi(h) @ w)
        h = h + alpha * zs[-1]
        hs.append(h)
    zs.append(phi(h) @ weights[-1])
    for z in zs:
        z.retain_grad()
    zs[-1].backward(dlogits)
    second_moments = [float(h.detach().pow(2).mean()) for h in hs]
    delta_rms = [float(z.grad.pow(2).sum(1).mean().sqrt()) for z in zs]
    return second_moments, delta_rms, x.detach().pow(2).mean(1)


def envelope(blocks: np.ndarray, networks: int) -> np.ndarray:
    """How far ln(measured / predicted) may stray after `blocks` blocks of width N = WIDTH.

    Each block multiplies a squared norm (the stream's going forward, ||dL/dh|| going back) by a factor whose
    relative sd is about sqrt(2.5 / N) at worst (measured: 0.07 at N = 512 for ReLU with alpha = 1, where the
    branch is as large as the stream): a chi-square over N units, sqrt(2 / N), plus the stream-branch cross term.
    Blocks are independent, so ln q random-walks: sd sqrt(2.5 blocks / N), averaged down by sqrt(networks).
    Four sd, plus 0.05 for the first layer's own sampling and finite-width bias.
    """
    return 0.05 + 4 * np.sqrt(2.5 * blocks / (WIDTH * networks))


def log_slope(values: np.ndarray) -> float:
    """The least-squares slope of ln values over the bulk layers: ln of the growth per layer."""
    return float(np.polyfit(BULK, np.log(values[BULK - 1]), 1)[0])


def assert_agrees(measured: np.ndarray, predicted: np.ndarray, blocks: np.ndarray, networks: int) -> None:
    """Every layer inside the random-walk envelope, and the bulk's growth per layer within 10% of the theory's."""
    errors = np.abs(np.log(measured / predicted))
    assert (errors <= envelope(blocks, networks)).all(), f"ln(measured / predicted) per layer: {errors.round(3)}"
    assert log_slope(measured) == pytest.approx(log_slope(predicted), rel=0.10)


@pytest.fixture(scope="module", params=WIDE_CASES, ids=lambda case: f"{case[0]}-{case[1]}-alpha={case[2]:.3g}")
def wide(request) -> tuple[tuple, list]:
    return request.param, [simulate(*request.param, seed) for seed in SEEDS]


def test_predicted_stream_length_matches_a_wide_residual_network(wide):
    (activation, init, alpha), networks = wide
    measured = np.mean([second for second, _, _ in networks], axis=0)
    predicted = np.mean([hidden_second_moments(SIZES, activation, init, q0, arch="residual", residual_scale=alpha)
                         for _, _, q0 in networks], axis=0)
    assert_agrees(measured, predicted, blocks=np.arange(1, DEPTH), networks=len(networks))


def test_predicted_delta_rms_profile_matches_a_wide_residual_network(wide):
    (activation, init, alpha), networks = wide
    measured = np.exp(np.mean([np.log(np.array(rms) / rms[-1]) for _, rms, _ in networks], axis=0))
    predicted = 10 ** np.mean([log10_delta_rms_profile(SIZES, activation, init, q0, arch="residual",
                                                       residual_scale=alpha) for _, _, q0 in networks], axis=0)
    assert_agrees(measured, predicted, blocks=DEPTH - np.arange(1, DEPTH + 1), networks=len(networks))


@pytest.mark.parametrize("activation, init, alpha", WIDE_CASES[:3])
def test_predicted_delta_rms_profile_matches_gradlabs_residual_mlp(activation, init, alpha):
    """gradlab's own hand-written residual network: net.deltas are dL/dz^l, as in the simulation above."""
    from gradlab.mlp import MLP  # here, so that the rest of this file runs while the MLP changes

    ratios, predicted = [], []
    for seed in SEEDS:
        net = MLP(SIZES, activation, init, seed=seed, dtype=torch.float64, arch="residual", residual_scale=alpha)
        x, dlogits = inputs(seed)
        net.forward(x)
        net.backward(dlogits)
        rms = np.array([float(d.pow(2).sum(1).mean().sqrt()) for d in net.deltas])
        ratios.append(np.log(rms / rms[-1]))
        predicted.append(log10_delta_rms_profile(SIZES, activation, init, x.pow(2).mean(1), arch="residual",
                                                 residual_scale=alpha))
    measured, predicted = np.exp(np.mean(ratios, axis=0)), 10 ** np.mean(predicted, axis=0)
    assert_agrees(measured, predicted, blocks=DEPTH - np.arange(1, DEPTH + 1), networks=len(SEEDS))
