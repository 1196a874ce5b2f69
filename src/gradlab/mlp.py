"""A multi-layer perceptron whose backward pass is written by hand: plain or residual, with or without norms.

Layer l = 1..depth (1 nearest the input) has W^l, b^l; a hidden layer may have a norm n^l with gamma^l, beta^l.

- plain:    z^l = h^{l-1} W^l + b^l;  h^l = phi(u^l), u^l = n^l(z^l) (u^l = z^l without a norm), l < depth.
- residual: h^1 = z^1 = x W^1 + b^1;  z^l = phi(n^l(h^{l-1})) W^l + b^l and h^l = h^{l-1} + alpha z^l for
  l = 2..depth-1;  logits = z^depth = phi(n^depth(h^{depth-1})) W^depth + b^depth (Yang & Schoenholz 2017).

With `replicas=R > 1`, R independently initialized copies train as one batched computation: every tensor
gains a leading replica dimension, (R, fan_in, fan_out), and inputs are (R, B, n) (or (B, n), shared).
"""

import copy
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gradlab.activations import get_activation
from gradlab.inits import get_init
from gradlab.layers import (
    NORM_CHOICES,
    NORMS,
    AffineCache,
    NormCache,
    affine_backward,
    affine_forward,
    affine_tangent,
    normalize_backward,
    normalize_forward,
    normalize_running,
    normalize_tangent,
    update_running,
)

ARCHS = ("plain", "residual")


def replica_generators(seed: int, replicas: int) -> list[torch.Generator]:
    """One generator per replica, seeded seed, seed+1, ...: replica r is the run with seed+r."""
    return [torch.Generator().manual_seed(seed + r) for r in range(replicas)]


class LayerCache(NamedTuple):
    affine: AffineCache
    z: Tensor  # the layer's affine output z^l
    norm: NormCache | None  # None where the layer has no norm
    u: Tensor | None  # phi's argument at this layer (None where phi is not applied)
    phi_u: Tensor | None = None  # phi(u), kept so that phi' can come from phi's output


