"""The MLP's per-layer gradient, activation and signal-propagation statistics (its `measure`), returned as data:
a Block of (layer, None, name) rows, from one step's trace and gradients.

Every statistic of every layer comes out of a handful of whole-network kernels (one multi-tensor
norm, a few passes over the stacked activations), so measuring at each step stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gradlab import per_example
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


def activation_stats(net: MLP, trace: MLPTrace, streams: list[tuple[list[int], Tensor]]) -> Block:
    """Statistics of each hidden layer's output h^l (phi(n(x^l)), or the residual stream; `streams`, stacked by
    shape_groups), of each residual branch alpha z^l, and the saturation of phi's argument u wherever phi is applied
    (reported as row_layer)."""
    depth, arch = net.depth, net.architecture
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
    """Every layer's statistics from one forward and backward and the step about to be taken, and the gradient's
    noise across the batch (gradlab.per_example) unless batch norm couples the examples.

    back holds the gradient of the batch-mean loss; grad_norms is tensor_norms of back.grads; updates is the
    optimizer's step, so update_ratio = ||update of W^l|| / ||W^l|| is the step it takes.
    """
    depth, roles = net.depth, net.roles()
    weights, biases, gammas = (net.positions[kind] for kind in ("weight", "bias", "norm_weight"))  # slices
    # delta^l = d(mean loss)/dz^l has rows (d loss_b / d z_b) / B, so
    # delta_rms = sqrt(mean_b ||d loss_b / d z_b||^2) = sqrt(B * sum_b ||delta_b||^2): the per-row norms that the
    # noise rows need too.
    batch, noisy = back.deltas[0].shape[-2], not net.examples_coupled
    streams, inputs = hidden_and_inputs(net, trace, noisy)
    noise = []  # the noise rows' terms share this step's one cat and cast to float64
    if noisy:
        delta_sq = per_example.layer_sq_norms(back.deltas)  # (depth, ..., B)
        delta_sums = delta_sq.sum(-1)  # (depth, ...)
        input_sq = None if inputs is None else torch.linalg.vector_norm(inputs, dim=-1).square()
        sums = per_example.mlp_example_sums(net, trace, back, input_sq, delta_sq, delta_sums)
        noise = per_example.noise_terms(sums, grad_norms)
    else:  # batch norm: no noise rows to share per-row norms with, so one norm per delta (fewer kernels)
        delta_sums = tensor_norms(back.deltas, net.batched).square()
    norms = torch.cat([grad_norms[weights], grad_norms[biases], tensor_norms(net.weights, net.batched),
                       updates.norms(weights, net.batched), delta_sums, *noise]).double()
    grad_norm, bias_grad_norm, weight_norm, update_norm, delta_sum = norms[: 5 * depth].reshape(5, depth, -1)
    delta_rms = (delta_sum * batch).sqrt()
    values = torch.cat([grad_norm, bias_grad_norm, delta_rms, weight_norm, update_norm / weight_norm])
    names = ("grad_norm", "bias_grad_norm", "delta_rms", "weight_norm", "update_ratio")
    keys = [(l, None, name) for name in names for l in range(1, depth + 1)]
    gamma_layers = [role.layer for role in roles[gammas]]
    gamma_norms = grad_norms[gammas].double().reshape(len(gamma_layers), net.replicas)
    norm_rows = Block([(layer, None, "norm_weight_grad_norm") for layer in gamma_layers], gamma_norms)
    blocks = [Block(keys, values), norm_rows, activation_stats(net, trace, streams)]
    if noise:
        blocks.append(per_example.noise_rows(roles, norms[5 * depth :].reshape(2 * len(roles) + 1, -1), batch))
    return concat(*blocks)


def hidden_and_inputs(net: MLP, trace: MLPTrace, inputs_wanted: bool
                      ) -> tuple[list[tuple[list[int], Tensor]], Tensor | None]:
    """shape_groups of the hidden outputs h^1..h^{depth-1}; and, when wanted, every layer's input stacked,
    (depth, ..., B, n), where that comes with them: a plain net (its inputs are x and the h^l) whose x has the hidden
    layers' shape. One stack for both, since a measured step pays for each kernel."""
    hidden, x = net.hidden_outputs(trace), trace.layers[0].affine.h
    if inputs_wanted and net.architecture.outputs_phi and hidden and len({x.shape, *(h.shape for h in hidden)}) == 1:
        inputs = torch.stack([x, *hidden])
        return [(list(range(1, net.depth)), inputs[1:])], inputs
    return shape_groups(list(range(1, net.depth)), hidden), None
