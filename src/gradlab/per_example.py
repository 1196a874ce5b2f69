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
            stacked = torch.stack(tensors[start:end])
            runs.append(torch.linalg.vecdot(stacked, stacked))
            start = end
    return runs[0] if len(runs) == 1 else torch.cat(runs)


def mlp_sq_norms(net, trace, back) -> Tensor:
    """(..., B, len(net.parameters())) for a gradlab.MLP: each W^l, b^l, then each norm's gamma and beta."""
    if net.examples_coupled:
        raise ValueError(f"norm={net.norm_name!r} couples the examples of a batch through its statistics: a "
                         "per-example gradient is not defined in training mode")
    deltas = layer_sq_norms(back.deltas)  # (depth, ..., B)
    weights = layer_sq_norms([cache.affine.h for cache in trace.layers]) * deltas
    normed = [l for l in range(net.depth) if trace.layers[l].norm is not None]
    gammas = [sq_norms(back.norm_inputs[l] * trace.layers[l].norm.xhat) for l in normed]
    betas = [sq_norms(back.norm_inputs[l]) for l in normed]
    return torch.cat([weights, deltas, *[g.unsqueeze(0) for g in [*gammas, *betas]]]).movedim(0, -1)


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


def noise_statistics(example_sq_sum: Tensor, mean_grad_sq_norm: Tensor, batch: int) -> dict[str, Tensor]:
    """The gradient's noise across a batch of B examples, from sum_b ||g_b||^2 over its examples and the batch-mean
    gradient's ||G||^2, G = mean_b g_b, for any block of parameters (a layer, the whole network):

    - grad_noise_trace: tr(Sigma) = sum_b ||g_b - G||^2 / (B - 1) = (sum_b ||g_b||^2 - B ||G||^2) / (B - 1), the
      unbiased per-example variance summed over coordinates;
    - gsnr: ||G||^2 / (tr(Sigma) / B), the squared mean against the variance of the batch mean;
    - noise_scale: B_simple = tr(Sigma) / |G_true|^2 (McCandlish et al. 2018), with their unbiased estimate
      |G_true|^2 = ||G||^2 - tr(Sigma) / B of the true gradient's square (E ||G||^2 = |G_true|^2 + tr(Sigma) / B); it
      is negative where a batch cannot tell the gradient from its noise;
    - norm_test: sqrt(tr(Sigma) / (B ||G||^2)), the largest theta for which Byrd et al. 2012's norm test passes, as
      Cockpit computes it (Schneider et al. 2021): 1 / sqrt(gsnr).
    """
    trace = torch.sub(example_sq_sum, mean_grad_sq_norm, alpha=batch) / (batch - 1)
    gsnr = batch * mean_grad_sq_norm / trace
    return {"grad_noise_trace": trace, "gsnr": gsnr, "noise_scale": batch / (gsnr - 1), "norm_test": gsnr.rsqrt()}


NOISE_NAMES = ("grad_noise_trace", "gsnr", "noise_scale", "norm_test")


def noise_block(net, trace, back, grad_norms: Tensor) -> Block:
    """The noise rows (noise_statistics) of a step whose backprop was given dlogits / B, the batch-mean loss's: for
    each layer, over the parameters whose role names it, and for the whole network (layer None); no rows where the
    examples are coupled (batch norm) or the family offers no per-example norms."""
    if not hasattr(net, "per_example_grad_sq_norms") or getattr(net, "examples_coupled", False):
        return Block([], grad_norms.new_zeros((0, net.replicas), dtype=torch.float64))
    per = net.per_example_grad_sq_norms(trace, back)  # (..., B, P), of the loss / B
    batch = per.shape[-2]
    layers, members = layer_membership(tuple(net.roles()), per.device)  # (P, G): each layer's, then all
    sums = torch.matmul(per.sum(-2).to(torch.float64), members) * batch**2  # (..., G): sum_b ||g_b||^2
    mean_sq = torch.matmul(grad_norms.to(torch.float64).square().movedim(0, -1), members)  # (..., G): ||G||^2
    stats = noise_statistics(sums, mean_sq, batch)
    values = torch.stack([stats[name] for name in NOISE_NAMES])  # (4, ..., G)
    keys = [(layer, None, name) for name in NOISE_NAMES for layer in layers]
    return Block(keys, values.movedim(-1, 1).reshape(len(keys), -1))


@functools.cache
def layer_membership(roles: tuple, device: torch.device) -> tuple[list[int | None], Tensor]:
    """The layers the roles name, in order, then None (the whole network), and which parameters each sums:
    (P, G) of 0 and 1, float64."""
    layers = sorted({role.layer for role in roles if role.layer is not None})
    columns = [[float(role.layer == layer) for layer in layers] + [1.0] for role in roles]
    return [*layers, None], torch.tensor(columns, dtype=torch.float64, device=device)
