"""Sweeps: where they live on disk, and how their jobs share a machine's cores."""

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def newest_sweep(runs_dir: Path) -> Path | None:
    """The most recently started sweep under runs_dir/multirun, if any.

    Hydra writes multirun.yaml once, when a sweep starts; the folder's own time would also change
    when a report or a sync writes into an old sweep.
    """
    sweeps = [p for p in (Path(runs_dir) / "multirun").glob("*") if p.is_dir()]
    started = {p: (p / "multirun.yaml").stat().st_mtime if (p / "multirun.yaml").exists() else p.stat().st_mtime
               for p in sweeps}
    return max(sweeps, key=started.__getitem__, default=None)


def recorded_status(run_dir: Path) -> str | None:
    """The status in a job folder's summary.json; None when there is no readable record."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


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
