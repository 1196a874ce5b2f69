"""SGD with optional momentum and optional global-norm gradient clipping, by hand.

The updates use torch's multi-tensor `_foreach` kernels (as torch.optim.SGD does): one call for
all parameters instead of one per tensor, which is most of a small network's step time.
"""

import torch
from torch import Tensor


def tensor_norms(tensors: list[Tensor], batched: bool) -> Tensor:
    """The 2-norm of each tensor, (n,); batched over replicas, of each replica's slice: (n, R)."""
    parts = [p for t in tensors for p in t.unbind(0)] if batched else tensors
    return torch.stack(torch._foreach_norm(parts)).reshape(len(tensors), -1 if batched else 1).squeeze(-1)


def gradient_norms(grads: list[tuple[Tensor, Tensor]], batched: bool) -> Tensor:
    """||dW^l|| for each layer, then ||db^l||: (2 * depth,), or (2 * depth, R) batched over replicas."""
    return tensor_norms([dW for dW, _ in grads] + [db for _, db in grads], batched)


def global_norm(grad_norms: Tensor) -> Tensor:
    """sqrt(sum over layers of ||dW||^2 + ||db||^2) from gradient_norms(...): 0-d, or (R,) batched."""
    return torch.linalg.vector_norm(grad_norms, dim=0)


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
