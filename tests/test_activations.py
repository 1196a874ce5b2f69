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

# Saturated on the off side rather than by the 3% slope rule (relu's derivative rule would agree; leaky_relu's
# would add z = 0, where its grad is the 0.01 of the left side).
OFF_SIDE = {
    "relu": lambda z: z <= 0,
    "leaky_relu": lambda z: z < 0,
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


FROM_OUTPUT = sorted(name for name, act in ACTIVATIONS.items() if act.grad_from_output is not None)
INVERSES = {"sigmoid": torch.logit, "tanh": torch.atanh}  # phi^-1 where phi' is also given from phi's output


def test_sigmoid_and_tanh_give_their_derivative_from_their_output():
    assert {"sigmoid", "tanh"} <= set(FROM_OUTPUT)
    assert set(INVERSES) == set(FROM_OUTPUT)


@pytest.mark.parametrize("name", FROM_OUTPUT)
def test_grad_from_output_matches_autograd_derivative(name):
    # From torch's own value of phi, against torch's derivative: both sides independent of the registry's fn.
    z = z_grid(include_zero=True)
    from_output = ACTIVATIONS[name].grad_from_output(REFERENCES[name](z))
    assert from_output.shape == z.shape and from_output.dtype == z.dtype
    torch.testing.assert_close(from_output, autograd_derivative(REFERENCES[name], z), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", FROM_OUTPUT)
def test_grad_from_output_keeps_float32_precision_near_saturation(name):
    # phi' at float32's rounded output y, against float64 autograd at z = phi^-1(y): sigmoid's s - s^2 would be
    # ~1e-4 off near s = 1.
    y = REFERENCES[name](torch.linspace(-15, 15, 30_001))
    y = y[(y.abs() < 1) & (y != 0)]
    truth = autograd_derivative(REFERENCES[name], INVERSES[name](y.double()))
    relative = (ACTIVATIONS[name].grad_from_output(y).double() - truth).abs() / truth
    assert relative.max() < 1e-6


@pytest.mark.parametrize("name", FROM_OUTPUT)
def test_grad_from_output_equals_grad_from_input(name):
    z = z_grid(include_zero=True)
    act = ACTIVATIONS[name]
    torch.testing.assert_close(act.grad_from_output(act.fn(z)), act.grad(z), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_grad_at_zero_is_a_one_sided_derivative(name):
    # The two one-sided slopes from torch's reference, taken just off 0; grad(0) must be one of them.
    side = torch.tensor([-1e-12, 1e-12], dtype=torch.float64)
    left, right = autograd_derivative(REFERENCES[name], side).tolist()
    at_zero = ACTIVATIONS[name].grad(torch.zeros(1, dtype=torch.float64)).item()
    assert min(abs(at_zero - left), abs(at_zero - right)) < 1e-10, (at_zero, left, right)


def flat_slope_rule(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|phi'(z)| < 3% of max |phi'|, and where |phi'(z)| is within 1e-6 of that limit), phi' by torch autograd."""
    near_zero = torch.logspace(-12, 1, 1001, dtype=torch.float64)  # the sup of elu/selu' is at z -> 0-
    wide = torch.cat([torch.linspace(-30, 30, 600_001, dtype=torch.float64), near_zero, -near_zero])
    limit = 0.03 * autograd_derivative(REFERENCES[name], wide).abs().max()
    slope = autograd_derivative(REFERENCES[name], z).abs()
    return slope < limit, (slope - limit).abs() < 1e-6 * limit


def saturation_grid() -> torch.Tensor:
    """float64 z on [-30, 30], spaced 1e-5 on [-6, 6], and 0 itself."""
    return torch.cat([z_grid(include_zero=True), torch.linspace(-6, 6, 1_200_001, dtype=torch.float64)])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_saturated_iff_slope_under_3_percent_of_its_max(name):
    z = saturation_grid()
    saturated = ACTIVATIONS[name].saturated(z)
    if name in OFF_SIDE:
        assert torch.equal(saturated, OFF_SIDE[name](z))
        return
    expected, at_edge = flat_slope_rule(name, z)
    assert at_edge.sum() <= 10  # the edges themselves are left out, and nothing more
    mismatched = z[(saturated != expected) & ~at_edge]
    assert mismatched.numel() == 0, f"{name}: saturated(z) disagrees with the 3% slope rule at z = {mismatched[:5]}"


def test_saturation_rule_flags_gelu_zero_slope_crossing_and_tail_only():
    z = torch.tensor([-0.7518, -0.8, -0.7, -3.0, -5.0, 0.0, -0.5, -1.0, -1.4142, -2.0, -2.5, 1.0], dtype=torch.float64)
    slope = autograd_derivative(REFERENCES["gelu"], z).abs()
    # gelu'(-0.7518) ~ 0, gelu'(-3) = -0.0120, against 0.03 * gelu'(sqrt 2) = 0.0339; gelu'(-2.5) = -0.0376
    assert slope[:5].max() < 0.032 and slope[5:].min() > 0.036
    assert ACTIVATIONS["gelu"].saturated(z).tolist() == [True] * 5 + [False] * 7


def test_linear_is_never_saturated():
    z = torch.tensor([-1e300, -30.0, 0.0, 30.0, 1e300, float("inf")], dtype=torch.float64)
    assert not ACTIVATIONS["linear"].saturated(z).any()


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match=r"Unknown activation 'rleu'.*relu"):
        get_activation("rleu")
