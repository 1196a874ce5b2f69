"""The MLP's per-layer gradient, activation and signal-propagation statistics (its `measure`), returned as data:
a Block of (layer, None, name) rows, from one step's trace and gradients.

Every statistic of every layer comes out of a handful of whole-network kernels (one multi-tensor
norm, a few passes over the stacked activations), so measuring at each step stays cheap.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gradlab.measurement import Block, concat
from gradlab.optim import Step, tensor_norms

if TYPE_CHECKING:  # the network calls these; they read only what it passes
    from gradlab.mlp import MLP, MLPBackprop, MLPTrace

LAYER_METRICS = (
    "grad_norm",
    "bias_grad_norm",
    "norm_weight_grad_norm",
    "delta_rms",
    "weight_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "avg_sq_mean",
    "avg_var",
    "branch_avg_var",
    "saturation",
)


def shape_groups(layers: list[int], tensors: list[Tensor]) -> list[tuple[list[int], Tensor]]:
    """The layers' tensors stacked, (layers, ..., B, units): all at once when they share a shape (gradlab's
    hidden layers all have `width` units), else one by one."""
    if len({t.shape for t in tensors}) == 1:
        return [(layers, torch.stack(tensors))] if layers else []
    return [([l], t.unsqueeze(0)) for l, t in zip(layers, tensors, strict=True)]


def stacked_rows(names: list[str], groups: list[tuple[list[int], Tensor]], replicas: int) -> Block:
    """A Block from per-group statistics (len(names), layers, R), keyed (layer, name) name by name."""
    layers = [l for group, _ in groups for l in group]
    values = torch.cat([v for _, v in groups], dim=1) if groups else torch.zeros(len(names), 0, replicas)
    keys = [(l, None, name) for name in names for l in layers]
    return Block(keys, values.double().reshape(len(keys), replicas))


def moments(h: Tensor) -> Tensor:
    """act_mean, act_std (over batch and units), avg_sq_mean and avg_var (NFNets: the mean over units of
    the squared batch mean, and of the biased batch variance) of stacked h, (layers, ..., B, units)."""
    unit_mean = h.mean(-2)  # (layers, ..., units)
    # a norm of the centred values, not .pow(2).mean() (one kernel fewer) nor torch.var_mean (~10x slower on CPU)
    spread = torch.linalg.vector_norm(h - unit_mean.unsqueeze(-2), dim=(-2, -1))
    avg_var = spread.pow(2) / (h.shape[-2] * h.shape[-1])
    act_mean = unit_mean.mean(-1)
    spread_of_means = (unit_mean - act_mean.unsqueeze(-1)).pow(2).mean(-1)
    act_std = (avg_var + spread_of_means).sqrt()  # total variance = mean within units + variance between them
    return torch.stack([act_mean, act_std, unit_mean.pow(2).mean(-1), avg_var])


def activation_stats(net: MLP, trace: MLPTrace) -> Block:
    """Statistics of each hidden layer's output h^l (phi(n(x^l)), or the residual stream), of each residual
    branch alpha z^l, and the saturation of phi's argument u wherever phi is applied (reported as row_layer)."""
    depth, arch = net.depth, net.architecture
    streams = shape_groups(list(range(1, depth)), net.hidden_outputs(trace))
    block = stacked_rows(["act_mean", "act_std", "avg_sq_mean", "avg_var"],
                         [(ls, moments(h)) for ls, h in streams], net.replicas)
    if arch.skip:
        middle = list(range(2, depth))
        branches = shape_groups(middle, [arch.branch * trace.layers[l - 1].z for l in middle])
        block = concat(block, stacked_rows(["branch_avg_var"], [(ls, moments(z)[3:]) for ls, z in branches],
                                           net.replicas))
    with_phi = [k for k in range(1, depth + 1) if 2 <= arch.input_layer(k) <= depth]
    phi_args = [trace.layers[arch.input_layer(k) - 1].u for k in with_phi]
    # a float mean, not count_nonzero: reducing a bool tensor is ~8x slower on CPU at large sizes
    saturation = [(ls, net.activation.saturated(u).to(u.dtype).mean(dim=(-2, -1)).unsqueeze(0))
                  for ls, u in shape_groups(with_phi, phi_args)]
    return concat(block, stacked_rows(["saturation"], saturation, net.replicas))


def layer_stats(net: MLP, trace: MLPTrace, back: MLPBackprop, grad_norms: Tensor, updates: Step) -> Block:
    """Every layer's statistics from one forward and backward and the step about to be taken.

    back holds the gradient of the batch-mean loss; grad_norms is tensor_norms of back.grads; updates is the
    optimizer's step, so update_ratio = ||update of W^l|| / ||W^l|| is the step it takes.
    """
    depth, roles = net.depth, net.roles()
    weights, biases, gammas = (net.positions[kind] for kind in ("weight", "bias", "norm_weight"))  # slices
    update_norms = updates.norms(weights, net.batched)
    norms = torch.cat([grad_norms[weights], grad_norms[biases], tensor_norms(back.deltas + net.weights, net.batched),
                       update_norms])
    grad_norm, bias_grad_norm, delta_norm, weight_norm, update_norm = norms.double().reshape(5, depth, -1)
    # delta^l = d(mean loss)/dz^l has rows (d loss_b / d z_b) / B, so
    # delta_rms = sqrt(mean_b ||d loss_b / d z_b||^2) = sqrt(B) * ||delta^l||_F: one norm, no per-example loop.
    delta_rms = delta_norm * math.sqrt(back.deltas[0].shape[-2])
    values = torch.cat([grad_norm, bias_grad_norm, delta_rms, weight_norm, update_norm / weight_norm])
    names = ("grad_norm", "bias_grad_norm", "delta_rms", "weight_norm", "update_ratio")
    keys = [(l, None, name) for name in names for l in range(1, depth + 1)]
    gamma_layers = [role.layer for role in roles[gammas]]
    gamma_norms = grad_norms[gammas].double().reshape(len(gamma_layers), net.replicas)
    norm_rows = Block([(layer, None, "norm_weight_grad_norm") for layer in gamma_layers], gamma_norms)
    return concat(Block(keys, values), norm_rows, activation_stats(net, trace))
