"""Analysis on real sweeps: loading (broken jobs, replicas, several sweeps), theory beside measurement, the report."""

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import report
from analysis.catalog import FIGURES, has_sharpness, has_time_runs
from analysis.figures_batch import has_batch_sweep
from analysis.load import SkippedJob, add_learning_steps, load
from analysis.predict import bulk_layers, findings, fitted_ratio, measured_bulk_ratios, predicted_profiles, verdict
from conftest import REPO, run_cli

REQUIRED_CSV_COLUMNS = {"depth", "width", "activation", "init", "lr", "seed", "replicas", "dataset.name",
                        "dataset.kind", "status", "steps", "final_train_loss", "final_test_loss",
                        "final_train_accuracy", "final_test_accuracy", "grad_norm_ratio", "delta_rms_ratio",
                        "layer_sizes", "loss_in_force"}  # fmt: skip


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> Path:
    """runs/multirun/ with two real sweeps: base (4 jobs) and wild (2 jobs of 2 replicas, one diverging)."""
    root = tmp_path_factory.mktemp("analysis")
    common = ["epochs=1", "logger.mode=disabled"]
    result = run_cli("-m", "depth=2,6", "activation=tanh,relu", *common, "hydra.sweep.dir=runs/multirun/base",
                     cwd=root)
    assert result.returncode == 0, result.stderr
    result = run_cli("-m", "lr=0.1,1000", "activation=relu", "init=normal", "depth=3", "replicas=2", *common,
                     "hydra.sweep.dir=runs/multirun/wild", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "runs" / "multirun"


def copy_of(sweep: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sweep, tmp_path / sweep.name))


def truncate_metrics(job: Path) -> None:
    data = (job / "metrics.parquet").read_bytes()
    (job / "metrics.parquet").write_bytes(data[: len(data) // 2])


def remove_summary(job: Path) -> None:
    (job / "summary.json").unlink()


def garble_summary(job: Path) -> None:
    (job / "summary.json").write_text('{"status": "completed", "steps": ')


@pytest.mark.parametrize("corrupt", [truncate_metrics, remove_summary, garble_summary])
def test_broken_job_is_skipped_with_a_warning_naming_it(sweeps: Path, tmp_path: Path, corrupt):
    sweep = copy_of(sweeps / "base", tmp_path)
    broken = next(p for p in sweep.iterdir() if p.name.startswith("1_"))
    corrupt(broken)
    with pytest.warns(SkippedJob) as caught:
        loaded = load([sweep], progress=False)
    assert [str(broken) in str(w.message) for w in caught] == [True]
    assert len(loaded.runs) == 3 and broken.name not in " ".join(loaded.runs.job)
    assert loaded.skipped == [str(caught[0].message)]


def test_each_replica_is_a_run_and_a_diverged_one_is_kept(sweeps: Path):
    runs = load([sweeps / "wild"], progress=False).runs
    assert sorted(zip(runs.lr, runs.seed, strict=True)) == [(0.1, 0), (0.1, 1), (1000, 0), (1000, 1)]
    assert set(runs[runs.lr == 1000].status) == {"diverged"}
    assert set(runs[runs.lr == 0.1].status) == {"completed"}


def test_interrupted_run_is_kept_with_its_status(sweeps: Path, tmp_path: Path):
    sweep = copy_of(sweeps / "base", tmp_path)
    summary_path = next(sweep.glob("0_*/summary.json"))
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "status": "interrupted"}))
    runs = load([sweep], progress=False).runs
    assert list(runs.status).count("interrupted") == 1 and len(runs) == 4


def test_a_parent_of_sweeps_loads_them_all_into_one_tidy_table(sweeps: Path):
    loaded = load([sweeps], progress=False)
    assert len(loaded.runs) == 8 and loaded.runs.run.is_unique
    assert {"run", "step", "layer", "name", "value", "depth", "activation", "init", "seed"} <= set(loaded.metrics)
    assert set(loaded.metrics.run) == set(loaded.runs.run)
    deep = loaded.runs[(loaded.runs.depth == 6) & (loaded.runs.activation == "tanh")].iloc[0]
    recorded = pd.read_parquet(Path(deep.job_dir) / "metrics.parquet").query("step == 0 and name == 'delta_rms'")
    by_layer = recorded.set_index("layer").value
    assert deep.delta_rms_ratio == pytest.approx(by_layer[1] / by_layer[6], rel=1e-12)


def test_series_name_only_the_swept_keys(sweeps: Path):
    runs = load([sweeps / "base"], progress=False).runs
    assert set(runs.series) == {"depth=2", "depth=6"}
    assert runs[runs.depth == 6].shade.min() > runs[runs.depth == 2].shade.max()  # deeper is darker


def test_fit_recovers_the_per_layer_ratio_of_a_geometric_profile():
    layers = np.arange(1, 31)
    values = 7.0 * 0.4 ** (30 - layers)
    values[0], values[-1] = 1e-3, 50.0  # the edges the fit leaves out
    bulk = np.array(bulk_layers(30))
    assert bulk[0] > 1 and bulk[-1] < 30
    assert fitted_ratio(bulk, values[bulk - 1]) == pytest.approx(0.4, rel=1e-9)
    assert np.isnan(fitted_ratio(np.array([1, 2]), np.array([1.0, 2.0])))  # too few layers to fit


