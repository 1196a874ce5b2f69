"""Sweeps on disk: where they are, whether one is still running, how many jobs it has, and how jobs share cores.

A sweep folder holds Hydra's multirun.yaml (written when the sweep starts, rewritten when it is run again) and
gradlab's sweep.json, which the SweepEnd callback writes at the sweep's start and end: the number of jobs, when it
started, and the host and process that run it.
"""

import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

SWEEP_STATE = "sweep.json"
NOT_SWEEPS = ("report", "wandb", ".hydra", ".submitit")  # folders inside a sweep or a run, never a sweep


def find_sweeps(runs_dir: Path) -> list[Path]:
    """Every sweep folder below runs_dir: each folder that holds multirun.yaml (any hydra.sweep.dir), and each
    folder right under runs_dir/multirun (sweeps recorded without one)."""
    sweeps = {p for p in (Path(runs_dir) / "multirun").glob("*") if p.is_dir()}
    for folder, subfolders, files in os.walk(runs_dir):
        if "multirun.yaml" in files or ".hydra" in subfolders:  # a sweep, or a single run: nothing below is a sweep
            sweeps.update([Path(folder)] if "multirun.yaml" in files else [])
            subfolders.clear()
        subfolders[:] = [name for name in subfolders if name not in NOT_SWEEPS]
    return sorted(sweeps)


def newest_sweep(runs_dir: Path) -> Path | None:
    """The most recently started sweep anywhere under runs_dir, if any.

    Hydra writes multirun.yaml once, when a sweep starts; the folder's own time would also change
    when a report or a sync writes into an old sweep.
    """
    def started(sweep: Path) -> float:
        marker = sweep / "multirun.yaml"
        return (marker if marker.exists() else sweep).stat().st_mtime

    return max(find_sweeps(runs_dir), key=started, default=None)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file; None when the file is missing, unreadable or holds something else."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def recorded_summary(run_dir: Path) -> dict[str, Any] | None:
    """A job folder's summary.json; None when there is no readable record."""
    return read_json(Path(run_dir) / "summary.json")


def recorded_status(run_dir: Path) -> str | None:
    """The status in a job folder's summary.json; None when there is no readable record."""
    return (recorded_summary(run_dir) or {}).get("status")


def sweep_state(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's sweep.json ({} for a sweep recorded without one, or one that cannot be read)."""
    return read_json(Path(sweep_dir) / SWEEP_STATE) or {}


def process_alive(host: str | None, pid: int | None) -> bool:
    """Whether the process still runs; a process on another host is taken to run (it cannot be asked)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def sweep_running(sweep_dir: Path) -> bool:
    """Whether the sweep's own process is still running it (a killed sweep's sweep.json still says running)."""
    state = sweep_state(sweep_dir)
    return state.get("status") == "running" and process_alive(state.get("host"), state.get("pid"))


def count_jobs(config: DictConfig) -> int | None:
    """How many jobs Hydra's basic sweeper makes of the sweep's overrides and hydra.sweeper.params; None for
    another sweeper (an optimizer decides as it goes)."""
    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    arguments = params + list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
    return len(batches[0])


def write_state(sweep_dir: Path, state: Mapping[str, Any]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    temporary = sweep_dir / f".{SWEEP_STATE}.tmp"
    temporary.write_text(json.dumps(state, indent=1))
    temporary.replace(sweep_dir / SWEEP_STATE)


def start_state(sweep_dir: Path, jobs: int | None) -> dict[str, Any]:
    """sweep.json at the sweep's start: its job count, start time, host and process."""
    state = {"status": "running", "jobs": jobs, "started": time.time(), "host": socket.gethostname(),
             "pid": os.getpid()}
    write_state(sweep_dir, state)
    return state


ONE_THREAD_BELOW = 1_000_000  # multiply-adds in a step's largest product where two threads stop gaining


def torch_threads(largest_matrix: int, rows: int, cores: int) -> int:
    """Torch threads for a job: one for small work, `cores` (those the job may use) for the rest. The work is the
    multiply-adds of a step's largest matrix product: `rows` examples (batch x replicas) through the network's
    largest weight matrix, of `largest_matrix` entries.

    Small work is dispatch-bound: a second thread gains nothing, and torch's OpenMP threads wait for each other by
    spinning, so that beside any other busy process every step stalls. Measured on 2 cores (docs/performance.md),
    a depth-10 step at batch 100: width 64 (0.4 M) 0.76 ms on one thread, 0.84 ms on two, and beside a busy
    process 0.75 and 2.4 ms; width 96 (0.9 M) 1.09 and 1.05 ms; width 128 (1.6 M) 1.62 and 1.39 ms."""
    return 1 if rows * largest_matrix < ONE_THREAD_BELOW else cores


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one (Linux), else os.cpu_count()."""
    if hasattr(os, "sched_getaffinity"):  # absent on macOS and Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_job(launcher: Mapping[str, Any] | None, cores: int) -> int | None:
    """Torch threads for one job so that parallel jobs x threads <= cores; None keeps torch's default.

    joblib runs n_jobs processes at once (-1: one per core); submitit gives each job cpus_per_task.
    """
    target = str((launcher or {}).get("_target_", ""))
    if "JoblibLauncher" in target:
        n_jobs = int(launcher.get("n_jobs") or -1)
        parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
        return max(1, cores // min(max(parallel, 1), cores))
    if "submitit" in target:
        return int(launcher.get("cpus_per_task") or 1)
    return None
