"""Mean-field theory: closed forms, the quadrature against references, and a real network at init."""

import math

import numpy as np
import pytest
import torch

from gradlab.activations import ACTIVATIONS
from gradlab.inits import INITS
from gradlab.mlp import MLP
from gradlab.theory import (
    chi,
    gaussian_expectation,
    length_map,
    log10_delta_rms_profile,
    log10_first_to_last_ratios,
    weight_scale,
)
from theory_views import delta_rms_ratios, preactivation_lengths

SQUARE = [64, 64, 64, 64, 64, 64]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense_reference(f, q: float) -> float:
    """E[f(sqrt(q) z)] by a 2-million-node midpoint rule on z in [-12, 12]: slow, simple, no node at 0."""
    n = 2_000_000
    h = 24 / n
    z = torch.linspace(-12 + h / 2, 12 - h / 2, n, dtype=torch.float64)
    density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return float((f(math.sqrt(q) * z) * density).sum() * h)


def test_relu_with_kaiming_normal_keeps_delta_rms_exactly_constant():
    for sizes in (SQUARE, [64, 128, 128, 128, 10], [2, 300, 300, 1]):
        assert delta_rms_ratios(sizes, "relu", "kaiming_normal", q0=0.9) == pytest.approx([1.0] * (len(sizes) - 2),
                                                                                         abs=1e-12)


def test_relu_with_xavier_on_square_layers_loses_one_over_sqrt2_per_layer():
    ratios = delta_rms_ratios(SQUARE, "relu", "xavier_uniform", q0=1.0)
    assert ratios == pytest.approx([1 / math.sqrt(2)] * 4, abs=1e-12)


@pytest.mark.parametrize("init", sorted(INITS))
@pytest.mark.parametrize("init_gain", [0.5, 1.0, 2.0])
def test_linear_network_scales_delta_rms_by_sigma_w(init, init_gain):
    sigma_w = init_gain * math.sqrt(INITS[init].variance(64, 64) * 64)
    assert delta_rms_ratios(SQUARE, "linear", init, q0=1.3, init_gain=init_gain) == pytest.approx([sigma_w] * 4,
                                                                                                 rel=1e-12)


def test_weight_scale_is_gain_squared_times_variance_times_fan_in():
    assert weight_scale("kaiming_normal", 50, 7) == pytest.approx(2.0)
    assert weight_scale("xavier_uniform", 30, 10, init_gain=2.0) == pytest.approx(4 * 2 / 40 * 30)
    assert weight_scale("normal", 64, 64) == 64


def test_relu_length_map_halves_the_length_times_sigma_w2():
    assert length_map("relu", 3.0, sigma_w2=2.0) == pytest.approx(3.0, rel=1e-12)
    lengths = preactivation_lengths([10, 64, 64, 64], "relu", "kaiming_normal", q0=0.7)
    assert lengths == pytest.approx([1.4, 1.4, 1.4], rel=1e-12)  # q^1 = 2 * q0, then a fixed point


def test_tanh_chi_tends_to_sigma_w2_at_small_length():
    assert chi("tanh", 1e-8, sigma_w2=1.7) == pytest.approx(1.7, rel=1e-6)  # tanh'(0) = 1


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("q", [1e-4, 1.0, 64.0, 1e4])
def test_gaussian_expectation_matches_a_dense_reference(name, q):
    activation = ACTIVATIONS[name]
    for f in (lambda u: activation.fn(u) ** 2, lambda u: activation.grad(u) ** 2):
        assert gaussian_expectation(f, q) == pytest.approx(dense_reference(f, q), rel=1e-8)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "softplus", "relu", "linear"])
def test_gaussian_expectation_agrees_with_gauss_hermite_where_that_converges(name):
    nodes, weights = np.polynomial.hermite_e.hermegauss(100)  # probabilists': weight exp(-z^2 / 2)
    nodes, weights = torch.tensor(nodes), torch.tensor(weights / weights.sum())
    grad = ACTIVATIONS[name].grad
    for q in (0.1, 1.0):
        gauss_hermite = float((grad(math.sqrt(q) * nodes) ** 2 * weights).sum())
        assert gaussian_expectation(lambda u: grad(u) ** 2, q) == pytest.approx(gauss_hermite, rel=1e-8)


def test_overflowing_length_gives_nan_not_an_error():
    assert math.isnan(gaussian_expectation(lambda u: u**2, math.inf))
    ratios = delta_rms_ratios([64] + [64] * 300 + [10], "elu", "normal", q0=1.0)
    assert math.isnan(ratios[-1]) and math.isfinite(ratios[0])


