"""Predict: gradlab.theory's mean-field prediction beside the measurements, and the findings table.

Per-layer ratios run toward the input: r_l = delta_rms(l) / delta_rms(l+1), below 1 when the signal vanishes.
The theory reads what each run recorded in its summary (layer_sizes, input_q0_quantiles, sigma_b2); it never
reloads data.
Plain and residual MLPs (arch, residual_scale) have a theory; another network family (analysis.families), a
normalized network (norm other than none) and a run without those facts (a record from before they were written) get
no prediction, never a wrong one.
"""

import functools
import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.accuracy import seed_mean_accuracy
from analysis.families import NET_BEFORE_RECORDED, family, layer_axis_time, net_of
from analysis.isometry import VERDICT_COLUMN, jacobian_cells
from analysis.needs import DELTA_RMS
from analysis.series import KEYS_ADDED_LATER, curve_keys, describe
from gradlab import theory
from gradlab.architecture import ARCHITECTURES

STABLE_BAND = 10**0.1  # |log10 r| < 0.1 per layer: less than a factor 10 over 10 layers
MIN_BULK_LAYERS = 3
NO_THEORY_FOR_NORMS = "no theory for normalized networks"
VERDICT, THEORY_VERDICT = "delta_rms verdict", "delta_rms theory"  # the findings' columns: about the signal's size


class Architecture(NamedTuple):
    """What the theory depends on, as plain hashable values: predicted_profile's arguments."""

    activation: str
    init: str
    init_gain: float
    layer_sizes: tuple[int, ...] | None
    q0s: tuple[float, ...] | None
    arch: str = "plain"
    residual_scale: float = 1.0
    norm: str = "none"
    sigma_b2: float = 0.0
    net: str = NET_BEFORE_RECORDED


def no_theory(network: Architecture) -> str | None:
    """Why the theory predicts nothing for this network, or None when it predicts."""
    if not family(network.net).mean_field:
        return f"no mean-field theory for net={network.net}"
    if network.norm != "none":
        return NO_THEORY_FOR_NORMS
    if network.arch not in ARCHITECTURES:
        return f"no theory for arch={network.arch}"
    if network.layer_sizes is None or network.q0s is None:
        return "recorded before layer_sizes and input_q0_quantiles were"
    return None


@functools.cache
def predicted_profile(activation: str, init: str, init_gain: float, layer_sizes: tuple[int, ...] | None,
                      q0s: tuple[float, ...] | None, arch: str = "plain", residual_scale: float = 1.0,
                      norm: str = "none", sigma_b2: float = 0.0,
                      net: str = NET_BEFORE_RECORDED) -> tuple[float, ...] | None:
    """log10 delta_rms(l) / delta_rms(depth), l = 1..depth, by mean-field theory; None where no_theory says why."""
    network = Architecture(activation, init, init_gain, layer_sizes, q0s, arch, residual_scale, norm, sigma_b2, net)
    if no_theory(network):
        return None
    return tuple(theory.log10_delta_rms_profile(list(network.layer_sizes), network.activation, network.init,
                                                network.q0s, network.init_gain, network.arch, network.residual_scale,
                                                network.sigma_b2))


def recorded(value: object) -> tuple | None:
    """A recorded fact (a tuple), or None where the run has none (None, or NaN after a merge)."""
    return value if isinstance(value, tuple) else None


def setting(run: pd.Series | tuple, key: str) -> object:
    """A config value added later (arch, norm, residual_scale): its old meaning where a run lacks it."""
    value = getattr(run, key, None)
    return KEYS_ADDED_LATER[key] if value is None or (isinstance(value, float) and math.isnan(value)) else value


def recorded_sigma_b2(run: pd.Series | tuple) -> float:
    """The bias variance the run recorded; 0 for a run table or record from before biases could be drawn."""
    value = getattr(run, "sigma_b2", None)
    return 0.0 if value is None or math.isnan(value) else float(value)


def architecture(run: pd.Series | tuple) -> Architecture:
    """The network a run trained, as the theory needs it."""
    return Architecture(run.activation, run.init, float(run.init_gain), recorded(run.layer_sizes),
                        recorded(run.input_q0_quantiles), str(setting(run, "arch")),
                        float(setting(run, "residual_scale")), str(setting(run, "norm")), recorded_sigma_b2(run),
                        net_of(run))


