"""Figures of training (3, 5, 6, 7, 8): each draws one panel from a tidy DataFrame, no I/O.

Metric rows carry run, step, layer, name, value, the run's facets, swept keys and series labels; figure 6
takes run rows.
"""

from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.series import describe, setting_keys, swept_keys
from analysis.style import (
    by_series,
    draw_series,
    init_style,
    mark_divergence,
    say_empty,
    series_color,
    small_legend,
)

UPDATE_RATIO_GUIDE = 1e-3  # the usual rule of thumb for a healthy ||Delta W|| / ||W|| per step
MAX_LAYER_LINES = 8


def grad_norm_heatmap(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 3: log10 grad_norm over layer x training step for one configuration (mean over its seeds)."""
    rows = df[df.name == "grad_norm"]
    usable = (rows.value > 0) & np.isfinite(rows.value)
    if not usable.any():
        say_empty(ax, "no finite gradient recorded")
        return
    log10 = np.log10(rows.value.where(usable))  # 0 (underflow) and inf become NaN: gray cells
    grid = rows.assign(log10=log10).pivot_table(index="layer", columns="step", values="log10", dropna=False)
    grid = grid.reindex(index=sorted(rows.layer.unique()), columns=sorted(rows.step.unique()))
    mesh = ax.pcolormesh(grid.columns, grid.index, np.ma.masked_invalid(grid.to_numpy()), shading="nearest",
                         cmap="viridis")
    ax.set_facecolor("0.75")
    ax.figure.colorbar(mesh, ax=ax, label="log10 grad_norm")
    ax.set_xlabel("training step")
    ax.set_ylabel("layer (1 = input side)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    ax.grid(False)


def loss_curves(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 5: mini-batch training loss (thick) and full test-set loss (thin, dots) against step, per series."""
    for series, rows in by_series(df):
        color = series_color(rows.activation.iloc[0], rows.shade.iloc[0])
        style = init_style(rows.init.iloc[0])
        draw_series(ax, rows[rows.name == "batch_loss"], "step", log=True, color=color, linestyle=style,
                    linewidth=1.6, label=series)
        draw_series(ax, rows[rows.name == "test_loss"], "step", log=True, color=color, linestyle=style,
                    linewidth=0.9, marker="o", markersize=3)
    diverged = mark_divergence(ax, df[df.name == "batch_loss"])
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy loss")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", linewidth=1.6), Line2D([], [], color="gray", linewidth=0.9, marker="o",
                                                                   markersize=3)]
    labels += ["train (mini-batch)", "test (full set)"]
    if diverged:
        handles.append(Line2D([], [], color="crimson", marker="X", linestyle="none", markersize=7))
        labels.append("diverged here")
    ax.legend(handles, labels, fontsize="x-small", framealpha=0.8)


def heatmap_axes(runs: pd.DataFrame, config_keys: Iterable[str]) -> tuple[list[str], str]:
    """Rows and column of the accuracy heatmap: the swept keys that set series apart, but depth (the panels)."""
    swept = [key for key in swept_keys(runs, setting_keys(config_keys)) if key != "depth"]
    if not swept:
        return ["activation"], "init"
    return (swept[:-1] or ["activation"]), swept[-1]


