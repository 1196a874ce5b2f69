"""The report reads a sweep that mixes network families: an MLP recorded before `time` and `net` were written, and a
recurrent run (net="rnn") whose rows lie on the time axis (layer 1, time 1..5). The MLP keeps its theory and its
per-layer figures; the rnn gets no mean-field prediction and its time rows are never drawn as layers."""

import json
import warnings
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from analysis import catalog, families, figures_batch, report
from analysis.predict import architecture, no_theory, predicted_profile
from report_frames import drawn_rows
from test_analysis_records import write_job

matplotlib.use("Agg")

STEPS, TIMES = (0, 5, 10, 15), range(1, 6)
RNN_NAMES = ["state_grad_rms", "grad_norm", "delta_rms", "update_ratio", "saturation", "act_std", "avg_sq_mean",
             "avg_var"]  # its own name, and names the per-layer figures read
LAYER_FIGURES = ["1_delta_rms_at_init", "2_grad_norm_at_init", "3_grad_norm_heatmap", "4_delta_ratio_vs_depth",
                 "7a_saturation", "7b_act_std", "8_update_ratio", "9a_signal_sq_mean", "9b_signal_var"]
MLP_RUN, RNN_RUN = 0, 1


def rnn_rows() -> pd.DataFrame:
    """Per-time-step rows at layer 1, and the whole network's losses (time null)."""
    rows = [(0, step, 0, 1, time, name, 0.5 + time / 10) for step in STEPS for time in TIMES for name in RNN_NAMES]
    rows += [(0, step, 0, None, None, name, 2.3 - step / 10) for step in STEPS for name in ("batch_loss", "test_loss")]
    frame = pd.DataFrame(rows, columns=["replica", "step", "epoch", "layer", "time", "name", "value"])
    return frame.astype({"layer": "Int64", "time": "Int64"})


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """An MLP of depth 6 in the old record format (no time column, no net), and an rnn recorded as deeper (8)."""
    write_job(tmp_path, MLP_RUN, depth=6, seed=0)
    rnn = write_job(tmp_path, RNN_RUN, depth=8, seed=0)
    summary = json.loads((rnn / "summary.json").read_text())
    (rnn / "summary.json").write_text(json.dumps({**summary, "net": "rnn"}))
    rnn_rows().to_parquet(rnn / "metrics.parquet")
    return tmp_path


def analysed(sweep: Path) -> catalog.Inputs:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return report.analyse([sweep], progress=False)[0]


def test_time_is_carried_through_loading_and_null_for_an_old_record(sweep: Path):
    metrics = analysed(sweep).metrics
    assert metrics.time.dtype == "Int64"
    assert metrics[metrics.run == MLP_RUN].time.isna().all()
    rnn = metrics[(metrics.run == RNN_RUN) & (metrics.name == "delta_rms") & (metrics.step == 0)]
    assert sorted(rnn.time) == list(TIMES) and set(rnn.layer) == {1}


def test_each_run_records_its_family_and_runs_csv_names_it(sweep: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.build([sweep], progress=False)
    runs = pd.read_csv(sweep / "report" / "runs.csv")
    assert list(runs.net) == ["mlp", "rnn"]  # the MLP's summary.json predates net
    assert (sweep / "report" / "index.html").exists()
    conditional = (catalog.has_sharpness, figures_batch.has_batch_sweep)  # no sharpness, one batch size
    measured = [spec for spec in catalog.FIGURES if spec.drawn_for not in conditional]
    assert len(list((sweep / "report" / "figures").glob("*.png"))) == len(measured)


def test_the_rnn_gets_no_theory_and_no_per_layer_ratio(sweep: Path):
    inputs = analysed(sweep)
    runs = inputs.runs.set_index("run")
    columns = ["bulk_ratio", "predicted_bulk_ratio", "grad_norm_ratio", "delta_rms_ratio"]
    assert runs.loc[MLP_RUN, columns].notna().all()  # the MLP has them: the test can fail
    assert runs.loc[RNN_RUN, columns].isna().all()
    rnn = next(run for run in inputs.runs.itertuples(index=False) if run.run == RNN_RUN)
    assert predicted_profile(*architecture(rnn)) is None
    assert no_theory(architecture(rnn)) == "no mean-field theory for net=rnn"
    predicted = inputs.metrics[inputs.metrics.name == "delta_rms_predicted"]
    assert set(predicted.run) == {MLP_RUN}
    assert set(inputs.ratios.run) == {MLP_RUN, -1}  # figure 4: the MLP's point and the theory's line (run -1)


def test_time_rows_of_the_rnn_are_never_drawn_as_layers(sweep: Path, monkeypatch):
    inputs = analysed(sweep)
    frames = drawn_rows(inputs, monkeypatch)
    for name in LAYER_FIGURES:
        rows = frames[name]
        assert MLP_RUN in set(rows.run), name  # the MLP's layers are drawn
        assert RNN_RUN not in set(rows.run), name
        assert "time" not in rows or rows.time.isna().all(), name
    assert set(frames["3_grad_norm_heatmap"].depth) == {6}  # the deepest MLP, though the rnn recorded depth 8
    assert set(frames["5_loss_curves"].run) == {MLP_RUN, RNN_RUN}  # the whole network's losses: every family


@pytest.mark.parametrize(("net", "time", "drawn"), [("mlp", None, True), ("mlp", 3, False), ("rnn", None, False),
                                                     ("rnn", 3, False)])
def test_only_null_time_rows_of_a_layer_family_are_on_the_layer_axis(net: str, time: int | None, drawn: bool):
    rows = pd.DataFrame({"net": pd.Categorical([net]), "time": pd.array([time], dtype="Int64")})
    assert families.on_layer_axis(rows).tolist() == [drawn]
