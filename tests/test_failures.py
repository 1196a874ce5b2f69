"""Every way a run can end leaves a final status and a readable record: W&B that cannot start or finish,
online mode without credentials or a server, a SIGKILL, non-finite values in the summary."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import load
from analysis.page import unfinished_runs
from conftest import RUN, cli_env, compose_config, run_cli
from gradlab import experiment
from gradlab.experiment import Job, run_job
from gradlab.measurement import Measurement
from gradlab.record import RunRecord
from gradlab.sync import find_offline_runs
from gradlab.tracking import NullLogger

FALLBACK = "W&B online mode unavailable"


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize(
    "env",
    [{}, {"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}],  # port 9: nothing listens
    ids=["no credentials", "fake key, closed port"],
)
def test_unavailable_online_mode_falls_back_to_offline_with_one_line(tmp_path: Path, env: dict):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = run_cli("depth=3", "epochs=1", "logger.mode=online", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     timeout=60, HOME=str(tmp_path), **env)
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stderr
    fallback, job_end = result.stderr.strip().splitlines()  # the fallback's one line, then the job's closing line
    assert FALLBACK in fallback and job_end.startswith("gradlab: depth=3,epochs=1: completed, ")
    summary = summary_of(run_dir)
    assert (summary["status"], summary["wandb_mode"]) == ("completed", "offline")
    assert [run.synced for run in find_offline_runs([run_dir])] == [False]  # src/sync.py can upload it later


class FailingLogger(NullLogger):
    mode = "offline"

    def finish(self, exit_code: int) -> None:
        raise RuntimeError("W&B service went away")


def failing_start(*args, **kwargs):
    raise RuntimeError("wandb.init failed")


@pytest.mark.parametrize(
    ("start", "error"),
    [(failing_start, "wandb.init failed"), (lambda *a, **k: (FailingLogger(), None), "W&B service went away")],
    ids=["start", "finish"],
)
def test_wandb_failure_ends_the_run_failed_with_a_readable_record(tmp_path: Path, monkeypatch, start, error):
    monkeypatch.setattr(experiment, "start_logger", start)
    cfg = compose_config("depth=3", "epochs=1")
    with pytest.raises(RuntimeError, match=error):
        run_job(cfg, Job(tmp_path, "wandb fails"))
    summary = summary_of(tmp_path)
    assert summary["status"] == "failed" and error in summary["error"]
    assert (tmp_path / "metrics.parquet").is_file()
    pd.read_parquet(tmp_path / "metrics.parquet")


def start_killable_run(run_dir: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUN), "epochs=100000", "depth=3", "logger.mode=disabled", f"hydra.run.dir={run_dir}"],
        cwd=cwd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def test_sigkilled_run_stays_running_is_reported_unfinished_and_rerun(tmp_path: Path):
    run_dir = tmp_path / "killed"
    process = start_killable_run(run_dir, tmp_path)
    deadline = time.monotonic() + 60
    while len(list((run_dir / "metrics.parquet").glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert summary_of(run_dir)["status"] == "running"
    metrics = pd.read_parquet(run_dir / "metrics.parquet")  # the epochs flushed before the kill
    assert metrics.query("name == 'test_loss'").epoch.max() >= 1
    runs = load([run_dir], progress=False).runs
    assert list(runs.status) == ["running"] and "running after" in unfinished_runs(runs)

    rerun = run_cli("epochs=1", "depth=3", "logger.mode=disabled", "skip_completed=true",
                    f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert rerun.returncode == 0 and "skipped" not in rerun.stderr
    assert summary_of(run_dir)["status"] == "completed"
    assert pd.read_parquet(run_dir / "metrics.parquet").epoch.max() == 0  # the killed run's rows are gone
    again = run_cli("epochs=1", "depth=3", "logger.mode=disabled", "skip_completed=true",
                    f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert again.returncode == 0 and "skipped (completed earlier)" in again.stderr


def reject_constant(name: str) -> None:
    raise ValueError(f"not strict JSON: {name}")


def test_summary_is_strict_json_with_non_finite_values_as_null(tmp_path: Path):
    RunRecord(tmp_path).write_summary({"loss": math.nan, "finals": [math.inf, 0.5], "replica": {"loss": -math.inf}})
    text = (tmp_path / "summary.json").read_text()
    assert json.loads(text, parse_constant=reject_constant) == {
        "loss": None, "finals": [None, 0.5], "replica": {"loss": None}}


def epoch_of_measurements(epoch: int, steps: int) -> list[Measurement]:
    rows = [(layer, None, "grad_norm", float(epoch * 100 + layer)) for layer in (1, 2, 3)]
    return [Measurement(epoch * steps + s, epoch, rows, epoch_end=s == steps - 1) for s in range(steps)]


def test_record_writes_each_epoch_once_then_one_file(tmp_path: Path):
    record = RunRecord(tmp_path)
    for epoch in range(3):
        for m in epoch_of_measurements(epoch, steps=4):
            record.append(m)
        parts = sorted((tmp_path / "metrics.parquet").glob("part-*.parquet"))
        assert [len(pd.read_parquet(p)) for p in parts] == [12] * (epoch + 1)  # each part holds one epoch's rows
        assert len(pd.read_parquet(tmp_path / "metrics.parquet")) == 12 * (epoch + 1)
    record.close()
    assert (tmp_path / "metrics.parquet").is_file() and not list(tmp_path.glob(".metrics*"))
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    assert list(metrics.step) == [s for s in range(12) for _ in range(3)]
    assert sorted(metrics.value.unique()) == [1, 2, 3, 101, 102, 103, 201, 202, 203]
