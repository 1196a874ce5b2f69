"""Depth scales (Schoenholz et al. 2017): closed forms, the joint Gaussian quadrature against exact kernels and
dense references, and wide tanh networks with biases simulated here.

The simulations sample each layer of a width-N network from its exact law: given the previous layer's outputs
h_a, h_b, the next pre-activations of a network with fresh N(0, sigma_w^2 / N) weights and N(0, sigma_b^2) biases
are, unit by unit, independent pairs with covariance sigma_w^2 [h_a.h_a, h_a.h_b; h_a.h_b, h_b.h_b] / N + sigma_b^2.
That is the finite-width network itself, weights integrated out, so thousands of networks cost what a few do.
"""

import math

import numpy as np
import pytest
import torch

from gradlab.activations import ACTIVATIONS, LEAKY_SLOPE, SELU_ALPHA, SELU_SCALE
from gradlab.theory import gaussian_expectation, length_map
from gradlab.theory_depth import critical_sigma_w2, depth_scales, joint_expectation, length_fixed_point
from test_purity import PACKAGE, disallowed_imports

WIDTH = 1000
TANH_BIASED = 0.05  # sigma_b^2 of Schoenholz et al.'s figures


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_depth_scales_module_imports_only_torch_and_the_standard_library():
    assert disallowed_imports((PACKAGE / "theory_depth.py").read_text()) == set()


# --- closed forms -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma_w2", [0.3, 0.7, 0.95])
def test_tanh_without_bias_is_ordered_below_one_with_q_star_zero_and_chi_1_sigma_w2(sigma_w2):
    scales = depth_scales("tanh", sigma_w2, 0.0)
    assert scales.q_star == 0.0 and scales.c_star == 1.0
    assert scales.chi_1 == pytest.approx(sigma_w2, rel=1e-12)  # tanh'(0) = 1
    assert scales.chi_c == scales.chi_1  # at c* = 1, chi_c is chi_1 by definition
    assert scales.xi_c == pytest.approx(-1 / math.log(sigma_w2), rel=1e-10)


def test_tanh_without_bias_is_chaotic_above_one_with_c_star_zero():
    """An odd phi and no bias: C(0) = 0, so c* = 0, where u_a and u_b are independent: chi_c = sigma_w^2 E[phi']^2."""
    scales = depth_scales("tanh", 2.5, 0.0)
    assert scales.q_star > 0 and scales.chi_1 > 1 and scales.c_star == 0.0
    mean_slope = gaussian_expectation(lambda u: 1 - torch.tanh(u) ** 2, scales.q_star)
    assert scales.chi_c == pytest.approx(2.5 * mean_slope**2, rel=1e-10)


@pytest.mark.parametrize("sigma_w2, sigma_b2", [(1.0, 0.05), (1.5, 0.3), (1.9, 0.01)])
def test_relu_with_bias_below_two_has_closed_form_q_star_and_chi_1_half_sigma_w2(sigma_w2, sigma_b2):
    """L(q) = sigma_w^2 q / 2 + sigma_b^2: q* = sigma_b^2 / (1 - sigma_w^2 / 2), slope and chi_1 both sigma_w^2 / 2."""
    scales = depth_scales("relu", sigma_w2, sigma_b2)
    assert scales.q_star == pytest.approx(sigma_b2 / (1 - sigma_w2 / 2), rel=1e-10)
    assert scales.chi_1 == pytest.approx(sigma_w2 / 2, rel=1e-12)
    assert scales.chi_q == pytest.approx(sigma_w2 / 2, rel=1e-10)
    assert (scales.c_star, scales.xi_c) == (1.0, pytest.approx(-1 / math.log(sigma_w2 / 2), rel=1e-10))


def test_relu_above_two_has_no_fixed_length_and_no_depth_scales():
    scales = depth_scales("relu", 3.0, 0.05)
    assert scales.q_star == math.inf and scales.chi_1 == pytest.approx(1.5, rel=1e-12)
    assert all(math.isnan(value) for value in (scales.c_star, scales.chi_c, scales.chi_q, scales.xi_q, scales.xi_c))


