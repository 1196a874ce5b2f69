"""The bias variance sigma_b^2 in the mean-field profiles: closed forms, and a wide biased tanh network simulated
here in float64 (weights and biases drawn by the test, the backward by autograd)."""

import math

import numpy as np
import pytest
import torch

from gradlab.theory import (
    log10_delta_rms_profile,
    log10_first_to_last_ratios,
    stream_lengths,
)
from theory_views import preactivation_lengths

SIZES = [10, *[64] * 7, 3]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("sigma_b2", [0.1, 1.0])
def test_relu_with_kaiming_adds_sigma_b2_to_the_length_every_layer(sigma_b2):
    """sigma_w^2 E[relu(u)^2] = 2 q / 2 = q: each layer keeps the length and adds its bias's variance."""
    lengths = preactivation_lengths(SIZES, "relu", "kaiming_normal", 0.7, sigma_b2=sigma_b2)
    assert lengths == pytest.approx([1.4 + l * sigma_b2 for l in range(1, 9)], rel=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_residual_relu_stream_with_bias_grows_geometrically_about_minus_sigma_b2(alpha):
    """q^l = q^{l-1} + alpha^2 (q^{l-1} + sigma_b^2), so q^l + sigma_b^2 = (1 + alpha^2)(q^{l-1} + sigma_b^2)."""
    sigma_b2, q0 = 0.2, 0.7
    lengths = stream_lengths(SIZES, "relu", "kaiming_normal", q0, arch="residual", residual_scale=alpha,
                             sigma_b2=sigma_b2)
    first = 2 * q0 + sigma_b2
    assert lengths == pytest.approx([(first + sigma_b2) * (1 + alpha**2) ** k - sigma_b2 for k in range(7)],
                                    rel=1e-12)


def test_linear_network_length_with_bias_is_a_geometric_series():
    """lecun_normal: sigma_w^2 = 1 on every layer, so q^l = q^0 + l sigma_b^2; init_gain 0.5 makes it 1/4."""
    lengths = stream_lengths(SIZES, "linear", "lecun_normal", 2.0, init_gain=0.5, sigma_b2=0.3)
    expected = [0.25**l * 2.0 + 0.3 * sum(0.25**k for k in range(l)) for l in range(1, 8)]
    assert lengths == pytest.approx(expected, rel=1e-12)


def test_a_bias_changes_the_predicted_profile_of_tanh_but_not_of_relu():
    """tanh's chi falls as q grows, and a bias lengthens q; relu's chi is 1/2 at every q."""
    relu = [log10_delta_rms_profile(SIZES, "relu", "kaiming_normal", [0.5, 1.5], sigma_b2=b) for b in (0.0, 0.5)]
    assert relu[0] == pytest.approx(relu[1], abs=1e-12)
    tanh = [log10_delta_rms_profile(SIZES, "tanh", "xavier_uniform", [0.5, 1.5], sigma_b2=b) for b in (0.0, 0.5)]
    assert tanh[1][0] < tanh[0][0] - 0.3  # with the bias the signal vanishes faster toward the input


def test_first_to_last_ratio_by_depth_with_bias_is_the_profile_at_layer_1():
    q0s = [0.3, 0.9, 2.5]
    by_depth = log10_first_to_last_ratios(64, 32, 10, [2, 5, 12], "tanh", "lecun_normal", q0s, init_gain=1.3,
                                          sigma_b2=0.2)
    for depth in (2, 5, 12):
        profile = log10_delta_rms_profile([64, *[32] * (depth - 1), 10], "tanh", "lecun_normal", q0s, init_gain=1.3,
                                          sigma_b2=0.2)
        assert by_depth[depth] == pytest.approx(profile[0], abs=1e-12)


def wide_tanh(sigma_b2: float, seed: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Mean squared z^l and delta_rms(l) of a 12-layer, 512-wide biased tanh network (sigma_w^2 = 1.5)."""
    sizes, sigma_w2 = [64, *[512] * 11, 10], 1.5
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.linspace(0.5, 1.5, 256, dtype=torch.float64)[:, None]  # inputs of unequal lengths
    x = torch.randn(256, sizes[0], generator=gen, dtype=torch.float64) * lengths
    h, zs = x.requires_grad_(), []  # x requires grad so that autograd reaches z^1
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = torch.randn(n_in, n_out, generator=gen, dtype=torch.float64) * math.sqrt(sigma_w2 / n_in)
        b = torch.randn(n_out, generator=gen, dtype=torch.float64) * math.sqrt(sigma_b2)
        zs.append(h @ w + b)
        zs[-1].retain_grad()
        h = torch.tanh(zs[-1])
    zs[-1].backward(torch.randn(256, sizes[-1], generator=gen, dtype=torch.float64))
    second_moments = np.array([float(z.detach().pow(2).mean()) for z in zs])
    delta_rms = np.array([float(z.grad.pow(2).sum(1).mean().sqrt()) for z in zs])
    return second_moments, delta_rms, x.detach().pow(2).mean(1)


@pytest.mark.parametrize("sigma_b2", [0.0, 0.5])
def test_predicted_lengths_and_profile_match_a_wide_biased_tanh_network(sigma_b2):
    sizes, gain = [64, *[512] * 11, 10], math.sqrt(1.5)  # lecun_normal x gain: sigma_w^2 = 1.5 on every layer
    runs = [wide_tanh(sigma_b2, seed) for seed in range(4)]
    lengths = np.mean([run[0] for run in runs], axis=0)
    q0s = runs[0][2]
    predicted = np.array([float(q.mean()) for q in preactivation_lengths(sizes, "tanh", "lecun_normal", q0s, gain,
                                                                         sigma_b2=sigma_b2)])
    # Each layer's 512 biases have a mean square off by sqrt(2 / 512) = 6% of sigma_b^2 (2.6% of q), averaged over
    # 4 networks: 1.3% sd per layer. 0.06 is 4.5 sd; leaving the bias out of the map would be 40% off. The 10
    # logits have too few biases for that: left out.
    assert lengths[:-1] == pytest.approx(predicted[:-1], rel=0.06)
    measured = np.mean([np.log10(run[1] / run[1][-1]) for run in runs], axis=0)
    profile = np.mean([log10_delta_rms_profile(sizes, "tanh", "lecun_normal", run[2], gain, sigma_b2=sigma_b2)
                       for run in runs], axis=0)
    assert measured == pytest.approx(profile, abs=0.08)
    unbiased = log10_delta_rms_profile(sizes, "tanh", "lecun_normal", q0s, gain)
    if sigma_b2:  # the bias term is what makes the prediction right
        assert abs(measured[0] - unbiased[0]) > 3 * abs(measured[0] - profile[0])
