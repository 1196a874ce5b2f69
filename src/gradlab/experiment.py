"""One job of a sweep: config -> data and network -> training -> run record and W&B run."""

import math
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from gradlab.config import ConfigError, loss_name, validate
from gradlab.data import DATASETS, DataUnavailable
from gradlab.losses import LOSSES, Loss
from gradlab.mlp import MLP, replica_generators
from gradlab.record import RunRecord, git_commit, library_versions
from gradlab.sweeps import recorded_status
from gradlab.tracking import make_logger
from gradlab.train import Measurement, Split, train


class Job(NamedTuple):
    run_dir: Path
    group: str | None  # the sweep's folder name, None for a single run
    name: str  # from the job's overrides


class Setup(NamedTuple):
    net: MLP
    loss: Loss
    split: Split
    generator: torch.Generator | list[torch.Generator]  # one per replica when replicas > 1


def prepare(cfg: DictConfig) -> Setup:
    """Check the config, load the data, build the network; raises ConfigError or DataUnavailable."""
    validate(cfg)
    split = DATASETS[cfg.dataset.name].load(Path(cfg.data_dir), cfg.dataset)
    split = Split(*(t.to(cfg.device) for t in split[:4]), split.n_classes)
    loss = LOSSES[loss_name(cfg)]
    sizes = [split.x_train.shape[1], *[cfg.width] * (cfg.depth - 1), loss.out_dim(split.n_classes)]
    generator = replica_generators(cfg.seed, cfg.replicas) if cfg.replicas > 1 else torch.Generator().manual_seed(
        cfg.seed
    )
    net = MLP(sizes, cfg.activation, cfg.init, init_gain=cfg.init_gain, device=cfg.device, generator=generator)
    return Setup(net, loss, split, generator)


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
        for layer, name, value in measurement.rows:
            if layer is None and name in ("batch_loss", "train_loss"):
                self.bar.set_postfix({name: f"{value:.4g}"}, refresh=False)


def raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_job(cfg: DictConfig, job: Job) -> str:
    """Run one job and leave its record; returns its status. Bad config or missing data: exit 2."""
    if cfg.skip_completed and recorded_status(job.run_dir) == "completed":
        print(f"gradlab: skipping {job.run_dir}: its record says completed", file=sys.stderr)
        return "completed"
    try:
        setup = prepare(cfg)
    except (ConfigError, DataUnavailable) as error:
        print(f"gradlab: {error}", file=sys.stderr)
        discard(job.run_dir)
        sys.exit(2)
    summary = train_recorded(cfg, setup, job)
    if summary["status"] == "interrupted":
        print(f"gradlab: interrupted; the record so far is in {job.run_dir}", file=sys.stderr)
        sys.exit(130)
    return summary["status"]


def train_recorded(cfg: DictConfig, setup: Setup, job: Job) -> dict[str, Any]:
    """Train, handing every measurement to the run record, W&B and the progress bar; returns the summary.

    Whatever ends the run (completion, divergence, an exception, Ctrl-C or SIGTERM), the record is
    flushed and the summary written with its status before this returns or re-raises.
    """
    started = time.time()
    record = RunRecord(job.run_dir)
    summary: dict[str, Any] = {
        "status": "running", "diverged_at_step": None, "seed": cfg.seed,
        "git_commit": git_commit(), "versions": library_versions(), "job_name": job.name,
        "torch_threads": torch.get_num_threads(),
    }
    record.write_summary({**summary, "steps": 0})
    progress = Progress(cfg.epochs * math.ceil(len(setup.split.x_train) / cfg.batch_size), desc=job.name)
    logger = make_logger(
        cfg.logger.mode, project=cfg.logger.project, entity=cfg.logger.entity, run_dir=job.run_dir,
        group=job.group, name=job.name, config=OmegaConf.to_container(cfg, resolve=True), replicas=cfg.replicas,
    )
    previous_handler = signal.signal(signal.SIGTERM, raise_interrupt)
    exit_code = 1

    def on_measure(measurement: Measurement) -> None:
        for sink in (record.append, logger.log, progress.update):
            sink(measurement)

    try:
        result = train(
            setup.net, setup.loss, setup.split, lr=cfg.lr, momentum=cfg.momentum,
            clip_grad_norm=cfg.clip_grad_norm, epochs=cfg.epochs, batch_size=cfg.batch_size,
            log_every=cfg.log_every, generator=setup.generator, on_measure=on_measure,
        )
        summary.update(status=result.status, steps=result.steps, diverged_at_step=result.diverged_at_step)
        if cfg.replicas > 1:
            summary["replicas"] = replica_results(record.latest(), cfg.seed, result.replica_diverged_at)
        exit_code = 0
    except KeyboardInterrupt:
        summary["status"], exit_code = "interrupted", 130
    except Exception as error:
        summary.update(status="failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        progress.bar.close()
        record.flush()
        summary.setdefault("steps", record.last_step)  # interrupted or failed: as far as the record goes
        summary.update(final_metrics(record.latest()), wall_seconds=round(time.time() - started, 3))
        record.write_summary(summary)
        logger.finish(exit_code)
    return summary


FINAL_NAMES = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def final_metrics(latest: dict[int, dict[str, float]]) -> dict[str, float | None]:
    """The last full-set evaluation (RunRecord.latest()): the run's own, or the mean over its replicas."""
    finals = {}
    for name in FINAL_NAMES:
        values = [v[name] for v in latest.values() if name in v]
        finals[f"final_{name}"] = sum(values) / len(values) if values else None
    return finals


def replica_results(
    latest: dict[int, dict[str, float]], seed: int, diverged_at: tuple[int | None, ...]
) -> list[dict[str, Any]]:
    """Each replica's seed, status and final evaluation, for a run that trains replicas."""
    return [
        {"replica": r, "seed": seed + r, "status": "completed" if at is None else "diverged", "diverged_at_step": at,
         **{f"final_{name}": latest.get(r, {}).get(name) for name in FINAL_NAMES}}
        for r, at in enumerate(diverged_at)
    ]
