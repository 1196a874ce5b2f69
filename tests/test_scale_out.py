"""Scale-out and sync: Hydra's launchers, `src/sync.py`, and completing an interrupted sweep."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from conftest import REPO, cli_env, run_cli
from gradlab.sweeps import (
    SWEEP_STATE,
    available_cores,
    count_jobs,
    newest_sweep,
    recorded_status,
    sweep_running,
    threads_per_job,
    torch_threads,
)

SYNC = REPO / "src" / "sync.py"


def statuses(sweep: Path) -> dict[str, str]:
    return {p.name: recorded_status(p) for p in sorted(sweep.iterdir()) if p.is_dir() and p.name[0].isdigit()}


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_two_job_sweep_under_launcher_leaves_complete_records(tmp_path: Path, launcher: str):
    """Wide enough (width 1024, batches of 512) that a lone job would take every core: the launcher limits it."""
    result = run_cli("-m", f"hydra/launcher={launcher}", "seed=0,1", "depth=2", "epochs=1", "width=1024",
                     "batch_size=512", "logger.mode=offline", "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    sweep = tmp_path / "sweep"
    jobs = [f"{n}_batch_size=512,depth=2,epochs=1,seed={n},width=1024" for n in (0, 1)]
    assert statuses(sweep) == dict.fromkeys(jobs, "completed")
    for job in statuses(sweep):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["torch_threads"] == 1  # 2 parallel jobs on <= 2 cores, or submitit's 1 cpu per task
        assert (sweep / job / "metrics.parquet").exists()
        assert list((sweep / job / "wandb").glob("offline-run-*/run-*.wandb"))


def test_small_work_runs_on_one_thread_and_large_work_on_every_core():
    assert torch_threads(64 * 64, rows=100, cores=8) == 1  # the default network: 0.4 M multiply-adds
    assert torch_threads(96 * 96, rows=100, cores=8) == 1  # 0.9 M
    assert torch_threads(128 * 128, rows=100, cores=8) == 8  # 1.6 M
    assert torch_threads(1024 * 1024, rows=512, cores=2) == 2
    assert torch_threads(64 * 64, rows=100 * 8, cores=4) == 4  # 8 replicas of the default width: 3.3 M


def test_joblib_threads_split_the_cores_between_parallel_jobs():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert threads_per_job({"_target_": joblib, "n_jobs": -1}, cores=8) == 1
    assert threads_per_job({"_target_": joblib, "n_jobs": 2}, cores=8) == 4
    assert threads_per_job({"_target_": joblib, "n_jobs": -3}, cores=8) == 1  # 6 jobs on 8 cores
    assert threads_per_job({"_target_": joblib, "n_jobs": 16}, cores=8) == 1


def test_submitit_jobs_use_their_cpus_per_task_and_basic_launcher_keeps_torch_default():
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert threads_per_job({"_target_": slurm, "cpus_per_task": 4}, cores=64) == 4
    assert threads_per_job({"_target_": slurm, "cpus_per_task": None}, cores=64) == 1
    assert threads_per_job({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8) is None


def test_available_cores_is_the_affinity_where_the_os_has_one():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this OS")
    assert available_cores() == len(os.sched_getaffinity(0))


def test_available_cores_falls_back_to_cpu_count_without_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    assert available_cores() == os.cpu_count()


def test_newest_sweep_is_found_anywhere_under_runs_not_only_in_multirun(tmp_path: Path):
    for sweep, started in (("multirun/old", 1_000), ("my_sweep", 2_000), ("experiments/a/b", 3_000)):
        (tmp_path / sweep).mkdir(parents=True)
        (tmp_path / sweep / "multirun.yaml").write_text("hydra: {}\n")
        os.utime(tmp_path / sweep / "multirun.yaml", (started, started))
    assert newest_sweep(tmp_path) == tmp_path / "experiments" / "a" / "b"
    os.utime(tmp_path / "my_sweep" / "multirun.yaml", (4_000, 4_000))  # run again, into the same folder
    (tmp_path / "single" / "2026-12-06" / ".hydra").mkdir(parents=True)  # a single run is no sweep
    assert newest_sweep(tmp_path) == tmp_path / "my_sweep"


def write_state(sweep: Path, **state) -> Path:
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / SWEEP_STATE).write_text(json.dumps(state))
    return sweep


def test_a_sweep_runs_while_its_process_lives_on_this_host(tmp_path: Path):
    here = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert sweep_running(write_state(tmp_path / "a", status="running", host=here, pid=os.getpid()))
    assert not sweep_running(write_state(tmp_path / "b", status="running", host=here, pid=dead.pid))  # killed
    assert not sweep_running(write_state(tmp_path / "c", status="ended", host=here, pid=os.getpid()))
    assert sweep_running(write_state(tmp_path / "d", status="running", host="elsewhere", pid=1))  # cannot ask
    assert not sweep_running(tmp_path / "e")  # recorded before sweep.json existed


def test_job_count_of_a_sweep_covers_its_overrides_and_its_experiment_params():
    """As `python src/run.py -m +experiment=vanishing seed=0,1` and `-m depth=2,10,30 activation=tanh,relu` run:
    compose() takes no sweep, so the sweep's overrides are put where Hydra's multirun keeps them."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        vanishing = compose("config", overrides=["+experiment=vanishing"], return_hydra_config=True)
        plain = compose("config", return_hydra_config=True)
    with open_dict(vanishing), open_dict(plain):
        vanishing.hydra.overrides.task = ["+experiment=vanishing", "seed=0,1"]
        plain.hydra.overrides.task = ["depth=2,10,30", "activation=tanh,relu"]
    assert count_jobs(vanishing) == 27 * 2 and count_jobs(plain) == 6


