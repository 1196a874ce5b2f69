"""Figures of training (3, 5, 6, 7, 8; and 15's heat map): each draws one panel from a tidy DataFrame, no I/O.

Metric rows carry run, step, layer, name, value, the run's facets, swept keys and series labels; figure 6
takes run rows. A panel holds one init, so its lines are solid: in figure 5 thick for training and thin for test
loss, in figure 7 dashed at init and solid at the end.
"""

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.accuracy import seed_mean_accuracy
from analysis.needs import drawn_layers
from analysis.series import describe, setting_keys, swept_keys
from analysis.style import (
    AT_END,
    AT_INIT,
    DIVERGED_LABEL,
    by_series,
    draw_series,
    draw_series_and_diverged,
    mark_divergence,
    say_empty,
    series_color,
)

CHANCE = {"color": "0.3", "linestyle": (0, (5, 2.5)), "linewidth": 1.1}
LOSS_SPAN = (0.1, 2.0)  # the loss axis spans at least chance x these: a run stuck at chance reads as a flat line
UPDATE_RATIO_GUIDE = 1e-3  # the usual rule of thumb for a healthy ||Delta W|| / ||W|| per step


HEATMAP_AXES = {"layer": "layer (1 = input side)", "time": "time step t (1 = first input)"}  # figures 3 and 15


def grad_norm_heatmap(df: pd.DataFrame, ax: Axes, along: str = "layer") -> None:
    """Figure 3 (along layer) or 15 (along time): log10 grad_norm over layer or time step x training step for one
    configuration (mean over its seeds)."""
    rows = df[df.name == "grad_norm"].astype({along: float})
    usable = (rows.value > 0) & np.isfinite(rows.value)
    if not usable.any():
        say_empty(ax, nothing_finite(df, "gradient"))
        return
    log10 = np.log10(rows.value.where(usable))  # 0 (underflow) and inf become NaN: gray cells
    grid = rows.assign(log10=log10).pivot_table(index=along, columns="step", values="log10", dropna=False)
    grid = grid.reindex(index=sorted(rows[along].unique()), columns=sorted(rows.step.unique()))
    mesh = ax.pcolormesh(grid.columns, grid.index, np.ma.masked_invalid(grid.to_numpy()), shading="nearest",
                         cmap="viridis")
    ax.set_facecolor("0.75")
    ax.figure.colorbar(mesh, ax=ax, label="log10 grad_norm")
    ax.set_xlabel("training step")
    ax.set_ylabel(HEATMAP_AXES[along])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    ax.grid(False)


LOSS_LABELS = {"cross_entropy": "cross-entropy loss", "bce": "binary cross-entropy loss",
               "mse": "squared-error loss, 0.5 ||f - y||^2"}


def loss_label(df: pd.DataFrame) -> str:
    """The y label of figure 5: the loss the runs trained with (loss_in_force), "loss" where they differ."""
    losses = set(df.loss_in_force.dropna()) if "loss_in_force" in df else set()
    return LOSS_LABELS.get(losses.pop(), "loss") if len(losses) == 1 else "cross-entropy loss" if not losses else "loss"


def loss_curves(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 5: mini-batch training loss (thick) and full test-set loss (thin, dots) against step, per series, with
    the chance level (the chance_loss column, from the runs' recorded facts) dashed."""
    for series, rows in by_series(df):
        color = series_color(rows.activation.iloc[0], rows.shade.iloc[0])
        draw_series_and_diverged(ax, rows[rows.name == "batch_loss"], "step", log=True, color=color,
                                 linewidth=1.6, label=series)
        draw_series_and_diverged(ax, rows[rows.name == "test_loss"], "step", log=True, color=color,
                                 linewidth=0.9, marker="o", markersize=3)
    for chance in sorted(df.chance_loss.dropna().unique()) if "chance_loss" in df else []:
        ax.axhline(chance, **CHANCE, label=f"chance: ln {round(math.exp(chance))} = {chance:.2f}")
        ax.update_datalim([(0, chance * LOSS_SPAN[0]), (0, chance * LOSS_SPAN[1])])
    diverged = mark_divergence(ax, df[df.name == "batch_loss"])
    if diverged and (df.status == "diverged").all():  # its lines may all be off the shared scale: say so
        steps = sorted(df.get("diverged_at_step", pd.Series(dtype=float)).dropna().unique())
        at = f" (at step {', '.join(str(int(step)) for step in steps)})" if steps else ""
        ax.text(0.5, 0.5, f"every run diverged{at}", ha="center", va="center", transform=ax.transAxes,
                color="crimson")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(loss_label(df))
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", linewidth=1.6), Line2D([], [], color="gray", linewidth=0.9, marker="o",
                                                                   markersize=3)]
    labels += ["train (mini-batch)", "test (full set)"]
    if diverged:
        handles.append(Line2D([], [], color="crimson", marker="X", linestyle="none", markersize=7))
        labels.append(DIVERGED_LABEL)
    ax.legend(handles, labels, fontsize="x-small", framealpha=0.8)


