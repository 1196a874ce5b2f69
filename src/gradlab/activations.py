"""Activations: each function beside its derivative and its saturation rule, in one registry.

Saturation, one rule: a unit is saturated where |phi'(z)| < FLAT_SLOPE * max_z |phi'(z)|, i.e. it passes back
under 3% of the largest gradient phi can pass. That includes points where phi' crosses zero (gelu near
z = -0.75). Each `*_saturated` is that inequality solved for z once, in closed form or by bisection at import,
so the mask is a cheap test on z itself. The exceptions are relu and leaky_relu, saturated on their off side
(relu: z <= 0; leaky_relu: z < 0), and linear, whose constant slope is never saturated.
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

FLAT_SLOPE = 0.03  # saturated: |phi'(z)| < FLAT_SLOPE * max |phi'|
LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
# SELU constants from Klambauer et al. (2017), as torch.nn.SELU uses them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class Activation(NamedTuple):
    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]  # d fn / dz, elementwise, from z
    saturated: Callable[[Tensor], Tensor]  # bool mask: |fn'(z)| < 3% of max |fn'| (relu kinds: the off side)
    # The same d fn / dz from the output y = fn(z), where that is cheaper than from z (no second fn); None where
    # it is not. grad is then this applied to fn(z), so the derivative is stated once.
    grad_from_output: Callable[[Tensor], Tensor] | None = None


def bisect_root(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of f in [lo, hi], where f(lo) and f(hi) differ in sign, to float precision."""
    while (mid := 0.5 * (lo + hi)) not in (lo, hi):
        lo, hi = (lo, mid) if (f(lo) < 0) != (f(mid) < 0) else (mid, hi)
    return mid


# tanh' = 1 - tanh^2, max 1 at z = 0:  1 - tanh^2 z < 0.03  <=>  |tanh z| > sqrt(0.97)  <=>  |z| > this.
TANH_FLAT_Z = math.atanh(math.sqrt(1 - FLAT_SLOPE))  # 2.4388
# sigmoid' = s(1 - s) = (1 - tanh^2(z/2)) / 4, max 1/4 at z = 0:  s(1 - s) < 0.03 / 4 = 0.0075
# <=>  1 - tanh^2(z/2) < 0.03  <=>  |z/2| > TANH_FLAT_Z.
SIGMOID_FLAT_Z = 2 * TANH_FLAT_Z  # 4.8777
# softplus' = sigmoid(z), sup 1 as z -> +inf:  sigmoid(z) < 0.03  <=>  z < logit(0.03).
SOFTPLUS_FLAT_Z = math.log(FLAT_SLOPE / (1 - FLAT_SLOPE))  # -3.4761
# elu' is 1 for z > 0 and alpha e^z (up to alpha as z -> 0-) below, so max elu' = max(1, alpha):
# alpha e^z < 0.03 max(1, alpha)  <=>  z < log(0.03 max(1, alpha) / alpha).
ELU_FLAT_Z = math.log(FLAT_SLOPE * max(1.0, ELU_ALPHA) / ELU_ALPHA)  # log 0.03 = -3.5066 for alpha = 1
# selu' is scale for z > 0 and scale alpha e^z below; alpha > 1, so the max is scale alpha (at z -> 0-, on the
# exponential side, not the linear one): scale alpha e^z < 0.03 scale alpha  <=>  z < log 0.03. The linear
# side, scale = 0.60 scale alpha, is never flat.
SELU_FLAT_Z = math.log(FLAT_SLOPE)  # -3.5066


def sigmoid(z: Tensor) -> Tensor:
    return torch.sigmoid(z)


@functools.cache
def scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A 0-d tensor, made once per value, dtype and device: lerp and addcmul take these operands as tensors."""
    return torch.tensor(value, dtype=dtype, device=device)


def sigmoid_grad_from_output(s: Tensor) -> Tensor:
    """sigmoid' = s (1 - s), s = sigmoid(z), in one kernel: lerp(s, 0, s) = s + s (0 - s), which torch evaluates
    as (1 - s) s for s >= 1/2, so it stays exact near s = 1, where s - s^2 would cancel."""
    return torch.lerp(s, scalar(0.0, s.dtype, s.device), s)


def sigmoid_grad(z: Tensor) -> Tensor:
    return sigmoid_grad_from_output(torch.sigmoid(z))


def sigmoid_saturated(z: Tensor) -> Tensor:
    """sigmoid'(z) < 0.03 * 1/4  <=>  |z| > 2 atanh(sqrt 0.97) = 4.8777."""
    return z.abs() > SIGMOID_FLAT_Z


def tanh(z: Tensor) -> Tensor:
    return torch.tanh(z)


def tanh_grad_from_output(t: Tensor) -> Tensor:
    """tanh' = 1 - t^2, t = tanh(z), in one kernel (as torch's own tanh backward computes it)."""
    return torch.addcmul(scalar(1.0, t.dtype, t.device), t, t, value=-1)


def tanh_grad(z: Tensor) -> Tensor:
    return tanh_grad_from_output(torch.tanh(z))


def tanh_saturated(z: Tensor) -> Tensor:
    """tanh'(z) < 0.03 * 1  <=>  |tanh z| > sqrt 0.97  <=>  |z| > 2.4388."""
    return z.abs() > TANH_FLAT_Z


def relu(z: Tensor) -> Tensor:
    return z.clamp_min(0)