@pytest.mark.parametrize("ratio, expected", [(0.5, "vanishing"), (0.95, "stable"), (1.05, "stable"),
                                             (2.0, "exploding"), (float("nan"), "n/a")])
def test_verdict_bands(ratio, expected):
    assert verdict(ratio) == expected


def test_theory_profile_is_anchored_at_the_measured_last_layer_and_matches_relu(sweeps: Path):
    loaded = load([sweeps / "base"], progress=False)
    predicted = predicted_profiles(loaded.runs, loaded.metrics)
    assert set(predicted.run) == set(loaded.runs.run)
    measured = loaded.metrics.query("step == 0 and name == 'delta_rms'")
    for run, rows in predicted.groupby("run"):
        depth = loaded.runs.set_index("run").depth[run]
        last = measured[(measured.run == run) & (measured.layer == depth)].value.item()
        assert rows[rows.layer == depth].value.item() == pytest.approx(last, rel=1e-12)
        assert len(rows) == depth
    runs = loaded.runs.assign(bulk_ratio=measured_bulk_ratios(loaded.runs, loaded.metrics))
    table = findings(runs, loaded.config_keys)
    assert list(zip(table.activation, table.init, strict=True)) == [("tanh", "xavier_uniform"),
                                                                     ("relu", "xavier_uniform")]
    relu = table[table.activation == "relu"].iloc[0]
    assert relu.predicted == pytest.approx(2**-0.5, rel=0.02)  # sigma_w^2 = 1, half the units pass
    assert {"accuracy at depth 2", "accuracy at depth 6"} <= set(table.columns)


def image_sources(index: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def test_report_builds_from_several_sweeps_into_the_first(sweeps: Path, tmp_path: Path):
    base, wild = copy_of(sweeps / "base", tmp_path), copy_of(sweeps / "wild", tmp_path)
    index = report.build([base, wild], progress=False)
    assert index == base / "report" / "index.html"
    sources = image_sources(index)
    conditional = (has_time_runs, has_sharpness, has_batch_sweep)  # MLPs at one batch size, no sharpness
    drawn = [spec for spec in FIGURES if spec.drawn_for not in conditional]
    assert sources == [f"figures/{spec.name}.png" for spec in drawn]
    assert all((index.parent / src).stat().st_size > 10_000 for src in sources)
    runs = pd.read_csv(base / "report" / "runs.csv")
    assert len(runs) == 8 and runs.job.is_unique
    assert REQUIRED_CSV_COLUMNS <= set(runs.columns)
    page = index.read_text()
    assert "Findings" in page
    diverged = runs[runs.status == "diverged"]
    assert len(diverged) == 2 and all(f"{job}</code>: diverged at step" in page for job in diverged.job)


def test_cli_builds_the_newest_sweep_and_warns_once_per_broken_job(sweeps: Path, tmp_path: Path):
    multirun = tmp_path / "runs" / "multirun"
    multirun.mkdir(parents=True)
    sweep = copy_of(sweeps / "base", multirun)
    broken = next(sweep.glob("2_*"))
    remove_summary(broken)
    result = subprocess.run([sys.executable, str(REPO / "analysis" / "report.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(str(Path("runs/multirun/base/report/index.html")))
    warning_lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning_lines == [f"warning: skipped {broken.relative_to(tmp_path)}: no summary.json"]
    assert (sweep / "report" / "index.html").exists()


def test_cli_without_a_sweep_says_so_and_exits_2(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        assert report.main([]) == 2
    assert "no sweep under runs/" in capsys.readouterr().err


def test_report_of_runs_without_per_layer_measurements_still_builds(sweeps: Path, tmp_path: Path):
    """epochs=0 records only the full-set evaluation at step 0: no layer rows at all."""
    sweep = copy_of(sweeps / "base", tmp_path)
    for path in sweep.glob("*/metrics.parquet"):
        metrics = pd.read_parquet(path)
        metrics[metrics.layer.isna()].to_parquet(path)
    index = report.build([sweep], progress=False)
    assert all((index.parent / src).exists() for src in image_sources(index))
    runs = pd.read_csv(index.parent / "runs.csv")
    assert len(runs) == 4 and runs.delta_rms_ratio.isna().all()


def test_learning_step_is_the_first_step_below_the_loss_threshold(sweeps: Path):
    runs = load([sweeps / "base"], progress=False).runs
    for run in runs.itertuples(index=False):
        batch = pd.read_parquet(Path(run.job_dir) / "metrics.parquet").query("name == 'batch_loss'").sort_values("step")
        below = batch[batch.value < 0.5]
        if below.empty:
            assert pd.isna(run.learning_step)
        else:
            assert run.learning_step == below.step.iloc[0]
    synthetic = pd.DataFrame({"run": [7, 7, 7, 7, 8], "step": [0, 5, 10, 15, 0], "name": "batch_loss",
                              "value": [2.3, 0.6, 0.49, 0.3, 2.3]})
    steps = add_learning_steps(pd.DataFrame({"run": [7, 8]}), synthetic).learning_step
    assert steps.iloc[0] == 10 and pd.isna(steps.iloc[1])  # run 8 never gets below 0.5