def heatmap_axes(runs: pd.DataFrame, config_keys: Iterable[str]) -> tuple[list[str], str]:
    """Rows and column of the accuracy heat map: depth as the columns where it is swept (a row per configuration,
    read left to right as it deepens), else the last swept key; the other swept keys make the rows."""
    swept = swept_keys(runs, setting_keys(config_keys))
    column = "depth" if "depth" in swept else swept[-1] if swept else "init"
    return [key for key in swept if key != column] or ["activation"], column


def in_order(values: pd.Series) -> list[str]:
    """The distinct values described, sorted where they compare (depths, widths: none first), else as they come."""
    distinct = list(dict.fromkeys(values))
    try:
        distinct = sorted(distinct, key=lambda value: (describe(value) != "none", value))
    except TypeError:
        pass
    return list(dict.fromkeys(describe(value) for value in distinct))


class AccuracyTable(NamedTuple):
    values: pd.DataFrame  # mean accuracy of the seeds that did not diverge: row labels x column labels
    cells: pd.DataFrame  # per (row_label, col_label): accuracy, diverged (count) and runs
    rows: list[str]  # the keys of the row labels
    column: str  # the key of the column labels


def accuracy_table(runs: pd.DataFrame, config_keys: Iterable[str]) -> AccuracyTable:
    """Figure 6's cells: final test accuracy, mean over seeds, diverged seeds left out and counted."""
    rows, column = heatmap_axes(runs, config_keys)
    kept = runs.assign(col_label=runs[column].map(describe),
                       row_label=[" · ".join(v) for v in zip(*[runs[k].map(describe) for k in rows], strict=True)])
    cells = seed_mean_accuracy(kept, ["row_label", "col_label"], sort=False)
    values = cells.accuracy.unstack("col_label").reindex(index=list(dict.fromkeys(kept.row_label)),
                                                         columns=in_order(runs[column]))
    return AccuracyTable(values, cells, rows, column)


def accuracy_heatmap(df: pd.DataFrame, ax: Axes, config_keys: Iterable[str]) -> None:
    """Figure 6: final test accuracy (mean over seeds, diverged seeds left out) of every run in one heat map, a
    column per depth (or the last swept key) and a row per configuration, on one color scale."""
    table = accuracy_table(df, config_keys)
    values = table.values
    mesh = ax.pcolormesh(values.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1)
    ax.invert_yaxis()  # the first row on top, as in a table
    ax.figure.colorbar(mesh, ax=ax, label="final test accuracy", fraction=0.08, pad=0.03)
    for (row_label, col_label), cell in table.cells.iterrows():
        y, x = values.index.get_loc(row_label), values.columns.get_loc(col_label)
        text = "diverged" if np.isnan(cell.accuracy) else f"{cell.accuracy:.2f}"
        if cell.diverged and not np.isnan(cell.accuracy):
            text += f"\n{cell.diverged}/{cell.runs} diverged"
        light = np.isnan(cell.accuracy) or cell.accuracy < 0.6
        ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize="small",
                color="white" if light and not np.isnan(cell.accuracy) else "black")
    ax.set_xticks(np.arange(len(values.columns)) + 0.5, [c.replace("_", "\n") for c in values.columns])
    ax.set_yticks(np.arange(len(values.index)) + 0.5, values.index)
    ax.set_xlabel(table.column)
    ax.set_ylabel(" · ".join(table.rows))
    ax.set_facecolor("0.85")
    ax.grid(False)


