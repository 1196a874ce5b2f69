"""Figure 7c reads the noise rows a real sweep recorded: each layer's GSNR at init and at its last step, the values
the record holds, and the report says why it has none where batch norm couples the examples."""

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
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
    recorded = pd.read_parquet(plain / "metrics.parquet").query("name == 'gsnr' and layer == layer")
    last = recorded.step.max()
    assert set(rows.name) == {"gsnr"} and rows.run.nunique() == 1  # the batch-norm run recorded none
    for step in (0, last):
        drawn = rows[rows.step == step].set_index("layer").value.sort_index()
        expected = recorded[recorded.step == step].set_index("layer").value.sort_index()
        assert list(drawn.index) == [1, 2, 3] and drawn.tolist() == expected.tolist()
    with_batchnorm = inputs._replace(metrics=inputs.metrics[inputs.metrics.norm == "batchnorm"])
    monkeypatch.undo()
    assert catalog.figure_7c(with_batchnorm).axes[0].texts[0].get_text().startswith("no gsnr rows")


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
