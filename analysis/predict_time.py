"""Predict through time: gradlab.theory_rnn's profile of state_grad_rms beside a recurrent run's measurements, its
per-step factor, and the findings of recurrent runs.

Per-step factors run toward the first step: r_t = state_grad_rms(t) / state_grad_rms(t+1), below 1 when the gradient
vanishes on its way back through time. The theory reads what each run recorded (sigma_w2, sigma_u2, input_q0_mean,
sigma_b2, spectral_radius; its config's activation and cell) and the length T of its rows; a family that has no
time axis (analysis.families), an LSTM cell and a run without those facts get no prediction, never a wrong one.
"""

import functools
import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.accuracy import seed_mean_accuracy
from analysis.families import family, net_of, time_runs
from analysis.figures_length import metric_of
from analysis.needs import STATE_GRAD_RMS
from analysis.predict import MIN_BULK_LAYERS, accuracy_text, bulk_layers, verdict
from analysis.series import FACETS, curve_keys, describe
from gradlab import theory_rnn

STEP_BAND = 1.1  # per time step: 0.9^64 = 1e-3, so a band as wide as the MLP's per layer would hide a vanishing T = 64
NO_THEORY_FOR_LSTM = "no theory for LSTM cells"
NO_THEORY_FOR_IDENTITY = "no theory for recurrent_init=identity: mean field needs a random W, not W = I"
PREDICTED = "state_grad_rms_predicted"
TIME_VERDICT, TIME_THEORY_VERDICT = "state_grad_rms verdict", "state_grad_rms theory"
PASCANU = "Pascanu et al."  # the findings' column: which side of rho = 1 / max|phi'| the run's W sits
TIME_COLUMNS = ["time_steps", "step_factor", "predicted_step_factor", "sigma_u2", "input_q0_mean", "spectral_radius",
                "baseline_metric", "baseline"]


class Cell(NamedTuple):
    """What gradlab.theory_rnn depends on, as plain hashable values."""

    net: str
    cell: str | None
    activation: str
    sigma_w2: float | None
    sigma_u2: float | None
    q_x: float | None
    sigma_b2: float = 0.0
    readout: str = "last"
    recurrent_init: str = "orthogonal"


def number(value: object) -> float | None:
    """A recorded number, or None for a missing one (None, NaN after a merge, a tuple of an MLP's layers)."""
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def cell_of(run: pd.Series | tuple) -> Cell:
    """The recurrent network a run trained, as the theory needs it."""
    cell = getattr(run, "cell", None)
    return Cell(net_of(run), cell if isinstance(cell, str) else None, str(run.activation),
                number(getattr(run, "sigma_w2", None)), number(getattr(run, "sigma_u2", None)),
                number(getattr(run, "input_q0_mean", None)), number(getattr(run, "sigma_b2", None)) or 0.0,
                readout if isinstance(readout := getattr(run, "readout", None), str) else "last",
                str(getattr(run, "recurrent_init", "orthogonal")))


def no_time_theory(cell: Cell) -> str | None:
    """Why gradlab.theory_rnn predicts nothing for this network, or None when it predicts."""
    if not family(cell.net).time_profiles:
        return f"no theory through time for net={cell.net}"
    if cell.cell == "lstm":
        return NO_THEORY_FOR_LSTM
    if cell.cell != "vanilla":
        return f"no theory for cell={cell.cell}"
    if cell.recurrent_init == "identity":
        return NO_THEORY_FOR_IDENTITY
    if cell.readout != "last":
        return f"no theory for readout={cell.readout}: the gradient enters at every step"
    if None in (cell.sigma_w2, cell.sigma_u2, cell.q_x):
        return "recorded before sigma_w2, sigma_u2 and input_q0_mean were"
    return None


@functools.cache
def predicted_time_profile(cell: Cell, steps: int) -> tuple[float, ...] | None:
    """log10 state_grad_rms(t) / state_grad_rms(T), t = 1..T, at init; None where no_time_theory says why."""
    if no_time_theory(cell):
        return None
    return tuple(theory_rnn.log10_state_grad_profile(cell.activation, steps, cell.sigma_w2, cell.sigma_u2, cell.q_x,
                                                     cell.sigma_b2))


def at_init(rows: pd.DataFrame) -> pd.DataFrame:
    """state_grad_rms at step 0 of the time-axis rows (families.time_rows)."""
    return rows[(rows.step == 0) & (rows.name == STATE_GRAD_RMS)]


