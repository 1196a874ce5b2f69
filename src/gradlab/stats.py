"""Per-layer gradient and activation statistics, returned as data: (layer, name, value) rows.

Each value is a 0-d tensor, or (R,) for a replica-batched network: one entry per replica.
"""

import math

import torch
from torch import Tensor

from gradlab.mlp import MLP

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


def matrix_norm(t: Tensor) -> Tensor:
    """Frobenius norm over the last two dimensions."""
    return torch.linalg.vector_norm(t, dim=(-2, -1))


def delta_rms(delta: Tensor, batch_size: int) -> Tensor:
    """sqrt(mean_b ||d loss_b / d z_b||^2) from delta = d(mean loss)/dz, whose rows are that / B.

    Equal to sqrt(B) * ||delta||_F: one norm, no per-example loop.
    """
    return matrix_norm(delta) * math.sqrt(batch_size)


def layer_stats(net: MLP, grads: list[tuple[Tensor, Tensor]], lr: float) -> list[tuple[int, str, Tensor]]:
    """Rows (layer, name, value) for layers 1..depth, from the last forward and backward.

    Needs net.forward and net.backward on the same mini-batch, with dlogits the gradient of
    the batch-mean loss. Activation statistics (act_mean, act_std, saturation) are of h^l = phi(z^l)
    and exist for hidden layers only: the last layer has no activation.
    """
    batch_size = net.preacts[0].shape[-2]
    rows: list[tuple[int, str, Tensor]] = []
    for l, ((dW, db), w, delta) in enumerate(zip(grads, net.weights, net.deltas, strict=True), start=1):
        grad_norm = matrix_norm(dW)
        weight_norm = matrix_norm(w)
        rows += [
            (l, "grad_norm", grad_norm),
            (l, "bias_grad_norm", torch.linalg.vector_norm(db, dim=-1)),
            (l, "delta_rms", delta_rms(delta, batch_size)),
            (l, "weight_norm", weight_norm),
            (l, "update_ratio", lr * grad_norm / weight_norm),
        ]
        if l < net.depth:
            z, h = net.preacts[l - 1], net.inputs[l]  # h^l = phi(z^l) is layer l+1's input
            act_std, act_mean = torch.std_mean(h, dim=(-2, -1), correction=0)
            rows += [
                (l, "act_mean", act_mean),
                (l, "act_std", act_std),
                (l, "saturation", net.activation.saturated(z).to(z.dtype).mean((-2, -1))),
            ]
    return rows
