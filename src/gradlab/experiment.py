"""One job of a sweep: config -> data and network -> training -> run record and W&B run.

The library raises and never exits: ConfigError or DataUnavailable before any record is left, and
JobInterrupted after the record of an interrupted run is written. src/run.py maps them to exit codes.
"""

import dataclasses
import math
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import pandas  # noqa: F401  pyarrow imports it at the record's first table (0.25 s): here it counts as start-up
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from gradlab.config import input_length, loss_name, train_settings
from gradlab.data import DATASETS, Split, baseline, input_length_quantiles, rescale_lengths
from gradlab.losses import LOSSES, Loss, over_steps
from gradlab.measurement import Measurement
from gradlab.network import Network
from gradlab.networks import NETWORKS
from gradlab.record import RunRecord, git_commit, library_versions
from gradlab.result_lines import job_line, skip_line
from gradlab.sweeps import recorded_status, torch_threads
from gradlab.tracking import HelperLogger, NullLogger, start_logger
from gradlab.train import TrainResult, TrainSettings, train
from gradlab.validation import validate, validate_data

FINAL_NAMES = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
REGRESSION_NAMES = ("train_mse", "test_mse")  # in place of the accuracies, where the targets are numbers


class JobInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the job; its record, with status interrupted, is in run_dir."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted; the record so far is in {run_dir}")
        self.run_dir = run_dir


class Job(NamedTuple):
    run_dir: Path
    name: str  # from the job's overrides
    sweep_dir: Path | None = None  # a sweep's job: the sweep's folder; None for a single run
    number: int | None = None  # a sweep's job: its number in the sweep, from 0
    cores: int | None = None  # the torch threads it may use (None: leave torch's setting as it is)

    @property
    def group(self) -> str | None:
        """The W&B group: the sweep's folder name, None for a single run."""
        return self.sweep_dir.name if self.sweep_dir is not None else None


class Setup(NamedTuple):
    net: Network
    loss: Loss
    split: Split
    facts: dict[str, Any]  # what the theory and the analysis need, known once the data is loaded: summary.json
    settings: TrainSettings


def prepare(cfg: DictConfig) -> Setup:
    """Check the config, load the data, build the network; raises ConfigError or DataUnavailable."""
    validate(cfg)
    split, q0 = load_split(cfg)
    validate_data(cfg, split)
    loss = LOSSES[loss_name(cfg)]
    loss = over_steps(loss) if DATASETS[cfg.dataset.name].per_step else loss
    built = NETWORKS[cfg.net].build(cfg, split, loss)
    chance = baseline(cfg.dataset.name)
    batch = cfg.batch_size or len(split.x_train)  # 0: the whole training set
    facts = {"net": cfg.net, "loss_in_force": loss_name(cfg), "input_q0": q0, "batch_in_force": batch,
             "baseline_metric": chance.metric, "baseline": chance.value,
             "input_q0_quantiles": input_length_quantiles(split.x_train), **built.facts}
    settings = dataclasses.replace(train_settings(cfg), jacobian_examples=built.jacobian_examples, batch_size=batch)
    return Setup(built.net, loss, split, facts, settings)


def load_split(cfg: DictConfig) -> tuple[Split, float | None]:
    """The data set on the run's device and dtype, each example rescaled to q^0 = dataset.q0 where that is set;
    and the q^0 used (q_star: the length map's fixed point for the hidden layers' sigma_w^2 and sigma_b^2)."""
    split = DATASETS[cfg.dataset.name].load(Path(cfg.data_dir), cfg.dataset)
    q0 = input_length(cfg)
    dtype = getattr(torch, cfg.dtype)

    def features(x: torch.Tensor) -> torch.Tensor:
        x = x.to(cfg.device, dtype)
        return x if q0 is None else rescale_lengths(x, q0)

    x_train, y_train, x_test, y_test = split[:4]
    return Split(features(x_train), y_train.to(cfg.device), features(x_test), y_test.to(cfg.device),
                 split.n_classes), q0


def discard(run_dir: Path) -> None:
    """Remove a job folder that holds no record (Hydra made it before our checks ran)."""
    if not (run_dir / "summary.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)


class Progress:
    """A bar over the run's steps with the batch loss; tqdm keeps it quiet off a terminal."""

    def __init__(self, total: int, desc: str) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="step", disable=None, dynamic_ncols=True)

    def update(self, measurement: Measurement) -> None:
        self.bar.update(measurement.step - self.bar.n)
        for layer, step_in_time, name, value in measurement.rows:
            if layer is None and step_in_time is None and name in ("batch_loss", "train_loss"):
                self.bar.set_postfix({name: f"{value:.4g}"}, refresh=False)


def raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_job(cfg: DictConfig, job: Job) -> str:
    """Run one job and leave its record; returns its status ("skipped" when skip_completed found it completed).

    Raises ConfigError or DataUnavailable (leaving no job folder) and JobInterrupted (leaving the record).
    """
    if cfg.skip_completed and recorded_status(job.run_dir) == "completed":
        print(skip_line(job.run_dir, job.name, job.sweep_dir, job.number), file=sys.stderr)
        return "skipped"
    try:
        setup = prepare(cfg)
    except Exception:
        discard(job.run_dir)
        raise
    if job.cores is not None:
        largest = max(p.numel() for p in setup.net.parameters()) // cfg.replicas  # a weight matrix, in any family
        torch.set_num_threads(torch_threads(largest, setup.settings.batch_size * cfg.replicas, job.cores))
    try:
        summary = train_recorded(cfg, setup, job)
    finally:
        print(job_line(job.run_dir, job.name, job.sweep_dir, job.number), file=sys.stderr)  # however it ended
    if summary["status"] == "interrupted":
        raise JobInterrupted(job.run_dir)
    return summary["status"]


