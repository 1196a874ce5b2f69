"""Mean-field theory of signal propagation at init (Poole et al. 2016; Schoenholz et al. 2017).

With weights of variance sigma_w^2 / fan_in and biases of variance sigma_b^2 (bias_std^2; 0 by default), a wide
layer's pre-activations are Gaussian with second moment q^l, given by the length map

    q^1 = sigma_w^2 q^0 + sigma_b^2 (q^0: the input's mean squared feature),
    q^l = sigma_w^2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2,   z ~ N(0, 1),

and the back-propagated signal shrinks or grows by sqrt(chi) per layer, chi = sigma_w^2 E_z[phi'(sqrt(q) z)^2]:
delta_rms(l) / delta_rms(l+1) = sqrt(sigma_w^2(l+1) E_z[phi'(sqrt(q^l) z)^2]).

Inputs differ in length, and near-critical networks (GELU or ELU with kaiming init, tanh with xavier) carry
that difference through every layer, so the profile functions also take one q^0 per example and average the
squared signal over them: delta_rms(l)^2 / delta_rms(depth)^2 = mean_b prod_{k=l}^{depth-1} chi(q_b^k).

The expectations fold the Gaussian onto u > 0, E[f(u)] = int_0^inf (f(u) + f(-u)) p_q(u) du, and use the
exp-sinh rule u = sqrt(q) exp(pi/2 sinh t), trapezoidal in t: nodes crowd doubly-exponentially towards the kink
at 0 and spread geometrically into the tails, so one rule of ~270 nodes holds for q from 1e-4 to 1e4 and beyond.
Gauss-Hermite, the usual choice, fails here: phi' of tanh or sigmoid at q = 64 is a bump of width 1/8 that falls
between its nodes (128 nodes: -59% on E[tanh'^2]), and the ELU/SELU kink at 0 costs it about 1%.
tests/test_theory.py checks the rule against Gauss-Hermite where that converges, against a dense reference and
against closed forms.

Residual networks (arch="residual"; the reduced residual network of Yang and Schoenholz 2017, one linear map per
block) carry the stream h^1 = z^1 = x W^1 + b^1, h^l = h^{l-1} + alpha z^l with z^l = phi(h^{l-1}) W^l + b^l for
l = 2..depth-1, and logits = phi(h^{depth-1}) W^depth + b^depth. The branch is uncorrelated with the stream, so

    q^l = q^{l-1} + alpha^2 (sigma_w^2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2)   (q^l: the stream's length),
    ||dL/dh^{l-1}||^2 = ||dL/dh^l||^2 (1 + alpha^2 chi(q^{l-1})),   delta_rms(l) = alpha ||dL/dh^l|| (l = 2..depth-1),

with chi(q^{depth-1}) of the readout's weights from the logits to h^{depth-1}, and delta_rms(1) = ||dL/dh^1||.
Both architectures are one recursion over x^l, the input of the next phi (plain: z^l; residual: h^l):
x^l = skip x^{l-1} + branch phi(x^{l-1}) W^l, delta_rms(l) = branch ||dL/dx^l||, as gradlab.architecture describes
them for the MLP's own forward and backward.
Normalized networks (a norm layer before phi) have no theory here. Depth scales (q*, chi_1, xi_c, the edge of
chaos) are in gradlab.theory_depth.
"""

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from gradlab.activations import get_activation
from gradlab.architecture import Architecture, get_architecture
from gradlab.inits import get_init

STEP = 0.02  # in t: relative error below 1e-8 for every registered activation, q in [1e-4, 1e4]
SMALLEST = 1e-16  # |u| below SMALLEST * min(1, sqrt(q)) adds nothing at double precision
TAIL = 13.0  # nor does |u| above 13 sqrt(q): Gaussian mass below 1e-37
Length = float | Tensor  # one q, or one per example: (B,)


def gaussian_expectation(f: Callable[[Tensor], Tensor], q: Length) -> Length:
    """E[f(u)] for u ~ N(0, q), for each q: the exp-sinh rule on int_0^inf (f(s v) + f(-s v)) p(v) dv, s = sqrt(q)."""
    lengths = torch.as_tensor(q, dtype=torch.float64).reshape(-1)
    valid = torch.isfinite(lengths) & (lengths > 0)
    sigma = torch.where(valid, lengths, 1.0).sqrt()
    lowest = math.asinh(2 / math.pi * math.log(SMALLEST * float((sigma.clamp_max(1) / sigma).min())))
    t = torch.arange(lowest, math.asinh(2 / math.pi * math.log(TAIL)), STEP, dtype=torch.float64)
    v = torch.exp(math.pi / 2 * torch.sinh(t))
    weights = torch.exp(-0.5 * v**2) / math.sqrt(2 * math.pi) * (math.pi / 2) * torch.cosh(t) * v * STEP
    u = sigma[:, None] * v  # (B, nodes)
    values = ((f(u) + f(-u)) * weights).sum(-1)
    values = torch.where(lengths == 0, f(torch.zeros_like(lengths)), values)
    values = torch.where(valid | (lengths == 0), values, math.nan)  # an overflowed length predicts nothing
    return values if isinstance(q, Tensor) else float(values[0])


def weight_scale(init: str, fan_in: int, fan_out: int, init_gain: float = 1.0) -> float:
    """sigma_w^2 = init_gain^2 * Var[W_ij] * fan_in: the gain a layer applies to a squared length."""
    return init_gain**2 * get_init(init).variance(fan_in, fan_out) * fan_in


def length_map(activation: str, q: Length, sigma_w2: float, sigma_b2: float = 0.0) -> Length:
    """q' = sigma_w^2 E_z[phi(sqrt(q) z)^2] + sigma_b^2."""
    phi = get_activation(activation).fn
    return sigma_w2 * gaussian_expectation(lambda u: phi(u) ** 2, q) + sigma_b2


