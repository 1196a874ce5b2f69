"""Predict: gradlab.theory's mean-field prediction beside the measurements, and the findings table.

Per-layer ratios run toward the input: r_l = delta_rms(l) / delta_rms(l+1), below 1 when the signal vanishes.
"""

import functools
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from gradlab import theory

STABLE_BAND = 10**0.1  # |log10 r| < 0.1 per layer: less than a factor 10 over 10 layers
MIN_BULK_LAYERS = 3


INPUT_LENGTHS = 16  # quantiles of the per-example input length that the theory averages over


class DataShape(NamedTuple):
    n_in: int
    n_out: int
    q0s: tuple[float, ...]  # quantiles over training examples of mean_features x^2, each example's q^0


@functools.cache
def data_shape(dataset: str, loss: str | None) -> DataShape | None:
    """Input and output sizes and q^0 of a data set, from its training split under ./data; None if not there."""
    from gradlab.config import DatasetConfig
    from gradlab.data import DATASETS
    from gradlab.losses import LOSSES

    options = DatasetConfig(name=dataset)
    try:
        split = DATASETS[dataset].load(Path("data"), options)
    except Exception as error:  # a torchvision set not on disk, offline: no theory, the measurements stay
        warnings.warn(f"no theory for dataset={dataset}: {error}", stacklevel=2)
        return None
    n_out = LOSSES[loss or options.loss].out_dim(split.n_classes)
    lengths = split.x_train.double().pow(2).mean(1)
    q0s = torch.quantile(lengths, (torch.arange(INPUT_LENGTHS, dtype=torch.float64) + 0.5) / INPUT_LENGTHS)
    return DataShape(split.x_train.shape[1], n_out, tuple(q0s.tolist()))


@functools.cache
def predicted_profile(activation: str, init: str, init_gain: float, width: int, depth: int, dataset: str,
                      loss: str | None) -> tuple[float, ...] | None:
    """log10 delta_rms(l) / delta_rms(depth), l = 1..depth, by mean-field theory; None without the data set."""
    shape = data_shape(dataset, loss)
    if shape is None:
        return None
    sizes = [shape.n_in, *[width] * (depth - 1), shape.n_out]
    return tuple(theory.log10_delta_rms_profile(sizes, activation, init, shape.q0s, init_gain))


def architecture(run: pd.Series | tuple) -> tuple:
    """The config values the theory depends on, as plain hashable values."""
    loss = run.loss if isinstance(run.loss, str) else None
    return run.activation, run.init, float(run.init_gain), int(run.width), int(run.depth), run.dataset, loss


