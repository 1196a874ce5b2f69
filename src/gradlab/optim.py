"""SGD with optional momentum and optional global-norm gradient clipping, by hand.

The updates use torch's multi-tensor `_foreach` kernels (as torch.optim.SGD does): one call for
all parameters instead of one per tensor, which is most of a small network's step time.
"""

import torch
from torch import Tensor


def tensor_norms(tensors: list[Tensor], replicas: bool) -> Tensor:
    """The 2-norm of each tensor, (n,); with replicas, of each replica's slice: (n, R)."""
    parts = [p for t in tensors for p in t.unbind(0)] if replicas else tensors
    return torch.stack(torch._foreach_norm(parts)).reshape(len(tensors), -1 if replicas else 1).squeeze(-1)


def is_replica_batched(grads: list[tuple[Tensor, Tensor]]) -> bool:
    return grads[0][1].dim() > 1  # a bias gradient (R, fan_out) rather than (fan_out,)


def gradient_norms(grads: list[tuple[Tensor, Tensor]]) -> Tensor:
    """||dW^l|| for each layer, then ||db^l||: (2 * depth,), or (2 * depth, R) with replicas."""
    return tensor_norms([dW for dW, _ in grads] + [db for _, db in grads], is_replica_batched(grads))


def global_norm(grads: list[tuple[Tensor, Tensor]], grad_norms: Tensor | None = None) -> Tensor:
    """sqrt(sum over layers of ||dW||^2 + ||db||^2): 0-d, or (R,) for replica-batched gradients.

    `grad_norms` is gradient_norms(grads) when the caller has it already.
    """
    return torch.linalg.vector_norm(gradient_norms(grads) if grad_norms is None else grad_norms, dim=0)


def clip_by_global_norm(
    grads: list[tuple[Tensor, Tensor]], max_norm: float, norm: Tensor
) -> list[tuple[Tensor, Tensor]]:
    """Scale all gradients by min(1, max_norm / norm), as torch.nn.utils.clip_grad_norm_ does."""
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)  # 0-d, or (R,): one scale per replica
    return [(dW * scale[..., None, None], db * scale[..., None]) for dW, db in grads]


class SGD:
    """p <- p - lr * v, v <- momentum * v + g (PyTorch's convention; v = g when momentum = 0)."""

    def __init__(self, params: list[Tensor], lr: float, momentum: float = 0.0) -> None:
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.velocity = [torch.zeros_like(p) for p in params] if momentum else []

    def step(self, grads: list[Tensor]) -> None:
        """Update the parameters in place."""
        if self.momentum:
            torch._foreach_mul_(self.velocity, self.momentum)
            torch._foreach_add_(self.velocity, grads)
            grads = self.velocity
        torch._foreach_add_(self.params, grads, alpha=-self.lr)
