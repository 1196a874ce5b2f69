"""The report's figures, in order: which rows each one gets, how its panels are laid out, and its caption. The
per-layer figures (1 to 4, 7 to 9) get the per-layer rows and runs of analysis.families, figures 5 and 11 the whole
network's rows of every family, and the figures through time (14, 15) its time-axis rows; these two are drawn only
for a sweep with runs of a family drawn through time (a recurrent network)."""

import functools
from collections.abc import Callable
from typing import NamedTuple

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis import (
    figures_batch,
    figures_init,
    figures_jacobian,
    figures_length,
    figures_noise,
    figures_signal,
    figures_time,
    figures_trainability,
    figures_training,
    needs,
)
from analysis.catalog_instruments import figure_7c, figure_7d, figure_17, figure_18, figure_19, has_sharpness
from analysis.families import layer_rows, layer_runs, time_rows, time_runs, whole_network_rows
from analysis.layout import facet_grid, facet_wrap, no_data, panel_grid
from analysis.predict import NO_THEORY_FOR_NORMS
from analysis.predict_time import NO_THEORY_FOR_LSTM, PREDICTED
from analysis.selections import MAX_HEATMAP_PANELS, at_init, deepest_configs, deepest_title
from analysis.style import ordered
from gradlab.activations import ACTIVATIONS

NO_JACOBIAN = "no Jacobian measured: jacobian.examples=0, depth 1, or runs recorded before J was measured"
AT_INIT_ONLY = ("J measured at step 0 only (the default): its spectrum at init is figure 10; "
                "jacobian.every_epoch=true measures it at every epoch's end too")
NO_GRID = ("no trainability map: it needs plain networks without a norm that sweep both depth and sigma_w^2 "
           "(init, init_gain) at one activation and sigma_b^2")


class Inputs(NamedTuple):
    runs: pd.DataFrame  # one row per run (load.Sweep.runs)
    metrics: pd.DataFrame  # tidy metrics with time, net, facets, swept keys and labels, and delta_rms_predicted rows
    ratios: pd.DataFrame  # figure 4's measured and theory rows (figures_init.ratio_rows)
    config_keys: list[str]  # the runs' config columns (load.Sweep.config_keys)
    spectra: pd.DataFrame | None = None  # J's singular values at init (load.Sweep.spectra)
    trainability: pd.DataFrame | None = None  # figure 12's rows (trainability.trainability_rows)
    heatmap: pd.DataFrame | None = None  # figure 3's cells, seeds averaged (load.Sweep.heatmap)


class FigureSpec(NamedTuple):
    name: str  # the PNG's file name, without .png
    title: str
    caption: str  # one sentence: what to look for
    build: Callable[[Inputs], Figure]
    drawn_for: Callable[[Inputs], bool] | None = None  # whether a sweep gets it; None: every sweep


def figure_3(inputs: Inputs) -> Figure:
    """The heatmap of the deepest runs' grad_norm, from its cells (load.seed_mean_heatmap) where given."""
    rows = deepest_configs(inputs.metrics if inputs.heatmap is None else inputs.heatmap, [needs.GRAD_NORM])
    return facet_wrap(rows, figures_training.grad_norm_heatmap, by="panel", title=deepest_title, share=False)


def figure_4(inputs: Inputs) -> Figure:
    ratios = inputs.ratios
    order = ordered(ratios.activation, ACTIVATIONS)
    ratios = ratios.iloc[ratios.activation.map(order.index).argsort(kind="stable")]
    return facet_wrap(ratios, figures_init.delta_ratio_against_depth, by="activation")


def loss_rows(inputs: Inputs) -> pd.DataFrame:
    """Figure 5's rows: the losses, each with its run's chance level and loss (from the facts the run recorded)."""
    rows, runs = whole_network_rows(inputs.metrics, needs.LOSSES), inputs.runs.set_index("run")
    return rows.assign(chance_loss=rows.run.map(runs.chance_loss).astype(float),
                       loss_in_force=rows.run.map(runs.loss_in_force))


