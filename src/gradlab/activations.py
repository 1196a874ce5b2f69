"""Activations: each function beside its derivative and its saturation rule, in one registry."""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
# SELU constants from Klambauer et al. (2017), as torch.nn.SELU uses them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# Past this point an exponential tail has slope < 3% of its linear side: "flat".
EXP_FLAT_Z = math.log(0.03)
SIGMOID_FLAT_Z = math.log(0.97 / 0.03)  # sigmoid(z) outside [0.03, 0.97]  <=>  |z| > this
TANH_FLAT_Z = math.atanh(0.97)  # |tanh(z)| > 0.97  <=>  |z| > this


class Activation(NamedTuple):
    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]  # d fn / dz, elementwise, from z
    saturated: Callable[[Tensor], Tensor]  # bool mask: z lies in the flat part of fn


def sigmoid(z: Tensor) -> Tensor:
    return torch.sigmoid(z)


def sigmoid_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 - s)


def sigmoid_saturated(z: Tensor) -> Tensor:
    """sigmoid(z) < 0.03 or > 0.97, tested on z itself (one pass, no sigmoid)."""
    return z.abs() > SIGMOID_FLAT_Z


def tanh(z: Tensor) -> Tensor:
    return torch.tanh(z)


def tanh_grad(z: Tensor) -> Tensor:
    return 1 - torch.tanh(z) ** 2


def tanh_saturated(z: Tensor) -> Tensor:
    """|tanh(z)| > 0.97, tested on z itself."""
    return z.abs() > TANH_FLAT_Z


def relu(z: Tensor) -> Tensor:
    return z.clamp_min(0)


def relu_grad(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


def relu_saturated(z: Tensor) -> Tensor:
    return z <= 0  # output exactly 0: a dead unit for this example


def leaky_relu(z: Tensor) -> Tensor:
    return torch.where(z > 0, z, LEAKY_SLOPE * z)


def leaky_relu_grad(z: Tensor) -> Tensor:
    return torch.where(z > 0, 1.0, LEAKY_SLOPE * torch.ones_like(z))  # slope kept in z's dtype


def negative_side(z: Tensor) -> Tensor:
    return z < 0


def elu(z: Tensor) -> Tensor:
    return torch.where(z > 0, z, ELU_ALPHA * torch.expm1(z.clamp_max(0)))


def elu_grad(z: Tensor) -> Tensor:
    return torch.where(z > 0, 1.0, ELU_ALPHA * torch.exp(z.clamp_max(0))).to(z.dtype)


def exp_tail_saturated(z: Tensor) -> Tensor:
    return z < EXP_FLAT_Z


def selu(z: Tensor) -> Tensor:
    return SELU_SCALE * torch.where(z > 0, z, SELU_ALPHA * torch.expm1(z.clamp_max(0)))


def selu_grad(z: Tensor) -> Tensor:
    return SELU_SCALE * torch.where(z > 0, 1.0, SELU_ALPHA * torch.exp(z.clamp_max(0))).to(z.dtype)


def gelu(z: Tensor) -> Tensor:
    """z * Phi(z), the exact erf form."""
    return z * 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def gelu_grad(z: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return cdf + z * pdf


def gelu_saturated(z: Tensor) -> Tensor:
    return gelu_grad(z).abs() < 0.03


def softplus(z: Tensor) -> Tensor:
    """log(1 + e^z), written so that neither side overflows."""
    return z.clamp_min(0) + torch.log1p(torch.exp(-z.abs()))


def softplus_grad(z: Tensor) -> Tensor:
    return torch.sigmoid(z)


def softplus_saturated(z: Tensor) -> Tensor:
    """Slope sigmoid(z) < 0.03, tested on z itself."""
    return z < -SIGMOID_FLAT_Z


def linear(z: Tensor) -> Tensor:
    return z


def linear_grad(z: Tensor) -> Tensor:
    return torch.ones_like(z)


def never_saturated(z: Tensor) -> Tensor:
    return torch.zeros_like(z, dtype=torch.bool)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, sigmoid_grad, sigmoid_saturated),
    "tanh": Activation(tanh, tanh_grad, tanh_saturated),
    "relu": Activation(relu, relu_grad, relu_saturated),
    "leaky_relu": Activation(leaky_relu, leaky_relu_grad, negative_side),
    "elu": Activation(elu, elu_grad, exp_tail_saturated),
    "selu": Activation(selu, selu_grad, exp_tail_saturated),
    "gelu": Activation(gelu, gelu_grad, gelu_saturated),
    "softplus": Activation(softplus, softplus_grad, softplus_saturated),
    "linear": Activation(linear, linear_grad, never_saturated),
}


def get_activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}. Expect one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
