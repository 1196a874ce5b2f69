"""The W&B helper process: this file, run as a script, holds a job's W&B run, so that W&B's imports, its service
and its writes (about a second of one core per process, more than a default run trains) stay off the training's
path. gradlab.tracking starts it and talks to it; it imports nothing of gradlab (whose modules import torch), and
the job's process imports it (through gradlab.tracking, before torch) for its constants: its top imports stay cheap.

Messages come as pickles on stdin and answers go back on stdout (see `serve`). The process runs niced: torch's
OpenMP regions wait for their slowest thread, so any other busy process on a core stalls the training.
"""

from __future__ import annotations

import gc
import importlib
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers only: the helper process runs without gradlab
    from gradlab.measurement import Row

    Logged = tuple[int, int, list[Row], int]  # (step, epoch, rows, replica) of a Measurement, as plain data

OFFLINE_FALLBACK = "W&B online mode unavailable ({reason}); logging offline, upload later with src/sync.py"
INIT_TIMEOUT_S = 30  # wandb.init's own bound (its default is 90 s) once the server answered the preflight
# What a process's first W&B run imports on its way: requests (W&B's telemetry, at the first log) and pandas
# (wandb.Table checks for a DataFrame); 1 s of one core with wandb itself.
WARM_UP = ("wandb", "requests", "pandas")
# W&B versions (major.minor) whose wandb.init was read to call Run._detect_and_apply_job_inputs only to apply inputs
# that W&B Launch's API staged in this process; to add one, read that method and its caller in its wandb_run.py.
JOB_INPUTS_CHECKED = {"0.31"}


def wandb_key(layer: int | None, name: str, replica: int | None = None) -> str:
    """'grad_norm/layer_07' for a layer's metric, the bare name for a whole-network one; with replicas, each key
    ends in the replica: 'grad_norm/layer_07/replica_2'. (Rows of a time step go to the profiles table instead.)"""
    key = name if layer is None else f"{name}/layer_{layer:02d}"
    return key if replica is None else f"{key}/replica_{replica}"


def skip_job_inputs(run_class: type, version: str) -> bool:
    """wandb.init imports W&B Launch (0.6 s of pydantic models) only to apply inputs that Launch's API staged in this
    process; the helper stages none, so the step is replaced by nothing, but only in a W&B version whose private
    method was checked to mean that (JOB_INPUTS_CHECKED). Whether it was replaced."""
    if ".".join(version.split(".")[:2]) not in JOB_INPUTS_CHECKED:
        return False
    run_class._detect_and_apply_job_inputs = lambda run: None
    return True


class WandbLogger:
    """One W&B run in this process (the helper); its files go to <run_dir>/wandb/ (offline-run-* when offline)."""

    def __init__(
        self, mode: str, project: str, entity: str | None, run_dir: Path,
        group: str | None, name: str, config: dict[str, Any], replicas: int = 1,
    ) -> None:
        import wandb

        # requirements: 0.2 s per run to list every installed package (summary.json holds the versions that matter);
        # console: the helper's own output, not the job's
        settings = wandb.Settings(silent=True, init_timeout=INIT_TIMEOUT_S, x_save_requirements=False, console="off")
        self.wandb, self.mode = wandb, mode
        self.run = wandb.init(mode=mode, project=project, entity=entity, dir=str(run_dir), group=group, name=name,
                              config=config, job_type="train", settings=settings)
        self.replicas = replicas
        self.initial: dict[tuple[int, int, int | None, str], float] = {}  # (replica, layer, time, name) -> value
        self.latest: dict[tuple[int, int, int | None, str], float] = {}

    def log(self, step: int, epoch: int, rows: list[Row], replica: int) -> None:
        """One measured step as one W&B history row: every row of the measurement under its wandb_key, but those of a
        time step (a recurrent network's T per metric), which go to the profiles table at finish instead."""
        key_replica = replica if self.replicas > 1 else None
        data: dict[str, float] = {"epoch": epoch}
        for layer, time, name, value in rows:
            if time is None:
                data[wandb_key(layer, name, key_replica)] = value
            if layer is not None:
                key = (replica, layer, time, name)
                if step == 0:
                    self.initial[key] = value
                self.latest[key] = value
        self.run.log(data, step=step)

    def finish(self, exit_code: int) -> None:
        """Log the step-0 and final profiles, per layer and per time step, as one table, then close the run."""
        try:
            if self.latest:
                columns = ["replica", "layer", "time", "name", "at_init", "final"]
                latest = sorted(self.latest.items(), key=in_order)
                rows = [[*key, self.initial.get(key), value] for key, value in latest]
                self.run.log({"layer_profiles": self.wandb.Table(columns=columns, data=rows)})
        finally:
            self.run.finish(exit_code=exit_code)


