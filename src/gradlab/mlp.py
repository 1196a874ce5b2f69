"""A multi-layer perceptron whose backward pass is written by hand: plain or residual, with or without norms.

Layer l = 1..depth (1 nearest the input) has W^l, b^l, and a layer l >= 2 may have a norm n^l (gamma, beta) on its
input. The architecture (gradlab.architecture) is one recursion over x^l, the input of the next phi:
x^1 = z^1 = x W^1 + b^1;  x^l = skip x^{l-1} + branch z^l with z^l = phi(n^l(x^{l-1})) W^l + b^l;  logits = z^depth.
- plain (skip 0, branch 1): h^l = phi(n^{l+1}(z^l)) is hidden layer l's output, as in the tutorial.
- residual (skip 1, branch alpha; Yang & Schoenholz 2017): the stream h^l = x^l is its output.

With `replicas=R > 1`, R independently initialized copies train as one batched computation: every tensor
gains a leading replica dimension, (R, fan_in, fan_out), and inputs are (R, B, n) (or (B, n), shared).
"""

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gradlab import per_example, stats, tangents
from gradlab.activations import get_activation
from gradlab.architecture import get_architecture
from gradlab.inits import get_init
from gradlab.layers import (
    AffineCache,
    NormCache,
    affine_backward,
    affine_forward,
    get_norm,
    normalize_backward,
    normalize_forward,
    normalize_running,
    update_running,
)
from gradlab.measurement import Block
from gradlab.network import Role, indices
from gradlab.optim import Step


def replica_generators(seed: int, replicas: int) -> list[torch.Generator]:
    """One generator per replica, seeded seed, seed+1, ...: replica r is the run with seed+r."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return [torch.Generator().manual_seed(seed + r) for r in range(replicas)]


def normal_like(t: Tensor, std: float, generators: list[torch.Generator]) -> Tensor:
    """N(0, std^2) in t's shape, dtype and device, replica r's values drawn from generators[r]."""
    return torch.stack([std * torch.randn(t.shape[-1], generator=gen, dtype=t.dtype) for gen in generators]
                       ).reshape(t.shape).to(t.device)


def parameter_roles(depth: int, normed: list[int]) -> list[Role]:
    """What each of an MLP's parameters() is: W^l, then b^l (l = 1..depth), then gamma and beta of each norm (by the
    layer whose rows report it)."""
    layers = range(1, depth + 1)
    return [*[Role("weight", l) for l in layers], *[Role("bias", l) for l in layers],
            *[Role("norm_weight", k) for k in normed], *[Role("norm_bias", k) for k in normed]]


class LayerCache(NamedTuple):
    norm: NormCache | None  # n^l at the layer's input; None without a norm, and at layer 1
    u: Tensor | None  # phi's argument n^l(x^{l-1}); None at layer 1, which applies no phi
    phi_u: Tensor | None  # phi(u), the affine map's input, kept so that phi' can come from phi's output
    affine: AffineCache
    z: Tensor  # the affine output z^l
    out: Tensor  # x^l (the logits at the last layer)


class MLPTrace(NamedTuple):
    """A training-mode forward pass: the logits and every layer's cache, l = 1..depth."""

    logits: Tensor
    layers: list[LayerCache]


class MLPBackprop(NamedTuple):
    grads: list[Tensor]  # the gradient of each of parameters(), in its order
    deltas: list[Tensor]  # dL/dz^l, l = 1..depth
    norm_inputs: list[Tensor | None]  # dL/du^l at each layer's norm output u^l (phi's argument); None without one