def chi(activation: str, q: Length, sigma_w2: float) -> Length:
    """chi = sigma_w^2 E_z[phi'(sqrt(q) z)^2]: the per-layer gain of the squared back-propagated signal."""
    dphi = get_activation(activation).grad
    return sigma_w2 * gaussian_expectation(lambda u: dphi(u) ** 2, q)


def layer_scales(sizes: Sequence[int], init: str, init_gain: float = 1.0) -> list[float]:
    """[sigma_w^2 of W^l for l = 1..depth]."""
    return [weight_scale(init, n_in, n_out, init_gain) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]


def stream_lengths(sizes: Sequence[int], activation: str, init: str, q0: Length, init_gain: float = 1.0,
                   arch: str = "plain", residual_scale: float = 1.0, sigma_b2: float = 0.0) -> list[Length]:
    """[q^1, ..., q^{depth-1}]: the length of x^l, what phi reads next (plain: z^l; residual: the stream h^l).

    q^1 = sigma_w^2 q^0 + sigma_b^2 and q^l = skip^2 q^{l-1} + branch^2 (sigma_w^2 E[phi(sqrt(q^{l-1}) z)^2] +
    sigma_b^2): a residual stream grows by 1 + alpha^2 sigma_w^2 E[phi^2] / q per block (1 + alpha^2 for ReLU
    with kaiming init and no bias).
    """
    block, scales = get_architecture(arch, residual_scale), layer_scales(sizes, init, init_gain)
    lengths = [scales[0] * q0 + sigma_b2]  # x^1 = z^1 = x W^1 + b^1: no activation before the first layer
    for sigma_w2 in scales[1:-1]:
        branch = length_map(activation, lengths[-1], sigma_w2, sigma_b2)
        lengths.append(float(block.skip) * lengths[-1] + block.branch**2 * branch)
    return lengths[: len(sizes) - 2]


def stream_gain(block: Architecture, activation: str, q: Length, sigma_w2: float) -> Length:
    """||dL/dx^{l-1}||^2 / ||dL/dx^l||^2 = skip^2 + branch^2 chi(q^{l-1}): plain chi, residual 1 + alpha^2 chi."""
    return float(block.skip) + block.branch**2 * chi(activation, q, sigma_w2)


def log10_mean_over_inputs(log_gains: Tensor) -> Tensor:
    """log10 sqrt(mean_b exp(log_gains_b)) along dim 0: the rms over examples, from each one's log squared gain."""
    return 0.5 * (torch.logsumexp(log_gains, 0) - math.log(log_gains.shape[0])) / math.log(10)


def log10_delta_rms_profile(
    sizes: Sequence[int], activation: str, init: str, q0s: Sequence[float] | Tensor, init_gain: float = 1.0,
    arch: str = "plain", residual_scale: float = 1.0, sigma_b2: float = 0.0,
) -> list[float]:
    """[log10 delta_rms(l) / delta_rms(depth) for l = 1..depth], over inputs of lengths q0s (one per example)."""
    block, scales = get_architecture(arch, residual_scale), layer_scales(sizes, init, init_gain)
    lengths = stream_lengths(sizes, activation, init, torch.as_tensor(q0s, dtype=torch.float64).reshape(-1),
                             init_gain, arch, residual_scale, sigma_b2)
    if not lengths:
        return [0.0]
    steps = [torch.log(stream_gain(block, activation, q, s)) for q, s in zip(lengths[:-1], scales[1:-1], strict=True)]
    steps.append(torch.log(chi(activation, lengths[-1], scales[-1])))  # back through the readout to x^{depth-1}
    to_last = torch.stack(steps, 1).flip(1).cumsum(1).flip(1)  # (B, depth-1): ln ||dL/dx^l||^2 / delta(depth)^2
    to_last[:, 1:] += torch.log(torch.tensor(block.branch**2, dtype=torch.float64))  # delta(l) = branch ||dL/dx^l||
    return [*log10_mean_over_inputs(to_last).tolist(), 0.0]


def log10_first_to_last_ratios(
    n_in: int, width: int, n_out: int, depths: Sequence[int], activation: str, init: str,
    q0s: Sequence[float] | Tensor, init_gain: float = 1.0, arch: str = "plain", residual_scale: float = 1.0,
    sigma_b2: float = 0.0,
) -> dict[int, float]:
    """{depth: log10(delta_rms(1) / delta_rms(depth))} for MLPs [n_in, width x (depth - 1), n_out].

    The hidden layers of every depth match the deepest one's, so one length map serves them all; only
    the last step, back through the output layer's weights, differs between depths. Logs, as the ratio
    itself overflows a float past depth ~100 for ReLU with N(0, 1) weights.
    """
    q0, deepest = torch.as_tensor(q0s, dtype=torch.float64).reshape(-1), max(depths)
    block = get_architecture(arch, residual_scale)
    lengths = stream_lengths([n_in, *[width] * (deepest - 1), n_out], activation, init, q0, init_gain, arch,
                             residual_scale, sigma_b2)
    hidden = weight_scale(init, width, width, init_gain)
    output = weight_scale(init, width, n_out, init_gain)
    through_hidden = [torch.zeros_like(q0)]  # ln of the squared gain through the first k blocks, k = 0..deepest-2
    for q in lengths[: deepest - 2]:
        through_hidden.append(through_hidden[-1] + torch.log(stream_gain(block, activation, q, hidden)))
    ratios = {}
    for depth in depths:
        if depth == 1:
            ratios[depth] = 0.0
            continue
        last = torch.log(chi(activation, lengths[depth - 2], output))
        ratios[depth] = float(log10_mean_over_inputs(through_hidden[depth - 2] + last))
    return ratios