def relu_grad(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


def relu_saturated(z: Tensor) -> Tensor:
    """Exception to the 3% rule: the off side z <= 0, output exactly 0 (a dead unit for this example)."""
    return z <= 0


def leaky_relu(z: Tensor) -> Tensor:
    return torch.where(z > 0, z, LEAKY_SLOPE * z)


def leaky_relu_grad(z: Tensor) -> Tensor:
    return torch.where(z > 0, 1.0, LEAKY_SLOPE * torch.ones_like(z))  # slope kept in z's dtype


def negative_side(z: Tensor) -> Tensor:
    """Exception to the 3% rule: leaky_relu's off side z < 0 (its slope there, 0.01, is under 3% of 1)."""
    return z < 0


def elu(z: Tensor) -> Tensor:
    return torch.where(z > 0, z, ELU_ALPHA * torch.expm1(z.clamp_max(0)))


def elu_grad(z: Tensor) -> Tensor:
    return torch.where(z > 0, 1.0, ELU_ALPHA * torch.exp(z.clamp_max(0))).to(z.dtype)


def elu_saturated(z: Tensor) -> Tensor:
    """elu'(z) = alpha e^z < 0.03 * max(1, alpha)  <=>  z < -3.5066 (alpha = 1)."""
    return z < ELU_FLAT_Z


def selu(z: Tensor) -> Tensor:
    return SELU_SCALE * torch.where(z > 0, z, SELU_ALPHA * torch.expm1(z.clamp_max(0)))


def selu_grad(z: Tensor) -> Tensor:
    return SELU_SCALE * torch.where(z > 0, 1.0, SELU_ALPHA * torch.exp(z.clamp_max(0))).to(z.dtype)


def selu_saturated(z: Tensor) -> Tensor:
    """selu'(z) = scale alpha e^z < 0.03 * scale alpha (the max, at z -> 0-)  <=>  z < log 0.03 = -3.5066."""
    return z < SELU_FLAT_Z


def gelu(z: Tensor) -> Tensor:
    """z * Phi(z), the exact erf form."""
    return z * 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def gelu_grad(z: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return cdf + z * pdf


def gelu_slope(z: float) -> float:
    return gelu_grad(torch.tensor(z, dtype=torch.float64)).item()


# gelu'' = phi(z) (2 - z^2), so gelu' falls from 0- at -inf to its min Phi(-sqrt 2) - 1/(e sqrt pi) = -0.1289
# at z = -sqrt 2, rises through 0 near z = -0.75 to its max at z = +sqrt 2, then falls towards 1:
GELU_MAX_SLOPE = 0.5 * (1 + math.erf(1)) + 1 / (math.e * math.sqrt(math.pi))  # Phi(sqrt 2) + sqrt 2 phi(sqrt 2)
GELU_FLAT_SLOPE = FLAT_SLOPE * GELU_MAX_SLOPE  # 0.0339; gelu' >= 0.5 for z >= 0: only z < 0 can be flat
# |gelu'| < GELU_FLAT_SLOPE on the far tail (gelu' decreasing on (-inf, -sqrt 2)) and in a band around the
# zero crossing (gelu' increasing on (-sqrt 2, 0)); each edge is one root of gelu' = -+GELU_FLAT_SLOPE.
GELU_TAIL_Z = bisect_root(lambda z: gelu_slope(z) + GELU_FLAT_SLOPE, -40.0, -math.sqrt(2))  # -2.5521
GELU_DIP_LO_Z = bisect_root(lambda z: gelu_slope(z) + GELU_FLAT_SLOPE, -math.sqrt(2), 0.0)  # -0.8368
GELU_DIP_HI_Z = bisect_root(lambda z: gelu_slope(z) - GELU_FLAT_SLOPE, -math.sqrt(2), 0.0)  # -0.6782


def gelu_saturated(z: Tensor) -> Tensor:
    """|gelu'(z)| < 0.03 * 1.1289: the tail z < -2.5521, and -0.8368 < z < -0.6782 around gelu's minimum.

    At that minimum (z = -0.7518) gelu' crosses zero: no gradient passes there either, so it counts as flat.
    """
    return (z < GELU_TAIL_Z) | ((z > GELU_DIP_LO_Z) & (z < GELU_DIP_HI_Z))


def softplus(z: Tensor) -> Tensor:
    """log(1 + e^z), written so that neither side overflows."""
    return z.clamp_min(0) + torch.log1p(torch.exp(-z.abs()))


def softplus_grad(z: Tensor) -> Tensor:
    return torch.sigmoid(z)


def softplus_saturated(z: Tensor) -> Tensor:
    """softplus'(z) = sigmoid(z) < 0.03 * 1 (its sup)  <=>  z < logit(0.03) = -3.4761."""
    return z < SOFTPLUS_FLAT_Z


def linear(z: Tensor) -> Tensor:
    return z


def linear_grad(z: Tensor) -> Tensor:
    return torch.ones_like(z)


def never_saturated(z: Tensor) -> Tensor:
    """linear's slope is 1 everywhere: never under 3% of its max."""
    return torch.zeros_like(z, dtype=torch.bool)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, sigmoid_grad, sigmoid_saturated, sigmoid_grad_from_output),
    "tanh": Activation(tanh, tanh_grad, tanh_saturated, tanh_grad_from_output),
    "relu": Activation(relu, relu_grad, relu_saturated),
    "leaky_relu": Activation(leaky_relu, leaky_relu_grad, negative_side),
    "elu": Activation(elu, elu_grad, elu_saturated),
    "selu": Activation(selu, selu_grad, selu_saturated),
    "gelu": Activation(gelu, gelu_grad, gelu_saturated),
    "softplus": Activation(softplus, softplus_grad, softplus_saturated),
    "linear": Activation(linear, linear_grad, never_saturated),
}


def get_activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}. Expect one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
