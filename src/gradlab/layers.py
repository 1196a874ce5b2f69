"""Layer kinds, each a forward that returns (out, cache) beside a backward that takes (dout, cache).

Every tensor is (..., B, n): B examples of n units, with an optional leading replica dimension R; a
parameter is (n,) or (R, n) (a weight (n_in, n_out) or (R, n_in, n_out)). The network (gradlab.mlp)
composes these pairs in one short loop per architecture.
"""

from typing import NamedTuple

import torch
from torch import Tensor

NORM_EPS = 1e-5  # as torch.nn.LayerNorm and torch.nn.BatchNorm1d
RUNNING_MOMENTUM = 0.1  # batch norm's running statistics, torch's convention


class AffineCache(NamedTuple):
    h: Tensor  # the layer's input, (..., B, fan_in)
    w: Tensor  # (..., fan_in, fan_out)


def affine_forward(h: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, AffineCache]:
    """z = h @ w + b, as one fused kernel where the shapes allow (addmm, baddbmm)."""
    if h.dim() == w.dim() == 2:
        z = torch.addmm(b, h, w)
    elif h.dim() == w.dim() == 3:
        z = torch.baddbmm(b.unsqueeze(-2), h, w)
    else:
        z = torch.matmul(h, w) + b.unsqueeze(-2)  # shared inputs (B, n) against replica weights
    return z, AffineCache(h, w)


def affine_tangent(dh: Tensor, cache: AffineCache) -> Tensor:
    """dz = dh w: the layer's Jacobian applied to K tangents of its input at once, (K, ..., B, fan_in) ->
    (K, ..., B, fan_out) (forward mode; the bias adds nothing)."""
    w = cache.w
    if w.dim() == 2 or dh.dim() == w.dim():
        return torch.matmul(dh, w)
    k, replicas, batch, fan_in = dh.shape  # against replica weights: one product per replica, no copy of w
    rows = dh.movedim(0, 1).reshape(replicas, k * batch, fan_in)
    return torch.bmm(rows, w).reshape(replicas, k, batch, -1).movedim(1, 0)


def affine_backward(dz: Tensor, cache: AffineCache, input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
    """(dh, dw, db) from dz = dL/dz: dw = h^T dz, db = sum over the batch of dz, dh = dz w^T (None if not asked)."""
    dw = torch.matmul(cache.h.mT, dz)  # (..., fan_in, fan_out)
    db = dz.sum(-2)  # (..., fan_out)
    dh = torch.matmul(dz, cache.w.mT) if input_grad else None  # (..., B, fan_in)
    return dh, dw, db


class NormCache(NamedTuple):
    xhat: Tensor | None  # the normalized input, (..., B, n); None with fixed statistics
    inv_std: Tensor  # 1 / sqrt(var + eps), reduced over `dim` (kept as size 1), or per unit when fixed
    gamma: Tensor
    dim: int
    fixed: bool = False  # the statistics are constants (batch norm's running ones): u is affine in z


def per_unit(p: Tensor) -> Tensor:
    """A per-unit parameter (n,) or (R, n) shaped to broadcast against (..., B, n)."""
    return p.unsqueeze(-2)


def normalize_forward(z: Tensor, gamma: Tensor, beta: Tensor, dim: int) -> tuple[Tensor, NormCache]:
    """u = gamma * (z - mean) / sqrt(var + eps) + beta, mean and biased var over `dim` (-1: units, -2: batch)."""
    mean = z.mean(dim, keepdim=True)
    centred = z - mean
    inv_std = torch.rsqrt(centred.pow(2).mean(dim, keepdim=True) + NORM_EPS)
    xhat = centred * inv_std
    return per_unit(gamma) * xhat + per_unit(beta), NormCache(xhat, inv_std, gamma, dim)


def normalize_backward(du: Tensor, cache: NormCache) -> tuple[Tensor, Tensor, Tensor]:
    """(dz, dgamma, dbeta) from du = dL/du.

    With xhat = (z - mean) * s over the N values of `dim` and s = (var + eps)^(-1/2), both mean and var
    depend on every z_i, and d xhat_j / d z_i = s (delta_ij - 1/N - xhat_i xhat_j / N). Contracting with
    g = du * gamma = dL/dxhat gives dz = s (g - mean(g) - xhat * mean(g * xhat)), means over `dim`.
    gamma and beta are per unit: their gradients sum over the batch whatever `dim` is.
    """
    if cache.fixed:  # u = gamma * (z - running_mean) * inv_std + beta: the input gradient only (evaluation)
        return du * per_unit(cache.gamma * cache.inv_std), None, None
    g = du * per_unit(cache.gamma)
    dim = cache.dim
    dz = cache.inv_std * (g - g.mean(dim, keepdim=True) - cache.xhat * (g * cache.xhat).mean(dim, keepdim=True))
    return dz, (du * cache.xhat).sum(-2), du.sum(-2)


def normalize_tangent(dz: Tensor, cache: NormCache) -> Tensor:
    """du = (du/dz) dz for K tangents dz at once (forward mode): with the notation of normalize_backward,
    du = gamma * s (dz - mean(dz) - xhat * mean(dz * xhat)); with fixed statistics, gamma * s * dz."""
    if cache.fixed:
        return dz * per_unit(cache.gamma * cache.inv_std)
    dim = cache.dim
    dxhat = cache.inv_std * (dz - dz.mean(dim, keepdim=True) - cache.xhat * (dz * cache.xhat).mean(dim, keepdim=True))
    return dxhat * per_unit(cache.gamma)


def update_running(running_mean: Tensor, running_var: Tensor, z: Tensor) -> None:
    """Batch norm's running statistics, in place, as torch does: momentum 0.1, the unbiased batch variance."""
    batch = z.shape[-2]
    mean = z.mean(-2)
    var = (z - mean.unsqueeze(-2)).pow(2).sum(-2) / (batch - 1)
    running_mean.lerp_(mean, RUNNING_MOMENTUM)
    running_var.lerp_(var, RUNNING_MOMENTUM)


def normalize_running(
    z: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor
) -> tuple[Tensor, NormCache]:
    """Batch norm at evaluation: u = gamma * (z - running_mean) / sqrt(running_var + eps) + beta."""
    inv_std = torch.rsqrt(running_var + NORM_EPS)
    u = per_unit(gamma * inv_std) * (z - per_unit(running_mean)) + per_unit(beta)
    return u, NormCache(None, inv_std, gamma, -2, fixed=True)


class Norm(NamedTuple):
    dim: int  # the axis normalized over while training: -1 each example's units, -2 each unit's batch
    running: bool  # keeps running statistics, which evaluation uses instead of the batch's


NORMS: dict[str, Norm] = {
    "layernorm": Norm(dim=-1, running=False),
    "batchnorm": Norm(dim=-2, running=True),
}
NORM_CHOICES = ("none", *NORMS)  # "none": no norm layer at all


def get_norm(name: str) -> Norm | None:
    """The norm registered as name; None for "none"."""
    if name not in NORM_CHOICES:
        raise ValueError(f"Unknown norm {name!r}. Expect one of {NORM_CHOICES}")
    return NORMS.get(name)
