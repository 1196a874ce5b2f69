"""Figure 16: a recurrent network's final score against its sequence length, one line per configuration and one
panel per data set, the data set's baseline dashed: what a network that learned nothing from its inputs scores
(gradlab.data.baseline, recorded by each run). Rows from the runs alone, no I/O."""

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from analysis.families import time_runs
from analysis.series import key_values, setting_keys, swept_keys
from analysis.style import DIVERGED, DIVERGED_LABEL, THEORY, THEORY_DASHES, series_color

APART = ("dataset.seq_len", "dataset.name")  # the x axis and the panels: never in a line's label
OFF_SCALE = 30  # an MSE or loss axis ends at 30x the baseline: a network far worse than guessing is off the scale
METRIC_LABELS = {"test_mse": "final test MSE, mean (f - y)^2", "test_loss": "final test loss per sequence",
                 "test_accuracy": "final test accuracy"}


def metric_of(run: pd.Series) -> str:
    """The final_<metric> a run is scored by: the one its baseline names, else MSE where it has one, else accuracy."""
    metric = getattr(run, "baseline_metric", None)
    if isinstance(metric, str):
        return metric
    mse = getattr(run, "final_test_mse", None)
    return "test_mse" if isinstance(mse, int | float) and not math.isnan(mse) else "test_accuracy"


def length_rows(runs: pd.DataFrame, config_keys: Iterable[str]) -> pd.DataFrame:
    """One row per recurrent run: dataset, T (time_steps), label (the swept keys but the length and the data set),
    metric, value (its final score), baseline (NaN where the run recorded none) and diverged."""
    recurrent = time_runs(runs)
    recurrent = recurrent[recurrent.time_steps.notna()]
    if recurrent.empty:
        return pd.DataFrame(columns=["run", "dataset", "T", "label", "activation", "metric", "value", "baseline",
                                     "diverged"])
    keys = [key for key in swept_keys(recurrent, setting_keys(config_keys)) if key not in APART]
    metrics = [metric_of(run) for _, run in recurrent.iterrows()]
    values = [float(run[f"final_{metric}"]) for metric, (_, run) in zip(metrics, recurrent.iterrows(), strict=True)]
    baseline = recurrent.baseline if "baseline" in recurrent else pd.Series(math.nan, index=recurrent.index)
    return pd.DataFrame({"run": recurrent.run.to_numpy(), "dataset": recurrent["dataset.name"].to_numpy(),
                         "T": recurrent.time_steps.astype(float).to_numpy(),
                         "label": labels(recurrent, keys),
                         "activation": recurrent.activation.to_numpy(), "metric": metrics, "value": values,
                         "baseline": baseline.astype(float).to_numpy(),
                         "diverged": (recurrent.status == "diverged").to_numpy()})


def labels(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per run: its values of the keys, "k1=v1, k2=v2"; an LSTM's activation left out (its nonlinearities are fixed)."""
    if not keys:
        return ["all runs"] * len(runs)
    lstm = (runs.cell == "lstm").to_numpy() if "cell" in runs else np.zeros(len(runs), dtype=bool)
    full, without = key_values(runs, keys), key_values(runs, [k for k in keys if k != "activation"] or keys)
    return [short if is_lstm else text for text, short, is_lstm in zip(full, without, lstm, strict=True)]


def score_against_length(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 16, one data set: each configuration's final score (mean over the seeds that did not diverge, min..max
    as error bars) against T, the baseline dashed. MSE and loss (lower is better) on a log scale that ends at
    OFF_SCALE x the baseline: a score above it is a triangle on the top edge, a diverged run a cross there."""
    metric = df.metric.iloc[0]
    labels = list(dict.fromkeys(df.label))
    chance = df.baseline.dropna()
    top = OFF_SCALE * chance.max() if metric != "test_accuracy" and len(chance) else math.inf
    kept = df[~df.diverged & np.isfinite(df.value)]
    for index, label in enumerate(labels):
        color = series_color(df[df.label == label].activation.iloc[0], (index + 1) / len(labels))
        rows = kept[(kept.label == label) & (kept.value <= top)].groupby("T").value.agg(["mean", "min", "max"])
        rows = rows.reset_index()
        ax.errorbar(rows["T"], rows["mean"], yerr=[rows["mean"] - rows["min"], rows["max"] - rows["mean"]],
                    color=color, marker="o", linewidth=2, capsize=3, label=label)
        above = kept[(kept.label == label) & (kept.value > top)]
        ax.scatter(above["T"], [top] * len(above), marker="^", color=color, s=70, clip_on=False, zorder=5)
    if math.isfinite(top) and (kept.value > top).any():
        ax.scatter([], [], marker="^", color="0.4", label=f"above {OFF_SCALE:g}x the baseline (color: its line)")
    lost = df[df.diverged | ~np.isfinite(df.value)]
    if not lost.empty:
        edge = top if math.isfinite(top) else df.value[np.isfinite(df.value)].max()
        ax.scatter(lost["T"], [edge] * len(lost), label=DIVERGED_LABEL, **DIVERGED)
    baselines = df.groupby("T").baseline.first().dropna()
    if not baselines.empty:
        what = {"test_mse": "always answering 1", "test_loss": "no memory: 10 ln 8"}.get(metric, "chance")
        ax.plot(baselines.index, baselines.to_numpy(), linestyle=THEORY_DASHES, marker="_", markersize=12,
                label=f"baseline ({what})", **THEORY)
    if metric != "test_accuracy":
        ax.set_yscale("log")
        if math.isfinite(top) and ((kept.value > top).any() or not lost.empty):
            ax.set_ylim(top=top)
    ax.set_xlabel("sequence length T (time steps)")
    ax.set_ylabel(METRIC_LABELS.get(metric, f"final {metric}"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    ax.legend(fontsize="x-small", framealpha=0.8)
