"""The training loop, the run record and the W&B logger, in process (no subprocess unless a signal)."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from conftest import RUN, cli_env, compose_config, interruptible
from gradlab.config import train_settings
from gradlab.experiment import Job, prepare, run_job
from gradlab.record import METRICS_SCHEMA
from gradlab.tracking import resolve_mode
from gradlab.train import train
from gradlab.wandb_helper import wandb_key


def measurements(*overrides: str):
    cfg = compose_config(*overrides)
    setup = prepare(cfg)
    seen = []
    result = train(setup.net, setup.loss, setup.split, train_settings(cfg), seen.append)
    return result, seen


def test_epochs_zero_records_only_the_state_at_init():
    result, seen = measurements("epochs=0", "depth=4")
    assert (result.status, result.steps, result.diverged_at_step) == ("completed", 0, None)
    assert {m.step for m in seen} == {0}
    names = {name for m in seen for layer, _, name, _ in m.rows if layer is None}
    assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy", "batch_loss"} <= names
    for metric in ("grad_norm", "delta_rms"):
        assert sorted(layer for m in seen for layer, _, name, _ in m.rows if name == metric) == [1, 2, 3, 4]


def test_layer_measurements_come_at_step_0_and_every_log_every_steps():
    result, seen = measurements("epochs=2", "depth=3", "log_every=4")
    measured = sorted({m.step for m in seen if not m.epoch_end})
    assert result.steps == 30
    assert measured == list(range(0, 30, 4))
    closing = [m.step for m in seen if m.epoch_end]
    assert closing == [0, 15, 30]


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    _, first = measurements("epochs=1", "depth=5", "seed=3")
    _, again = measurements("epochs=1", "depth=5", "seed=3")
    _, other = measurements("epochs=1", "depth=5", "seed=4")
    assert [m.rows for m in first] == [m.rows for m in again]
    assert [m.rows for m in first] != [m.rows for m in other]


def test_clipping_bounds_each_steps_global_gradient_norm():
    """With momentum 0 each update is -lr * (clipped gradient): its norm / lr is the clipped global norm."""
    clip, lr = 0.05, 0.5
    cfg = compose_config("epochs=1", "depth=3", "init=normal", "activation=relu", f"lr={lr}", "momentum=0",
                         f"clip_grad_norm={clip}", "log_every=1")
    setup = prepare(cfg)
    snapshots, raw_norms = [], []

    def on_measure(m) -> None:
        if not m.epoch_end:  # measured on the step's mini-batch, before its update
            snapshots.append(torch.cat([p.flatten() for p in setup.net.weights + setup.net.biases]).double())
            squares = [v**2 for layer, _, name, v in m.rows if name in ("grad_norm", "bias_grad_norm")]
            raw_norms.append(math.sqrt(sum(squares)))

    result = train(setup.net, setup.loss, setup.split, train_settings(cfg), on_measure)
    assert result.status == "completed" and len(snapshots) == result.steps == 15
    updates = [after - before for before, after in zip(snapshots[:-1], snapshots[1:], strict=True)]
    steps = [torch.linalg.vector_norm(update).item() / lr for update in updates]
    assert max(steps) <= clip * (1 + 1e-5)
    clipped = [(s, raw) for s, raw in zip(steps, raw_norms, strict=False) if raw > clip]
    assert len(clipped) >= 10  # the bound was tested, not idle: most raw gradients exceed it
    assert all(s == pytest.approx(clip, rel=1e-4) for s, _ in clipped)


def test_divergence_stops_at_once_with_the_non_finite_step_recorded():
    result, seen = measurements("epochs=3", "depth=3", "init=normal", "activation=relu", "lr=1000")
    assert result.status == "diverged" and result.diverged_at_step == result.steps == seen[-1].step
    last = dict(((layer, name), value) for layer, _, name, value in seen[-1].rows)
    assert not all(math.isfinite(v) for v in last.values())


def test_run_job_writes_a_tidy_record_with_its_summary(tmp_path: Path):
    cfg = compose_config("epochs=1", "depth=3", "logger.mode=disabled")
    assert run_job(cfg, Job(tmp_path, "test")) == "completed"
    table = pq.read_table(tmp_path / "metrics.parquet")
    assert table.schema.equals(METRICS_SCHEMA)
    metrics = table.to_pandas()
    assert metrics.layer.isna().any() and set(metrics.layer.dropna().astype(int)) == {1, 2, 3}
    summary = json.loads((tmp_path / "summary.json").read_text())
    final_test_loss = metrics.query("name == 'test_loss'").sort_values("step").value.iloc[-1]
    assert summary["final_test_loss"] == final_test_loss and summary["steps"] == 15
    assert summary["versions"]["torch"] and summary["seed"] == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_wandb_keys_name_the_layer_with_two_digits():
    assert wandb_key(7, "grad_norm") == "grad_norm/layer_07"
    assert wandb_key(30, "delta_rms") == "delta_rms/layer_30"
    assert wandb_key(None, "train_loss") == "train_loss"


def test_wandb_mode_environment_variable_wins(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("offline") == "disabled"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_killed_run_leaves_a_readable_interrupted_record(tmp_path: Path, signum: int):
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(RUN), "epochs=100000", "depth=3", "log_every=1", "logger.mode=disabled",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] > 0
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert metrics.step.max() == summary["steps"]
    assert "Traceback" not in stderr


def test_dtype_float64_trains_the_network_its_data_and_its_steps_in_double(tmp_path: Path):
    cfg = compose_config("depth=3", "width=8", "epochs=1", "dtype=float64", "logger.mode=disabled")
    setup = prepare(cfg)
    assert {t.dtype for t in setup.net.parameters()} == {torch.float64}
    assert setup.split.x_train.dtype == setup.split.x_test.dtype == torch.float64
    assert run_job(cfg, Job(tmp_path, "double")) == "completed"
    single = prepare(compose_config("depth=3", "width=8"))
    assert {t.dtype for t in single.net.parameters()} == {torch.float32}  # the default stays float32


def test_batch_size_zero_is_full_batch_descent_one_step_per_epoch_on_the_whole_training_set():
    """batch_size=0 trains on every training example at once: one step per epoch, whose batch loss is the full
    training loss measured just before it."""
    setup = prepare(compose_config("dataset=toy", "depth=3", "batch_size=0", "epochs=3", "log_every=1"))
    assert setup.settings.batch_size == len(setup.split.x_train)
    seen = []
    result = train(setup.net, setup.loss, setup.split, setup.settings, seen.append)
    assert result.steps == 3
    first_batch = next(m for m in seen if not m.epoch_end)
    batch_loss = next(value for _, _, name, value in first_batch.rows if name == "batch_loss")
    train_loss = next(value for _, _, name, value in seen[0].rows if name == "train_loss")
    assert batch_loss == pytest.approx(train_loss, rel=1e-5)


def test_eval_every_adds_the_full_sets_losses_of_the_network_as_it_stands_at_those_steps():
    """eval_every=4 on 8 steps an epoch: train and test rows at steps 4 and 12 besides the epochs' ends (0, 8, 16),
    once each (step 8's is the epoch's end), each the full training set's mean loss under the network as it stands
    when that step is measured (before its update)."""
    setup = prepare(compose_config("dataset=toy", "depth=3", "epochs=2", "eval_every=4", "log_every=5"))
    seen, direct = [], {}

    def on_measure(m):
        seen.append(m)
        logits = setup.net.infer(setup.split.x_train)
        direct[m.step] = float(setup.loss.value(logits, setup.split.y_train).double().mean())

    train(setup.net, setup.loss, setup.split, setup.settings, on_measure)
    losses = [(m.step, value) for m in seen for _, _, name, value in m.rows if name == "train_loss"]
    assert [step for step, _ in losses] == [0, 4, 8, 12, 16] and [m.step for m in seen if m.epoch_end] == [0, 8, 16]
    assert sum(name == "test_accuracy" for m in seen for _, _, name, _ in m.rows) == 5
    for step, value in losses:
        assert value == pytest.approx(direct[step], rel=1e-6)


def test_curvature_every_records_the_sharpness_of_the_network_as_it_stands_at_those_steps():
    """curvature.every=4: a whole-network sharpness row at steps 0, 4, 8, ...; at step 0 it is
    gradlab.curvature.top_eigenvalue of the untrained network on the first curvature.examples training examples."""
    from gradlab.curvature import top_eigenvalue

    setup = prepare(compose_config("dataset=toy", "depth=3", "activation=tanh", "width=16", "epochs=1",
                                   "curvature.every=4", "curvature.examples=200", "log_every=5"))
    untrained = setup.net.cast(torch.float64)
    seen = []
    train(setup.net, setup.loss, setup.split, setup.settings, seen.append)
    sharpness = {m.step: value for m in seen for _, _, name, value in m.rows if name == "sharpness"}
    assert sorted(sharpness) == list(range(0, setup.settings.epochs * 8, 4))  # 800 examples / 100: 8 steps
    x, y = setup.split.x_train[:200], setup.split.y_train[:200]
    assert sharpness[0] == pytest.approx(top_eigenvalue(untrained, setup.loss, x, y), rel=1e-9)
    assert sharpness[4] != pytest.approx(sharpness[0], rel=1e-3)  # measured where the network stands then