@pytest.mark.parametrize("sigma_w2", [0.4, 0.8])
def test_linear_network_has_q_star_of_a_geometric_series(sigma_w2):
    scales = depth_scales("linear", sigma_w2, 0.2)
    assert scales.q_star == pytest.approx(0.2 / (1 - sigma_w2), rel=1e-10)
    assert scales.chi_1 == pytest.approx(sigma_w2, rel=1e-12) and scales.chi_q == pytest.approx(sigma_w2, rel=1e-10)


@pytest.mark.parametrize("sigma_b2", [0.0, 0.05, 0.5])
def test_edge_of_chaos_of_piecewise_linear_activations_is_two_over_their_mean_squared_slope(sigma_b2):
    """relu: chi_1 = sigma_w^2 / 2; leaky_relu: sigma_w^2 (1 + a^2) / 2; linear: sigma_w^2, whatever the bias."""
    assert critical_sigma_w2("relu", sigma_b2) == pytest.approx(2.0, rel=1e-9)
    assert critical_sigma_w2("leaky_relu", sigma_b2) == pytest.approx(2 / (1 + LEAKY_SLOPE**2), rel=1e-9)
    assert critical_sigma_w2("linear", sigma_b2) == pytest.approx(1.0, rel=1e-9)


def test_edge_of_chaos_without_bias_sits_where_q_star_zero_turns_unstable():
    """With q* = 0, chi_1 = sigma_w^2 (phi'(0+)^2 + phi'(0-)^2) / 2: 1 for tanh and elu, 2 / (scale^2 (1 + alpha^2))
    for selu."""
    assert critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, rel=1e-6)
    assert critical_sigma_w2("elu", 0.0) == pytest.approx(1.0, rel=1e-6)
    assert critical_sigma_w2("selu", 0.0) == pytest.approx(2 / (SELU_SCALE**2 * (1 + SELU_ALPHA**2)), rel=1e-6)


def test_tanh_edge_of_chaos_with_bias_is_where_schoenholz_et_al_draw_it():
    """Their phase diagram (sigma_b^2 = 0.05) puts the edge at sigma_w^2 = 1.76; there chi_1 = 1 and xi_c diverges."""
    edge = critical_sigma_w2("tanh", TANH_BIASED)
    assert edge == pytest.approx(1.76, abs=0.005)
    at_edge = depth_scales("tanh", edge, TANH_BIASED)
    assert at_edge.chi_1 == pytest.approx(1.0, abs=1e-9) and at_edge.xi_c > 1e6
    assert depth_scales("tanh", 1.0, TANH_BIASED).xi_c < 10 and depth_scales("tanh", 4.0, TANH_BIASED).xi_c < 10


def test_gelu_has_no_edge_of_chaos_because_its_fixed_length_jumps_from_zero_to_infinity():
    assert critical_sigma_w2("gelu", 0.0) is None
    assert depth_scales("gelu", 2.0, 0.0).q_star == 0.0 and depth_scales("gelu", 3.0, 0.0).q_star == math.inf


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_q_star_is_a_fixed_point_reached_by_iterating_the_length_map(name):
    sigma_w2 = 1.2
    q_star = length_fixed_point(name, sigma_w2, 0.1)
    q = 1.0
    for _ in range(2000):
        q = length_map(name, q, sigma_w2, 0.1)
    if math.isinf(q_star):
        assert q > 1e6
    else:
        assert length_map(name, q_star, sigma_w2, 0.1) == pytest.approx(q_star, rel=1e-10)
        assert q == pytest.approx(q_star, rel=1e-6)


@pytest.mark.parametrize("name, sigma_w2", [("tanh", 2.5), ("tanh", 1.2), ("sigmoid", 20.0), ("elu", 1.2),
                                            ("selu", 1.0), ("softplus", 1.0)])
def test_chi_q_is_the_slope_of_the_length_map_at_q_star(name, sigma_w2):
    scales = depth_scales(name, sigma_w2, TANH_BIASED)
    step = 1e-4 * scales.q_star
    slope = (length_map(name, scales.q_star + step, sigma_w2, TANH_BIASED)
             - length_map(name, scales.q_star - step, sigma_w2, TANH_BIASED)) / (2 * step)
    assert scales.chi_q == pytest.approx(slope, rel=1e-6)
    assert scales.xi_q == pytest.approx(-1 / math.log(slope), rel=1e-5)


