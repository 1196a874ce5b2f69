"""Needs: the metrics each figure and finding reads, and at which steps, stated once. analysis.records scans the
records for exactly these rows; the catalog and the findings select them by the same names.

Steps: at init (step 0 only), every step, as a profile (step 0 and the last step where every layer is finite), or
every step of the deepest runs only (figure 3 at every layer, figures 8 and 18 at drawn_layers). The whole network's
noise rows at every step (figure 19). A recurrent network's rows on the time axis (analysis.families): state_grad_rms
at init (figure 14) and grad_norm at every step (figure 15).
"""

import numpy as np

DELTA_RMS = "delta_rms"  # at init: figure 1, figure 4's first/last ratio, the bulk ratio, the theory's anchor
GRAD_NORM = "grad_norm"  # at init: figure 2 and its first/last ratio; every step of the deepest runs: figure 3
SATURATION, ACT_STD = "saturation", "act_std"  # profiles: figures 7a and 7b
GSNR = "gsnr"  # profile: figure 7c, the gradient's signal-to-noise ratio per layer (gradlab.per_example)
GRAD_NOISE_TRACE = "grad_noise_trace"  # gradlab.per_example's tr(Sigma)
SIGNAL = ["avg_sq_mean", "avg_var", "branch_avg_var"]  # profiles: figures 9a and 9b
LOSSES = ["batch_loss", "test_loss"]  # every step: figure 5 (both), learning_step (batch_loss)
TRAIN_LOSS = "train_loss"  # every step it was evaluated (epochs' ends, eval_every): figure 19's steps to a target
JACOBIAN_CURVES = ["jac_log_sv_mean", "jac_isometry"]  # every step: figure 11
SHARPNESS = "sharpness"  # every step where measured (curvature.every): figure 17
JACOBIAN_AT_INIT = ["jac_isometry", "jac_log_sv_std"]  # at init: the findings' J columns (analysis.isometry)
UPDATE_RATIO = "update_ratio"  # every step of the deepest runs, at drawn_layers: figure 8
NOISE_ROWS = [GRAD_NOISE_TRACE, GSNR]  # every step, over windows (analysis.records.noise_windows): of the deepest
# runs at drawn_layers and whole (figures 18a and 18b), and of every run's whole network in a batch sweep (figure 19)
STATE_GRAD_RMS = "state_grad_rms"  # at init, per time step: figure 14, the per-step factor, the theory's anchor
TIME_EVERY_STEP = [GRAD_NORM]  # every step, per time step (rows with a time): figure 15

MIN_BATCH_SIZES = 3  # figure 19 is drawn for a sweep over this many batch sizes, which alone reads every run's
# whole-network noise rows (the others only the deepest runs', for figure 18)
AT_INIT = [DELTA_RMS, GRAD_NORM, *JACOBIAN_AT_INIT, STATE_GRAD_RMS, GRAD_NOISE_TRACE]  # tr(Sigma): figure 7d
PROFILES = [SATURATION, ACT_STD, GSNR, *SIGNAL]
EVERY_STEP = [*LOSSES, TRAIN_LOSS, *JACOBIAN_CURVES, SHARPNESS]
MAX_LAYER_LINES = 8  # figure 8's lines per panel


def drawn_layers(depth: int) -> list[int]:
    """The layers figure 8 draws a line for: at most MAX_LAYER_LINES, evenly spread from 1 to depth."""
    return [int(layer) for layer in np.unique(np.linspace(1, depth, min(depth, MAX_LAYER_LINES)).round())]
