"""Weight initializers, one registry: each sampler beside the weight variance it targets.

A weight matrix is shaped (fan_in, fan_out), so z = h @ W + b. Biases start at zero.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

Sampler = Callable[[int, int, torch.Generator, torch.dtype], Tensor]


class Init(NamedTuple):
    sample: Sampler  # (fan_in, fan_out, generator, dtype) -> W, shaped (fan_in, fan_out)
    variance: Callable[[int, int], float]  # Var[W_ij] at init_gain=1; theory uses fan_in * variance


def _uniform(bound: float, fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    return (torch.rand(fan_in, fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound


def _normal(std: float, fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    return torch.randn(fan_in, fan_out, generator=gen, dtype=dtype) * std


def normal(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """N(0, 1): the tutorial's torch.randn."""
    return _normal(1.0, fan_in, fan_out, gen, dtype)


def uniform(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """Glorot and Bengio's "standard" init: U[-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    return _uniform(1 / math.sqrt(fan_in), fan_in, fan_out, gen, dtype)


def xavier_uniform(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """U[-a, a] with a = sqrt(6 / (fan_in + fan_out))."""
    return _uniform(math.sqrt(6 / (fan_in + fan_out)), fan_in, fan_out, gen, dtype)


def xavier_normal(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """N(0, 2 / (fan_in + fan_out))."""
    return _normal(math.sqrt(2 / (fan_in + fan_out)), fan_in, fan_out, gen, dtype)


def kaiming_uniform(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """He et al. (2015) for ReLU, uniform: U[-a, a] with a = sqrt(6 / fan_in)."""
    return _uniform(math.sqrt(6 / fan_in), fan_in, fan_out, gen, dtype)


def kaiming_normal(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """He et al. (2015) for ReLU: N(0, 2 / fan_in)."""
    return _normal(math.sqrt(2 / fan_in), fan_in, fan_out, gen, dtype)


def lecun_normal(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """N(0, 1 / fan_in)."""
    return _normal(math.sqrt(1 / fan_in), fan_in, fan_out, gen, dtype)


def orthogonal(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """Orthonormal columns (fan_in >= fan_out) or rows: QR of a Gaussian, signs fixed (Saxe et al.)."""
    tall = torch.randn(max(fan_in, fan_out), min(fan_in, fan_out), generator=gen, dtype=dtype)
    q, r = torch.linalg.qr(tall)
    q = q * torch.sign(torch.diagonal(r))  # makes the distribution uniform (Haar)
    return q if fan_in >= fan_out else q.T


INITS: dict[str, Init] = {
    "normal": Init(normal, lambda fan_in, fan_out: 1.0),
    "uniform": Init(uniform, lambda fan_in, fan_out: 1 / (3 * fan_in)),
    "xavier_uniform": Init(xavier_uniform, lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    "xavier_normal": Init(xavier_normal, lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    "kaiming_uniform": Init(kaiming_uniform, lambda fan_in, fan_out: 2 / fan_in),
    "kaiming_normal": Init(kaiming_normal, lambda fan_in, fan_out: 2 / fan_in),
    "lecun_normal": Init(lecun_normal, lambda fan_in, fan_out: 1 / fan_in),
    "orthogonal": Init(orthogonal, lambda fan_in, fan_out: 1 / max(fan_in, fan_out)),
}


def get_init(name: str) -> Init:
    if name not in INITS:
        raise ValueError(f"Unknown init {name!r}. Expect one of {sorted(INITS)}")
    return INITS[name]
