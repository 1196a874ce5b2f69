"""Losses on logits, each with its hand-derived gradient, in one registry.

`value` gives each example's own loss, shape (B,); the training loss is its mean.
`value_and_grad` gives it with d loss_b / d logits_b for each example, shape (B, C), from one pass
(cross-entropy: one log-softmax; mse: one residual), as a training step needs them: the gradient of the mean
loss is grad / B. cross_entropy and bce are stable for any finite logits (log-sum-exp, softplus); mse is finite
while its squared residuals are.
Leading replica dimensions pass through: logits (R, B, C) with targets (R, B) or (B,) give (R, B).
`over_steps(loss)` scores a target at every time step, logits (..., B, T, C) and targets (..., B, T): each example's
loss is the sum over its steps.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class Loss(NamedTuple):
    value: Callable[[Tensor, Tensor], Tensor]  # (logits (B, C), targets) -> (B,)
    value_and_grad: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (value (B,), d loss_b / d logits_b (B, C))
    predict: Callable[[Tensor], Tensor]  # logits -> predicted class, (B,)
    out_dim: Callable[[int], int]  # number of classes -> number of logits
    n_classes: int | None  # classes it requires, None for any
    per_step: bool = False  # logits (..., B, T, C), targets (..., B, T): an example's loss sums over its T steps


def log_softmax(logits: Tensor) -> Tensor:
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def class_index(logits: Tensor, targets: Tensor) -> Tensor:
    """Targets as a (..., B, 1) index into the class dimension of logits."""
    return targets.expand(logits.shape[:-1]).unsqueeze(-1)


def negative_log_likelihood(log_probs: Tensor, index: Tensor) -> Tensor:
    """-log p_y per example, from log-probabilities (..., B, C) and the class index (..., B, 1)."""
    return -log_probs.gather(-1, index).squeeze(-1)


def softmax_minus_onehot(log_probs: Tensor, index: Tensor) -> Tensor:
    """d(-log softmax(z)_y) / dz = softmax(z) - onehot(y), from log_probs = log softmax(z)."""
    return log_probs.exp().scatter_(-1, index, -1.0, reduce="add")  # in place on exp's fresh output


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """-log softmax(logits)[y], per example; targets are class indices, (B,)."""
    return negative_log_likelihood(log_softmax(logits), class_index(logits, targets))


def cross_entropy_value_and_grad(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Both from one log-softmax: the loss is -log p_y, the gradient p - onehot(y)."""
    log_probs, index = log_softmax(logits), class_index(logits, targets)
    return negative_log_likelihood(log_probs, index), softmax_minus_onehot(log_probs, index)


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


def binary_cross_entropy_value_and_grad(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """The two apart: softplus and sigmoid share no kernel worth sharing."""
    return binary_cross_entropy(logits, targets), binary_cross_entropy_grad(logits, targets)


def sign_class(logits: Tensor) -> Tensor:
    return (logits.squeeze(-1) > 0).long()


def target_values(logits: Tensor, targets: Tensor) -> Tensor:
    """What the logits should equal: onehot(y) (..., B, C) for class indices y (..., B); float targets
    (..., B, C), as regression data sets give, as they are."""
    if targets.is_floating_point():
        return targets
    return torch.zeros_like(logits).scatter_(-1, class_index(logits, targets), 1.0)


def squared_error(logits: Tensor, targets: Tensor) -> Tensor:
    """0.5 * ||logits - t||^2 per example, t = target_values (one-hot for class indices, float targets as given)."""
    return 0.5 * (logits - target_values(logits, targets)).square().sum(dim=-1)


def squared_error_value_and_grad(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Both from one residual r = logits - t: the loss is 0.5 ||r||^2, the gradient r."""
    residual = logits - target_values(logits, targets)
    return 0.5 * residual.square().sum(dim=-1), residual


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(cross_entropy, cross_entropy_value_and_grad, argmax_class, lambda k: k, None),
    "bce": Loss(binary_cross_entropy, binary_cross_entropy_value_and_grad, sign_class, lambda k: 1, 2),
    "mse": Loss(squared_error, squared_error_value_and_grad, argmax_class, lambda k: k, None),
}


def over_steps(loss: Loss) -> Loss:
    """The loss of a target at every time step: an example's loss is the sum of its steps' losses, so d loss_b /
    d logits_bt is the step's own gradient (readout="every")."""

    def value_and_grad(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        value, grad = loss.value_and_grad(logits, targets)
        return value.sum(-1), grad

    return loss._replace(value=lambda logits, targets: loss.value(logits, targets).sum(-1),
                         value_and_grad=value_and_grad, per_step=True)
