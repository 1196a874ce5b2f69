"""The MLP's input-output Jacobian in forward mode: each hidden layer's linear map at the point a forward pass
holds, applied to K tangents at once (gradlab.network.HasJacobian; gradlab.jacobian multiplies them exactly)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gradlab.layers import affine_tangent, normalize_tangent

if TYPE_CHECKING:  # the MLP calls these with itself
    from gradlab.mlp import MLP, LayerCache


def tangent_steps(net: MLP, x: Tensor) -> list[Callable[[Tensor], Tensor]]:
    """J(x) = d h^{depth-1} / d x as depth - 1 linear maps in evaluation mode: step l takes K tangents of
    h^{l-1}, (K, ..., B, n_{l-1}), to tangents of h^l (forward mode). Batch norm uses its running
    statistics, so each example's J depends on that example alone. Needs depth >= 2."""
    if net.depth < 2:
        raise ValueError("depth 1 has no hidden layer, so no input-output Jacobian")
    x, caches = net.per_replica(x), []
    for l in range(1, net.depth + 1):  # the readout's input map too: a plain net's h^{depth-1} is phi(z)
        x, cache = net.layer_forward(l, x, training=False)
        caches.append(cache)
    return [functools.partial(layer_tangent, net, l, caches) for l in range(1, net.depth)]


def layer_tangent(net: MLP, l: int, caches: list[LayerCache], dh: Tensor) -> Tensor:
    """h^l's tangents from tangents dh of h^{l-1}, at the point the caches hold (layer l's Jacobian)."""
    if net.architecture.outputs_phi:  # h^l = phi(n(x^l)), x^l = h^{l-1} W^l + b^l
        return input_tangent(net, caches[l], affine_tangent(dh, caches[l - 1].affine))
    dz = affine_tangent(input_tangent(net, caches[l - 1], dh) if l > 1 else dh, caches[l - 1].affine)
    skip, branch = net.architecture.carry(l, net.depth)
    return dh + branch * dz if skip else dz


def input_tangent(net: MLP, cache: LayerCache, dx: Tensor) -> Tensor:
    """Tangents of phi(n(x)) at a layer's input from tangents dx of x."""
    du = dx if cache.norm is None else normalize_tangent(dx, cache.norm)
    return du * net.phi_slope(cache)


def input_jacobian(net: MLP, x: Tensor) -> Tensor:
    """J(x) = d h^{depth-1} / d x per example, in evaluation mode: (..., B, width, n_in) for x (..., B, n_in);
    explicit, so exact only where its singular values span little (gradlab.jacobian for any depth)."""
    steps = net.tangent_steps(x)
    n_in = x.shape[-1]
    eye = torch.eye(n_in, dtype=x.dtype, device=x.device)
    lead = net.per_replica(x).shape[:-1]
    tangents = eye.reshape(n_in, *[1] * len(lead), n_in).expand(n_in, *lead, n_in)  # (n_in, ..., B, n_in)
    for step in steps:
        tangents = step(tangents)
    return tangents.movedim(0, -1)  # (..., B, width, n_in)