# --- the joint Gaussian quadrature --------------------------------------------------------------------------------

def relu_kernel(q: float, c: float) -> float:
    """E[relu(u_a) relu(u_b)] (Cho and Saul's arc-cosine kernel of degree 1)."""
    return q / (2 * math.pi) * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c)


def step_kernel(c: float) -> float:
    """E[relu'(u_a) relu'(u_b)] = P(u_a > 0, u_b > 0) (degree 0)."""
    return (math.pi - math.acos(c)) / (2 * math.pi)


@pytest.mark.parametrize("q", [1e-3, 1.0, 1e4])
@pytest.mark.parametrize("c", [-0.99, 0.0, 0.5, 0.99, 0.999, 1 - 1e-6, 1 - 1e-10])
def test_joint_expectation_matches_relu_arc_cosine_kernels_up_to_c_near_one(q, c):
    relu = ACTIVATIONS["relu"]
    assert joint_expectation(relu.fn, relu.fn, q, c) == pytest.approx(relu_kernel(q, c), rel=1e-9)
    assert joint_expectation(relu.grad, relu.grad, q, c) == pytest.approx(step_kernel(c), rel=1e-9)


def dense_joint_reference(f, g, q: float, c: float, n: int = 3000) -> float:
    """Midpoint rule on an n x n grid of (z_1, z_2) in [-9, 9]^2, u_a = sqrt(q) z_1, u_b = sqrt(q)(c z_1 + s z_2)."""
    h = 18 / n
    z = torch.linspace(-9 + h / 2, 9 - h / 2, n, dtype=torch.float64)
    weight = torch.exp(-0.5 * z**2) * h / math.sqrt(2 * math.pi)
    u_a = math.sqrt(q) * z
    inner = torch.stack([(g(math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z)) * weight).sum() for z1 in z])
    return float((f(u_a) * weight * inner).sum())


@pytest.mark.parametrize("name", ["tanh", "gelu", "sigmoid"])
@pytest.mark.parametrize("q, c", [(1.0, 0.3), (64.0, 0.9)])
def test_joint_expectation_matches_a_dense_reference_for_smooth_activations(name, q, c):
    activation = ACTIVATIONS[name]
    for f in (activation.fn, activation.grad):
        assert joint_expectation(f, f, q, c) == pytest.approx(dense_joint_reference(f, f, q, c), rel=1e-10)


def test_joint_expectation_agrees_with_gauss_hermite_where_that_converges():
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z1, z2 = (torch.tensor(a) for a in np.meshgrid(nodes, nodes, indexing="ij"))
    w = torch.tensor(np.outer(weights, weights) / weights.sum() ** 2)
    q, c = 0.5, -0.4
    u_a, u_b = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    tanh = ACTIVATIONS["tanh"]
    for f in (tanh.fn, tanh.grad):
        assert joint_expectation(f, f, q, c) == pytest.approx(float((f(u_a) * f(u_b) * w).sum()), rel=1e-10)


# --- wide networks with biases -------------------------------------------------------------------------------------

