"""The input-output Jacobian's singular values (dynamical isometry: Saxe et al. 2014; Pennington et al. 2017).

J(x) = d h^{depth-1} / d x per example, from the network's own hand-written backward (MLP.input_jacobian).
"""

import torch
from torch import Tensor

from gradlab.measurement import Block
from gradlab.mlp import MLP

ISOMETRY_BAND = (0.5, 2.0)  # a singular value in this band passes a signal on within a factor 2
JACOBIAN_METRICS = ("jac_sv_max", "jac_sv_min", "jac_log_sv_mean", "jac_log_sv_std", "jac_isometry", "jac_sv_zero")


def singular_values(net: MLP, x: Tensor) -> Tensor:
    """Each example's singular values of J, largest first: (..., B, min(width, n_in)), in float64."""
    return torch.linalg.svdvals(net.input_jacobian(x).double())


def jacobian_rows(spectra: Tensor) -> Block:
    """Whole-network rows from the spectra (R, B, k) (R = 1 unbatched): the largest and smallest singular
    value, the mean and std of ln s over every singular value of every example, the share in the isometry
    band, and the share exactly 0.

    A ReLU unit that is off for an example removes a direction: J can have singular values exactly 0, a
    point mass that a log scale cannot show. The log statistics are over the nonzero ones (ln 0 would make
    the mean -inf and the std undefined); jac_sv_zero counts the rest.
    """
    flat = spectra.reshape(spectra.shape[0], -1)  # (R, B * k)
    nonzero = flat > 0
    logs = torch.where(nonzero, flat.clamp_min(torch.finfo(flat.dtype).tiny).log(), torch.nan)
    log_mean = logs.nanmean(-1)
    log_std = (logs - log_mean.unsqueeze(-1)).pow(2).nanmean(-1).sqrt()
    low, high = ISOMETRY_BAND
    isometric = ((flat >= low) & (flat <= high)).double().mean(-1)
    zero = (~nonzero).double().mean(-1)
    values = torch.stack([flat.amax(-1), flat.amin(-1), log_mean, log_std, isometric, zero])
    return Block([(None, name) for name in JACOBIAN_METRICS], values)
