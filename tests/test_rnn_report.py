"""The report of a sweep with recurrent runs: a vanilla tanh cell (T = 20) and an LSTM (T = 12) beside an MLP. Their
state_grad_rms through time gets a measured per-step factor, the vanilla cell gets gradlab.theory_rnn's profile and
Pascanu's side, the LSTM says why it has no theory, figures 14 and 15 draw their time rows only, and a sweep of MLPs
alone gets none of it."""

import json
import math
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import catalog, figures_length, figures_training, predict_time, report
from analysis.predict_time import NO_THEORY_FOR_LSTM, PASCANU, PREDICTED, TIME_THEORY_VERDICT, TIME_VERDICT
from report_frames import drawn_rows
from test_analysis_records import CONFIG, write_job

matplotlib.use("Agg")

STEPS = (0, 5, 10, 15)
MLP_RUN, VANILLA_RUN, LSTM_RUN = 0, 1, 2
T_VANILLA, T_LSTM = 20, 12
GAIN = 0.9  # orthogonal W: sigma_w^2 = 0.81, spectral radius 0.9
TINY_INPUT = 1e-9  # sigma_u^2 q_x: q_t stays below 1e-8, where tanh' = 1 and the factor is sqrt(sigma_w^2) = GAIN
SHARPNESS_FIGURE = "17_sharpness"  # drawn only where a run measured the sharpness (curvature.every): none here
BATCH_FIGURE = "19_batch_scaling"  # drawn only for a sweep over 3 or more batch sizes: none here
TIME_FIGURES = ["14_state_grad_rms_through_time", "15_grad_norm_time_heatmap", "16_score_vs_length"]


def measured_profile(steps: int, seed: int) -> np.ndarray:
    """state_grad_rms(t), t = 1..T: the readout's 1 at T, times a per-step ratio drawn in [0.6, 1.0] going back."""
    ratios = np.random.default_rng(seed).uniform(0.6, 1.0, steps - 1)
    return np.concatenate([np.cumprod(ratios[::-1])[::-1], [1.0]])


def rnn_rows(steps: int, seed: int, cell: str) -> pd.DataFrame:
    """Per-time-step rows (layer 1, time 1..T) at every step, and the whole network's losses."""
    profile = measured_profile(steps, seed)
    names = ["state_grad_rms", "grad_norm", "delta_rms", "act_std", "saturation"]
    names += ["cell_grad_rms", "forget_mean"] if cell == "lstm" else []
    rows = [(0, step, 0, 1, t, name, float(profile[t - 1]) * (1 + step / 10)) for step in STEPS
            for t in range(1, steps + 1) for name in names]
    rows += [(0, step, 0, None, None, name, 2.3 - step / 10) for step in STEPS
             for name in ("batch_loss", "test_loss", "recurrent_weight_grad_norm")]
    frame = pd.DataFrame(rows, columns=["replica", "step", "epoch", "layer", "time", "name", "value"])
    return frame.astype({"layer": "Int64", "time": "Int64"})


def write_rnn_job(sweep: Path, number: int, cell: str, steps: int, readout: str = "last", **summary_extra) -> Path:
    job = sweep / f"{number}_net=rnn,cell={cell}"
    (job / ".hydra").mkdir(parents=True)
    config = {**CONFIG, "net": "rnn", "cell": cell, "recurrent_init": "orthogonal", "recurrent_gain": GAIN,
              "forget_bias": 1.0, "readout": readout, "width": 64, "depth": 1}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"status": "completed", "steps": 15, "final_test_accuracy": 0.4, "net": "rnn", "cell": cell,
               "readout": readout, "sigma_w2": GAIN**2, "sigma_u2": 0.5, "sigma_b2": 0.0,
               "input_q0_mean": 2 * TINY_INPUT, "spectral_radius": [GAIN] if cell == "vanilla" else None,
               **summary_extra}
    (job / "summary.json").write_text(json.dumps(summary))
    rnn_rows(steps, number, cell).to_parquet(job / "metrics.parquet")
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    write_job(tmp_path, MLP_RUN, depth=6, seed=0)
    mlp_config = tmp_path / f"{MLP_RUN}_depth=6,seed=0" / ".hydra" / "config.yaml"
    mlp_config.write_text(yaml.safe_dump({**yaml.safe_load(mlp_config.read_text()), "net": "mlp"}))
    write_rnn_job(tmp_path, VANILLA_RUN, "vanilla", T_VANILLA)
    write_rnn_job(tmp_path, LSTM_RUN, "lstm", T_LSTM)
    return tmp_path