class MLP:
    """weights[l-1] is W^l, (fan_in, fan_out); biases[l-1] is b^l, (fan_out,); norm_weights[l-1] and
    norm_biases[l-1] are gamma^l and beta^l of layer l's norm, (width,), or None where layer l has none:
    in a plain net the norm of z^l (l = 1..depth-1), in a residual net n^l at the input of l's branch
    (l = 2..depth). Biases start at 0, or N(0, bias_std^2). Replica r draws from generators[r], seeded
    seed + r; with replicas > 1 every tensor has a leading replica dimension. The generators go on to draw
    each replica's data order (train).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        init: str = "xavier_uniform",
        seed: int = 0,
        replicas: int = 1,
        init_gain: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        arch: str = "plain",
        residual_scale: float = 1.0,
        norm: str = "none",
        bias_std: float = 0.0,
    ) -> None:
        check_architecture(sizes, replicas, arch, norm)
        self.replicas, self.arch, self.residual_scale, self.norm_name = replicas, arch, residual_scale, norm
        self.generators = replica_generators(seed, replicas)
        self.sizes = list(sizes)
        self.activation_name = activation
        self.activation = get_activation(activation)
        sample = get_init(init).sample
        lead = (replicas,) if self.batched else ()
        self.weights, self.biases = [], []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            w = torch.stack([init_gain * sample(fan_in, fan_out, gen, dtype) for gen in self.generators])
            self.weights.append((w if self.batched else w[0]).to(device))
            self.biases.append(torch.zeros((*lead, fan_out), dtype=dtype, device=device))
        if bias_std:  # drawn after every weight, so bias_std changes the biases and leaves the weights as they were
            self.biases = [torch.stack([bias_std * torch.randn(b.shape[-1], generator=gen, dtype=dtype)
                                        for gen in self.generators]).reshape(b.shape).to(device) for b in self.biases]
        normed = norm_layers(self.depth, arch) if norm != "none" else []
        units = {l: self.sizes[l] if arch == "plain" else self.sizes[l - 1] for l in normed}  # z^l's or h^{l-1}'s
        self.norm_weights = [torch.ones((*lead, units[l]), dtype=dtype, device=device) if l in units else None
                             for l in range(1, self.depth + 1)]
        self.norm_biases = [torch.zeros_like(g) if g is not None else None for g in self.norm_weights]
        tracked = NORMS[norm].running if norm != "none" else False
        self.running_means = [torch.zeros_like(g) if g is not None and tracked else None for g in self.norm_weights]
        self.running_vars = [torch.ones_like(g) if g is not None and tracked else None for g in self.norm_weights]
        self.caches: list[LayerCache] = []
        self.hidden: list[Tensor] = []  # h^l for l = 1..depth-1: each hidden layer's output (the stream)
        self.deltas: list[Tensor] = []  # dL/dz^l for each layer, set by backward

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def batched(self) -> bool:
        """Whether every tensor carries a leading replica dimension (replicas > 1)."""
        return self.replicas > 1

    def parameters(self) -> list[Tensor]:
        """Every trainable tensor: each W^l, then each b^l, then gamma and beta of each norm (by layer)."""
        gammas = [g for g in self.norm_weights if g is not None]
        betas = [b for b in self.norm_biases if b is not None]
        return [*self.weights, *self.biases, *gammas, *betas]

    def normalize(self, l: int, z: Tensor, training: bool) -> tuple[Tensor, NormCache | None]:
        """Layer l's norm on z (the identity where l has none); training mode keeps a cache and the running stats."""
        gamma, beta = self.norm_weights[l - 1], self.norm_biases[l - 1]
        if gamma is None:
            return z, None
        norm = NORMS[self.norm_name]
        if norm.running and not training:
            return normalize_running(z, gamma, beta, self.running_means[l - 1], self.running_vars[l - 1])
        if norm.running:
            update_running(self.running_means[l - 1], self.running_vars[l - 1], z)
        return normalize_forward(z, gamma, beta, norm.dim)

    def layer_forward(self, l: int, h: Tensor, training: bool) -> tuple[Tensor, LayerCache]:
        """Layer l from its input h (x, or h^{l-1}): its output (h^l, or the logits) and its cache."""
        w, b, phi, last = self.weights[l - 1], self.biases[l - 1], self.activation.fn, l == self.depth
        if self.arch == "plain":
            z, affine = affine_forward(h, w, b)
            if last:
                return z, LayerCache(affine, z, None, None)
            u, norm = self.normalize(l, z, training)
            phi_u = phi(u)
            return phi_u, LayerCache(affine, z, norm, u, phi_u)
        if l == 1:
            z, affine = affine_forward(h, w, b)
            return z, LayerCache(affine, z, None, None)
        u, norm = self.normalize(l, h, training)
        phi_u = phi(u)
        z, affine = affine_forward(phi_u, w, b)
        return (z if last else h + self.residual_scale * z), LayerCache(affine, z, norm, u, phi_u)

    def infer(self, x: Tensor) -> Tensor:
        """Logits for x, (B, fan_out) or (R, B, fan_out), in evaluation mode (batch norm's running statistics)."""
        h = x
        for l in range(1, self.depth + 1):
            h, _ = self.layer_forward(l, h, training=False)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Logits for x in training mode (batch statistics); keeps what backward needs."""
        self.caches, self.hidden = [], []
        h = x  # (B, sizes[0]) or (R, B, sizes[0])
        for l in range(1, self.depth + 1):
            h, cache = self.layer_forward(l, h, training=True)
            self.caches.append(cache)
            if l < self.depth:
                self.hidden.append(h)
        return h

    def backward(self, dlogits: Tensor) -> list[Tensor]:
        """The gradient of every tensor of parameters(), in its order, from dlogits = dL/dlogits, (..., B, n_out)."""
        if not self.caches:
            raise RuntimeError("backward() needs a forward() first")
        d_weights, d_biases = [None] * self.depth, [None] * self.depth
        d_gammas, d_betas = [None] * self.depth, [None] * self.depth
        self.deltas = [None] * self.depth
        dz, stream = dlogits, None  # stream: dL/dh^l of the residual stream
        for l in range(self.depth, 0, -1):
            self.deltas[l - 1] = dz
            dh, d_weights[l - 1], d_biases[l - 1] = affine_backward(dz, self.caches[l - 1].affine, input_grad=l > 1)
            if l > 1:
                dz, stream, norm_grads = self.below(l, dh, stream)
                owner = l - 1 if self.arch == "plain" else l  # the layer whose norm dh went back through
                d_gammas[owner - 1], d_betas[owner - 1] = norm_grads
        present = [l for l in range(self.depth) if self.norm_weights[l] is not None]
        return [*d_weights, *d_biases, *[d_gammas[l] for l in present], *[d_betas[l] for l in present]]

    def below(self, l: int, dh: Tensor, stream: Tensor | None) -> tuple[Tensor, Tensor | None, tuple]:
        """From dh = dL/d(the input of layer l's affine map) to dz^{l-1}: back through phi and the norm between
        them. Returns (dz^{l-1}, the residual stream's dL/dh^{l-1} or None, (dgamma, dbeta) of that norm)."""
        cache = self.caches[l - 2] if self.arch == "plain" else self.caches[l - 1]
        du = dh * self.phi_slope(cache)
        dz, norm_grads = du, (None, None)
        if cache.norm is not None:
            dz, *norm_grads = normalize_backward(du, cache.norm)
        if self.arch == "plain":
            return dz, None, tuple(norm_grads)
        stream = dz if stream is None else stream + dz  # dL/dh^{l-1}: the branch's share, plus the skip's
        return (stream if l == 2 else self.residual_scale * stream), stream, tuple(norm_grads)

    def phi_slope(self, cache: LayerCache) -> Tensor:
        """phi'(u) at a layer: from phi's kept output where the activation offers that (no second phi), else from u."""
        from_output = self.activation.grad_from_output
        return self.activation.grad(cache.u) if from_output is None else from_output(cache.phi_u)

    def tangent_steps(self, x: Tensor) -> list[Callable[[Tensor], Tensor]]:
        """J(x) = d h^{depth-1} / d x as depth - 1 linear maps in evaluation mode: step l takes K tangents of
        h^{l-1}, (K, ..., B, n_{l-1}), to tangents of h^l (forward mode). Batch norm uses its running
        statistics, so each example's J depends on that example alone. Needs depth >= 2."""
        if self.depth < 2:
            raise ValueError("depth 1 has no hidden layer, so no input-output Jacobian")
        h, steps = self.per_replica(x), []
        for l in range(1, self.depth):
            h, cache = self.layer_forward(l, h, training=False)
            steps.append(functools.partial(self.layer_tangent, l, cache))
        return steps

    def layer_tangent(self, l: int, cache: LayerCache, dh: Tensor) -> Tensor:
        """Layer l's Jacobian at its cached point applied to tangents dh of its input: tangents of its output."""
        if self.arch == "plain":
            dz = affine_tangent(dh, cache.affine)
            du = dz if cache.norm is None else normalize_tangent(dz, cache.norm)
            return du * self.phi_slope(cache)
        if l == 1:
            return affine_tangent(dh, cache.affine)
        du = dh if cache.norm is None else normalize_tangent(dh, cache.norm)
        return dh + self.residual_scale * affine_tangent(du * self.phi_slope(cache), cache.affine)

    def input_jacobian(self, x: Tensor) -> Tensor:
        """J(x) = d h^{depth-1} / d x per example, in evaluation mode: (..., B, width, n_in) for x (..., B, n_in);
        explicit, so exact only where its singular values span little (gradlab.jacobian for any depth)."""
        steps = self.tangent_steps(x)
        n_in = x.shape[-1]
        eye = torch.eye(n_in, dtype=x.dtype, device=x.device)
        lead = self.per_replica(x).shape[:-1]
        tangents = eye.reshape(n_in, *[1] * len(lead), n_in).expand(n_in, *lead, n_in)  # (n_in, ..., B, n_in)
        for step in steps:
            tangents = step(tangents)
        return tangents.movedim(0, -1)  # (..., B, width, n_in)

    def per_replica(self, x: Tensor) -> Tensor:
        """x as every replica sees it: inputs (B, n) shared by the replicas of a batched net as (R, B, n)."""
        return x.expand(self.replicas, *x.shape) if self.batched and x.dim() == 2 else x

    def cast(self, dtype: torch.dtype) -> "MLP":
        """A copy of the network with every tensor in dtype (the same values): float64 for exact measurements."""
        twin = copy.copy(self)
        for name in ("weights", "biases", "norm_weights", "norm_biases", "running_means", "running_vars"):
            setattr(twin, name, [t.to(dtype) if t is not None else None for t in getattr(self, name)])
        twin.caches, twin.hidden, twin.deltas = [], [], []
        return twin


def norm_layers(depth: int, arch: str) -> list[int]:
    """The layers that own a norm: plain 1..depth-1 (on z^l), residual 2..depth (on h^{l-1})."""
    return list(range(1, depth)) if arch == "plain" else list(range(2, depth + 1))


def check_architecture(sizes: Sequence[int], replicas: int, arch: str, norm: str) -> None:
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {list(sizes)}")
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch {arch!r}. Expect one of {ARCHS}")
    if norm not in NORM_CHOICES:
        raise ValueError(f"Unknown norm {norm!r}. Expect one of {NORM_CHOICES}")
    if arch == "residual" and (len(sizes) < 3 or len(set(sizes[1:-1])) > 1):
        raise ValueError(f"arch='residual' needs depth >= 2 and hidden layers of one width, got sizes {list(sizes)}")
