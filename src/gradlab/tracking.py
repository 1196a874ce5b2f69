"""Weights & Biases logging of measurements: offline by default, never waiting on the network.

Online mode is tried only after a bounded check for credentials and a reachable server
(gradlab.sync.preflight); when either is missing the run logs offline and can be uploaded later
with src/sync.py.
"""

import os
from pathlib import Path
from typing import Any, NamedTuple

from gradlab.measurement import Measurement

OFFLINE_FALLBACK = "W&B online mode unavailable ({reason}); logging offline, upload later with src/sync.py"
INIT_TIMEOUT_S = 30  # wandb.init's own bound (its default is 90 s) once the server answered the preflight


def wandb_key(layer: int | None, name: str, replica: int | None = None) -> str:
    """'grad_norm/layer_07' for a layer's metric, the bare name for a whole-network one;
    with replicas, each key ends in the replica: 'grad_norm/layer_07/replica_2'."""
    key = name if layer is None else f"{name}/layer_{layer:02d}"
    return key if replica is None else f"{key}/replica_{replica}"


def resolve_mode(configured: str) -> str:
    """The WANDB_MODE environment variable wins over the config's logger.mode."""
    return os.environ.get("WANDB_MODE") or configured


class Mode(NamedTuple):
    mode: str  # offline | online | disabled: the mode the run will actually use
    note: str | None  # why it differs from the one asked for, as one line; None when it does not


def choose_mode(configured: str) -> Mode:
    """The mode to run in: WANDB_MODE wins over the config; online falls back to offline without
    credentials or a reachable server (checked within gradlab.sync.CONNECT_TIMEOUT_S)."""
    mode = resolve_mode(configured)
    if mode != "online":
        return Mode(mode, None)
    from gradlab.sync import preflight, server_url

    problem = preflight(server_url())
    if problem is None:
        return Mode("online", None)
    return Mode("offline", OFFLINE_FALLBACK.format(reason=problem.split(": ")[0]))  # what is missing, not the fix


class NullLogger:
    """What runs when logging is disabled: nothing to import, nothing to start."""

    mode = "disabled"

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

        self.wandb, self.mode = wandb, mode
        self.run = wandb.init(
            mode=mode, project=project, entity=entity, dir=str(run_dir), group=group, name=name,
            config=config, job_type="train", settings=wandb.Settings(silent=True, init_timeout=INIT_TIMEOUT_S),
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


def start_logger(configured: str, **kwargs: Any) -> tuple[NullLogger | WandbLogger, str | None]:
    """The logger for the configured mode and, when it had to fall back to offline, one line saying why.

    `logger.mode` is the mode that runs. kwargs are WandbLogger's (project, entity, run_dir, ...).
    """
    mode, note = choose_mode(configured)
    if mode == "disabled":
        return NullLogger(), note
    if mode != "online":
        return WandbLogger(mode, **kwargs), note
    try:
        return WandbLogger("online", **kwargs), None
    except Exception as error:  # the server answered the preflight, but wandb.init failed or timed out
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        return WandbLogger("offline", **kwargs), OFFLINE_FALLBACK.format(reason=reason)
