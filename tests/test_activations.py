"""Each activation against torch: its value, its derivative (autograd), and its saturation rule."""

import pytest
import torch
import torch.nn.functional as F

from gradlab.activations import ACTIVATIONS, get_activation

# torch's own definition of each registered activation; a new activation needs one here.
REFERENCES = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, negative_slope=0.01),
    "elu": lambda z: F.elu(z, alpha=1.0),
    "selu": F.selu,
    "gelu": lambda z: F.gelu(z, approximate="none"),
    # torch returns z itself past `threshold`; a huge threshold keeps log(1 + e^z) exact on [-30, 30].
    "softplus": lambda z: F.softplus(z, beta=1.0, threshold=1000.0),
    "linear": lambda z: z,
}

# (z where the unit is NOT saturated, z where it IS), chosen with a margin from each rule's edge.
SATURATION_CASES = {
    # |tanh z| > 0.97 <=> |z| > atanh(0.97) = 2.0923
    "tanh": ([0.0, 1.0, -1.0, 2.05, -2.05], [2.15, -2.15, 5.0, -30.0]),
    # sigmoid outside [0.03, 0.97] <=> |z| > logit(0.97) = 3.4761
    "sigmoid": ([0.0, 2.0, -2.0, 3.4, -3.4], [3.6, -3.6, 10.0, -30.0]),
    # output exactly 0
    "relu": ([1e-9, 0.5, 30.0], [0.0, -1e-9, -0.5, -30.0]),
    "leaky_relu": ([0.0, 1e-9, 0.5, 30.0], [-1e-9, -0.5, -30.0]),
    # slope e^z < 0.03 <=> z < log(0.03) = -3.5066
    "elu": ([-3.4, -1.0, 0.0, 30.0], [-3.6, -30.0]),
    "selu": ([-3.4, -1.0, 0.0, 30.0], [-3.6, -30.0]),
    # |gelu'(z)| < 0.03: gelu'(-2) = -0.085, gelu'(-3) = -0.012, gelu'(z >= 0) >= 0.5
    "gelu": ([-2.0, 0.0, 1.0, 30.0], [-3.0, -5.0, -30.0]),
    # slope sigmoid(z) < 0.03 <=> z < -3.4761
    "softplus": ([-3.4, 0.0, 30.0], [-3.6, -30.0]),
    "linear": ([-1e6, -30.0, 0.0, 30.0, 1e6], []),
}


def z_grid(include_zero: bool) -> torch.Tensor:
    """float64 points spanning [-30, 30]: an even grid, denser near 0, plus random points."""
    gen = torch.Generator().manual_seed(0)
    points = [
        torch.linspace(-30, 30, 2001, dtype=torch.float64),
        torch.linspace(-4, 4, 2001, dtype=torch.float64),
        torch.empty(2000, dtype=torch.float64).uniform_(-30, 30, generator=gen),
        torch.tensor([-30.0, -1e-12, 1e-12, 30.0], dtype=torch.float64),
    ]
    z = torch.cat(points)
    z = z[z != 0]
    if include_zero:
        z = torch.cat([z, torch.zeros(1, dtype=torch.float64)])
    return z


def test_every_activation_has_a_torch_reference():
    assert set(REFERENCES) == set(ACTIVATIONS)


def test_every_activation_has_saturation_cases():
    assert set(SATURATION_CASES) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_torch(name):
    z = z_grid(include_zero=True)
    assert (z == 0).any() and z.min() == -30 and z.max() == 30
    torch.testing.assert_close(ACTIVATIONS[name].fn(z), REFERENCES[name](z), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_keeps_shape_and_dtype(name):
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    act = ACTIVATIONS[name]
    for out in (act.fn(z), act.grad(z)):
        assert out.shape == z.shape and out.dtype == z.dtype
    assert act.saturated(z).shape == z.shape and act.saturated(z).dtype == torch.bool


def autograd_derivative(fn, z: torch.Tensor) -> torch.Tensor:
    """d fn(z_i) / d z_i for an elementwise fn."""
    z = z.clone().requires_grad_(True)
    (dz,) = torch.autograd.grad(fn(z).sum(), z)
    return dz


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_grad_matches_autograd(name):
    # 0 is left out: relu, leaky_relu and selu have a kink there, checked separately below.
    z = z_grid(include_zero=False)
    act = ACTIVATIONS[name]
    torch.testing.assert_close(act.grad(z), autograd_derivative(act.fn, z), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_grad_at_zero_is_a_one_sided_derivative(name):
    # The two one-sided slopes from torch's reference, taken just off 0; grad(0) must be one of them.
    side = torch.tensor([-1e-12, 1e-12], dtype=torch.float64)
    left, right = autograd_derivative(REFERENCES[name], side).tolist()
    at_zero = ACTIVATIONS[name].grad(torch.zeros(1, dtype=torch.float64)).item()
    assert min(abs(at_zero - left), abs(at_zero - right)) < 1e-10, (at_zero, left, right)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_saturation_rule_on_concrete_values(name):
    unsaturated, saturated = SATURATION_CASES[name]
    rule = ACTIVATIONS[name].saturated
    z = torch.tensor(unsaturated + saturated, dtype=torch.float64)
    expected = torch.tensor([False] * len(unsaturated) + [True] * len(saturated))
    assert torch.equal(rule(z), expected)


def test_tanh_saturated_iff_output_beyond_097():
    z = torch.linspace(-5, 5, 10001, dtype=torch.float64)
    assert torch.equal(ACTIVATIONS["tanh"].saturated(z), torch.tanh(z).abs() > 0.97)


def test_sigmoid_saturated_iff_output_outside_003_097():
    z = torch.linspace(-6, 6, 10001, dtype=torch.float64)
    s = torch.sigmoid(z)
    assert torch.equal(ACTIVATIONS["sigmoid"].saturated(z), (s < 0.03) | (s > 0.97))


def test_relu_saturated_iff_output_exactly_zero():
    z = torch.cat([torch.linspace(-5, 5, 10001, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    assert torch.equal(ACTIVATIONS["relu"].saturated(z), ACTIVATIONS["relu"].fn(z) == 0)


def test_linear_is_never_saturated():
    z = torch.tensor([-1e300, -30.0, 0.0, 30.0, 1e300, float("inf")], dtype=torch.float64)
    assert not ACTIVATIONS["linear"].saturated(z).any()


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match=r"Unknown activation 'rleu'.*relu"):
        get_activation("rleu")
