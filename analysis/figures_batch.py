"""Figure 19: McCandlish et al.'s (2018) batch-size scaling. With the learning rate tuned for each batch size B, the
steps S to reach a target training loss follow S = S_min + E_min / B (the examples E = S B then follow
E = E_min + S_min B): halving while B << B_crit = E_min / S_min, flat beyond. Their claim: B_crit is about the
gradient noise scale B_simple, measured along the way.

Per group of runs that differ only in batch size, learning rate and seed: the target is the loosest best training
loss of any batch size (so that every batch size reaches it), S(B) the best learning rate's steps (seeds averaged),
the fit weighted by 1 / S^2 (relative errors), and B_simple the ratio of averages of tr(Sigma) and
||G||^2 - tr(Sigma) / B over the steps before the target, in each batch size's best run (the median over them).
"""

from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.needs import MIN_BATCH_SIZES
from analysis.style import say_empty

SWEPT = ("batch_size", "lr", "seed")  # what may differ within a group
PANEL_WINDOWS = 12  # the second panel's points per run: the read windows (records.noise_windows) pooled
NO_BATCH_SWEEP = "no batch-size sweep: figure 19 needs runs at 3 or more batch sizes that reach a common training loss"


class Scaling(NamedTuple):
    target: float  # the training loss every batch size reaches
    steps: pd.DataFrame  # per batch size: batch, steps (the best lr's), lr, run (its first seed's), b_simple
    s_min: float
    e_min: float
    b_simple: float  # the median over the batch sizes' best runs


def steps_to(losses: pd.DataFrame, target: float) -> float:
    """The step where a run's full training loss (rows step, value in step order) first reaches the target,
    interpolated in log loss between the evaluations around it; NaN if it never does."""
    steps, values = losses.step.to_numpy(float), losses.value.to_numpy(float)
    below = np.flatnonzero(values <= target)
    if not len(below):
        return np.nan
    at = below[0]
    if at == 0:
        return steps[0]
    low, high = np.log(values[at]), np.log(values[at - 1])
    share = (high - np.log(target)) / (high - low) if high > low else 1.0
    return steps[at - 1] + share * (steps[at] - steps[at - 1])


def noise_scale_of(noise: pd.DataFrame, batch: float) -> float:
    """B_simple from a run's whole-network grad_noise_trace and gsnr rows: the mean of tr(Sigma) over the mean of
    |G|^2 = tr(Sigma) (gsnr - 1) / B (McCandlish et al.: numerator and denominator averaged apart)."""
    wide = noise.pivot_table(index="step", columns="name", values="value", observed=True).dropna()
    if wide.empty:
        return np.nan
    signal = (wide.grad_noise_trace * (wide.gsnr - 1) / batch).mean()
    return float(wide.grad_noise_trace.mean() / signal) if signal > 0 else np.nan


def scaling(runs: pd.DataFrame, losses: pd.DataFrame, noise: pd.DataFrame, target: float | None = None
            ) -> Scaling | None:
    """One group's fit: runs (run, batch_in_force, lr), their train_loss rows and whole-network noise rows; the
    target given, or the loosest best training loss of any batch size (times 1.05: every one reaches it)."""
    best = losses.groupby("run").value.min()
    per_batch = runs.assign(best=runs.run.map(best)).groupby("batch_in_force").best.min().dropna()
    if len(per_batch) < MIN_BATCH_SIZES:
        return None
    target = float(per_batch.max()) * 1.05 if target is None else target
    by_run = {run: steps_to(own, target) for run, own in losses.groupby("run")}
    tried = runs.assign(steps=runs.run.map(by_run)).groupby(["batch_in_force", "lr"])
    mean = tried.agg(steps=("steps", "mean"), run=("run", "min")).reset_index().dropna()
    fastest = mean.loc[mean.groupby("batch_in_force").steps.idxmin()].rename(columns={"batch_in_force": "batch"})
    fastest["b_simple"] = [noise_scale_of(noise[(noise.run == row.run) & (noise.step <= row.steps)], row.batch)
                           for row in fastest.itertuples()]
    weight = 1 / fastest.steps.to_numpy()  # minimizes sum ((S - S_min - E_min / B) / S)^2
    design = np.stack([weight, weight / fastest.batch.to_numpy()], axis=1)
    (s_min, e_min), *_ = np.linalg.lstsq(design, np.ones(len(fastest)), rcond=None)
    return Scaling(target, fastest.reset_index(drop=True), float(s_min), float(e_min),
                   float(np.nanmedian(fastest.b_simple)) if fastest.b_simple.notna().any() else np.nan)