def predicted_profiles(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows named delta_rms_predicted at step 0: the theory's profile, anchored at the measured last layer of the
    per-layer rows (families.layer_rows); none for a run the theory does not describe."""
    last = metrics[(metrics.step == 0) & (metrics.name == DELTA_RMS) & (metrics.layer == metrics.depth)]
    anchors = last.set_index("run").value
    known = runs[runs.run.isin(anchors.index)]
    profiles = [predicted_profile(*architecture(run)) for run in known.itertuples(index=False)]
    drawn = known[[profile is not None for profile in profiles]]
    if drawn.empty:
        return metrics.iloc[:0]
    depths = drawn.depth.to_numpy(dtype=int)
    layers = np.concatenate([np.arange(1, depth + 1.0) for depth in depths])
    predicted = pd.DataFrame({"run": np.repeat(drawn.run.to_numpy(), depths), "step": 0, "epoch": 0, "layer": layers,
                              "time": layer_axis_time(len(layers)), "name": "delta_rms_predicted",
                              "value": np.repeat(anchors[drawn.run].to_numpy(), depths)
                              * 10 ** np.concatenate([profile for profile in profiles if profile is not None])})
    config = metrics.loc[~metrics.run.duplicated()].drop(columns=["step", "epoch", "layer", "time", "name", "value"])
    return predicted.merge(config, on="run", how="left")


def bulk_trim(depth: int | np.ndarray) -> int | np.ndarray:
    """The layers left out at each end of the bulk: 1 below depth 10, else a tenth of the depth and at least 2."""
    return np.where(np.asarray(depth) < 10, 1, np.maximum(2, np.asarray(depth) // 10))


def bulk_layers(depth: int) -> range:
    """The layers a per-layer ratio is fitted over: all but the first and last few."""
    trim = int(bulk_trim(depth))
    return range(1 + trim, depth - trim + 1)


def fitted_values(values: np.ndarray) -> np.ndarray:
    """Which values a fit takes: finite and positive (their log10 is a point)."""
    return np.isfinite(values) & (values > 0)


def fitted_ratio(layers: np.ndarray, values: np.ndarray) -> float:
    """10^-slope of a least-squares line through log10 values against layer: r per layer, toward the input."""
    keep = fitted_values(values)
    if keep.sum() < MIN_BULK_LAYERS:
        return math.nan
    slope = np.polyfit(layers[keep], np.log10(values[keep]), 1)[0]
    return 10 ** (-slope)


def measured_bulk_ratios(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.Series:
    """Per run: fitted_ratio of delta_rms at init over its bulk_layers (NaN when too shallow), from the per-layer rows
    (families.layer_rows), for all runs at once: the same points and the same least-squares slope, as centred sums
    per run rather than a polyfit per run."""
    at_init = layers[(layers.step == 0) & (layers.name == DELTA_RMS)]
    depth, layer, value = (at_init[c].to_numpy(dtype=float) for c in ("depth", "layer", "value"))
    trim = bulk_trim(depth)
    keep = (layer >= 1 + trim) & (layer <= depth - trim) & fitted_values(value)
    points = pd.DataFrame({"run": at_init.run.to_numpy()[keep], "x": layer[keep], "y": np.log10(value[keep])})
    centred = points.groupby("run")[["x", "y"]].transform("mean")
    points = points.assign(dx=points.x - centred.x, dy=points.y - centred.y)
    sums = points.assign(dxdy=points.dx * points.dy, dx2=points.dx**2).groupby("run").agg(
        n=("x", "size"), dxdy=("dxdy", "sum"), dx2=("dx2", "sum"))
    fits = (10 ** (-sums.dxdy / sums.dx2)).where(sums.n >= MIN_BULK_LAYERS)
    return runs.run.map(fits)


@functools.cache
def profile_bulk_ratio(profile: tuple[float, ...], depth: int) -> float:
    layers = np.array(bulk_layers(depth), dtype=int)
    return fitted_ratio(layers, 10 ** np.array(profile)[layers - 1])


def predicted_bulk_ratio(run: pd.Series | tuple) -> float:
    """The same fit as the measured one, over the same layers, of the predicted profile (NaN without theory)."""
    profile = predicted_profile(*architecture(run))
    return math.nan if profile is None else profile_bulk_ratio(profile, int(run.depth))


def verdict(ratio: float, band: float = STABLE_BAND) -> str:
    """vanishing below 1 / band, exploding above band, stable between (per layer, or per time step with its band)."""
    if not math.isfinite(ratio):
        return "n/a"
    return "vanishing" if ratio < 1 / band else "exploding" if ratio > band else "stable"


def accuracy_text(cell: pd.Series) -> str:
    """A findings cell from accuracy.seed_mean_accuracy: the mean over the seeds that did not diverge, the diverged
    ones counted out and named."""
    diverged, runs = int(cell.diverged), int(cell.runs)
    text = f"{cell.accuracy:.3f}" if not math.isnan(cell.accuracy) else "diverged" if diverged else "n/a"
    return text + (f" ({diverged}/{runs} diverged)" if diverged and runs > diverged else "")


def findings(runs: pd.DataFrame, config_keys: Iterable[str]) -> pd.DataFrame:
    """One row per (activation, init, other swept values but depth), each named in a column of its own
    (dataset.kind, width, ...): measured vs predicted r and their delta_rms verdicts, J's spread at init and its
    verdict where J was measured (isometry.jacobian_cells), and accuracy per depth.

    Needs runs.bulk_ratio (measured_bulk_ratios); J's columns need runs' jac_*_at_init (isometry). The ratio and
    J are read at the deepest depth that has a bulk (the deepest depth where none has).
    """
    apart = curve_keys(runs, config_keys)
    rows = []
    for (activation, init, _), group in runs.groupby(["activation", "init", "curve"], sort=False):
        row = {"activation": activation, "init": init, **{key: describe(group[key].iloc[0]) for key in apart}}
        fitted = group[group.bulk_ratio.notna()]
        if len(fitted):
            deepest = fitted[fitted.depth == fitted.depth.max()]
            measured = float(10 ** np.log10(deepest.bulk_ratio).mean())
            predicted = predicted_bulk_ratio(deepest.iloc[0])
            normalized = architecture(deepest.iloc[0]).norm != "none"
            row.update({"depth": int(deepest.depth.iloc[0]), "measured": measured, "predicted": predicted,
                        VERDICT: verdict(measured),
                        THEORY_VERDICT: NO_THEORY_FOR_NORMS if normalized else verdict(predicted)})
        row.update(jacobian_cells(group[group.depth == (fitted if len(fitted) else group).depth.max()]))
        for depth, cell in seed_mean_accuracy(group, "depth").iterrows():
            row[f"accuracy at depth {depth}"] = accuracy_text(cell)
        rows.append(row)
    accuracy = [f"accuracy at depth {depth}" for depth in sorted(runs.depth.unique())]
    table = pd.DataFrame(rows)
    blanks = {c: "" for c in [*accuracy, VERDICT_COLUMN] if c in table}
    return table[[c for c in table.columns if c not in accuracy] + accuracy].fillna(blanks)


def depth_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Theory's log10 delta_rms(1) / delta_rms(depth) for every depth from 2 to the deepest, per (activation,
    init, curve), from the input and output sizes and input lengths a run of the group recorded: columns
    activation, init, curve, depth, log10_ratio. A curve of normalized networks gets none."""
    frames = []
    for (activation, init, curve), group in runs.groupby(["activation", "init", "curve"], sort=False):
        known = [run for run in group.itertuples(index=False) if not no_theory(architecture(run))]
        if not known:
            continue
        network = architecture(known[0])
        sizes, depths = network.layer_sizes, list(range(2, max(int(group.depth.max()), 2) + 1))
        by_depth = theory.log10_first_to_last_ratios(sizes[0], int(known[0].width), sizes[-1], depths, activation,
                                                     init, network.q0s, network.init_gain, network.arch,
                                                     network.residual_scale, network.sigma_b2)
        frames.append(pd.DataFrame({"activation": activation, "init": init, "curve": curve, "depth": depths,
                                    "log10_ratio": [by_depth[d] for d in depths]}))
    if frames:
        return pd.concat(frames, ignore_index=True)
    empty = {"activation": str, "init": str, "curve": str, "depth": int, "log10_ratio": float}  # typed: no theory
    return pd.DataFrame(columns=list(empty)).astype(empty)  # must not turn figure 4's ratios into objects