def measured_bulk_ratio(sizes: list[int], activation: str, init: str, seed: int = 0) -> float:
    """Geometric mean of delta_rms(l) / delta_rms(l+1) over the bulk layers of a real network at init."""
    gen = torch.Generator().manual_seed(seed)
    net = MLP(sizes, activation, init, dtype=torch.float64, seed=seed)
    x = torch.randn(512, sizes[0], dtype=torch.float64, generator=gen)
    net.forward(x)
    net.backward(torch.randn(512, sizes[-1], dtype=torch.float64, generator=gen))
    rms = [d.pow(2).sum(1).mean().sqrt().item() for d in net.deltas]
    bulk = range(2, len(rms) - 3)  # leave out the first two and the last two layers
    return math.exp(sum(math.log(rms[l] / rms[l + 1]) for l in bulk) / len(bulk))


@pytest.mark.parametrize(
    "activation, init",
    [("sigmoid", "xavier_uniform"), ("tanh", "xavier_uniform"), ("tanh", "normal"), ("relu", "kaiming_normal"),
     ("relu", "xavier_uniform"), ("selu", "lecun_normal"), ("gelu", "kaiming_normal")],
)
def test_predicted_ratio_matches_a_wide_network_at_init(activation, init):
    sizes = [256] + [512] * 11 + [10]
    predicted = delta_rms_ratios(sizes, activation, init, q0=1.0)
    bulk = predicted[2:-2]
    expected = math.exp(sum(map(math.log, bulk)) / len(bulk))
    assert measured_bulk_ratio(sizes, activation, init) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("activation, init", [("sigmoid", "xavier_uniform"), ("tanh", "normal"), ("relu", "uniform")])
def test_first_to_last_ratio_by_depth_is_the_product_of_per_layer_ratios(activation, init):
    by_depth = log10_first_to_last_ratios(64, 32, 10, [1, 2, 3, 7, 20], activation, init, q0s=[0.9])
    assert by_depth[1] == 0.0
    for depth in (2, 3, 7, 20):
        ratios = delta_rms_ratios([64, *[32] * (depth - 1), 10], activation, init, q0=0.9)
        assert by_depth[depth] == pytest.approx(sum(map(math.log10, ratios)), rel=1e-12, abs=1e-12)


def test_profile_of_one_input_length_is_the_product_of_per_layer_ratios():
    sizes = [64, *[48] * 9, 10]
    profile = log10_delta_rms_profile(sizes, "tanh", "xavier_uniform", q0s=[0.8])
    log_ratios = [math.log10(r) for r in delta_rms_ratios(sizes, "tanh", "xavier_uniform", q0=0.8)]
    assert profile == pytest.approx([sum(log_ratios[l:]) for l in range(9)] + [0.0], abs=1e-12)


def test_first_to_last_ratio_by_depth_is_the_profile_at_layer_1_for_many_input_lengths():
    q0s = [0.3, 0.9, 2.5]
    by_depth = log10_first_to_last_ratios(64, 32, 10, [2, 5, 12], "gelu", "kaiming_normal", q0s=q0s)
    for depth in (2, 5, 12):
        profile = log10_delta_rms_profile([64, *[32] * (depth - 1), 10], "gelu", "kaiming_normal", q0s=q0s)
        assert by_depth[depth] == pytest.approx(profile[0], abs=1e-12)


def first_to_last_at_init(activation: str, init: str, seed: int) -> tuple[float, torch.Tensor]:
    """Measured log10 delta_rms(1) / delta_rms(depth) of a 24-layer, 512-wide network, and its inputs' lengths."""
    gen = torch.Generator().manual_seed(seed)
    net = MLP([64, *[512] * 23, 10], activation, init, dtype=torch.float64, seed=seed)
    lengths = torch.linspace(0.5, 1.5, 256, dtype=torch.float64)[:, None]  # inputs of unequal lengths
    x = torch.randn(256, 64, dtype=torch.float64, generator=gen) * lengths
    net.forward(x)
    net.backward(torch.randn(256, 10, dtype=torch.float64, generator=gen))
    rms = [d.pow(2).sum(1).mean().sqrt().item() for d in net.deltas]
    return math.log10(rms[0] / rms[-1]), x.pow(2).mean(1)


def test_averaging_over_input_lengths_predicts_a_near_critical_network():
    """GELU with kaiming init drifts slowly towards q = 0 at a pace set by each input's length."""
    sizes = [64, *[512] * 23, 10]
    measured, q0s = zip(*(first_to_last_at_init("gelu", "kaiming_normal", seed) for seed in (0, 1)), strict=True)
    measured = sum(measured) / 2
    quantiles = torch.quantile(q0s[0], (torch.arange(16, dtype=torch.float64) + 0.5) / 16)  # as the report does
    per_example = log10_delta_rms_profile(sizes, "gelu", "kaiming_normal", quantiles)[0]
    one_length = sum(map(math.log10, delta_rms_ratios(sizes, "gelu", "kaiming_normal", float(q0s[0].mean()))))
    assert abs(per_example - measured) < 0.25
    assert abs(one_length - measured) > 0.8  # why the report averages over the data's input lengths
