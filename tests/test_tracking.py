"""W&B through the helper process: the run holds what the record holds, charts stay live, failures and Ctrl-C end
the run as they end the job, and the training process never imports wandb."""

import importlib.metadata
import importlib.util
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
from wandb_records import first_of, history, logged_table


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
    """The same numbers from metrics.parquet, keyed as W&B names them: name[/layer_07][/replica_1] (no time step)."""
    values = {}
    for row in pd.read_parquet(run_dir / "metrics.parquet").itertuples():
        key = row.name if pd.isna(row.layer) else f"{row.name}/layer_{int(row.layer):02d}"
        time_step = getattr(row, "time", None)  # a recurrent network's per-step rows go to the profiles table
        if time_step is not None and not pd.isna(time_step):
            continue
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
        logger.log(Measurement(step, 0, [(1, None, "grad_norm", float(step))], epoch_end=False))
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


@pytest.mark.parametrize(
    ("layer", "name", "replica", "key"),
    [
        (7, "grad_norm", None, "grad_norm/layer_07"),
        (None, "train_loss", None, "train_loss"),
        (7, "grad_norm", 2, "grad_norm/layer_07/replica_2"),
        (None, "train_loss", 0, "train_loss/replica_0"),
    ],
)
def test_wandb_key_names_the_layer_and_the_replica(layer, name, replica, key):
    assert wandb_helper.wandb_key(layer, name, replica) == key


def test_helper_logs_rows_by_layer_and_time_step_and_profiles_them_in_a_table(tmp_path: Path):
    """Through the helper process, as a job logs: every row of no time step under its key in the history; the
    per-layer and per-time-step rows in layer_profiles (a recurrent net's T keys per metric stay out of the history)."""
    helper = tracking.Helper.spawn()
    kwargs = {"project": "p", "entity": None, "run_dir": tmp_path, "group": None, "name": "t", "config": {}}
    logger = tracking.HelperLogger(helper, "offline", kwargs)
    for step in (0, 1):
        rows = [(None, None, "loss", 1.0 + step), (1, None, "grad_norm", 2.0 + step), (1, 12, "grad_norm", 4.0 + step),
                (1, 3, "grad_norm", 3.0 + step)]
        logger.log(Measurement(step, 0, rows, epoch_end=True))
    logger.finish(0)
    helper.release()
    helper.process.wait(timeout=60)  # W&B's service may still be writing the run file until the helper exits
    assert history_values(wandb_file(tmp_path)) == {
        (0, "epoch"): 0, (0, "loss"): 1, (0, "grad_norm/layer_01"): 2,
        (1, "epoch"): 0, (1, "loss"): 2, (1, "grad_norm/layer_01"): 3,
    }
    assert logged_table(wandb_file(tmp_path), "layer_profiles") == {
        "columns": ["replica", "layer", "time", "name", "at_init", "final"],
        "data": [[0, 1, None, "grad_norm", 2.0, 3.0], [0, 1, 3, "grad_norm", 3.0, 4.0],
                 [0, 1, 12, "grad_norm", 4.0, 5.0]],
    }


@pytest.mark.parametrize(
    ("overrides", "wandb_mode", "started"),
    [
        (["depth=3"], None, True),
        (["+experiment=vanishing"], None, True),  # its file decides: start_logger ends the helper if it says disabled
        (["depth=3", "logger.mode=disabled"], None, False),
        (["+logger.mode=disabled"], None, False),
        (["++logger.mode=disabled"], None, False),
        (["depth=3"], "disabled", False),
        (["logger.mode=disabled"], "offline", True),  # WANDB_MODE wins over the config
    ],
)
def test_early_helper_starts_unless_the_environment_or_command_line_turns_wandb_off(
    monkeypatch, overrides, wandb_mode, started
):
    spawned = []
    monkeypatch.setattr(tracking.Helper, "spawn", classmethod(lambda cls: spawned.append(cls) or "helper"))
    monkeypatch.setattr(tracking, "_idle", [])
    if wandb_mode is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", wandb_mode)
    tracking.start_helper_early(overrides)
    assert tracking._idle == (["helper"] if started else [])


