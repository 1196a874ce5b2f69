"""The noise figures read the rows a real sweep recorded: 7c each layer's GSNR at init and at its last step, 7d the
signal and noise those rows give at init, 18 the same statistics over windows of steps, 19 the steps to a target loss
against batch size; the report says why it has none where batch norm couples the examples."""

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import catalog, report
from conftest import run_cli
from report_frames import drawn_rows


def test_figure_7c_draws_each_layers_gsnr_at_init_and_at_the_end_from_the_record(tmp_path: Path, monkeypatch):
    result = run_cli("-m", "depth=3", "norm=none,batchnorm", "epochs=1", "logger.mode=disabled",
                     "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs, _, _ = report.analyse([tmp_path / "sweep"], progress=False)
    rows = drawn_rows(inputs, monkeypatch)["7c_gsnr"]
    plt.close("all")
    plain = next((tmp_path / "sweep").glob("0_*"))
    record = pd.read_parquet(plain / "metrics.parquet")
    recorded = record.query("name == 'gsnr' and layer == layer")
    last = recorded.step.max()
    assert set(rows.name) == {"gsnr"} and rows.run.nunique() == 1  # the batch-norm run recorded none
    for step in (0, last):
        drawn = rows[rows.step == step].set_index("layer").value.sort_index()
        expected = recorded[recorded.step == step].set_index("layer").value.sort_index()
        assert list(drawn.index) == [1, 2, 3] and drawn.tolist() == expected.tolist()
    with_batchnorm = inputs._replace(metrics=inputs.metrics[inputs.metrics.norm == "batchnorm"])
    monkeypatch.undo()
    assert catalog.figure_7c(with_batchnorm).axes[0].texts[0].get_text().startswith("no noise rows")
    per_layer = record[record.name.isin(["gsnr", "grad_noise_trace"]) & record.layer.notna()].astype({"layer": float})
    check_figures_7d_and_18(drawn_rows(inputs, monkeypatch), per_layer, batch=100)
    plt.close("all")


def check_figures_7d_and_18(frames: dict[str, pd.DataFrame], recorded: pd.DataFrame, batch: int) -> None:
    """7d: ||G|| = sqrt(gsnr tr(Sigma) / B) and sqrt(tr(Sigma) / B) per layer at init, from the recorded rows; 18: over
    windows of one measured step each (a short run), the recorded gsnr and B / (gsnr - 1), its noise scale."""
    at_init = recorded[recorded.step == 0].pivot_table(index="layer", columns="name", values="value")
    signal = frames["7d_noise_at_init"].pivot_table(index="layer", columns="name", values="value")
    assert signal.noise.tolist() == pytest.approx(np.sqrt(at_init.grad_noise_trace / batch).tolist(), rel=1e-9)
    assert signal.signal.tolist() == pytest.approx(
        np.sqrt(at_init.gsnr * at_init.grad_noise_trace / batch).tolist(), rel=1e-9)
    windows = frames["18a_gsnr_over_training"]
    gsnr = recorded[recorded.name == "gsnr"].set_index(["step", "layer"]).value
    for name, expected in [("gsnr", gsnr), ("noise_scale", batch / (gsnr - 1))]:
        own = windows[(windows.name == name) & windows.layer.notna()].set_index(["step", "layer"]).value
        assert len(own) and own.tolist() == pytest.approx(expected.reindex(own.index).tolist(), rel=1e-9)


def test_figure_17_draws_the_sharpness_with_each_runs_edge_of_stability_and_only_where_it_was_measured(
        tmp_path: Path, monkeypatch):
    result = run_cli("-m", "dataset=toy", "depth=3", "width=16", "epochs=2", "curvature.every=4", "momentum=0.5",
                     "lr=0.1,0.2", "logger.mode=disabled", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs, _, _ = report.analyse([tmp_path / "sweep"], progress=False)
    assert "17_sharpness" in [spec.name for spec in catalog.drawn_figures(inputs)]
    rows = drawn_rows(inputs, monkeypatch)["17_sharpness"]
    plt.close("all")
    assert set(rows.name) == {"sharpness"} and set(rows.step) == set(range(0, 16, 4))  # 800 examples: 8 steps/epoch
    lrs = inputs.runs.set_index("run").lr
    for run, own in rows.groupby("run"):
        assert own.edge.tolist() == pytest.approx([(2 + 2 * 0.5) / lrs[run]] * len(own))
    without = inputs._replace(metrics=inputs.metrics[inputs.metrics.name != "sharpness"])
    assert "17_sharpness" not in [spec.name for spec in catalog.drawn_figures(without)]


def test_the_report_reads_a_runs_noise_rows_over_windows_of_equal_steps_with_numerator_and_denominator_apart():
    """40 measured steps into 16 windows: windows of 3 steps (the last of 1), each at its last step, with the mean
    tr(Sigma) and the GSNR mean(gsnr tr(Sigma)) / mean(tr(Sigma)) of its steps; a layer of its own, and the whole
    network (null layer) apart."""
    import pyarrow as pa

    from analysis.records import noise_windows

    gen = np.random.default_rng(0)
    steps = np.arange(0, 400, 10)
    trace, gsnr = gen.uniform(1, 2, 40), gen.uniform(0.5, 5, 40)
    rows = []
    for layer in (3, None):
        for name, values in (("grad_noise_trace", trace), ("gsnr", gsnr)):
            rows += [{"job": 0, "replica": 0, "step": int(s), "epoch": int(s) // 100, "layer": layer, "time": None,
                      "name": name, "value": float(v)} for s, v in zip(steps, values, strict=True)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("job", pa.int32()), ("replica", pa.int64()),
                                                          ("step", pa.int64()), ("epoch", pa.int64()),
                                                          ("layer", pa.int64()), ("time", pa.int64()),
                                                          ("name", pa.string()), ("value", pa.float64())]))
    windows = noise_windows(table, 16).to_pandas()
    for layer_is_null in (False, True):
        own = windows[windows.layer.isna() == layer_is_null]
        traces = own[own.name == "grad_noise_trace"].sort_values("step")
        ratios = own[own.name == "gsnr"].sort_values("step")
        assert traces.step.tolist() == [*steps[2::3].tolist(), 390] and len(ratios) == 14
        for index, (start, end) in enumerate([(i, i + 3) for i in range(0, 39, 3)] + [(39, 40)]):
            assert traces.value.iloc[index] == pytest.approx(trace[start:end].mean())
            expected = (gsnr[start:end] * trace[start:end]).mean() / trace[start:end].mean()
            assert ratios.value.iloc[index] == pytest.approx(expected)
