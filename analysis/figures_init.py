"""Figures of the network at initialization (1, 2, 4): each draws one panel from a tidy DataFrame, no I/O.

Figures 1 and 2 take metric rows (run, step, layer, name, value, activation, init, series, shade); figure 4
takes rows of log10 first-to-last ratios (see ratio_rows). A panel of figures 1 and 2 holds one init, so its lines
are solid and the theory dashed; a panel of figure 4 holds every init of one activation, each in its line style.
"""

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from analysis.predict import NO_THEORY_FOR_NORMS
from analysis.style import THEORY, THEORY_DASHES, by_series, draw_series, init_style, series_color, small_legend

UNDERFLOW = "layer 1 underflowed to 0"


def layer_profile(ax: Axes, measured: pd.DataFrame, predicted: pd.DataFrame | None = None) -> None:
    """Measured values against layer, one line per series (seed mean and band); theory thin and black."""
    for series, rows in by_series(measured):
        color = series_color(rows.activation.iloc[0], rows.shade.iloc[0])
        draw_series(ax, rows, "layer", log=True, color=color, linewidth=2, label=series)
    if predicted is not None and not predicted.empty:
        for index, (_, rows) in enumerate(by_series(predicted)):
            draw_series(ax, rows.assign(run=0), "layer", log=True, linestyle=THEORY_DASHES,
                        label="mean-field theory" if index == 0 else None, **THEORY)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = input side)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    small_legend(ax)


def delta_rms_at_init(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 1: delta_rms at step 0 against layer, one line per series, the theory drawn over it (none for a
    normalized network, and the panel says so)."""
    at_init = df[df.step == 0]
    layer_profile(ax, at_init[at_init.name == "delta_rms"], at_init[at_init.name == "delta_rms_predicted"])
    if "norm" in at_init and (at_init.norm.notna() & (at_init.norm != "none")).any():  # in the legend, off the lines
        handles, labels = ax.get_legend_handles_labels()
        ax.legend([*handles, Line2D([], [], linestyle="none")], [*labels, NO_THEORY_FOR_NORMS], fontsize="x-small",
                  framealpha=0.8)
    ax.set_ylabel("delta_rms at init\n(per-example ||dL/dz||)")


def grad_norm_at_init(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 2: the weight gradient's norm at step 0 against layer, one line per series."""
    at_init = df[df.step == 0]
    layer_profile(ax, at_init[at_init.name == "grad_norm"])
    ax.set_ylabel("grad_norm at init\n(||dL/dW||, mini-batch)")


def ratio_rows(runs: pd.DataFrame, theory: pd.DataFrame) -> pd.DataFrame:
    """Figure 4's input: measured log10 delta_rms(1)/delta_rms(depth) per run, and theory per depth.

    theory has columns activation, init, curve, depth, log10_ratio; runs has delta_rms_ratio and shade.
    """
    with np.errstate(divide="ignore"):  # a ratio of 0 (underflow) is -inf: drawn as a marker at the bottom
        measured = runs.assign(log10_ratio=np.log10(runs.delta_rms_ratio.astype(float)), source="measured")
    columns = ["run", "activation", "init", "curve", "depth", "shade", "log10_ratio", "source"]
    return pd.concat([measured[columns], theory.assign(source="theory", run=-1)], ignore_index=True)


def delta_ratio_against_depth(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 4: log10 of delta_rms(layer 1) / delta_rms(last layer) at init against depth, theory in black; each
    init in its line style, each curve (norm, width, ...) in its shade, light to dark in sorted order."""
    measured, theory = df[df.source == "measured"], df[df.source == "theory"]
    handles, labels = [], []
    curves = sorted(measured.curve.unique())  # a shade per curve (width, norm, ...): depth is the x axis here
    for (init, curve), rows in measured.groupby(["init", "curve"], sort=False):
        color = series_color(rows.activation.iloc[0], (curves.index(curve) + 1) / len(curves))
        style = init_style(init)
        draw_series(ax, rows.rename(columns={"log10_ratio": "value"}), "depth", log=False, color=color,
                    linestyle=style, linewidth=2, marker="o")
        handles.append(Line2D([], [], color=color, linestyle=style, linewidth=2, marker="o", markersize=4))
        labels.append(", ".join(filter(None, [init, curve])))
        line = theory[(theory.init == init) & (theory.curve == curve)].sort_values("depth")
        ax.plot(line.depth, line.log10_ratio, linestyle=style, **THEORY)
        underflow = rows[rows.log10_ratio == -np.inf].depth.unique()  # delta_rms(1) was 0 in float32
        ax.plot(underflow, np.full(len(underflow), 0.03), "v", color=color, markersize=8,
                transform=blended_transform_factory(ax.transData, ax.transAxes))
        if len(underflow) and UNDERFLOW not in labels:
            handles.append(Line2D([], [], color="0.35", marker="v", linestyle="none", markersize=8))
            labels.append(UNDERFLOW)
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("depth (number of layers)")
    ax.set_ylabel("log10 delta_rms ratio at init\n(layer 1 / last layer)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not theory.empty:
        handles.append(Line2D([], [], **THEORY))
        labels.append("mean-field theory (black)")
    ax.legend(handles, labels, fontsize="x-small")