def in_order(item: tuple[tuple[int, int, int | None, str], float]) -> tuple:
    """A profile row's sort key: by replica, layer, time (None first: None and numbers do not compare) and name."""
    (replica, layer, time, name), _ = item
    return replica, layer, time is not None, time or 0, name


def open_run(mode: str, kwargs: dict[str, Any]) -> tuple[WandbLogger, str | None]:
    """The run in the mode asked for; online falls back to offline when wandb.init fails, with the line why."""
    if mode != "online":
        return WandbLogger(mode, **kwargs), None
    try:
        return WandbLogger("online", **kwargs), None
    except Exception as error:  # the server answered the preflight, but wandb.init failed or timed out
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        return WandbLogger("offline", **kwargs), OFFLINE_FALLBACK.format(reason=reason)


class HeldRuns:
    """The helper's side: one W&B run at a time, as the job's messages say."""

    def __init__(self) -> None:
        self.run: WandbLogger | None = None

    def start(self, mode: str, kwargs: dict[str, Any]) -> tuple[str, str | None]:
        self.run = None
        self.run, note = open_run(mode, kwargs)
        return self.run.mode, note

    def log(self, batch: list[Logged]) -> None:
        for logged in batch if self.run is not None else ():  # nothing to log to when the start failed
            self.run.log(*logged)

    def finish(self, exit_code: int) -> None:
        closing, self.run = self.run, None
        if closing is not None:
            closing.finish(exit_code)


def serve(commands: IO[bytes], answers: IO[bytes]) -> None:
    """The helper's loop: ("start", mode, kwargs) -> ("started", mode, note); ("log", [Logged, ...]) -> nothing;
    ("finish", exit_code) -> ("finished", failure or None). A failure to start or log answers ("failed", "what: why")
    at once. End of input ends the loop; a run left open is finished as failed."""
    try:  # while the job's process imports torch, not when its first run starts; a miss only costs time
        for module in WARM_UP:
            importlib.import_module(module)
        from importlib.metadata import version  # 40 ms: here, not in the job's process, which imports this module

        skip_job_inputs(importlib.import_module("wandb.sdk.wandb_run").Run, version("wandb"))
        importlib.import_module("wandb").setup()  # W&B's service process, which every run of this helper uses
    except Exception:
        pass
    runs = HeldRuns()

    def answer(*message: Any) -> None:
        pickle.dump(message, answers)
        answers.flush()

    while True:
        try:
            kind, *args = pickle.load(commands)
        except EOFError:
            break
        try:
            done = getattr(runs, kind)(*args)
        except Exception as error:
            what = {"start": "wandb.init", "log": "W&B log", "finish": "W&B finish"}[kind]
            failure = f"{what}: {type(error).__name__}: {error}".splitlines()[0]
            answer("finished" if kind == "finish" else "failed", failure)
            continue
        if kind != "log":
            answer(*(("started", *done) if kind == "start" else ("finished", None)))
    runs.finish(1)  # a run still open: the job's process went away without saying how it ended


if __name__ == "__main__":  # the helper process: stdin brings messages, the original stdout takes answers
    sys.path.pop(0)  # this file's folder: gradlab's module names (config, sync...) must not shadow wandb's imports
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the job says how its run ends
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "nice"):  # background work: while the job trains, torch's threads have both cores (its OpenMP
        os.nice(19)  # regions wait for their slowest thread, so any other process on a core stalls them)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing else printed can garble the answers
    serve(sys.stdin.buffer, answers)
    importlib.import_module("wandb").teardown()  # W&B's service ends with this process's last run
    gc.freeze()  # the exit's last collection would walk wandb's and pandas' objects (0.3 s); the OS frees them