def figure_6(inputs: Inputs) -> Figure:
    """One heat map of every run's final test accuracy, its size following its cells (a cell holds '0.93 / 1/3
    diverged'), wide enough on the left for the rows' labels."""
    runs = layer_runs(inputs.runs)  # a recurrent run's score against its length is figure 16
    table = figures_training.accuracy_table(runs, inputs.config_keys)
    rows, columns = table.values.shape
    longest = max(len(label) for label in table.values.index)
    fig, axes = panel_grid(1, 1, (0, 0), panel=(max(2.6, 0.95 * columns + 0.9), max(1.5, 0.34 * rows)),
                           margins={"left": 0.55 + 0.075 * longest, "right": 0.5})
    figures_training.accuracy_heatmap(runs, axes[0, 0], inputs.config_keys)
    return fig


def figure_8(inputs: Inputs) -> Figure:
    rows = deepest_configs(inputs.metrics, [needs.UPDATE_RATIO])
    return facet_wrap(rows, figures_training.update_ratio_curves, by="panel", title=deepest_title)


def signal_figure(inputs: Inputs, draw: Callable[[pd.DataFrame, Axes], None]) -> Figure:
    """Figure 9a or 9b over every run that measured its signal (records made before avg_var have none)."""
    rows = layer_rows(inputs.metrics, needs.SIGNAL)
    return facet_grid(rows, draw) if not rows.empty else no_data(figures_signal.NO_SIGNAL)


def figure_10(inputs: Inputs) -> Figure:
    spectra = inputs.spectra
    if spectra is None or spectra.empty:
        return no_data(figures_jacobian.NO_SPECTRA)
    bins = figures_jacobian.spectrum_bins(spectra.singular_value.to_numpy(float))  # shared by the panels
    return facet_grid(spectra, functools.partial(figures_jacobian.spectrum_histograms, bins=bins))


def jacobian_figure(inputs: Inputs, draw: Callable[[pd.DataFrame, Axes], None]) -> Figure:
    """Figure 11a or 11b over every run that measured J more than once (facet_grid shares the panels' axes)."""
    rows = whole_network_rows(inputs.metrics, needs.JACOBIAN_CURVES)
    if rows.empty:
        return no_data(NO_JACOBIAN)
    if rows.step.nunique() < 2:
        return no_data(AT_INIT_ONLY)
    return facet_grid(rows, draw)


def figure_12(inputs: Inputs) -> Figure:
    rows = inputs.trainability
    if rows is None or rows.empty:
        return no_data(NO_GRID)
    return facet_wrap(rows, figures_trainability.trainability_map, by="panel", share=False,
                      title=lambda rows: rows.panel.iloc[0].replace("sigma_b^2", r"$\sigma_b^2$"))


def has_layer_runs(inputs: Inputs) -> bool:
    """Whether the sweep has runs of a family drawn by layer (the MLP's figures 1-4 and 7-12)."""
    return not layer_runs(inputs.runs).empty


def has_time_runs(inputs: Inputs) -> bool:
    """Whether the sweep has runs of a family drawn through time (figures 14 and 15)."""
    return not time_runs(inputs.runs).empty


