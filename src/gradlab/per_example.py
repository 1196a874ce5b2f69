"""Per-example gradient norms from a hand-written backward pass: ||d loss_b / d theta_k||^2 for every example b and
parameter k, without forming a per-example gradient.

A weight used once per example has the per-example gradient h_b d_b^T (its input times its output's delta), whose
squared norm is ||h_b||^2 ||d_b||^2; a bias d_b. A weight used at every step of a sequence has sum_t h_bt d_bt^T,
no longer rank one; its squared norm is still exact from the two Gram matrices over time,
sum_{t,s} (h_bt . h_bs)(d_bt . d_bs), at O(T^2) per example instead of O(n m). A norm layer's gamma has
du_b * xhat_b, its beta du_b, as long as the examples are independent: batch norm's batch statistics couple them,
so there is no per-example gradient to give (ValueError).

Every function takes the trace and backprop of one forward and backward pass; the norms are those of the gradient
backprop was given: with dlogits = d loss_b / d logits_b row by row, the per-example losses' own gradients. Leading
replica dimensions pass through: (..., B, n_parameters).
"""

import functools

import torch
from torch import Tensor

from gradlab.measurement import Block


def outer_sq_norms(h: Tensor, d: Tensor) -> Tensor:
    """||h_b d_b^T||_F^2 = ||h_b||^2 ||d_b||^2 per example, from (..., B, n) and (..., B, m): (..., B)."""
    return h.pow(2).sum(-1) * d.pow(2).sum(-1)


def summed_outer_sq_norms(h: Tensor, d: Tensor) -> Tensor:
    """||sum_t h_bt d_bt^T||_F^2 per example, from (..., B, T, n) and (..., B, T, m): sum over t, s of
    (h_t . h_s)(d_t . d_s), (..., B)."""
    return (torch.matmul(h, h.mT) * torch.matmul(d, d.mT)).sum((-2, -1))


def sq_norms(d: Tensor) -> Tensor:
    """||d_b||^2 per example, (..., B, m) -> (..., B)."""
    return d.pow(2).sum(-1)


def layer_sq_norms(tensors: list[Tensor]) -> Tensor:
    """||t_b||^2 of each of a list of (..., B, n_l) tensors, (len, ..., B): one stack and one reduction for each run
    of consecutive tensors of one shape (an MLP's hidden layers are one run)."""
    runs, start = [], 0
    for end in range(1, len(tensors) + 1):
        if end == len(tensors) or tensors[end].shape != tensors[start].shape:
            runs.append(torch.linalg.vector_norm(torch.stack(tensors[start:end]), dim=-1))  # one kernel, no product
            start = end
    return (runs[0] if len(runs) == 1 else torch.cat(runs)).square()