def last_step_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows at the last step where every value it measured is finite: a whole profile, not the one
    layer a diverging run still had finite."""
    whole = np.isfinite(df.value).groupby([df.run, df.step]).transform("all")
    complete = df[whole]
    return complete[complete.step == complete.groupby("run").step.transform("max")]


def init_and_end_profile(df: pd.DataFrame, ax: Axes, name: str, log: bool) -> None:
    """A per-layer metric at init (thin, dashed, light) and at the last step (thick, solid), one color per series."""
    rows = df[df.name == name]
    for series, own in by_series(rows):
        color = series_color(own.activation.iloc[0], own.shade.iloc[0])
        draw_series(ax, own[own.step == 0], "layer", log=log, color=color, **AT_INIT)
        draw_series(ax, last_step_rows(own), "layer", log=log, color=color, label=series, **AT_END)
    ax.set_xlabel("hidden layer (1 = input side)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", **AT_INIT), Line2D([], [], color="gray", **AT_END)]
    ax.legend(handles, labels + ["at init (step 0)", "at the end"], fontsize="x-small", framealpha=0.8)


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


def gsnr_profile(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 7c: each layer's gradient signal-to-noise ratio B ||G||^2 / tr(Sigma), at init and at the end, with the
    line where the batch-mean gradient's own noise equals its square."""
    init_and_end_profile(df, ax, "gsnr", log=True)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("GSNR = B ||G||^2 / tr(Sigma)\n(below the dashed 1: mostly noise)")


def update_ratio_curves(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 8: ||Delta W|| / ||W||, the step the optimizer takes, per layer against step, with the 1e-3 guide;
    light lines near the input, dark near the output (the legend's gray stands for the panel's color)."""
    rows = df[(df.name == "update_ratio") & (df.value > 0) & np.isfinite(df.value)]
    if rows.empty:
        say_empty(ax, nothing_finite(df, "update ratio"))
        return
    drawn_layer_curves(rows, ax, "update ratio ||ΔW|| / ||W||", UPDATE_RATIO_GUIDE, "1e-3 guide")


def drawn_layer_curves(rows: pd.DataFrame, ax: Axes, label: str, guide: float | None = None,
                       guide_label: str | None = None) -> None:
    """Figures 8, 18a, 18b: rows (positive, finite, not empty) per drawn layer against step on a log scale, light
    near the input and dark near the output (the legend's gray stands for the panel's color); the whole network's
    rows (no layer), where there are some, dotted in black; a dashed gray guide, named in the legend if labelled."""
    depth = int(rows.depth.max())
    for layer in drawn_layers(depth):
        color = series_color(rows.activation.iloc[0], layer / depth)
        draw_series(ax, rows[rows.layer == layer], "step", log=True, color=color, linewidth=1.2)
    handles = [Line2D([], [], color=series_color("linear", shade), linewidth=1.2) for shade in (1 / depth, 1.0)]
    labels = ["layer 1 (input side)", f"layer {depth} (output)"]
    whole = rows[rows.layer.isna()]
    if not whole.empty:
        draw_series(ax, whole, "step", log=True, color="black", linewidth=1.0, linestyle=":")
        handles, labels = [*handles, Line2D([], [], color="black", linestyle=":")], [*labels, "whole network"]
    if guide is not None:
        ax.axhline(guide, color="gray", linestyle="--", linewidth=1)
    if guide_label is not None:
        handles, labels = [*handles, Line2D([], [], color="gray", linestyle="--", linewidth=1)], [*labels, guide_label]
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(label)
    ax.legend(handles, labels, fontsize="x-small")


def nothing_finite(df: pd.DataFrame, what: str) -> str:
    """Why a panel has nothing to draw: its runs diverged before a finite value of `what`, or none was recorded."""
    diverged = df[df.status == "diverged"] if "status" in df else df.iloc[:0]
    if diverged.empty or "diverged_at_step" not in diverged:
        return f"no finite {what} recorded"
    steps = sorted({int(step) for step in diverged.diverged_at_step.dropna()})
    return f"diverged at step {', '.join(map(str, steps))}: no finite {what} recorded"