def accuracy_heatmap(df: pd.DataFrame, ax: Axes, config_keys: Iterable[str]) -> None:
    """Figure 6: final test accuracy (mean over seeds, diverged seeds left out) over the swept config keys."""
    rows, col = heatmap_axes(df, config_keys)
    kept = df.assign(accuracy=df.final_test_accuracy.astype(float).where(df.status != "diverged"),
                     diverged=df.status == "diverged")
    keys = [kept[k].map(describe) for k in [*rows, col]]
    kept = kept.assign(row_label=[" · ".join(v) for v in zip(*keys[:-1], strict=True)], col_label=keys[-1])
    cells = kept.groupby(["row_label", "col_label"], sort=False).agg(
        accuracy=("accuracy", "mean"), diverged=("diverged", "sum"), runs=("run", "count"))
    values = cells.accuracy.unstack("col_label")
    mesh = ax.pcolormesh(values.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1)
    ax.invert_yaxis()  # the first row on top, as in a table
    ax.figure.colorbar(mesh, ax=ax, label="final test accuracy")
    for (row_label, col_label), cell in cells.iterrows():
        y, x = values.index.get_loc(row_label), values.columns.get_loc(col_label)
        text = "diverged" if np.isnan(cell.accuracy) else f"{cell.accuracy:.2f}"
        if cell.diverged and not np.isnan(cell.accuracy):
            text += f"\n{cell.diverged}/{cell.runs} diverged"
        light = np.isnan(cell.accuracy) or cell.accuracy < 0.6
        ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize="small",
                color="white" if light and not np.isnan(cell.accuracy) else "black")
    ax.set_xticks(np.arange(len(values.columns)) + 0.5, [c.replace("_", "\n") for c in values.columns])
    ax.set_yticks(np.arange(len(values.index)) + 0.5, values.index)
    ax.set_xlabel(col)
    ax.set_ylabel(" · ".join(rows))
    ax.set_facecolor("0.85")
    ax.grid(False)


def last_step_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows at the last step where every value it measured is finite: a whole profile, not the one
    layer a diverging run still had finite."""
    whole = np.isfinite(df.value).groupby([df.run, df.step]).transform("all")
    complete = df[whole]
    return complete[complete.step == complete.groupby("run").step.transform("max")]


def init_and_end_profile(df: pd.DataFrame, ax: Axes, name: str, log: bool) -> None:
    """A per-layer metric at init (thin) and at the last step (thick), one color per series."""
    rows = df[df.name == name]
    for series, own in by_series(rows):
        color = series_color(own.activation.iloc[0], own.shade.iloc[0])
        style = init_style(own.init.iloc[0])
        draw_series(ax, own[own.step == 0], "layer", log=log, color=color, linestyle=style, linewidth=1, alpha=0.7)
        draw_series(ax, last_step_rows(own), "layer", log=log, color=color, linestyle=style, linewidth=2.2,
                    label=series)
    ax.set_xlabel("hidden layer (1 = input side)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", linewidth=1, alpha=0.7), Line2D([], [], color="gray", linewidth=2.2)]
    ax.legend(handles, labels + ["at init", "at the end"], fontsize="x-small", framealpha=0.8)


def saturation_profile(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 7a: the fraction of saturated hidden units (dead units for ReLU) per layer, at init and at the end."""
    init_and_end_profile(df, ax, "saturation", log=False)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("saturated fraction\n(ReLU: dead, output 0)")


def act_std_profile(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 7b: the standard deviation of each hidden layer's activations, at init and at the end."""
    init_and_end_profile(df, ax, "act_std", log=True)
    ax.set_yscale("log")
    ax.set_ylabel("std of activations h = phi(z)")


def drawn_layers(depth: int) -> list[int]:
    """The layers figure 8 draws a line for: at most MAX_LAYER_LINES, evenly spread from 1 to depth."""
    return [int(layer) for layer in np.unique(np.linspace(1, depth, min(depth, MAX_LAYER_LINES)).round())]


def update_ratio_curves(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 8: ||Delta W|| / ||W||, the step the optimizer takes, per layer against step, with the 1e-3 guide."""
    rows = df[(df.name == "update_ratio") & (df.value > 0) & np.isfinite(df.value)]
    if rows.empty:
        say_empty(ax)
        return
    depth = int(rows.depth.max())
    for layer in drawn_layers(depth):
        color = series_color(rows.activation.iloc[0], layer / depth)
        label = f"layer {layer} (input side)" if layer == 1 else f"layer {layer} (output)" if layer == depth else None
        draw_series(ax, rows[rows.layer == layer], "step", log=True, color=color, linewidth=1.2,
                    linestyle=init_style(rows.init.iloc[0]), label=label)
    ax.axhline(UPDATE_RATIO_GUIDE, color="gray", linestyle="--", linewidth=1, label="1e-3 guide")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("update ratio ||ΔW|| / ||W||")
    small_legend(ax)
