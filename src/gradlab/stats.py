"""Per-layer gradient and activation statistics, returned as data: a Block of (layer, name) rows.

Every statistic of every layer comes out of a handful of whole-network kernels (one multi-tensor
norm, a few passes over the stacked activations), so measuring at each step stays cheap.
"""

import math

import torch
from torch import Tensor

from gradlab.measurement import Block, concat
from gradlab.mlp import MLP
from gradlab.optim import gradient_norms, tensor_norms

LAYER_METRICS = (
    "grad_norm",
    "bias_grad_norm",
    "delta_rms",
    "weight_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "saturation",
)
def activation_stats(net: MLP) -> Block:
    """act_mean, act_std and saturation of h^l = phi(z^l) over batch and units, hidden layers only.

    Layers of one shape (gradlab's hidden layers all have `width` units) are stacked and reduced
    together; a network of mixed widths is reduced layer by layer.
    """
    hidden = list(range(1, net.depth))
    same_shape = len({net.preacts[l - 1].shape for l in hidden}) == 1
    groups = [hidden] if same_shape else [[l] for l in hidden]  # none when depth is 1
    parts = []
    for group in groups:
        h = torch.stack([net.inputs[l] for l in group])  # (layers, ..., B, units)
        z = torch.stack([net.preacts[l - 1] for l in group])
        mean = h.mean(dim=(-2, -1))  # two passes, not torch.std_mean: that is ~10x slower on CPU
        std = torch.linalg.vector_norm(h - mean[..., None, None], dim=(-2, -1)) / math.sqrt(h.shape[-2] * h.shape[-1])
        # a float mean, not count_nonzero: reducing a bool tensor is ~8x slower on CPU at large sizes
        saturated = net.activation.saturated(z).to(z.dtype).mean(dim=(-2, -1))
        parts.append(torch.stack([mean, std, saturated]).double())
    replicas = net.replicas
    values = torch.cat(parts, dim=1) if parts else net.preacts[0].new_zeros(3, 0, replicas, dtype=torch.float64)
    keys = [(l, name) for name in ("act_mean", "act_std", "saturation") for l in hidden]  # (3, layers, ...) order
    return Block(keys, values.reshape(len(keys), replicas))


def layer_stats(net: MLP, grads: list[tuple[Tensor, Tensor]], lr: float, grad_norms: Tensor | None = None) -> Block:
    """Every layer's statistics from the last forward and backward.

    Needs net.forward and net.backward on the same mini-batch, with dlogits the gradient of
    the batch-mean loss. Activation statistics (act_mean, act_std, saturation) are of h^l = phi(z^l)
    and exist for hidden layers only: the last layer has no activation. `grad_norms` is
    gradient_norms(grads, net.batched) when the caller has it already (the training step does).
    """
    if grad_norms is None:
        grad_norms = gradient_norms(grads, net.batched)
    depth = net.depth
    norms = torch.cat([grad_norms, tensor_norms(net.deltas + net.weights, net.batched)])
    grad_norm, bias_grad_norm, delta_norm, weight_norm = norms.to(torch.float64).reshape(4, depth, -1)
    # delta^l = d(mean loss)/dz^l has rows (d loss_b / d z_b) / B, so
    # delta_rms = sqrt(mean_b ||d loss_b / d z_b||^2) = sqrt(B) * ||delta^l||_F: one norm, no per-example loop.
    delta_rms = delta_norm * math.sqrt(net.preacts[0].shape[-2])
    values = torch.cat([grad_norm, bias_grad_norm, delta_rms, weight_norm, lr * grad_norm / weight_norm])
    names = ("grad_norm", "bias_grad_norm", "delta_rms", "weight_norm", "update_ratio")
    keys = [(l, name) for name in names for l in range(1, depth + 1)]
    return concat(Block(keys, values), activation_stats(net))
