"""Families and axes: which runs and rows the per-layer figures and the mean-field theory read, decided here alone.

A run's `net` (summary.json; NET_BEFORE_RECORDED for a record from before it was written) names its network family.
A metrics row lies on the layer axis when its `time` is null: a per-layer row (layer 1..depth) or a whole-network one
(layer null). A row with a time lies on the time axis: a recurrent network's per-time-step rows (layer 1, time
1..T). FAMILIES says once what each family's rows mean to the report: whether its per-layer rows are drawn against
layer (figures 1 to 4, 7 to 9, the first/last and bulk ratios) and whether gradlab.theory's mean-field theory of
plain and residual MLPs describes it (figures 1 and 4's theory, the predicted ratios, the trainability map), and
whether its rows with a time are drawn against time step (figures 14 and 15, the per-step factor and
gradlab.theory_rnn's prediction, analysis.predict_time). A row with neither a layer nor a time is the whole
network's, drawn against training step for every family. A family not in the table gets none: its rows are never
drawn as layers or time steps, and no theory is drawn over it rather than a wrong one.
"""

import math
from typing import NamedTuple

import numpy as np
import pandas as pd


class Family(NamedTuple):
    layer_profiles: bool  # its rows with a null time are per-layer profiles, drawn against layer
    mean_field: bool  # gradlab.theory's mean-field theory (plain and residual MLPs) predicts its signal
    time_profiles: bool = False  # its rows with a time are per-time-step profiles (a recurrent network's)


FAMILIES = {"mlp": Family(layer_profiles=True, mean_field=True),
            "rnn": Family(layer_profiles=False, mean_field=False, time_profiles=True)}
UNKNOWN = Family(layer_profiles=False, mean_field=False)
NET_BEFORE_RECORDED = "mlp"  # every run recorded before summary.json named its family trained an MLP
LAYER_FAMILIES = [net for net, family in FAMILIES.items() if family.layer_profiles]
TIME_FAMILIES = [net for net, family in FAMILIES.items() if family.time_profiles]


def recorded_net(summary: dict) -> str:
    """The family a job's summary.json names; NET_BEFORE_RECORDED where it names none (an older record)."""
    net = summary.get("net")
    return net if isinstance(net, str) else NET_BEFORE_RECORDED


def net_of(run: pd.Series | tuple) -> str:
    """A run's family: its net column, NET_BEFORE_RECORDED for a run table from before the column was."""
    net = getattr(run, "net", None)
    return NET_BEFORE_RECORDED if net is None or (isinstance(net, float) and math.isnan(net)) else str(net)


def family(net: str) -> Family:
    """What the report makes of a family's rows: UNKNOWN (nothing drawn by layer, no theory) for one not in FAMILIES."""
    return FAMILIES.get(net, UNKNOWN)


def has_mean_field_theory(run: pd.Series | tuple) -> bool:
    """Whether gradlab.theory's mean-field theory describes the run's network family."""
    return family(net_of(run)).mean_field


def on_layer_axis(rows: pd.DataFrame) -> pd.Series:
    """Per metrics row (with its run's net): whether it is a layer-axis row (time null) of a family drawn by layer."""
    return rows.time.isna() & rows.net.isin(LAYER_FAMILIES)


def layer_axis_time(count: int) -> pd.arrays.IntegerArray:
    """The time of count rows on the layer axis: null, in pandas' Int64 as the loaded rows hold it."""
    return pd.arrays.IntegerArray(np.zeros(count, np.int64), np.ones(count, bool))


def layer_rows(metrics: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """The rows the per-layer figures and the theory read: on the layer axis, of the names given (all by default)."""
    keep = on_layer_axis(metrics)
    return metrics[keep if names is None else keep & metrics.name.isin(names)]


def whole_network_rows(metrics: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The rows of the names measured of the whole network (layer and time null), of every family: the curves
    against training step (figures 5 and 11, learning_step)."""
    return metrics[metrics.layer.isna() & metrics.time.isna() & metrics.name.isin(names)]


def layer_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose family's per-layer rows are drawn against layer (figure 4's points and theory)."""
    return runs[runs.net.isin(LAYER_FAMILIES)]


def on_time_axis(rows: pd.DataFrame) -> pd.Series:
    """Per metrics row (with its run's net): whether it is a time-axis row (time 1..T) of a family drawn by time."""
    return rows.time.notna() & rows.net.isin(TIME_FAMILIES)


def time_rows(metrics: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The rows the per-time-step figures and theory read: on the time axis, of the names given."""
    return metrics[on_time_axis(metrics) & metrics.name.isin(names)]


def time_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose family's rows with a time are drawn against time step."""
    return runs[runs.net.isin(TIME_FAMILIES)]
