"""The lines a user reads on stderr: one per job (its place in the sweep, how it ended, the time the sweep has
left) and one per sweep (its jobs counted by status, and the command for its report). Each is made from records."""

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from gradlab.sweeps import SWEEP_STATE, count_jobs, recorded_summary, start_state, sweep_state, write_state

REPORT_COMMAND = "python analysis/report.py"
SKIPPED = "skipped (completed earlier)"


def shown_path(path: Path) -> str:
    """path relative to the working folder when it lies below it (shorter on screen), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def shown_duration(seconds: float) -> str:
    """Seconds as a person reads them: 1 s at least (a sweep with a job left is not 0 s from its end), then min, h."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


SCORES = {"test_accuracy": "test accuracy", "test_mse": "test MSE", "test_loss": "test loss"}


def scored_by(summary: dict[str, Any]) -> str:
    """What a job's line reports: its data set's baseline metric (the copy task's test_loss), else test_mse for a
    regression run recorded before baselines, else test_accuracy."""
    metric = summary.get("baseline_metric")
    return metric if metric in SCORES else "test_mse" if "final_test_mse" in summary else "test_accuracy"


def score_text(summary: dict[str, Any]) -> str:
    """The final test score (accuracy, a regression run's MSE, the copy task's loss, the last two beside their
    baseline), and over how many replicas it is a mean where the job trained several."""
    metric = scored_by(summary)
    score, baseline = summary.get(f"final_{metric}"), summary.get("baseline")
    beside = f" (baseline {baseline:.3f})" if metric != "test_accuracy" and isinstance(baseline, int | float) else ""
    if not isinstance(score, int | float):
        return "-"
    shown, replicas = f"{score:.3f}", summary.get("replicas")
    if not isinstance(replicas, list) or len(replicas) < 2:
        return shown + beside
    diverged = summary.get("replicas_diverged") or 0
    if diverged in (0, len(replicas)):
        return f"{shown} (mean of {len(replicas)} replicas{', all diverged' if diverged else ''}){beside}"
    return f"{shown} (mean of the {len(replicas) - diverged} of {len(replicas)} replicas that did not diverge){beside}"


def place_in_sweep(sweep_dir: Path | None, number: int | None) -> tuple[str, str]:
    """("[k/N] ", "; about T left in the sweep") for job number k-1 of a sweep of N; empty strings where unknown.

    The time left assumes the jobs so far are typical and run one after another (the basic launcher)."""
    state = sweep_state(sweep_dir) if sweep_dir is not None and number is not None else {}
    jobs, started = state.get("jobs"), state.get("started")
    if not isinstance(jobs, int) or number is None:
        return "", ""
    done = number + 1
    left = (time.time() - started) / done * (jobs - done) if isinstance(started, int | float) else None
    return f"[{done}/{jobs}] ", (f"; about {shown_duration(left)} left in the sweep" if left and done < jobs else "")


def job_line(run_dir: Path, name: str, sweep_dir: Path | None = None, number: int | None = None) -> str:
    """How a job ended, from its record, in one line: its place in the sweep, name, status, final test accuracy,
    seconds, folder, and the time the sweep has left."""
    summary = recorded_summary(run_dir) or {}
    seconds = summary.get("wall_seconds")
    shown_seconds = f"{seconds:.2f} s" if isinstance(seconds, int | float) else "- s"
    place, left = place_in_sweep(sweep_dir, number)
    metric = SCORES[scored_by(summary)]
    return (f"gradlab: {place}{name}: {summary.get('status', 'no record')}, {metric} {score_text(summary)}, "
            f"{shown_seconds}, {shown_path(run_dir)}{left}")


def skip_line(run_dir: Path, name: str, sweep_dir: Path | None = None, number: int | None = None) -> str:
    """A job that skip_completed=true skipped: no time left is shown, since skips take none."""
    place, _ = place_in_sweep(sweep_dir, number)
    return f"gradlab: {place}{name}: {SKIPPED}, {shown_path(run_dir)}"


def sweep_line(sweep_dir: Path, started: float | None = None) -> str:
    """How a sweep ended, in one line: its jobs counted by status, and the command for its report.

    A completed job whose summary.json is older than `started` (the file time of the sweep's start) was not run
    again by this sweep: skip_completed=true skipped it."""
    statuses: Counter = Counter()
    for job in Path(sweep_dir).iterdir():
        status = (recorded_summary(job) or {}).get("status") if job.is_dir() else None
        if status == "completed" and started is not None and (job / "summary.json").stat().st_mtime < started:
            status = SKIPPED
        if status is not None:  # .submitit and other folders hold no job record
            statuses[status] += 1
    ordered = sorted(statuses.items(), key=lambda item: (-item[1], item[0]))
    counts = ", ".join(f"{count} {status}" for status, count in ordered)
    jobs = sum(statuses.values())
    return (f"gradlab: sweep done, {jobs} job{'s' * (jobs != 1)}: {counts or 'none recorded'}; "
            f"report: {REPORT_COMMAND} {shown_path(sweep_dir)}")


class SweepEnd(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks): sweep.json at the sweep's start (its job count, for each
    job's [k/N] and time left) and end, and the sweep's closing line on stderr."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        self.state = start_state(sweep_dir, count_jobs(config))
        self.started = (sweep_dir / SWEEP_STATE).stat().st_mtime  # a file time, to compare with the records'

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        write_state(sweep_dir, {**self.state, "status": "ended", "ended": time.time()})
        print(sweep_line(sweep_dir, self.started), file=sys.stderr)