def correlations(sigma_w2: float, sigma_b2: float, q0: float, c0: float, layers: int, networks: int,
                 seed: int = 0) -> np.ndarray:
    """Mean over `networks` tanh networks of WIDTH units of the correlation of z_a^l and z_b^l, l = 0..layers."""
    gen = torch.Generator().manual_seed(seed)

    def sample(aa: torch.Tensor, ab: torch.Tensor, bb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = torch.randn(2, len(aa), WIDTH, generator=gen, dtype=torch.float64)
        rho = (ab / (aa * bb).sqrt())[:, None]
        return aa.sqrt()[:, None] * z1, bb.sqrt()[:, None] * (rho * z1 + (1 - rho**2).clamp_min(0).sqrt() * z2)

    ones = torch.ones(networks, dtype=torch.float64)
    z_a, z_b = sample(q0 * ones, q0 * c0 * ones, q0 * ones)
    measured = []
    for _ in range(layers + 1):
        measured.append(float(((z_a * z_b).sum(1) / (z_a.pow(2).sum(1) * z_b.pow(2).sum(1)).sqrt()).mean()))
        h_a, h_b = torch.tanh(z_a), torch.tanh(z_b)
        z_a, z_b = sample(*(sigma_w2 * (x * y).mean(1) + sigma_b2 for x, y in ((h_a, h_a), (h_a, h_b), (h_b, h_b))))
    return np.array(measured)


def fitted_rate(deviations: np.ndarray, floor: float) -> float:
    """e^slope of ln |deviation| against layer, over the layers still above the noise floor."""
    layers, keep = np.arange(len(deviations)), np.abs(deviations) > floor
    return math.exp(np.polyfit(layers[keep], np.log(np.abs(deviations[keep])), 1)[0])


@pytest.mark.parametrize("sigma_w2", [2.5, 4.0])
def test_correlation_in_a_wide_chaotic_tanh_network_settles_on_c_star_at_rate_chi_c(sigma_w2):
    """From c* - 0.1 and c* + 0.1: the quadratic term of the map speeds one side and slows the other, so the
    geometric mean of the two fitted rates is chi_c to second order."""
    scales = depth_scales("tanh", sigma_w2, TANH_BIASED)
    assert 0 < scales.c_star < 1
    rates = [fitted_rate(correlations(sigma_w2, TANH_BIASED, scales.q_star, scales.c_star + side, 25, 1024,
                                      seed=int(side > 0)) - scales.c_star, floor=0.012) for side in (-0.1, 0.1)]
    assert math.sqrt(rates[0] * rates[1]) == pytest.approx(scales.chi_c, abs=0.01)
    settled = correlations(sigma_w2, TANH_BIASED, scales.q_star, 0.0, 80, 256, seed=2)[-20:].mean()
    assert settled == pytest.approx(scales.c_star, abs=0.006)


def test_correlation_in_a_wide_ordered_tanh_network_goes_to_one_at_rate_chi_1():
    scales = depth_scales("tanh", 1.3, TANH_BIASED)
    assert scales.c_star == 1.0 and scales.chi_c == scales.chi_1 < 1
    measured = correlations(1.3, TANH_BIASED, scales.q_star, 0.8, 25, 1024)
    assert fitted_rate(measured - 1, floor=0.01) == pytest.approx(scales.chi_1, abs=0.01)


@pytest.mark.parametrize("sigma_w2", [1.4, "critical", 2.2])
def test_back_propagated_signal_of_a_wide_biased_tanh_network_grows_by_chi_1_per_layer(sigma_w2):
    """By hand, from the definition: delta^l = (delta^{l+1} W^{l+1}^T) * tanh'(z^l), inputs at the length q*."""
    sigma_w2 = critical_sigma_w2("tanh", TANH_BIASED) if sigma_w2 == "critical" else sigma_w2
    scales = depth_scales("tanh", sigma_w2, TANH_BIASED)
    gen, depth, batch = torch.Generator().manual_seed(0), 30, 64
    z = [math.sqrt(scales.q_star) * torch.randn(batch, WIDTH, generator=gen, dtype=torch.float64)]
    weights = [torch.randn(WIDTH, WIDTH, generator=gen, dtype=torch.float64) * math.sqrt(sigma_w2 / WIDTH)
               for _ in range(depth - 1)]
    for w in weights:
        bias = math.sqrt(TANH_BIASED) * torch.randn(WIDTH, generator=gen, dtype=torch.float64)
        z.append(torch.tanh(z[-1]) @ w + bias)
    delta, squared = torch.randn(batch, WIDTH, generator=gen, dtype=torch.float64), []
    for w, z_below in zip(reversed(weights), reversed(z[:-1]), strict=True):
        delta = (delta @ w.T) * (1 - torch.tanh(z_below) ** 2)
        squared.append(float(delta.pow(2).sum(1).mean()))
    per_layer = (squared[-1] / squared[0]) ** (1 / (len(squared) - 1))
    assert per_layer == pytest.approx(scales.chi_1, rel=0.01)