def predicted_profiles(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows named delta_rms_predicted at step 0: the theory's profile, anchored at the measured last layer."""
    last = metrics[(metrics.step == 0) & (metrics.name == "delta_rms") & (metrics.layer == metrics.depth)]
    anchors = last.set_index("run").value
    frames = []
    for run in runs.itertuples(index=False):
        profile = predicted_profile(*architecture(run))
        if run.run not in anchors.index or profile is None:
            continue
        frames.append(pd.DataFrame({"run": run.run, "step": 0, "epoch": 0, "layer": np.arange(1, run.depth + 1.0),
                                    "name": "delta_rms_predicted",
                                    "value": anchors[run.run] * 10 ** np.array(profile)}))
    if not frames:
        return metrics.iloc[:0]
    predicted = pd.concat(frames, ignore_index=True)
    config = metrics.drop(columns=["step", "epoch", "layer", "name", "value"]).drop_duplicates("run")
    return predicted.merge(config, on="run", how="left")


def bulk_layers(depth: int) -> range:
    """The layers a per-layer ratio is fitted over: all but the first and last few."""
    trim = 1 if depth < 10 else max(2, depth // 10)
    return range(1 + trim, depth - trim + 1)


def fitted_ratio(layers: np.ndarray, values: np.ndarray) -> float:
    """10^-slope of a least-squares line through log10 values against layer: r per layer, toward the input."""
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < MIN_BULK_LAYERS:
        return math.nan
    slope = np.polyfit(layers[keep], np.log10(values[keep]), 1)[0]
    return 10 ** (-slope)


def measured_bulk_ratios(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.Series:
    """Per run: the fitted per-layer ratio of delta_rms at init over its bulk layers (NaN when too shallow)."""
    at_init = metrics[(metrics.step == 0) & (metrics.name == "delta_rms")]
    fits = {}
    for run, rows in at_init.groupby("run"):
        depth = int(rows.depth.iloc[0])
        bulk = rows[rows.layer.isin(bulk_layers(depth))]
        fits[run] = fitted_ratio(bulk.layer.to_numpy(), bulk.value.to_numpy())
    return runs.run.map(fits)


def predicted_bulk_ratio(run: pd.Series | tuple) -> float:
    """The same fit as the measured one, over the same layers, of the predicted profile."""
    profile = predicted_profile(*architecture(run))
    if profile is None:
        return math.nan
    layers = np.array(bulk_layers(run.depth), dtype=int)
    return fitted_ratio(layers, 10 ** np.array(profile)[layers - 1])


def verdict(ratio: float) -> str:
    if not math.isfinite(ratio):
        return "n/a"
    return "vanishing" if ratio < 1 / STABLE_BAND else "exploding" if ratio > STABLE_BAND else "stable"


def accuracy_cell(group: pd.DataFrame) -> str:
    """Mean final test accuracy over seeds; diverged seeds are counted out and named."""
    diverged = (group.status == "diverged").sum()
    kept = group[group.status != "diverged"].final_test_accuracy.astype(float)
    text = f"{kept.mean():.3f}" if kept.notna().any() else "diverged" if diverged else "n/a"
    return text + (f" ({diverged}/{len(group)} diverged)" if diverged and len(kept) else "")


def findings(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (activation, init, other swept values but depth): measured vs predicted r, verdicts, accuracy.

    Needs runs.bulk_ratio (measured_bulk_ratios). The ratio is read at the deepest depth that has a bulk.
    """
    rows = []
    for (activation, init, curve), group in runs.groupby(["activation", "init", "curve"], sort=False):
        fitted = group[group.bulk_ratio.notna()]
        row = {"activation": activation, "init": init, "other": curve}
        if len(fitted):
            deepest = fitted[fitted.depth == fitted.depth.max()]
            measured = float(10 ** np.log10(deepest.bulk_ratio).mean())
            predicted = predicted_bulk_ratio(deepest.iloc[0])
            row.update(depth=int(deepest.depth.iloc[0]), measured=measured, predicted=predicted)
            row.update(verdict=verdict(measured), theory=verdict(predicted))
        for depth, at_depth in group.groupby("depth"):
            row[f"accuracy at depth {depth}"] = accuracy_cell(at_depth)
        rows.append(row)
    accuracy = [f"accuracy at depth {depth}" for depth in sorted(runs.depth.unique())]
    table = pd.DataFrame(rows)
    table = table[[c for c in table.columns if c not in accuracy] + accuracy].fillna({c: "" for c in accuracy})
    return table.drop(columns="other") if (table.other == "").all() else table


def depth_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Theory's log10 delta_rms(1) / delta_rms(depth) for every depth from 2 to the deepest, per (activation,
    init, curve): columns activation, init, curve, depth, log10_ratio."""
    frames = []
    for (activation, init, curve), group in runs.groupby(["activation", "init", "curve"], sort=False):
        first = group.iloc[0]
        _, _, init_gain, width, _, dataset, loss = architecture(first)
        shape = data_shape(dataset, loss)
        if shape is None:
            continue
        depths = list(range(2, max(int(group.depth.max()), 2) + 1))
        by_depth = theory.log10_first_to_last_ratios(shape.n_in, width, shape.n_out, depths, activation, init,
                                                     shape.q0s, init_gain)
        frames.append(pd.DataFrame({"activation": activation, "init": init, "curve": curve, "depth": depths,
                                    "log10_ratio": [by_depth[d] for d in depths]}))
    columns = ["activation", "init", "curve", "depth", "log10_ratio"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
