"""Sweeps: where they live on disk, how their jobs share a machine's cores, and the lines that say how they ended."""

import json
import os
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

REPORT_COMMAND = "python analysis/report.py"


def newest_sweep(runs_dir: Path) -> Path | None:
    """The most recently started sweep under runs_dir/multirun, if any.

    Hydra writes multirun.yaml once, when a sweep starts; the folder's own time would also change
    when a report or a sync writes into an old sweep.
    """
    sweeps = [p for p in (Path(runs_dir) / "multirun").glob("*") if p.is_dir()]
    started = {p: (p / "multirun.yaml").stat().st_mtime if (p / "multirun.yaml").exists() else p.stat().st_mtime
               for p in sweeps}
    return max(sweeps, key=started.__getitem__, default=None)


def recorded_summary(run_dir: Path) -> dict[str, Any] | None:
    """A job folder's summary.json; None when there is no readable record."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def recorded_status(run_dir: Path) -> str | None:
    """The status in a job folder's summary.json; None when there is no readable record."""
    return (recorded_summary(run_dir) or {}).get("status")


def shown_path(path: Path) -> str:
    """path relative to the working folder when it lies below it (shorter on screen), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def job_line(run_dir: Path, name: str) -> str:
    """How a job ended, from its record, in one line: name, status, final test accuracy, seconds, folder."""
    summary = recorded_summary(run_dir) or {}
    accuracy, seconds = summary.get("final_test_accuracy"), summary.get("wall_seconds")
    shown_accuracy = f"{accuracy:.3f}" if isinstance(accuracy, int | float) else "-"
    shown_seconds = f"{seconds:.2f} s" if isinstance(seconds, int | float) else "- s"
    return (f"gradlab: {name}: {summary.get('status', 'no record')}, test accuracy {shown_accuracy}, "
            f"{shown_seconds}, {shown_path(run_dir)}")


def sweep_line(sweep_dir: Path) -> str:
    """How a sweep ended, in one line: its jobs counted by recorded status, and the command for its report."""
    statuses = Counter(recorded_status(job) for job in Path(sweep_dir).iterdir() if job.is_dir())
    statuses.pop(None, None)  # .submitit and other folders that hold no job record
    ordered = sorted(statuses.items(), key=lambda item: (-item[1], item[0]))
    counts = ", ".join(f"{count} {status}" for status, count in ordered)
    jobs = sum(statuses.values())
    return (f"gradlab: sweep done, {jobs} job{'s' * (jobs != 1)}: {counts or 'none recorded'}; "
            f"report: {REPORT_COMMAND} {shown_path(sweep_dir)}")


class SweepEnd(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks): the sweep's closing line on stderr."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            print(sweep_line(sweep_dir), file=sys.stderr)


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
