"""Weights & Biases logging of measurements: offline by default, never waiting on the network."""

import os
from pathlib import Path
from typing import Any

from gradlab.train import Measurement


def wandb_key(layer: int | None, name: str, replica: int | None = None) -> str:
    """'grad_norm/layer_07' for a layer's metric, the bare name for a whole-network one;
    with replicas, each key ends in the replica: 'grad_norm/layer_07/replica_2'."""
    key = name if layer is None else f"{name}/layer_{layer:02d}"
    return key if replica is None else f"{key}/replica_{replica}"


def resolve_mode(configured: str) -> str:
    """The WANDB_MODE environment variable wins over the config's logger.mode."""
    return os.environ.get("WANDB_MODE") or configured


class NullLogger:
    """What runs when logging is disabled: nothing to import, nothing to start."""

    def log(self, measurement: Measurement) -> None:
        pass

    def finish(self, exit_code: int) -> None:
        pass


class WandbLogger:
    """One W&B run per job; its files go to <run_dir>/wandb/ (offline-run-* when offline)."""

    def __init__(
        self, mode: str, project: str, entity: str | None, run_dir: Path,
        group: str | None, name: str, config: dict[str, Any], replicas: int = 1,
    ) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            mode=mode, project=project, entity=entity, dir=str(run_dir), group=group, name=name,
            config=config, job_type="train", settings=wandb.Settings(silent=True),
        )
        self.replicas = replicas
        self.initial: dict[tuple[int, int, str], float] = {}  # (replica, layer, name) -> value
        self.latest: dict[tuple[int, int, str], float] = {}

    def log(self, measurement: Measurement) -> None:
        replica = measurement.replica if self.replicas > 1 else None
        data: dict[str, float] = {"epoch": measurement.epoch}
        for layer, name, value in measurement.rows:
            data[wandb_key(layer, name, replica)] = value
            if layer is not None:
                key = (measurement.replica, layer, name)
                if measurement.step == 0:
                    self.initial[key] = value
                self.latest[key] = value
        self.run.log(data, step=measurement.step)

    def finish(self, exit_code: int) -> None:
        """Log the step-0 and final per-layer profiles as one table, then close the run."""
        try:
            if self.latest:
                columns = ["replica", "layer", "name", "at_init", "final"]
                rows = [[*key, self.initial.get(key), value] for key, value in sorted(self.latest.items())]
                self.run.log({"layer_profiles": self.wandb.Table(columns=columns, data=rows)})
        finally:
            self.run.finish(exit_code=exit_code)


def make_logger(mode: str, **kwargs: Any) -> NullLogger | WandbLogger:
    mode = resolve_mode(mode)
    return NullLogger() if mode == "disabled" else WandbLogger(mode, **kwargs)
