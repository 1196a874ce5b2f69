"""End to end, offline, in a temporary folder: the CLI sweep leaves run records and W&B runs."""

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from gradlab.per_example import NOISE_NAMES
from gradlab.stats import LAYER_METRICS
from wandb_records import first_of, history


@pytest.fixture(scope="module")
def depth_sweep(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("sweep")
    result = run_cli("-m", "depth=2,10,30", "epochs=1", cwd=workdir)
    assert result.returncode == 0, result.stderr
    [sweep] = list((workdir / "runs" / "multirun").iterdir())
    return sweep


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_")[0]))


def test_sweep_leaves_one_readable_job_folder_per_depth(depth_sweep: Path):
    names = [p.name for p in job_dirs(depth_sweep)]
    assert names == ["0_depth=2,epochs=1", "1_depth=10,epochs=1", "2_depth=30,epochs=1"]
    for job in job_dirs(depth_sweep):
        assert (job / ".hydra" / "config.yaml").exists() and (job / ".hydra" / "overrides.yaml").exists()
        assert not list(job.glob("*.log"))  # gradlab logs nothing through logging: Hydra writes no empty run.log
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["diverged_at_step"] is None
        assert summary["steps"] == 15  # 1,437 training digits in batches of 100
        for key in ("final_train_loss", "final_test_loss", "final_train_accuracy", "final_test_accuracy",
                    "wall_seconds", "seed", "versions", "git_commit"):
            assert key in summary


@pytest.mark.parametrize("index, depth", [(0, 2), (1, 10), (2, 30)])
def test_step0_profile_covers_every_layer(depth_sweep: Path, index: int, depth: int):
    metrics = pd.read_parquet(job_dirs(depth_sweep)[index] / "metrics.parquet")
    assert list(metrics.columns) == ["replica", "step", "epoch", "layer", "time", "name", "value"]
    assert metrics.layer.dtype == "Int64" and metrics.step.dtype == "int64"  # 1, 2, <NA>; not 1.0, 2.0, NaN
    assert set(metrics.replica) == {0}
    at_init = metrics[(metrics.step == 0) & metrics.layer.notna()]
    for name in ("grad_norm", "delta_rms", "bias_grad_norm", "weight_norm", "update_ratio"):
        assert sorted(at_init[at_init.name == name].layer.astype(int)) == list(range(1, depth + 1))
    for name in ("act_mean", "act_std", "saturation"):
        assert sorted(at_init[at_init.name == name].layer.astype(int)) == list(range(1, depth))
    for name in NOISE_NAMES:  # the gradient's noise across the batch, per layer (gradlab.per_example)
        assert sorted(at_init[at_init.name == name].layer.astype(int)) == list(range(1, depth + 1))
    assert set(at_init.name) <= {*LAYER_METRICS, *NOISE_NAMES}
    whole = set(metrics[metrics.layer.isna()].name)
    assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy", "batch_loss"} <= whole


def test_default_sweep_shows_vanishing_gradients(depth_sweep: Path):
    ratios = {}
    for job in job_dirs(depth_sweep):
        metrics = pd.read_parquet(job / "metrics.parquet")
        delta = metrics[(metrics.step == 0) & (metrics.name == "delta_rms")].sort_values("layer").value
        ratios[len(delta)] = delta.iloc[0] / delta.iloc[-1]
    assert ratios[30] < 1e-12 < ratios[10] < 1e-3 < ratios[2]


def test_each_job_has_an_offline_wandb_run_matching_the_record(depth_sweep: Path):
    for job, depth in zip(job_dirs(depth_sweep), (2, 10, 30), strict=True):
        [run_file] = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
        run = first_of(run_file, "run")
        assert run.run_group == depth_sweep.name
        assert run.display_name == f"depth={depth},epochs=1"
        assert any(item.key == "depth" and item.value_json == str(depth) for item in run.config.update)
        assert first_of(run_file, "exit").exit_code == 0
        step0 = next(row for row in history(run_file) if row["_step"] == "0")
        metrics = pd.read_parquet(job / "metrics.parquet")
        for layer in range(1, depth + 1):
            recorded = metrics.query("step == 0 and layer == @layer and name == 'grad_norm'").value.item()
            assert float(step0[f"grad_norm/layer_{layer:02d}"]) == pytest.approx(recorded, rel=1e-12)
        assert list((job / "wandb").glob("offline-run-*/files/media/table/layer_profiles_*.table.json"))


def test_diverging_job_is_recorded_while_the_sweep_completes(tmp_path: Path):
    result = run_cli("-m", "lr=0.1,1000", "activation=relu", "init=normal", "depth=3", "epochs=1",
                     "logger.mode=disabled", "hydra.sweep.dir=my_sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summaries = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "my_sweep").glob("*/summary.json")}
    stable = summaries["0_activation=relu,depth=3,epochs=1,init=normal,lr=0.1"]
    diverged = summaries["1_activation=relu,depth=3,epochs=1,init=normal,lr=1000"]
    assert stable["status"] == "completed"
    assert diverged["status"] == "diverged" and diverged["diverged_at_step"] == diverged["steps"] > 0
    metrics = pd.read_parquet(tmp_path / "my_sweep" / "1_activation=relu,depth=3,epochs=1,init=normal,lr=1000"
                              / "metrics.parquet")
    assert metrics.step.max() == diverged["diverged_at_step"]