def time_steps(runs: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """Per run: T, the last time step of its state_grad_rms at init (NaN for a run without time rows)."""
    return runs.run.map(at_init(rows).groupby("run").time.max().astype(float))


def predicted_time_profiles(runs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Rows named PREDICTED at step 0, t = 1..T: the theory's profile anchored at the measured state_grad_rms(T); none
    for a run the theory does not describe."""
    measured = at_init(rows)
    anchors = measured[measured.time == measured.groupby("run").time.transform("max")].set_index("run").value
    frames = []
    for run in runs[runs.run.isin(anchors.index)].itertuples(index=False):
        profile = predicted_time_profile(cell_of(run), int(run.time_steps))
        if profile is not None:
            frames.append(pd.DataFrame({"run": run.run, "time": np.arange(1, len(profile) + 1),
                                        "value": anchors[run.run] * 10 ** np.array(profile)}))
    if not frames:
        return rows.iloc[:0]
    predicted = pd.concat(frames, ignore_index=True)
    predicted = predicted.assign(step=0, epoch=0, layer=1.0, name=PREDICTED,
                                 time=pd.array(predicted.time, dtype="Int64"))
    config = rows.loc[~rows.run.duplicated()].drop(columns=["step", "epoch", "layer", "time", "name", "value"])
    return predicted.merge(config, on="run", how="left")[list(rows.columns)]


def bulk_factor(log10_values: np.ndarray) -> float:
    """Geometric mean of r_t = v(t) / v(t+1) over the bulk steps (predict.bulk_layers of T) from log10 v(1..T), where
    v is positive and finite: the ratios telescope to (v(a) / v(b))^(1 / (b - a)), a and b the first and last such
    bulk steps (a float32 gradient that vanished underflows to 0 at the early steps); NaN with fewer than
    MIN_BULK_LAYERS of them."""
    steps = np.array(bulk_layers(len(log10_values)), dtype=int)
    usable = steps[np.isfinite(log10_values[steps - 1])] if len(steps) else steps
    if len(usable) < MIN_BULK_LAYERS:
        return math.nan
    first, last = usable[0], usable[-1]
    return 10 ** ((log10_values[first - 1] - log10_values[last - 1]) / (last - first))


def measured_step_factors(runs: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """Per run: bulk_factor of its state_grad_rms at init (NaN without time rows, or where it is 0 or not finite)."""
    measured = at_init(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = measured.assign(log10=np.log10(measured.value.where(measured.value > 0)))
    factors = {run: bulk_factor(own.sort_values("time").log10.to_numpy(float)) for run, own in logs.groupby("run")}
    return runs.run.map(factors).astype(float)


def predicted_step_factor(run: pd.Series | tuple) -> float:
    """The same geometric mean over the same steps of the predicted profile (NaN without theory)."""
    steps = getattr(run, "time_steps", math.nan)
    profile = None if not steps or math.isnan(steps) else predicted_time_profile(cell_of(run), int(steps))
    return math.nan if profile is None else bulk_factor(np.array(profile))


def pascanu_text(run: pd.Series | tuple) -> str:
    """Which side of Pascanu et al.'s bound rho(W) < 1 / max|phi'| the run's recurrent weights sit, with both."""
    cell, radius = cell_of(run), number(getattr(run, "spectral_radius", None))
    if cell.cell == "lstm":
        return "n/a (LSTM)"
    if radius is None:
        return ""
    bound = theory_rnn.pascanu_bound(cell.activation)
    side = theory_rnn.pascanu_side(cell.activation, radius)
    return f"{side}: rho {radius:.3g} {'<' if side == theory_rnn.VANISHES else '>='} {bound:.3g}"


def time_findings(runs: pd.DataFrame, config_keys: Iterable[str]) -> pd.DataFrame:
    """One row per configuration of a family drawn through time (seeds apart): its T, measured and predicted
    per-step factors (geometric mean over seeds) and their verdicts, the Pascanu side of its first seed and its
    accuracy. Needs runs' time_steps, step_factor and predicted_step_factor (report.analyse)."""
    recurrent = time_runs(runs)
    apart = [key for key in curve_keys(recurrent, config_keys) if key != "cell"]
    rows = []
    for _, group in recurrent.groupby([*FACETS, "series"], sort=False, observed=True):  # as the MLP's findings
        first, factors = group.iloc[0], group.step_factor.dropna()
        measured = float(10 ** np.log10(factors).mean()) if len(factors) else math.nan
        predicted, why = first.predicted_step_factor, no_time_theory(cell_of(first))
        row = {"activation": first.activation, "cell": describe(getattr(first, "cell", None)),
               **{key: describe(first[key]) for key in apart}, "T": describe(first.time_steps),
               "measured": measured, "predicted": predicted, TIME_VERDICT: verdict(measured, STEP_BAND),
               TIME_THEORY_VERDICT: why if why else verdict(predicted, STEP_BAND), PASCANU: pascanu_text(first)}
        rows.append({**row, "final score": score_text(group)})
    return pd.DataFrame(rows)


SCORE_NAMES = {"test_accuracy": "accuracy", "test_mse": "MSE", "test_loss": "loss"}


def score_text(group: pd.DataFrame) -> str:
    """A findings cell: the configuration's final score by its data set's metric (figures_length.metric_of), the mean
    over the seeds that did not diverge, with the baseline a network that learned nothing scores."""
    first = group.iloc[0]
    metric = metric_of(first)
    if metric == "test_accuracy":
        text = accuracy_text(seed_mean_accuracy(group.assign(one=0), "one").iloc[0])
    else:
        kept = group[group.status != "diverged"][f"final_{metric}"].astype(float)
        text = f"{kept.mean():.3g}" if len(kept) else "diverged"
    chance = number(getattr(first, "baseline", None))
    return f"{SCORE_NAMES.get(metric, metric)} {text}" + (f" (baseline {chance:.3g})" if chance is not None else "")