def train_recorded(cfg: DictConfig, setup: Setup, job: Job) -> dict[str, Any]:
    """Train, handing every measurement to the run record, W&B and the progress bar; returns the summary.

    Whatever ends the run (completion, divergence, an exception in training or in W&B, Ctrl-C or SIGTERM),
    the record is written and the summary given its final status before this returns or re-raises.
    """
    started = time.time()
    record = RunRecord(job.run_dir)
    summary: dict[str, Any] = {
        "status": "running", "diverged_at_step": None, "seed": cfg.seed,
        "git_commit": git_commit(), "versions": library_versions(), "job_name": job.name,
        "torch_threads": torch.get_num_threads(), **setup.facts,
    }
    record.write_summary({**summary, "steps": 0})
    progress = Progress(cfg.epochs * math.ceil(len(setup.split.x_train) / setup.settings.batch_size), desc=job.name)
    logger, result, exit_code = NullLogger(), None, 1
    previous_handler = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, raise_interrupt)
        logger = open_logger(cfg, job, summary)
        sinks = (record.append, logger.log, progress.update)

        def on_measure(measurement: Measurement) -> None:
            for sink in sinks:
                sink(measurement)

        result = train(setup.net, setup.loss, setup.split, setup.settings, on_measure)
        summary.update(status=result.status, steps=result.steps, diverged_at_step=result.diverged_at_step)
        exit_code = 0
    except KeyboardInterrupt:
        summary["status"], exit_code = "interrupted", 130
    except Exception as error:
        summary.update(status="failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        progress.bar.close()
        logger.request_finish(exit_code)  # W&B closes its run while the record is written
        close_record(record, summary, cfg, result, started)
        close_logger(logger, exit_code, record, summary)
    return summary


def open_logger(cfg: DictConfig, job: Job, summary: dict[str, Any]) -> NullLogger | HelperLogger:
    """Start W&B (or not) and note in the summary the mode that actually runs."""
    logger, note = start_logger(
        cfg.logger.mode, project=cfg.logger.project, entity=cfg.logger.entity, run_dir=job.run_dir,
        group=job.group, name=job.name, config=OmegaConf.to_container(cfg, resolve=True), replicas=cfg.replicas,
    )
    if note:
        print(f"gradlab: {note}", file=sys.stderr)
    summary["wandb_mode"] = logger.mode
    return logger


def close_record(
    record: RunRecord, summary: dict[str, Any], cfg: DictConfig, result: TrainResult | None, started: float
) -> None:
    """Write the metrics as one file and the summary with the final values."""
    record.close()
    summary.setdefault("steps", record.last_step)  # interrupted or failed: as far as the record goes
    diverged_at = result.replica_diverged_at if result else (None,) * cfg.replicas
    summary.update(final_metrics(record.latest(), diverged_at), wall_seconds=round(time.time() - started, 3))
    if cfg.replicas > 1:
        summary["replicas"] = replica_results(record.latest(), cfg.seed, diverged_at)
        summary["replicas_diverged"] = sum(at is not None for at in diverged_at)
    record.write_summary(summary)


def close_logger(logger: NullLogger | HelperLogger, exit_code: int, record: RunRecord, summary: dict[str, Any]) -> None:
    """Finish W&B; if that fails, the run has failed, and its summary says so before the error goes on."""
    try:
        logger.finish(exit_code)
    except BaseException as error:
        summary["status"] = "failed"
        summary.setdefault("error", f"W&B finish: {type(error).__name__}: {error}")
        record.write_summary(summary)
        raise


def final_metrics(latest: dict[int, dict[str, float]], diverged_at: tuple[int | None, ...]) -> dict[str, float | None]:
    """The last full-set evaluation: the run's own, or the mean over the replicas that did not diverge
    (over all of them when every one diverged, as for a single run)."""
    alive = [r for r, at in enumerate(diverged_at) if at is None] or list(range(len(diverged_at)))
    finals = {}
    for name in final_names(latest):
        values = [latest[r][name] for r in alive if name in latest.get(r, {})]
        finals[f"final_{name}"] = sum(values) / len(values) if values else None
    return finals


def final_names(latest: dict[int, dict[str, float]]) -> tuple[str, ...]:
    """The names of a run's final evaluation: FINAL_NAMES, and the mean squared errors of a regression run."""
    measured = {name for values in latest.values() for name in values}
    return FINAL_NAMES + tuple(name for name in REGRESSION_NAMES if name in measured)


def replica_results(
    latest: dict[int, dict[str, float]], seed: int, diverged_at: tuple[int | None, ...]
) -> list[dict[str, Any]]:
    """Each replica's seed, status and final evaluation, for a run that trains replicas."""
    return [
        {"replica": r, "seed": seed + r, "status": "completed" if at is None else "diverged", "diverged_at_step": at,
         **{f"final_{name}": latest.get(r, {}).get(name) for name in final_names(latest)}}
        for r, at in enumerate(diverged_at)
    ]