def steps_against_batch(fit: Scaling | None, ax: Axes) -> None:
    """Figure 19's panel: the best learning rate's steps to the target against B, the fit S_min + E_min / B, perfect
    scaling (S halving with each doubling of B) from the smallest B, the fit's B_crit and the measured B_simple."""
    if fit is None:
        say_empty(ax, NO_BATCH_SWEEP)
        return
    steps = fit.steps
    ax.plot(steps.batch, steps.steps, "o", color="black", label="measured (best lr)")
    for row in steps.itertuples():
        ax.annotate(f"lr {row.lr:g}", (row.batch, row.steps), textcoords="offset points", xytext=(4, 4),
                    fontsize="xx-small", color="dimgray")
    grid = np.geomspace(steps.batch.min(), steps.batch.max(), 100)
    ax.plot(grid, steps.steps.iloc[0] * steps.batch.iloc[0] / grid, color="gray", linestyle=":", linewidth=1,
            label="perfect scaling, S ~ 1 / B")
    if fit.s_min > 0 and fit.e_min > 0:
        b_crit = fit.e_min / fit.s_min
        ax.plot(grid, fit.s_min + fit.e_min / grid, color="tab:blue", linewidth=1.4,
                label=f"fit S_min + E_min / B: B_crit = {b_crit:.0f}")
        ax.axvline(b_crit, color="tab:blue", linestyle=":", linewidth=1)
    if np.isfinite(fit.b_simple):
        ax.axvline(fit.b_simple, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"measured B_simple = {fit.b_simple:.0f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel(f"steps to training loss {fit.target:.3g}")
    ax.legend(fontsize="x-small", framealpha=0.8)


def noise_scale_over_training(fit: Scaling | None, noise: pd.DataFrame, ax: Axes) -> None:
    """Figure 19's second panel: B_simple over windows of steps in each batch size's best run, light to dark as B
    grows: the noise scale grows as the loss falls."""
    if fit is None:
        say_empty(ax, NO_BATCH_SWEEP)
        return
    colors = matplotlib.colormaps["viridis"]
    for index, row in enumerate(fit.steps.itertuples()):
        own = noise[noise.run == row.run]
        edges = np.geomspace(1, own.step.max() + 2, PANEL_WINDOWS + 1)  # the read windows pooled, even in log step
        chunk = np.searchsorted(edges, own.step + 1, side="right")
        x = [own.step[chunk == c].max() for c in np.unique(chunk)]
        y = [noise_scale_of(own[chunk == c], row.batch) for c in np.unique(chunk)]
        ax.plot(x, np.where(np.array(y) > 0, y, np.nan), "o-", markersize=3, linewidth=1.2,
                color=colors(0.85 * index / max(1, len(fit.steps) - 1)), label=f"B = {row.batch:.0f}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("B_simple over windows of steps\n(best lr of each batch size)")
    ax.legend(fontsize="xx-small", framealpha=0.8, ncol=2)


def batch_groups(runs: pd.DataFrame, config_keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """The runs grouped by every config key but SWEPT, each group named by the keys that tell groups apart."""
    keys = [key for key in config_keys if key not in SWEPT and key in runs and runs[key].astype(str).nunique() > 1]
    if not keys:
        return [("all runs", runs)]
    return [(", ".join(f"{key}={value}" for key, value in zip(keys, values, strict=True)), own)
            for values, own in runs.groupby([runs[key].astype(str) for key in keys], sort=False)]


def group_scalings(runs: pd.DataFrame, metrics: pd.DataFrame, config_keys: list[str]) -> list[tuple[str, Scaling]]:
    """Each group's fit (scaling) that has MIN_BATCH_SIZES batch sizes reaching a common loss; runs without
    batch_in_force (older records) sit out."""
    runs = runs[runs.batch_in_force.notna()] if "batch_in_force" in runs else runs.iloc[:0]
    whole = metrics[metrics.layer.isna() & metrics.time.isna()]
    losses = whole[whole.name == "train_loss"].sort_values(["run", "step"])
    noise = whole[whole.name.isin(["grad_noise_trace", "gsnr"])]
    fits = []
    for name, own in batch_groups(runs, config_keys):
        if own.batch_in_force.nunique() >= MIN_BATCH_SIZES:
            fit = scaling(own, losses[losses.run.isin(own.run)], noise[noise.run.isin(own.run)])
            fits += [(name, fit)] if fit is not None else []
    return fits


def has_batch_sweep(inputs) -> bool:
    """Whether a sweep has runs at MIN_BATCH_SIZES batch sizes or more (figure 19)."""
    runs = inputs.runs
    return "batch_in_force" in runs and runs.batch_in_force.nunique() >= MIN_BATCH_SIZES