def with_cell(rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """rows with their run's cell (vanilla, lstm) where the runs have one: figure 14 says which panels lack theory."""
    return rows.assign(cell=rows.run.map(runs.set_index("run").cell).astype(object)) if "cell" in runs else rows


def figure_14(inputs: Inputs) -> Figure:
    rows = time_rows(inputs.metrics, [needs.STATE_GRAD_RMS, PREDICTED])
    rows = with_cell(rows[rows.step == 0], inputs.runs)
    return facet_grid(rows, figures_time.state_grad_rms_at_init)


def longest_configs(metrics: pd.DataFrame) -> pd.DataFrame:
    """grad_norm's time-axis rows of the runs with the most time steps, one panel (seeds averaged) per configuration,
    at most MAX_HEATMAP_PANELS."""
    rows = time_rows(metrics, needs.TIME_EVERY_STEP)
    longest = rows[rows.run.map(rows.groupby("run").time.max()) == rows.time.max()]
    return longest[longest.panel.isin(list(longest.panel.unique())[:MAX_HEATMAP_PANELS])]


def longest_title(rows: pd.DataFrame) -> str:
    return f"{rows.panel.iloc[0]} · T = {int(rows.time.max())}"


def figure_15(inputs: Inputs) -> Figure:
    return facet_wrap(longest_configs(inputs.metrics), figures_time.grad_norm_over_time, by="panel",
                      title=longest_title, share=False)


def figure_16(inputs: Inputs) -> Figure:
    rows = figures_length.length_rows(inputs.runs, inputs.config_keys)
    return facet_wrap(rows, figures_length.score_against_length, by="dataset", share=False,
                      title=lambda rows: f"dataset={rows.dataset.iloc[0]}")


def drawn_figures(inputs: Inputs) -> list[FigureSpec]:
    """The figures this sweep gets, in order: every one but those through time where it has no recurrent runs."""
    return [spec for spec in FIGURES if spec.drawn_for is None or spec.drawn_for(inputs)]


FIGURES = [
    FigureSpec("1_delta_rms_at_init", "1. Back-propagated signal at initialization",
               "Read each panel from right (output) to left (input): a line that falls to the left is a vanishing "
               "gradient, one that rises is exploding, the dashed black line is what mean-field theory predicts for "
               f"plain and residual networks ({NO_THEORY_FOR_NORMS}: their panels have none), and a line that "
               "stops short of layer 1 underflowed to exactly 0 (float32 ends near 1e-45).",
               lambda i: facet_grid(at_init(i.metrics, [needs.DELTA_RMS, "delta_rms_predicted"]),
                                    figures_init.delta_rms_at_init), has_layer_runs),
    FigureSpec("2_grad_norm_at_init", "2. Weight-gradient norm at initialization",
               "Compare with figure 1: the weight gradient dL/dW = h^T delta also scales with the activations h, "
               "so it can stay flat across layers while delta vanishes.",
               lambda i: facet_grid(at_init(i.metrics, [needs.GRAD_NORM]), figures_init.grad_norm_at_init),
               has_layer_runs),
    FigureSpec("3_grad_norm_heatmap", "3. Weight-gradient norm over layers and training steps (deepest runs)",
               "Watch whether the dark band at the input side (low layers) fills in as training proceeds or stays "
               "starved for the whole run; each panel has its own color scale, and gray cells are exactly 0 "
               "(underflow) or not finite.",
               figure_3, has_layer_runs),
    FigureSpec("4_delta_ratio_vs_depth", "4. First-to-last-layer ratio of delta_rms against depth",
               "A straight line means a constant factor per layer; its slope is log10 of the per-layer ratio, "
               f"and the black lines show the theory's slope ({NO_THEORY_FOR_NORMS}).",
               figure_4, has_layer_runs),
    FigureSpec("5_loss_curves", "5. Training and test loss",
               "Deep networks whose signal vanished sit on the dashed chance level (ln 10 = 2.3 for ten classes, "
               "from the classes each run recorded); all panels share one log scale, so a flat line is flat. A red "
               "cross marks the step where a diverged run stopped (its thin line), a red triangle on the top edge "
               "one whose loss was already off the scale.",
               lambda i: facet_grid(loss_rows(i), figures_training.loss_curves)),
    FigureSpec("6_final_accuracy", "6. Final test accuracy",
               "Read each row left to right as the network deepens: the cells that fall to chance (0.1 for ten "
               "classes) are the configurations whose gradient did not reach the first layers.",
               figure_6, has_layer_runs),
    FigureSpec("7a_saturation", "7a. Saturated (or dead) hidden units",
               "Thin dashed lines are at init and thick solid ones at the end: a layer near 1 passes almost no "
               "gradient back (sigmoid/tanh in their flat tails, ReLU units that output 0).",
               lambda i: facet_grid(layer_rows(i.metrics, [needs.SATURATION]), figures_training.saturation_profile),
               has_layer_runs),
    FigureSpec("7b_act_std", "7b. Spread of the hidden activations",
               "Activations whose spread shrinks or grows geometrically with depth are the forward-pass face of "
               "the same problem; compare their init (thin, dashed) and end (thick, solid) profiles.",
               lambda i: facet_grid(layer_rows(i.metrics, [needs.ACT_STD]), figures_training.act_std_profile),
               has_layer_runs),
    FigureSpec("7c_gsnr", "7c. The gradient's signal-to-noise ratio per layer",
               "Thin dashed lines are at init and thick solid ones at the end: a layer below the dashed 1 gets a "
               "batch gradient whose noise across examples outweighs its mean, so its steps are mostly noise, even "
               "where its gradient has not vanished (gradlab.per_example; no rows with batch norm).",
               figure_7c, has_layer_runs),
    FigureSpec("7d_noise_at_init", "7d. The gradient's signal and its noise per layer at initialization",
               "Solid lines are the batch-mean gradient's norm ||G|| of each layer, dashed ones its noise across "
               "batches, sqrt(tr(Sigma) / B): where both fall toward the input side together, the vanishing gradient "
               "is small but not drowned (their squared ratio is figure 7c's GSNR); where the solid line falls below "
               "the dashed one, that layer's steps are mostly noise.",
               figure_7d, has_layer_runs),
    FigureSpec("8_update_ratio", "8. Update ratio per layer during training (deepest runs)",
               "Layers far below the dashed 1e-3 guide barely move, layers far above it change too fast; light "
               "lines are near the input, dark near the output, on one log scale for all panels.",
               figure_8, has_layer_runs),
    FigureSpec("9a_signal_sq_mean", "9a. Signal propagation: squared mean of the hidden units",
               "Thin dashed lines are at init and thick solid ones at the end: an avg_sq_mean that climbs toward "
               "avg_var (9b) "
               "means every example looks alike to the layer, its shared mean drowning what tells them apart.",
               lambda i: signal_figure(i, figures_signal.sq_mean_profile), has_layer_runs),
    FigureSpec("9b_signal_var", "9b. Signal propagation: variance of the hidden units",
               "A residual stream's variance grows about (1 + alpha^2) per block with ReLU and kaiming init (a "
               "straight line on this log scale; the residual branches alpha z, with circles, follow it), while a "
               "plain network with a norm, or with SELU, keeps it flat and of order 1.",
               lambda i: signal_figure(i, figures_signal.var_profile), has_layer_runs),
    FigureSpec("10_jacobian_spectra", "10. Singular values of the input-output Jacobian at initialization",
               "Read each panel's outlines from light (shallow) to dark (deep), on one axis for all panels: a "
               "spectrum that stays piled up in the gold band [0.5, 2] around s = 1 as depth grows is dynamical "
               "isometry (orthogonal weights at the edge of chaos), while one that spreads over more decades with "
               "depth amplifies some input directions and crushes others, as Gaussian weights and ReLU do "
               "(Pennington et al. 2017). The legend gives each spectrum's share in the band, and the shares "
               "beyond the axis (at most 24 decades wide) or exactly 0.",
               figure_10, has_layer_runs),
    FigureSpec("11a_jacobian_log_sv_mean", "11a. Mean log singular value of the Jacobian during training",
               "Where a line starts is the network's average log gain from input to last hidden layer at init; watch "
               "whether training pulls it toward 0 (the gray line, isometric on average) or leaves it decades below; "
               "a red cross marks the step where a run diverged, at its last measured value.",
               lambda i: jacobian_figure(i, figures_jacobian.log_sv_mean_curves), has_layer_runs),
    FigureSpec("11b_jacobian_isometry", "11b. Share of the Jacobian's singular values within a factor 2 of 1",
               "Near 1 means every input direction reaches the last hidden layer within a factor 2 (dynamical "
               "isometry), near 0 that almost all are amplified or crushed further; compare how the lines move with "
               "training.",
               lambda i: jacobian_figure(i, figures_jacobian.isometry_curves), has_layer_runs),
    FigureSpec("12_trainability", "12. Trainability against the depth scale of signal propagation",
               "Cells below the white 6 xi_c curve should train and cells above it should not (Schoenholz et al. "
               "2017), the deepest trainable networks sitting at the dashed edge of chaos; red outlines mark cells on "
               "the other side of the curve than predicted (trainable: test accuracy above chance plus half the way "
               "to the panel's best cell).",
               figure_12, has_layer_runs),
    FigureSpec("14_state_grad_rms_through_time", "14. Back-propagated state through time at initialization",
               "Read each panel from right (the readout at step T) to left (the first input): a line that falls to "
               "the left is a gradient vanishing through time, one that rises is exploding; the dashed black line "
               "is what mean-field theory predicts for a vanilla cell, sqrt(sigma_w^2 E[phi'(a_t)^2]) per step "
               f"({NO_THEORY_FOR_LSTM}, nor for an identity W or readout=every: their panels have none).",
               figure_14, has_time_runs),
    FigureSpec("15_grad_norm_time_heatmap", "15. Each time step's share of the recurrent weights' gradient over "
               "training (longest runs)",
               "Each cell is ||h_{t-1}^T delta_t||, what step t adds to dL/dW: watch whether the early steps (bottom) "
               "stay dark, the long-range dependencies starved of gradient, or fill in as training proceeds; each "
               "panel has its own color scale, and gray cells are exactly 0 or not finite.",
               figure_15, has_time_runs),
    FigureSpec("16_score_vs_length", "16. Final score against sequence length",
               "Each line is one recurrent configuration trained at several lengths T: a line that climbs to the "
               "dashed baseline (what a network that learned nothing from its inputs scores) as T grows is one whose "
               "gradient no longer reaches the early steps; error bars span the seeds.",
               figure_16, has_time_runs),
    FigureSpec("17_sharpness", "17. Sharpness: the top eigenvalue of the loss Hessian during training",
               "Under full-batch gradient descent the sharpness rises during training (progressive sharpening) until "
               "it reaches the dashed edge of stability, 2 / lr (with momentum, (2 + 2 momentum) / lr), and then "
               "hovers there while the loss goes on falling, though not monotonically (Cohen et al. 2021).",
               figure_17, has_sharpness),
    FigureSpec("18a_gsnr_over_training", "18a. The GSNR per layer during training (deepest runs)",
               "Each line is one layer's B ||G||^2 / tr(Sigma) at the measured steps (light: input side, dark: "
               "output; dotted black: the whole network): below the dashed 1 its batch gradient is mostly noise.",
               lambda i: figure_18(i, figures_noise.gsnr_curves), has_layer_runs),
    FigureSpec("18b_noise_scale_over_training", "18b. The gradient noise scale per layer during training "
               "(deepest runs)",
               "B_simple = tr(Sigma) / |G|^2 of one batch, per layer (dotted black: the whole network), where it is "
               "positive: McCandlish et al.'s critical batch size grows as the loss falls, and a batch much smaller "
               "than it steps mostly on noise.",
               lambda i: figure_18(i, figures_noise.noise_scale_curves), has_layer_runs),
    FigureSpec("19_batch_scaling", "19. Steps to a target loss against batch size (McCandlish et al. 2018)",
               "With each batch size's best learning rate, the steps halve as the batch doubles (dotted gray) while "
               "B is below the critical batch size and stop falling beyond it; the blue fit S_min + E_min / B gives "
               "B_crit, the dashed red line the noise scale B_simple measured on the way to the target (right: over "
               "training, positive windows only).",
               figure_19, figures_batch.has_batch_sweep),
]