def test_available_cores_is_at_least_one_when_the_count_is_unknown(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cores() == 1


def test_slurm_launcher_config_composes_with_the_cluster_keys():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    for key in ("timeout_min", "cpus_per_task", "gpus_per_task", "mem_gb", "array_parallelism"):
        assert key in launcher


@pytest.fixture(scope="module")
def offline_sweep(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("offline")
    result = run_cli("-m", "depth=2,3", "epochs=0", cwd=workdir)
    assert result.returncode == 0, result.stderr
    return newest_sweep(workdir / "runs")


def run_sync(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SYNC), *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=120)


def test_sync_dry_run_lists_every_offline_run_of_the_newest_sweep(offline_sweep: Path):
    workdir = offline_sweep.parents[2]  # the folder holding runs/, where a user runs the command
    result = run_sync("--dry-run", cwd=workdir)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[-1] for line in result.stdout.splitlines() if "offline-run-" in line]
    expected = sorted(offline_sweep.glob("*/wandb/offline-run-*"))
    assert len(expected) == 2 and sorted((workdir / p).resolve() for p in listed) == expected
    assert all("not synced" in line for line in result.stdout.splitlines() if "offline-run-" in line)


def test_sync_dry_run_says_which_sweep_and_runs_are_still_running(offline_sweep: Path, tmp_path: Path):
    sweep = tmp_path / "runs" / "live"
    shutil.copytree(offline_sweep, sweep)
    write_state(sweep, status="running", host=socket.gethostname(), pid=os.getpid())
    training = sorted(p for p in sweep.iterdir() if p.is_dir())[1]
    summary = json.loads((training / "summary.json").read_text())
    (training / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    result = run_sync("--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{Path('runs') / 'live'} is still running" in result.stdout
    states = {line.split()[-1].split("/")[2]: line.split()[0] for line in result.stdout.splitlines()
              if "offline-run-" in line}
    assert states == {p.name: "running" if p == training else "not" for p in sweep.iterdir() if p.is_dir()}


def test_sync_without_credentials_fails_fast_with_one_line(offline_sweep: Path, tmp_path: Path):
    started = time.monotonic()
    result = run_sync(str(offline_sweep), cwd=tmp_path, HOME=str(tmp_path))
    assert time.monotonic() - started < 60
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "wandb login" in result.stderr


def test_sync_without_a_network_fails_fast_with_one_line(offline_sweep: Path, tmp_path: Path):
    started = time.monotonic()
    result = run_sync(str(offline_sweep), cwd=tmp_path, HOME=str(tmp_path), WANDB_API_KEY="0" * 40,
                      WANDB_BASE_URL="http://127.0.0.1:9")  # the discard port: nothing listens
    assert time.monotonic() - started < 60
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "cannot reach" in result.stderr
    assert not list(offline_sweep.glob("*/wandb/offline-run-*/*.synced"))


def test_rerun_with_skip_completed_runs_only_the_unfinished_jobs(tmp_path: Path):
    args = ("-m", "seed=0,1", "depth=3", "epochs=1", "logger.mode=disabled", "hydra.sweep.dir=sweep")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    sweep = tmp_path / "sweep"
    done, cut = sweep / "0_depth=3,epochs=1,seed=0", sweep / "1_depth=3,epochs=1,seed=1"
    summary = json.loads((cut / "summary.json").read_text())
    (cut / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))  # as if killed
    (cut / "metrics.parquet").unlink()
    done_bytes, done_mtime = (done / "metrics.parquet").read_bytes(), (done / "metrics.parquet").stat().st_mtime_ns

    result = run_cli(*args, "skip_completed=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert statuses(sweep) == {done.name: "completed", cut.name: "completed"}  # same folders, no new ones
    assert (done / "metrics.parquet").stat().st_mtime_ns == done_mtime
    assert (done / "metrics.parquet").read_bytes() == done_bytes
    assert (cut / "metrics.parquet").exists()
    skipped, rerun, closing = [line for line in result.stderr.splitlines() if line.startswith("gradlab: ")]
    assert skipped == f"gradlab: [1/2] depth=3,epochs=1,seed=0: skipped (completed earlier), sweep/{done.name}"
    assert rerun.startswith("gradlab: [2/2] depth=3,epochs=1,seed=1: completed")
    assert closing.startswith("gradlab: sweep done, 2 jobs: 1 completed, 1 skipped (completed earlier); ")


def test_newest_sweep_is_the_last_started_even_after_writing_into_an_older_one(tmp_path: Path):
    old, new = tmp_path / "multirun" / "old", tmp_path / "multirun" / "new"
    for sweep, started in ((old, 1_000), (new, 2_000)):
        sweep.mkdir(parents=True)
        (sweep / "multirun.yaml").write_text("hydra: {}\n")
        os.utime(sweep / "multirun.yaml", (started, started))
    (old / "report").mkdir()  # a report built into the old sweep afterwards touches its folder
    assert newest_sweep(tmp_path) == new
