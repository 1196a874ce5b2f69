"""The input-output Jacobian's singular values (dynamical isometry: Saxe et al. 2014; Pennington et al. 2017).

J(x) = d h^{depth-1} / d x per example, as the product of the hidden layers' own Jacobians (the network's
tangent_steps: gradlab.network.HasJacobian), taken in float64 whatever the network's dtype and never formed
explicitly (gradlab.product_svd): every singular value comes out to about 1e-12 relative accuracy at any depth.
"""

import math

import torch
from torch import Tensor

from gradlab.measurement import Block, whole
from gradlab.network import HasJacobian
from gradlab.product_svd import product_log_singular_values

ISOMETRY_BAND = (0.5, 2.0)  # a singular value in this band passes a signal on within a factor 2
JACOBIAN_METRICS = ("jac_sv_max", "jac_sv_min", "jac_log_sv_mean", "jac_log_sv_std", "jac_isometry", "jac_sv_zero")


def log_singular_values(net: HasJacobian, x: Tensor) -> Tensor:
    """Each example's ln s of J, largest first: (..., B, min(n_in, widths)), float64; -inf for an exact zero (a
    direction some layer maps to exactly 0, as a ReLU unit that is off does)."""
    exact = net.cast(torch.float64)
    x = x.to(torch.float64)
    steps = exact.tangent_steps(x)
    lead = net.per_replica(x).shape[:-1]
    n_in = x.shape[-1]
    directions = torch.eye(n_in, dtype=torch.float64, device=x.device).expand(*lead, n_in, n_in)
    # a step maps tangents (K, ..., B, n); the product keeps directions as columns, (..., B, n, K)
    factors = [lambda u, step=step: step(u.movedim(-1, 0)).movedim(0, -1) for step in steps]
    return product_log_singular_values(factors, directions)


def jacobian_rows(log_spectra: Tensor) -> Block:
    """Whole-network rows from the spectra as ln s, (R, B, k) (R = 1 unbatched): the largest and smallest singular
    value, the mean and std of ln s over every singular value of every example, the share in the isometry band,
    and the share exactly 0.

    A ReLU unit that is off for an example removes a direction: J can have singular values exactly 0, a point
    mass that a log scale cannot show. The log statistics are over the nonzero ones (ln 0 would make the mean
    -inf and the std undefined); jac_sv_zero counts the rest. jac_sv_min is e^{min ln s}: 0 below float64's
    range, where jac_log_sv_mean still holds the logs.
    """
    flat = log_spectra.reshape(log_spectra.shape[0], -1)  # (R, B * k)
    nonzero = flat.isfinite()
    logs = torch.where(nonzero, flat, torch.nan)
    log_mean = logs.nanmean(-1)
    log_std = (logs - log_mean.unsqueeze(-1)).pow(2).nanmean(-1).sqrt()
    low, high = (math.log(edge) for edge in ISOMETRY_BAND)
    isometric = ((flat >= low) & (flat <= high)).double().mean(-1)
    zero = (~nonzero).double().mean(-1)
    values = torch.stack([flat.amax(-1).exp(), flat.amin(-1).exp(), log_mean, log_std, isometric, zero])
    return Block(whole(*JACOBIAN_METRICS), values)
