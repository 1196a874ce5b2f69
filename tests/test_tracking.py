"""W&B through the helper process: the run holds what the record holds, charts stay live, failures and Ctrl-C end
the run as they end the job, and the training process never imports wandb."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import RUN, cli_env, compose_config, interruptible, run_cli
from gradlab import experiment, tracking, wandb_helper
from gradlab.experiment import Job, run_job
from gradlab.measurement import Measurement
from wandb_records import first_of, history


def wandb_file(run_dir: Path) -> Path:
    [path] = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    return path


def history_values(path: Path) -> dict[tuple[int, str], float]:
    """(step, key) -> value of every logged number; W&B writes non-finite values as strings."""
    values = {}
    for row in history(path):
        for key, value in row.items():
            if not key.startswith("_") and not key.startswith("layer_profiles"):
                values[(int(row["_step"]), key)] = float(json.loads(value))
    return values


def record_values(run_dir: Path, replicas: int) -> dict[tuple[int, str], float]:
    """The same numbers from metrics.parquet, keyed as W&B names them: name/layer_07[/replica_1]."""
    values = {}
    for row in pd.read_parquet(run_dir / "metrics.parquet").itertuples():
        key = row.name if pd.isna(row.layer) else f"{row.name}/layer_{int(row.layer):02d}"
        values[(row.step, key if replicas == 1 else f"{key}/replica_{row.replica}")] = row.value
    return values


@pytest.mark.parametrize("replicas", [1, 2])
def test_wandb_run_holds_every_measured_step_of_every_metric_of_the_record(tmp_path: Path, replicas: int):
    run_dir = tmp_path / "run"
    result = run_cli("depth=4", "epochs=2", "log_every=4", f"replicas={replicas}", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    logged, recorded = history_values(wandb_file(run_dir)), record_values(run_dir, replicas)
    assert len(recorded) > 300 * replicas and {step for step, _ in recorded} == {*range(0, 30, 4), 15, 30}
    assert set(recorded) <= set(logged)
    assert all(logged[key] == value or math.isnan(value) and math.isnan(logged[key]) for key, value in recorded.items())
    assert first_of(wandb_file(run_dir), "exit").exit_code == 0


class RecordingHelper:
    """Stands in for tracking.Helper: keeps what a HelperLogger sends, answers nothing."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, *message) -> None:
        self.sent.append(message)

    def answer(self, timeout):
        return None


def test_measurements_reach_the_helper_every_live_interval_while_the_run_goes(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: clock[0])
    helper = RecordingHelper()
    logger = tracking.HelperLogger(helper, "online", {"name": "live"})
    for step in range(10):
        clock[0] = step * tracking.LIVE_INTERVAL_S / 4  # four measurements per interval
        logger.log(Measurement(step, 0, [(1, "grad_norm", float(step))], epoch_end=False))
    batches = [message[1] for message in helper.sent if message[0] == "log"]
    assert [[logged[0] for logged in batch] for batch in batches] == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert helper.sent[0] == ("start", "online", {"name": "live"})


def test_wandb_start_failure_in_the_helper_ends_the_run_failed_with_a_readable_record(tmp_path: Path):
    cfg = compose_config("depth=3", "epochs=1", "logger.mode=offline", "logger.project=not/a/project")
    with pytest.raises(RuntimeError, match="wandb.init: .*Invalid project name"):
        run_job(cfg, Job(tmp_path, "bad project"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "Invalid project name" in summary["error"]
    assert len(pd.read_parquet(tmp_path / "metrics.parquet")) > 0


def test_helper_that_dies_mid_run_ends_the_run_failed_with_a_readable_record(tmp_path: Path, monkeypatch):
    def start_then_kill(*args, **kwargs):
        logger, note = tracking.start_logger(*args, **kwargs)
        logger.helper.process.kill()
        return logger, note

    monkeypatch.setattr(experiment, "start_logger", start_then_kill)
    with pytest.raises(tracking.HelperGone):
        run_job(compose_config("depth=3", "epochs=1", "logger.mode=offline"), Job(tmp_path, "helper dies"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "W&B helper process" in summary["error"]
    assert len(pd.read_parquet(tmp_path / "metrics.parquet")) > 0


def test_ctrl_c_ends_job_and_wandb_run_with_exit_code_130(tmp_path: Path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(RUN), "epochs=100000", "depth=3", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
        start_new_session=True,  # its own process group, as a terminal's foreground job has
    )
    deadline = time.monotonic() + 60
    while not list(run_dir.glob("metrics.parquet/part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the job and its W&B helper both get it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert first_of(wandb_file(run_dir), "exit").exit_code == 130
    logged = {step for step, _ in history_values(wandb_file(run_dir))}
    recorded = set(pd.read_parquet(run_dir / "metrics.parquet").step)
    assert len(recorded) > 10 and logged <= recorded
    assert recorded - logged <= {max(recorded)}  # Ctrl-C may land between the record's sink and W&B's


def test_training_process_never_imports_wandb_scikit_learn_or_torchvision(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(RUN), "depth=3", "epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "hydra" in imported  # the listing is real
    assert not {name for name in imported if name.split(".")[0] in ("wandb", "sklearn", "torchvision")}
    assert wandb_file(tmp_path / "run").is_file()  # the helper process logged the run


def test_online_start_that_fails_falls_back_to_offline_with_the_reason(monkeypatch):
    started = []

    class OnlineFails:
        def __init__(self, mode: str, **kwargs) -> None:
            if mode == "online":
                raise TimeoutError("no answer from https://api.wandb.ai\nsecond line")
            self.mode = mode
            started.append(mode)

    monkeypatch.setattr(wandb_helper, "WandbLogger", OnlineFails)
    run, note = wandb_helper.open_run("online", {"name": "x"})
    assert run.mode == "offline" and started == ["offline"]
    assert note == wandb_helper.OFFLINE_FALLBACK.format(reason="TimeoutError: no answer from https://api.wandb.ai")
    assert wandb_helper.open_run("offline", {"name": "x"})[1] is None
