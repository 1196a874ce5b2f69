"""Losses on logits, each with its hand-derived gradient, in one registry.

`value` gives each example's own loss, shape (B,); the training loss is its mean.
`grad` gives d loss_b / d logits_b for each example, shape (B, C): the gradient of the mean
loss is grad / B. Both are stable for any finite logits (log-sum-exp, softplus). Leading
replica dimensions pass through: logits (R, B, C) with targets (R, B) or (B,) give (R, B).
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class Loss(NamedTuple):
    value: Callable[[Tensor, Tensor], Tensor]  # (logits (B, C), targets) -> (B,)
    grad: Callable[[Tensor, Tensor], Tensor]  # (logits, targets) -> d loss_b / d logits_b, (B, C)
    predict: Callable[[Tensor], Tensor]  # logits -> predicted class, (B,)
    out_dim: Callable[[int], int]  # number of classes -> number of logits
    n_classes: int | None  # classes it requires, None for any


def log_softmax(logits: Tensor) -> Tensor:
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def class_index(logits: Tensor, targets: Tensor) -> Tensor:
    """Targets as a (..., B, 1) index into the class dimension of logits."""
    return targets.expand(logits.shape[:-1]).unsqueeze(-1)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """-log softmax(logits)[y], per example; targets are class indices, (B,)."""
    return -log_softmax(logits).gather(-1, class_index(logits, targets)).squeeze(-1)


def cross_entropy_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """softmax(logits) - onehot(y)."""
    return log_softmax(logits).exp().scatter_add(
        -1, class_index(logits, targets), -torch.ones_like(logits[..., :1])
    )


def argmax_class(logits: Tensor) -> Tensor:
    return logits.argmax(dim=-1)


def binary_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """-[y log s(z) + (1 - y) log(1 - s(z))] = softplus(z) - y z, per example; logits (B, 1)."""
    z = logits.squeeze(-1)
    y = targets.to(z.dtype)
    return z.clamp_min(0) + torch.log1p(torch.exp(-z.abs())) - y * z


def binary_cross_entropy_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """sigmoid(z) - y."""
    return torch.sigmoid(logits) - targets.to(logits.dtype).unsqueeze(-1)


def sign_class(logits: Tensor) -> Tensor:
    return (logits.squeeze(-1) > 0).long()


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(cross_entropy, cross_entropy_grad, argmax_class, lambda k: k, None),
    "bce": Loss(binary_cross_entropy, binary_cross_entropy_grad, sign_class, lambda k: 1, 2),
}


def get_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}. Expect one of {sorted(LOSSES)}")
    return LOSSES[name]