def mlp_parts(net, trace, back, deltas: Tensor | None = None, inputs: Tensor | None = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """The factors of a gradlab.MLP's per-example norms, each (..., B) per row: ||h_b||^2 of each layer's input and
    ||delta_b||^2 of its output (both (depth, ..., B); `inputs` and `deltas` when the caller has them), and
    ||du_b * xhat_b||^2 then ||du_b||^2 of each norm's gamma and beta ((2 n_norms, ..., B); None without norms).
    ValueError with batch norm."""
    if net.examples_coupled:
        raise ValueError(f"norm={net.norm_name!r} couples the examples of a batch through its statistics: a "
                         "per-example gradient is not defined in training mode")
    deltas = layer_sq_norms(back.deltas) if deltas is None else deltas
    inputs = layer_sq_norms([cache.affine.h for cache in trace.layers]) if inputs is None else inputs
    if net.norm is None:
        return inputs, deltas, None
    normed = [l for l in range(net.depth) if trace.layers[l].norm is not None]
    gammas = [sq_norms(back.norm_inputs[l] * trace.layers[l].norm.xhat) for l in normed]
    betas = [sq_norms(back.norm_inputs[l]) for l in normed]
    return inputs, deltas, torch.stack([*gammas, *betas])


def mlp_sq_norms(net, trace, back) -> Tensor:
    """(..., B, len(net.parameters())) for a gradlab.MLP: each W^l, b^l, then each norm's gamma and beta."""
    inputs, deltas, norms = mlp_parts(net, trace, back)
    return torch.cat([inputs * deltas, deltas, *([] if norms is None else [norms])]).movedim(0, -1)


def mlp_example_sums(net, trace, back, inputs: Tensor | None, deltas: Tensor, delta_sums: Tensor) -> list[Tensor]:
    """sum_b of mlp_sq_norms over the batch without the (B, P) table, as pieces that concatenate to
    (len(net.parameters()), ...): one dot product over the batch for the weights. The caller has the deltas' factors
    of mlp_parts and their sums over the batch, and may have the inputs' (else None)."""
    inputs, deltas, norms = mlp_parts(net, trace, back, deltas, inputs)
    return [torch.linalg.vecdot(inputs, deltas), delta_sums, *([] if norms is None else [norms.sum(-1)])]


def rnn_sq_norms(net, trace, back) -> Tensor:
    """(..., B, 5) for a gradlab.RNN: U and W sum over time (Gram matrices), b = sum_t delta_t, then V and c."""
    da = back.da  # (..., B, T, G width)
    every = net.readout == "every"
    shown = trace.h[..., 1:, :] if every else trace.h[..., -1, :]
    x = trace.x.expand(*da.shape[:-1], trace.x.shape[-1])  # inputs shared by replicas: each replica's own rows
    readout = summed_outer_sq_norms(shown, back.dlogits) if every else outer_sq_norms(shown, back.dlogits)
    readout_bias = sq_norms(back.dlogits.sum(-2) if every else back.dlogits)
    return torch.stack([summed_outer_sq_norms(x, da), summed_outer_sq_norms(trace.h[..., :-1, :], da),
                        sq_norms(da.sum(-2)), readout, readout_bias], dim=-1)


NOISE_NAMES = ("grad_noise_trace", "gsnr", "noise_scale", "norm_test")


def noise_terms(example_sums: list[Tensor], grad_norms: Tensor) -> list[Tensor]:
    """What noise_rows reads, as pieces to concatenate: each parameter's sum_b ||g_b / B||^2 over the examples' own
    gradients g_b at a step whose backprop was given dlogits / B (the batch-mean loss's; `example_sums`, pieces that
    concatenate to (P, ...)), each ||G||^2 of the batch-mean gradient G = mean_b g_b (from grad_norms, (P, ...)), and a
    constant 1. A caller may concatenate them with tensors of its own, to make one float64 tensor of both."""
    return [*example_sums, grad_norms.square(), constant_one(grad_norms.shape[1:], grad_norms.device)]


@functools.cache
def constant_one(replicas: torch.Size, device: torch.device) -> Tensor:
    """noise_terms' 1, shaped like one parameter's row of values: (1,), or (1, R) with replicas."""
    return torch.ones((1, *replicas), device=device)


def noise_rows(roles: list, terms: Tensor, batch: int) -> Block:
    """The gradient's noise across a batch of B examples, from noise_terms concatenated, (2P + 1, R), float64 (the
    map magnifies every rounding where |G_true|^2 is near 0). For each layer, over the parameters whose role names
    it, and for the whole network (layer None):

    - grad_noise_trace: tr(Sigma) = sum_b ||g_b - G||^2 / (B - 1) = (sum_b ||g_b||^2 - B ||G||^2) / (B - 1), the
      unbiased per-example variance summed over coordinates;
    - gsnr: ||G||^2 / (tr(Sigma) / B), the squared mean against the variance of the batch mean;
    - noise_scale: B_simple = tr(Sigma) / |G_true|^2 (McCandlish et al. 2018), with their unbiased estimate
      |G_true|^2 = ||G||^2 - tr(Sigma) / B of the true gradient's square (E ||G||^2 = |G_true|^2 + tr(Sigma) / B); it
      is negative where a batch cannot tell the gradient from its noise;
    - norm_test: sqrt(tr(Sigma) / (B ||G||^2)), the largest theta for which Byrd et al. 2012's norm test passes, as
      Cockpit computes it (Schneider et al. 2021): 1 / sqrt(gsnr).

    Each is a ratio of two linear functions of the terms (noise_map): one matrix product and one division for every
    row, since a measured step pays for each small kernel.
    """
    keys, linear, powers = noise_map(tuple(roles), batch, terms.device)
    over, under = torch.mm(linear, terms).chunk(2)  # each (4G, R)
    return Block(keys, torch.div(over, under).pow_(powers))  # the norm test: a square root


def noise_block(net, trace, back, grad_norms: Tensor) -> Block:
    """noise_rows from any family's per_example_grad_sq_norms; no rows where the examples are coupled (batch norm)
    or the family offers no per-example norms."""
    if not hasattr(net, "per_example_grad_sq_norms") or getattr(net, "examples_coupled", False):
        return Block([], grad_norms.new_zeros((0, net.replicas), dtype=torch.float64))
    per = net.per_example_grad_sq_norms(trace, back)  # (..., B, P), of the loss / B
    terms = torch.cat(noise_terms([per.sum(-2).movedim(-1, 0)], grad_norms)).double()
    return noise_rows(net.roles(), terms.reshape(len(terms), -1), per.shape[-2])


@functools.cache
def noise_map(roles: tuple, batch: int, device: torch.device) -> tuple[list, Tensor, Tensor]:
    """noise_rows' keys (each name for the layers the roles name, in order, then None: the whole network); its
    numerators and denominators as one linear map, (8G, 2P + 1), of noise_terms: each parameter's sum_b ||g_b / B||^2,
    then each ||G||^2, then a constant 1; and the power each ratio is raised to (1, and 1/2 for the norm test),
    (4G, 1). Per layer, with tr(Sigma) = (B^2 sum - B ||G||^2) / (B - 1) and N = tr(Sigma) / B, the ratios are
    tr(Sigma) / 1, ||G||^2 / N, tr(Sigma) / (||G||^2 - N) and N / ||G||^2 (the norm test, squared)."""
    layers = sorted({role.layer for role in roles if role.layer is not None})
    members = torch.tensor([[float(role.layer == layer) for layer in layers] + [1.0] for role in roles],
                           dtype=torch.float64).T  # (G, P)
    zeros, no_constant = torch.zeros_like(members), torch.zeros(len(members), 1, dtype=torch.float64)
    trace = torch.cat([members * batch**2 / (batch - 1), -members * batch / (batch - 1), no_constant], dim=1)
    mean_sq = torch.cat([zeros, members, no_constant], dim=1)
    noise, constant = trace / batch, torch.cat([zeros, zeros, no_constant + 1], dim=1)
    over = torch.cat([trace, mean_sq, trace, noise])
    under = torch.cat([constant, noise, mean_sq - noise, mean_sq])
    keys = [(layer, None, name) for name in NOISE_NAMES for layer in [*layers, None]]
    linear = torch.cat([over, under]).to(device)
    powers = torch.tensor([1.0] * 3 * len(members) + [0.5] * len(members), dtype=torch.float64, device=device)
    return keys, linear, powers.unsqueeze(1)