def test_mode_disabled_in_an_experiment_file_ends_the_early_helper_before_the_job_trains(tmp_path: Path, monkeypatch):
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    (experiments / "quiet.yaml").write_text("# @package _global_\nlogger:\n  mode: disabled\n")
    cfg = compose_config(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=quiet", "depth=3", "epochs=1")
    assert cfg.logger.mode == "disabled"
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(tracking, "_idle", [])
    tracking.start_helper_early(["+experiment=quiet", "depth=3", "epochs=1"])  # as src/run.py does
    [early] = tracking._idle
    running_when_the_job_starts = []

    def start_then_look(*args, **kwargs):
        started = tracking.start_logger(*args, **kwargs)
        running_when_the_job_starts.append(early.process.poll() is None)
        return started

    monkeypatch.setattr(experiment, "start_logger", start_then_look)
    (tmp_path / "run").mkdir()
    run_job(cfg, Job(tmp_path / "run", "quiet"))
    assert running_when_the_job_starts == [False] and tracking._idle == []
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["wandb_mode"] == "disabled"


TRACE_START = """
import runpy, sys
order = []
sys.addaudithook(lambda event, args: order.append("helper") if event == "subprocess.Popen" and "wandb_helper" in
                 str(args[1]) else order.append(args[0]) if event == "import" and args[0] == "torch" else None)
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print(order[:2])
"""


def test_run_py_starts_the_helper_before_it_imports_torch(tmp_path: Path):
    """W&B's start-up overlaps torch's import only if the helper is started first (src/run.py's top)."""
    result = subprocess.run([sys.executable, "-c", TRACE_START, str(RUN)], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines()[-1] == "['helper', 'torch']", result.stderr


def test_tracking_imports_neither_torch_nor_hydra():
    probe = "import sys\nfrom gradlab import tracking\nprint(sorted({'torch', 'hydra'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def neighbours(series: str) -> set[str]:
    major, minor = map(int, series.split("."))
    return {f"{major}.{minor + 1}", f"{major}.{minor - 1}", f"{major + 1}.{minor}", f"{major}.{minor}0"}


CHECKED_SERIES = sorted(wandb_helper.JOB_INPUTS_CHECKED)
UNCHECKED_SERIES = sorted(set().union(*map(neighbours, CHECKED_SERIES)) - set(CHECKED_SERIES))


class StagedInputsRun:
    """Stands in for wandb's Run: its Launch inputs step says whether it ran."""

    def _detect_and_apply_job_inputs(self) -> str:
        return "applied"


@pytest.mark.parametrize("version", [f"{series}.{patch}" for series in CHECKED_SERIES for patch in ("0", "9", "1rc1")])
def test_launch_inputs_step_is_skipped_in_a_checked_wandb_version(version):
    run_class = type("Run", (StagedInputsRun,), {})
    assert wandb_helper.skip_job_inputs(run_class, version)
    assert run_class()._detect_and_apply_job_inputs() is None


@pytest.mark.parametrize("version", [*(f"{series}.0" for series in UNCHECKED_SERIES), "dev", ""])
def test_launch_inputs_step_is_left_alone_in_any_other_wandb_version(version):
    run_class = type("Run", (StagedInputsRun,), {})
    assert not wandb_helper.skip_job_inputs(run_class, version)
    assert run_class()._detect_and_apply_job_inputs() == "applied"


def test_installed_wandb_is_checked_and_its_launch_inputs_step_only_applies_staged_inputs():
    """The patch's premise, read in the installed W&B's source (without importing it): the private method exists,
    wandb.init calls it, and all it does is apply inputs staged by Launch's API."""
    version = importlib.metadata.version("wandb")
    if ".".join(version.split(".")[:2]) not in wandb_helper.JOB_INPUTS_CHECKED:
        pytest.skip(f"W&B {version} is not a checked version: the helper leaves its Launch inputs step alone")
    source = Path(importlib.util.find_spec("wandb").origin).parent.joinpath("sdk", "wandb_run.py").read_text()
    body = source.split("def _detect_and_apply_job_inputs(self) -> None:\n")[1].split("\n    def ")[0]
    assert "self._detect_and_apply_job_inputs()" in source
    code = [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith('"""')]
    assert code == ["from wandb.sdk.launch.inputs.internal import StagedLaunchInputs",
                    "StagedLaunchInputs().apply(self)"]
