"""The report's figures, in order: which rows each one gets, how its panels are laid out, and its caption."""

import functools
from collections.abc import Callable
from typing import NamedTuple

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis import figures_init, figures_signal, figures_training
from analysis.predict import NO_THEORY_FOR_NORMS
from analysis.style import facet_grid, facet_wrap, no_data, ordered
from gradlab.activations import ACTIVATIONS

MAX_HEATMAP_PANELS = 12


class Inputs(NamedTuple):
    runs: pd.DataFrame  # one row per run (load.Sweep.runs)
    metrics: pd.DataFrame  # tidy metrics with facets, swept keys and labels, and the delta_rms_predicted rows
    ratios: pd.DataFrame  # figure 4's measured and theory rows (figures_init.ratio_rows)
    config_keys: list[str]  # the runs' config columns (load.Sweep.config_keys)


class FigureSpec(NamedTuple):
    name: str  # the PNG's file name, without .png
    title: str
    caption: str  # one sentence: what to look for
    build: Callable[[Inputs], Figure]


def deepest_configs(metrics: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Rows of the deepest runs, one panel (seeds averaged) per configuration, at most MAX_HEATMAP_PANELS."""
    deepest = metrics[(metrics.depth == metrics.depth.max()) & metrics.name.isin(names)]
    return deepest[deepest.panel.isin(list(deepest.panel.unique())[:MAX_HEATMAP_PANELS])]


def deepest_title(rows: pd.DataFrame) -> str:
    return f"{rows.panel.iloc[0]} · depth {int(rows.depth.iloc[0])}"


def by_depth_title(rows: pd.DataFrame) -> str:
    return f"depth {int(rows.depth.iloc[0])}"


def at_init(inputs: Inputs, names: list[str]) -> pd.DataFrame:
    return inputs.metrics[(inputs.metrics.step == 0) & inputs.metrics.name.isin(names)]


def figure_4(inputs: Inputs) -> Figure:
    ratios = inputs.ratios
    order = ordered(ratios.activation, ACTIVATIONS)
    ratios = ratios.iloc[ratios.activation.map(order.index).argsort(kind="stable")]
    return facet_wrap(ratios, figures_init.delta_ratio_against_depth, by="activation", ncols=3)


def figure_6(inputs: Inputs) -> Figure:
    runs = inputs.runs.sort_values("depth", kind="stable")
    draw = functools.partial(figures_training.accuracy_heatmap, config_keys=inputs.config_keys)
    return facet_wrap(runs, draw, by="depth", ncols=3, title=by_depth_title)


def figure_8(inputs: Inputs) -> Figure:
    rows = deepest_configs(inputs.metrics, ["update_ratio"])
    return facet_wrap(rows, figures_training.update_ratio_curves, by="panel", ncols=3, title=deepest_title)


def signal_figure(inputs: Inputs, draw: Callable[[pd.DataFrame, Axes], None]) -> Figure:
    """Figure 9a or 9b over every run that measured its signal (records made before avg_var have none)."""
    rows = inputs.metrics[inputs.metrics.name.isin(figures_signal.SIGNAL_METRICS)]
    return facet_grid(rows, draw) if not rows.empty else no_data(figures_signal.NO_SIGNAL)


FIGURES = [
    FigureSpec("1_delta_rms_at_init", "1. Back-propagated signal at initialization",
               "Read each panel from right (output) to left (input): a line that falls to the left is a vanishing "
               "gradient, one that rises is exploding, the thin black line is what mean-field theory predicts for "
               f"plain and residual networks ({NO_THEORY_FOR_NORMS}: their panels have none), and a line that "
               "stops short of layer 1 underflowed to exactly 0 (float32 ends near 1e-45).",
               lambda i: facet_grid(at_init(i, ["delta_rms", "delta_rms_predicted"]),
                                    figures_init.delta_rms_at_init)),
    FigureSpec("2_grad_norm_at_init", "2. Weight-gradient norm at initialization",
               "Compare with figure 1: the weight gradient dL/dW = h^T delta also scales with the activations h, "
               "so it can stay flat across layers while delta vanishes.",
               lambda i: facet_grid(at_init(i, ["grad_norm"]), figures_init.grad_norm_at_init)),
    FigureSpec("3_grad_norm_heatmap", "3. Weight-gradient norm over layers and training steps (deepest runs)",
               "Watch whether the dark band at the input side (low layers) fills in as training proceeds or stays "
               "starved for the whole run; each panel has its own color scale, and gray cells are exactly 0 "
               "(underflow) or not finite.",
               lambda i: facet_wrap(deepest_configs(i.metrics, ["grad_norm"]), figures_training.grad_norm_heatmap,
                                    by="panel", ncols=3, title=deepest_title)),
    FigureSpec("4_delta_ratio_vs_depth", "4. First-to-last-layer ratio of delta_rms against depth",
               "A straight line means a constant factor per layer; its slope is log10 of the per-layer ratio, "
               f"and the black lines show the theory's slope ({NO_THEORY_FOR_NORMS}).",
               figure_4),
    FigureSpec("5_loss_curves", "5. Training and test loss",
               "Deep networks whose signal vanished sit at the chance-level loss (ln 10 = 2.3 for ten classes); "
               "a red cross marks where a diverged run stopped.",
               lambda i: facet_grid(i.metrics[i.metrics.name.isin(["batch_loss", "test_loss"])],
                                    figures_training.loss_curves)),
    FigureSpec("6_final_accuracy", "6. Final test accuracy",
               "Find the cells that stay near chance (0.1 for ten classes) as depth grows: those are the "
               "configurations whose gradient did not reach the first layers.",
               figure_6),
    FigureSpec("7a_saturation", "7a. Saturated (or dead) hidden units",
               "Thin lines are at init and thick ones at the end: a layer near 1 passes almost no gradient back "
               "(sigmoid/tanh in their flat tails, ReLU units that output 0).",
               lambda i: facet_grid(i.metrics[i.metrics.name == "saturation"], figures_training.saturation_profile)),
    FigureSpec("7b_act_std", "7b. Spread of the hidden activations",
               "Activations whose spread shrinks or grows geometrically with depth are the forward-pass face of "
               "the same problem; compare their init (thin) and end (thick) profiles.",
               lambda i: facet_grid(i.metrics[i.metrics.name == "act_std"], figures_training.act_std_profile)),
    FigureSpec("8_update_ratio", "8. Update ratio per layer during training (deepest runs)",
               "Layers far below the dashed 1e-3 guide barely move, layers far above it change too fast; light "
               "lines are near the input, dark near the output.",
               figure_8),
    FigureSpec("9a_signal_sq_mean", "9a. Signal propagation: squared mean of the hidden units",
               "Thin lines are at init and thick ones at the end: an avg_sq_mean that climbs toward avg_var (9b) "
               "means every example looks alike to the layer, its shared mean drowning what tells them apart.",
               lambda i: signal_figure(i, figures_signal.sq_mean_profile)),
    FigureSpec("9b_signal_var", "9b. Signal propagation: variance of the hidden units",
               "A residual stream's variance grows about (1 + alpha^2) per block with ReLU and kaiming init (a "
               "straight line on this log scale; the dashed residual branches alpha z follow it), while a plain "
               "network with a norm, or with SELU, keeps it flat and of order 1.",
               lambda i: signal_figure(i, figures_signal.var_profile)),
]