def analysed(sweep: Path) -> tuple[catalog.Inputs, pd.DataFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs, table, _ = report.analyse([sweep], progress=False)
    return inputs, table


def built(sweep: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return report.build([sweep], progress=False).parent


def test_the_measured_step_factor_is_the_geometric_mean_over_the_bulk_steps(sweep: Path):
    runs = analysed(sweep)[0].runs.set_index("run")
    for run, steps in ((VANILLA_RUN, T_VANILLA), (LSTM_RUN, T_LSTM)):
        profile = measured_profile(steps, run)
        trim = 1 if steps < 10 else max(2, steps // 10)  # as the MLP's bulk layers
        bulk = range(1 + trim, steps - trim)  # ratios r_t = s(t) / s(t+1) for t, t+1 both in the bulk
        expected = math.exp(np.mean([math.log(profile[t - 1] / profile[t]) for t in bulk]))
        assert runs.loc[run, "step_factor"] == pytest.approx(expected, rel=1e-12)
        assert runs.loc[run, "time_steps"] == steps
    assert math.isnan(runs.loc[MLP_RUN, "step_factor"])


def test_the_vanilla_cell_gets_the_theory_at_its_recorded_gain_and_the_lstm_none(sweep: Path):
    inputs, _ = analysed(sweep)
    runs = inputs.runs.set_index("run")
    assert runs.loc[VANILLA_RUN, "predicted_step_factor"] == pytest.approx(GAIN, rel=1e-6)  # tanh'(0) = 1
    assert math.isnan(runs.loc[LSTM_RUN, "predicted_step_factor"])
    predicted = inputs.metrics[inputs.metrics.name == PREDICTED]
    assert set(predicted.run) == {VANILLA_RUN}
    assert sorted(predicted.time) == list(range(1, T_VANILLA + 1)) and set(predicted.step) == {0}
    at_t = predicted.set_index("time").value
    assert at_t[T_VANILLA] == pytest.approx(measured_profile(T_VANILLA, VANILLA_RUN)[-1])  # anchored at the readout
    assert at_t[1] / at_t[T_VANILLA] == pytest.approx(GAIN ** (T_VANILLA - 1), rel=1e-5)


def test_time_findings_give_verdicts_pascanu_and_why_the_lstm_has_no_theory(sweep: Path):
    inputs, mlp_table = analysed(sweep)
    table = report.time_findings(inputs.runs, inputs.config_keys).set_index("cell")
    assert list(table.index) == ["vanilla", "lstm"]
    assert table.loc["vanilla", TIME_THEORY_VERDICT] == "vanishing"  # 0.9 a step: below 1 / 1.1
    assert table.loc["lstm", TIME_THEORY_VERDICT] == NO_THEORY_FOR_LSTM
    assert table.loc["vanilla", TIME_VERDICT] == "vanishing"  # ratios drawn in [0.6, 1]: about 0.8 a step
    assert table.loc["vanilla", PASCANU].startswith("vanishing: rho 0.9 < 1")
    assert table.loc["lstm", PASCANU] == "n/a (LSTM)"
    assert list(table["T"].astype(int)) == [T_VANILLA, T_LSTM]
    assert list(mlp_table.activation) == ["tanh"] and "depth" in mlp_table  # the MLP's findings: its run alone


def test_figures_through_time_draw_the_recurrent_runs_time_rows_only(sweep: Path, monkeypatch):
    frames = drawn_rows(analysed(sweep)[0], monkeypatch)
    profile = frames["14_state_grad_rms_through_time"]
    assert set(profile.run) == {VANILLA_RUN, LSTM_RUN} and profile.time.notna().all()
    assert set(profile.step) == {0} and set(profile.name) == {"state_grad_rms", PREDICTED}
    assert set(profile[profile.run == LSTM_RUN].cell) == {"lstm"}  # the panel says it has no theory
    heatmap = frames["15_grad_norm_time_heatmap"]
    assert set(heatmap.run) == {VANILLA_RUN}  # the longest runs: T = 20, not the LSTM's 12
    assert set(heatmap.step) == set(STEPS) and set(heatmap.name) == {"grad_norm"}
    assert sorted(heatmap.time.unique()) == list(range(1, T_VANILLA + 1))
    for name in ("1_delta_rms_at_init", "2_grad_norm_at_init", "3_grad_norm_heatmap"):
        assert set(frames[name].run) == {MLP_RUN}, name


def test_the_report_of_a_mixed_sweep_has_the_figures_and_findings_through_time(sweep: Path):
    out = built(sweep)
    figures = sorted(path.stem for path in (out / "figures").glob("*.png"))
    assert figures == sorted(spec.name for spec in catalog.FIGURES if spec.name not in (SHARPNESS_FIGURE, BATCH_FIGURE))
    runs = pd.read_csv(out / "runs.csv").set_index("run")
    assert runs.loc[VANILLA_RUN, "predicted_step_factor"] == pytest.approx(GAIN, rel=1e-6)
    assert runs.loc[VANILLA_RUN, "spectral_radius"] == GAIN and math.isnan(runs.loc[LSTM_RUN, "spectral_radius"])
    html = (out / "index.html").read_text()
    assert "Findings through time" in html and NO_THEORY_FOR_LSTM in html
    assert all(f'id="{name}"' in html for name in TIME_FIGURES)


def test_a_sweep_of_mlps_alone_gets_nothing_through_time(tmp_path: Path):
    write_job(tmp_path, 0, depth=6, seed=0)
    write_job(tmp_path, 1, depth=3, seed=0)
    out = built(tmp_path)
    figures = sorted(path.stem for path in (out / "figures").glob("*.png"))
    absent = [*TIME_FIGURES, SHARPNESS_FIGURE, BATCH_FIGURE]
    assert figures == sorted(spec.name for spec in catalog.FIGURES if spec.name not in absent)
    header = pd.read_csv(out / "runs.csv").columns
    assert "step_factor" not in header and "spectral_radius" not in header
    assert "through time" not in (out / "index.html").read_text()


def test_figure_16_scores_each_recurrent_run_at_its_length_against_its_data_sets_baseline(sweep: Path, monkeypatch):
    rows = drawn_rows(analysed(sweep)[0], monkeypatch)["16_score_vs_length"].set_index("run")
    assert sorted(rows.index) == [VANILLA_RUN, LSTM_RUN]  # the MLP has no length
    assert rows.loc[VANILLA_RUN, "T"] == T_VANILLA and rows.loc[LSTM_RUN, "T"] == T_LSTM
    assert set(rows.metric) == {"test_accuracy"} and set(rows.value) == {0.4}
    assert rows.loc[LSTM_RUN, "label"] == "cell=lstm" and rows.baseline.isna().all()  # recorded before baselines


def test_a_regression_run_is_scored_by_its_mse_beside_the_baseline_and_readout_every_gets_no_theory(tmp_path: Path):
    write_rnn_job(tmp_path, 0, "vanilla", 20, baseline_metric="test_mse", baseline=1 / 6, final_test_mse=0.05,
                  final_test_accuracy=None, loss_in_force="mse")
    write_rnn_job(tmp_path, 1, "lstm", 20, readout="every", baseline_metric="test_loss", baseline=20.79,
                  final_test_loss=3.5, loss_in_force="cross_entropy")
    inputs, _ = analysed(tmp_path)
    table = report.time_findings(inputs.runs, inputs.config_keys).set_index("cell")
    assert table.loc["vanilla", "final score"] == "MSE 0.05 (baseline 0.167)"
    assert table.loc["lstm", "final score"] == "loss 3.5 (baseline 20.8)"
    every = inputs.runs.set_index("run").loc[1]
    assert predict_time.no_time_theory(predict_time.cell_of(every)) == NO_THEORY_FOR_LSTM  # the cell's reason first
    vanilla_every = every.copy()
    vanilla_every["cell"] = "vanilla"
    assert "readout=every" in predict_time.no_time_theory(predict_time.cell_of(vanilla_every))
    irnn = vanilla_every.copy()
    irnn["readout"], irnn["recurrent_init"], irnn["activation"] = "last", "identity", "relu"
    assert predict_time.no_time_theory(predict_time.cell_of(irnn)) == predict_time.NO_THEORY_FOR_IDENTITY
    losses = catalog.loss_rows(inputs)
    assert figures_training.loss_label(losses[losses.run == 0]).startswith("squared-error loss")
    assert figures_training.loss_label(losses) == "loss"  # mse and cross-entropy: no one name for both
    rows = figures_length.length_rows(inputs.runs, inputs.config_keys).set_index("run")
    assert rows.loc[0, "metric"] == "test_mse" and rows.loc[0, "value"] == 0.05 and rows.loc[0, "baseline"] == 1 / 6
    assert rows.loc[1, "metric"] == "test_loss" and rows.loc[1, "value"] == 3.5


def test_figure_16_names_an_lstm_without_the_activation_it_does_not_use():
    runs = pd.DataFrame({"activation": ["tanh", "sigmoid"], "cell": ["vanilla", "lstm"]})
    assert figures_length.labels(runs, ["activation", "cell"]) == ["activation=tanh, cell=vanilla", "cell=lstm"]
