"""The gradient's noise across examples (gradlab.per_example's rows): figure 7c's complete profiles, figure 7d, signal
and noise per layer at init, and figures 18a and 18b, the GSNR and the noise scale per layer during training (figure
19, the batch-size scaling, is analysis.figures_batch).

The noise scale of one batch, B_simple = tr(Sigma) / (||G||^2 - tr(Sigma) / B), is noisy step to step and negative
where the batch cannot tell the gradient from its noise; McCandlish et al. average numerator and denominator apart,
over many steps, before dividing. The report reads the noise rows over windows of each run's steps so
(analysis.records.noise_windows): a window's gsnr is B mean ||G||^2 / mean tr(Sigma), its B_simple B / (gsnr - 1).
"""

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.figures_training import drawn_layer_curves
from analysis.style import by_series, draw_series, say_empty, series_color

NO_NOISE = "no noise rows: records made before the noise rows were measured, or batch norm (coupled examples)"


def complete_profiles(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-layer rows at the steps where a run has every layer it has at step 0, duplicates dropped: a profile, not
    the drawn layers that figure 18 reads at every step of the deepest runs."""
    rows = rows.drop_duplicates(["run", "step", "layer", "name"])
    layers = rows.groupby(["run", "step", "name"], observed=True).layer.transform("size")
    at_init = rows[rows.step == 0].groupby(["run", "name"], observed=True).size()
    full = layers.to_numpy() == at_init.reindex(pd.MultiIndex.from_frame(rows[["run", "name"]])).to_numpy()
    return rows[full]


def signal_and_noise(rows: pd.DataFrame) -> pd.DataFrame:
    """From each layer's grad_noise_trace and gsnr (and the run's batch_in_force B): `signal`, ||G|| of the
    batch-mean gradient, and `noise`, sqrt(tr(Sigma) / B), the spread of that mean over batches."""
    wide = rows.pivot_table(index=["run", "step", "layer"], columns="name", values="value", observed=True)
    keep = rows.drop_duplicates(["run", "step", "layer"]).set_index(["run", "step", "layer"])
    keep = keep.drop(columns=["name", "value"]).loc[wide.index]
    noise = np.sqrt(wide.grad_noise_trace / keep.batch_in_force)
    long = pd.concat([keep.assign(name="signal", value=noise * np.sqrt(wide.gsnr)),
                      keep.assign(name="noise", value=noise)])
    return long.reset_index()


def noise_at_init(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 7d: per layer at step 0, the batch-mean gradient's norm (solid) and its noise across batches
    (dashed), one color per series: lines that fall together keep the GSNR, their squared ratio."""
    rows = df[df.step == 0]
    for series, own in by_series(rows[rows.name == "signal"]):
        color = series_color(own.activation.iloc[0], own.shade.iloc[0])
        draw_series(ax, own, "layer", log=True, color=color, linewidth=1.6, label=series)
        noise = rows[(rows.name == "noise") & (rows.series == own.series.iloc[0])]
        draw_series(ax, noise, "layer", log=True, color=color, linewidth=1.0, linestyle="--")
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("at init: ||G|| (solid),\nsqrt(tr(Sigma) / B) (dashed)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", linewidth=1.6), Line2D([], [], color="gray", linestyle="--")]
    ax.legend(handles, [*labels, "signal ||G||", "noise of the batch mean"], fontsize="x-small", framealpha=0.8)


def over_training(rows: pd.DataFrame) -> pd.DataFrame:
    """Figures 18a, 18b's rows from gsnr rows with their run's batch_in_force (B): `gsnr` as read (over windows of
    steps, analysis.records.noise_windows: a ratio of averages) and `noise_scale` = B / (gsnr - 1), the window's
    B_simple = mean tr(Sigma) / (mean ||G||^2 - mean tr(Sigma) / B)."""
    gsnr = rows[rows.name == "gsnr"]
    scale = gsnr.assign(name="noise_scale", value=gsnr.batch_in_force.astype(float) / (gsnr.value - 1))
    return pd.concat([gsnr, scale], ignore_index=True)


def layer_curves(df: pd.DataFrame, ax: Axes, name: str, label: str, guide: float | None) -> None:
    """Figures 18a, 18b: a noise statistic (over windows of steps) per drawn layer against step, its positive values
    on a log scale, with the whole network's dotted in black (figures_training.drawn_layer_curves)."""
    rows = df[(df.name == name) & (df.value > 0) & np.isfinite(df.value)]
    if rows.empty:
        say_empty(ax, f"no positive {name} recorded")
        return
    drawn_layer_curves(rows, ax, label, guide)


def gsnr_curves(df: pd.DataFrame, ax: Axes) -> None:
    layer_curves(df, ax, "gsnr", "GSNR = B ||G||^2 / tr(Sigma)\n(below the dashed 1: mostly noise)", 1.0)


def noise_scale_curves(df: pd.DataFrame, ax: Axes) -> None:
    layer_curves(df, ax, "noise_scale", "noise scale B_simple\n(windows where positive)", None)
