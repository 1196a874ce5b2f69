"""Views of the mean-field theory that only the tests use: per-layer ratios and lengths, each assembled from
gradlab.theory's own recursions (stream_lengths, stream_gain, chi), so that the tests check those."""

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gradlab.architecture import get_architecture
from gradlab.theory import Length, chi, layer_scales, length_map, stream_gain, stream_lengths


def preactivation_lengths(
    sizes: Sequence[int], activation: str, init: str, q0: Length, init_gain: float = 1.0, sigma_b2: float = 0.0
) -> list[Length]:
    """[q^1, ..., q^depth] for a plain MLP with layer sizes `sizes` fed inputs of mean squared feature q0."""
    lengths = stream_lengths(sizes, activation, init, q0, init_gain, sigma_b2=sigma_b2)
    sigma_w2 = layer_scales(sizes, init, init_gain)
    if not lengths:
        return [sigma_w2[0] * q0 + sigma_b2]
    return [*lengths, length_map(activation, lengths[-1], sigma_w2[-1], sigma_b2)]


def hidden_second_moments(sizes: Sequence[int], activation: str, init: str, q0s: Sequence[float] | Tensor,
                          init_gain: float = 1.0, arch: str = "plain", residual_scale: float = 1.0,
                          sigma_b2: float = 0.0) -> list[float]:
    """[mean over inputs of E[(h^l)^2], l = 1..depth-1]: avg_sq_mean + avg_var of a wide network at init."""
    q0 = torch.as_tensor(q0s, dtype=torch.float64).reshape(-1)
    lengths = stream_lengths(sizes, activation, init, q0, init_gain, arch, residual_scale, sigma_b2)
    if get_architecture(arch, residual_scale).outputs_phi:
        lengths = [length_map(activation, q, 1.0) for q in lengths]
    return [float(q.mean()) for q in lengths]


def delta_rms_ratios(sizes: Sequence[int], activation: str, init: str, q0: float, init_gain: float = 1.0,
                     arch: str = "plain", residual_scale: float = 1.0, sigma_b2: float = 0.0) -> list[float]:
    """[delta_rms(l) / delta_rms(l+1) for l = 1..depth-1]: plain sqrt(chi) with layer l+1's weights at q^l."""
    block, scales = get_architecture(arch, residual_scale), layer_scales(sizes, init, init_gain)
    lengths = stream_lengths(sizes, activation, init, q0, init_gain, arch, residual_scale, sigma_b2)
    carried = [math.sqrt(stream_gain(block, activation, q, s)) for q, s in zip(lengths[:-1], scales[1:-1], strict=True)]
    carried += [math.sqrt(chi(activation, lengths[-1], scales[-1]))] if lengths else []  # back through the readout
    depth = len(sizes) - 1
    delta_scale = [1.0, *[block.branch] * (depth - 2), 1.0]  # delta_rms(l) / ||dL/dx^l||; delta(depth) is itself
    return [gain * delta_scale[l - 1] / delta_scale[l] for l, gain in enumerate(carried, start=1)]