class MLP:
    """weights[l-1] is W^l, (fan_in, fan_out); biases[l-1] is b^l, (fan_out,); norm_weights[k-1] and norm_biases[k-1]
    are gamma and beta of the norm that the rows of layer k report (Architecture.row_layer), (width,), or None where
    there is none: plain nets normalize z^k (k = 1..depth-1), residual nets the input of block k's branch
    (k = 2..depth). Biases start at 0, or N(0, bias_std^2). Replica r draws from generators[r], seeded seed + r;
    with replicas > 1 every tensor has a leading replica dimension. The generators go on to draw each replica's
    data order (train).
    """

    family = "mlp"

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
        self.generators = replica_generators(seed, replicas)
        self.sizes, self.replicas, self.residual_scale = list(sizes), replicas, residual_scale
        self.arch, self.architecture = arch, get_architecture(arch, residual_scale)
        self.activation_name, self.activation = activation, get_activation(activation)
        self.norm_name, self.norm = norm, get_norm(norm)
        lead, sample = (replicas,) if self.batched else (), get_init(init).sample
        self.weights, self.biases = [], []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            w = torch.stack([init_gain * sample(fan_in, fan_out, gen, dtype) for gen in self.generators])
            self.weights.append((w if self.batched else w[0]).to(device))
            self.biases.append(torch.zeros((*lead, fan_out), dtype=dtype, device=device))
        if bias_std:  # drawn after every weight, so bias_std changes the biases and leaves the weights as they were
            self.biases = [normal_like(b, bias_std, self.generators) for b in self.biases]
        row_layer = self.architecture.row_layer
        units = {row_layer(l): self.sizes[l - 1] for l in range(2, self.depth + 1)} if self.norm else {}  # x^{l-1}'s
        self.norm_weights = [torch.ones((*lead, units[k]), dtype=dtype, device=device) if k in units else None
                             for k in range(1, self.depth + 1)]
        self.norm_biases = [torch.zeros_like(g) if g is not None else None for g in self.norm_weights]
        tracked = [g if self.norm and self.norm.running else None for g in self.norm_weights]
        self.running_means = [torch.zeros_like(g) if g is not None else None for g in tracked]
        self.running_vars = [torch.ones_like(g) if g is not None else None for g in tracked]
        self.parameter_roles = parameter_roles(self.depth, sorted(units))
        self.positions = {kind: indices(self.parameter_roles, kind) for kind in ("weight", "bias", "norm_weight")}

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def examples_coupled(self) -> bool:
        """Batch norm's batch statistics tie each example's output to the others': no per-example gradient."""
        return self.norm is not None and self.norm.running

    @property
    def batched(self) -> bool:
        """Whether every tensor carries a leading replica dimension (replicas > 1)."""
        return self.replicas > 1

    def parameters(self) -> list[Tensor]:
        """Every trainable tensor: each W^l, then each b^l, then gamma and beta of each norm (by layer)."""
        gammas = [g for g in self.norm_weights if g is not None]
        betas = [b for b in self.norm_biases if b is not None]
        return [*self.weights, *self.biases, *gammas, *betas]

    def roles(self) -> list[Role]:
        """What each of parameters() is, in its order (fixed when the network is built)."""
        return self.parameter_roles

    def normalize(self, l: int, x: Tensor, training: bool) -> tuple[Tensor, NormCache | None]:
        """n^l on layer l's input x (the identity without one); training mode keeps a cache and the running stats."""
        k = self.architecture.row_layer(l) - 1
        gamma, beta = self.norm_weights[k], self.norm_biases[k]
        if gamma is None:
            return x, None
        if self.norm.running and not training:
            return normalize_running(x, gamma, beta, self.running_means[k], self.running_vars[k])
        if self.norm.running:
            update_running(self.running_means[k], self.running_vars[k], x)
        return normalize_forward(x, gamma, beta, self.norm.dim)

    def layer_forward(self, l: int, x: Tensor, training: bool) -> tuple[Tensor, LayerCache]:
        """Layer l from its input x^{l-1} (x itself for l = 1): x^l (the logits for l = depth) and its cache."""
        w, b, phi = self.weights[l - 1], self.biases[l - 1], self.activation.fn
        if l == 1:
            z, affine = affine_forward(x, w, b)
            return z, LayerCache(None, None, None, affine, z, z)
        u, norm = self.normalize(l, x, training)
        phi_u = phi(u)
        z, affine = affine_forward(phi_u, w, b)
        skip, branch = self.architecture.carry(l, self.depth)
        out = x + branch * z if skip else z
        return out, LayerCache(norm, u, phi_u, affine, z, out)

    def infer(self, x: Tensor) -> Tensor:
        """Logits for x, (B, fan_out) or (R, B, fan_out), in evaluation mode (batch norm's running statistics)."""
        for l in range(1, self.depth + 1):
            x, _ = self.layer_forward(l, x, training=False)
        return x

    def trace(self, x: Tensor) -> MLPTrace:
        """The forward pass in training mode (batch statistics) on x, (B, sizes[0]) or (R, B, sizes[0])."""
        layers = []
        for l in range(1, self.depth + 1):
            x, cache = self.layer_forward(l, x, training=True)
            layers.append(cache)
        return MLPTrace(x, layers)

    def backprop(self, trace: MLPTrace, dlogits: Tensor) -> MLPBackprop:
        """The gradient of every tensor of parameters(), in its order, and each dL/dz^l, from dlogits = dL/dlogits."""
        depth, arch = self.depth, self.architecture
        d_weights, d_biases, deltas = [None] * depth, [None] * depth, [None] * depth
        d_gammas, d_betas, dus = [None] * depth, [None] * depth, [None] * depth
        dz, dx = dlogits, None  # dx: dL/dx^{l-1}
        for l in range(self.depth, 0, -1):
            cache, deltas[l - 1] = trace.layers[l - 1], dz
            dphi_u, d_weights[l - 1], d_biases[l - 1] = affine_backward(dz, cache.affine, input_grad=l > 1)
            if l == 1:
                break
            dx_branch, norm_grads, dus[l - 1] = self.input_backward(cache, dphi_u)
            d_gammas[arch.row_layer(l) - 1], d_betas[arch.row_layer(l) - 1] = norm_grads
            dx = dx_branch + dx if arch.carry(l, depth)[0] else dx_branch  # plus the skip's share
            below_branch = arch.carry(l - 1, depth)[1]
            dz = dx if below_branch == 1.0 else below_branch * dx  # x^{l-1} = ... + branch z^{l-1}
        normed = [k for k in range(depth) if self.norm_weights[k] is not None]
        return MLPBackprop([*d_weights, *d_biases, *[d_gammas[k] for k in normed], *[d_betas[k] for k in normed]],
                           deltas, dus)

    def input_backward(self, cache: LayerCache, dphi_u: Tensor) -> tuple[Tensor, tuple, Tensor | None]:
        """From dL/d phi(u) back through phi and the norm at a layer's input: (dL/dx^{l-1} through this branch,
        (dgamma, dbeta) of the norm, or (None, None), and dL/du where there is a norm)."""
        du = dphi_u * self.phi_slope(cache)
        if cache.norm is None:
            return du, (None, None), None
        dx, dgamma, dbeta = normalize_backward(du, cache.norm)
        return dx, (dgamma, dbeta), du

    def phi_slope(self, cache: LayerCache) -> Tensor:
        """phi'(u) at a layer: from phi's kept output where the activation offers that (no second phi), else from u."""
        from_output = self.activation.grad_from_output
        return self.activation.grad(cache.u) if from_output is None else from_output(cache.phi_u)

    def measure(self, trace: MLPTrace, back: MLPBackprop, grad_norms: Tensor, updates: Step) -> Block:
        """Every layer's statistics at this step (gradlab.stats)."""
        return stats.layer_stats(self, trace, back, grad_norms, updates)

    def hidden_outputs(self, trace: MLPTrace) -> list[Tensor]:
        """h^l for l = 1..depth-1, each hidden layer's output: phi(n(x^l)) (plain), or the stream x^l (residual)."""
        if self.architecture.outputs_phi:
            return [cache.phi_u for cache in trace.layers[1:]]
        return [cache.out for cache in trace.layers[:-1]]

    # The tutorial's stateful API: forward keeps the trace for backward, as nn.Module does; the loop passes it.
    def forward(self, x: Tensor) -> Tensor:
        """Logits for x in training mode; keeps the trace for backward() and `hidden`."""
        self.last_trace = self.trace(x)
        self.hidden = self.hidden_outputs(self.last_trace)
        return self.last_trace.logits

    def backward(self, dlogits: Tensor) -> list[Tensor]:
        """The gradients of parameters(), in its order, for the last forward(); keeps each dL/dz^l in `deltas`."""
        if not hasattr(self, "last_trace"):
            raise RuntimeError("backward() needs a forward() first")
        self.last_back = self.backprop(self.last_trace, dlogits)
        self.deltas = self.last_back.deltas
        return self.last_back.grads

    def per_example_grad_sq_norms(self, trace: MLPTrace | None = None, back: MLPBackprop | None = None) -> Tensor:
        """||d loss_b / d theta_k||^2, (..., B, len(parameters())), of the last backward() (or of trace and back),
        where row b of its dlogits is d loss_b / d logits_b (gradlab.per_example); ValueError with batch norm."""
        trace, back = trace or self.last_trace, back or self.last_back
        return per_example.mlp_sq_norms(self, trace, back)

    def tangent_steps(self, x: Tensor) -> list[Callable[[Tensor], Tensor]]:
        """J(x) = d h^{depth-1} / d x as depth - 1 linear maps in evaluation mode (gradlab.tangents)."""
        return tangents.tangent_steps(self, x)

    def input_jacobian(self, x: Tensor) -> Tensor:
        """J(x) = d h^{depth-1} / d x per example, explicit: (..., B, width, n_in) (gradlab.tangents)."""
        return tangents.input_jacobian(self, x)

    def per_replica(self, x: Tensor) -> Tensor:
        """x as every replica sees it: inputs (B, n) shared by the replicas of a batched net as (R, B, n)."""
        return x.expand(self.replicas, *x.shape) if self.batched and x.dim() == 2 else x

    def cast(self, dtype: torch.dtype) -> "MLP":
        """A copy of the network with every tensor in dtype (the same values, tensors of its own): float64 for exact
        measurements."""
        twin = copy.copy(self)
        for name in ("weights", "biases", "norm_weights", "norm_biases", "running_means", "running_vars"):
            setattr(twin, name, [t.to(dtype, copy=True) if t is not None else None for t in getattr(self, name)])
        for kept in ("last_trace", "last_back", "hidden", "deltas"):  # what forward() and backward() kept: self's
            twin.__dict__.pop(kept, None)
        return twin
