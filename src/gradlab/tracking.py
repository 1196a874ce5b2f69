"""Weights & Biases logging of measurements: offline by default, never waiting on the network, and kept off the
training's path.

W&B's imports, its service and its writes take about a second of one core per process, more than a default run
trains. So a helper process (gradlab/wandb_helper.py) holds the W&B runs: src/run.py starts it beside torch's
import (start_helper_early: this module imports no torch), and each job hands it measurements in batches, every
LIVE_INTERVAL_S while training (online charts stay live) and the rest at finish, so the helper is idle while torch's
threads use the cores. One helper serves every job of a sweep in turn; a job that runs without W&B ends it.

Online mode is tried only after a bounded check for credentials and a reachable server
(gradlab.sync.preflight); when either is missing the run logs offline and can be uploaded later with src/sync.py.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from gradlab import wandb_helper
from gradlab.wandb_helper import INIT_TIMEOUT_S, OFFLINE_FALLBACK

if TYPE_CHECKING:
    from gradlab.measurement import Measurement
    from gradlab.wandb_helper import Logged

LIVE_INTERVAL_S = 5.0  # a batch goes to the helper at most this often while training
REPLY_TIMEOUT_S = 2 * INIT_TIMEOUT_S + 60  # the longest a job waits for the helper's answer
HELPER_COMMAND = [sys.executable, os.path.abspath(wandb_helper.__file__)]  # the helper module, run as a script
DISABLED_OVERRIDES = ("logger.mode=disabled", "+logger.mode=disabled", "++logger.mode=disabled")


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

    def request_finish(self, exit_code: int) -> None:
        pass

    def finish(self, exit_code: int) -> None:
        pass


class HelperGone(RuntimeError):
    """The helper process exited or stopped answering."""


class Helper:
    """The helper process, seen from a job's process: messages go to its stdin; answers come back on its stdout
    through a reader thread, so that every wait has a bound and a helper that died is an error, not a hang."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.used = process, False
        self.answers: queue.Queue[tuple] = queue.Queue()
        threading.Thread(target=self.read_answers, name="wandb-helper", daemon=True).start()

    @classmethod
    def spawn(cls) -> Helper:
        return cls(subprocess.Popen(HELPER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL))

    def read_answers(self) -> None:
        try:
            while True:
                self.answers.put(pickle.load(self.process.stdout))
        except Exception:  # the end of its output: it exited
            self.answers.put(("gone", f"the W&B helper process exited (code {self.process.wait()})"))

    def send(self, *message: Any) -> None:
        try:
            pickle.dump(message, self.process.stdin)
            self.process.stdin.flush()
        except (OSError, ValueError) as error:
            raise HelperGone(f"the W&B helper process is gone ({type(error).__name__})") from None

    def answer(self, timeout: float | None) -> tuple | None:
        """The next answer; None when none came within timeout (None: none waiting now)."""
        try:
            return self.answers.get(timeout=timeout) if timeout is not None else self.answers.get_nowait()
        except queue.Empty:
            return None

    def release(self) -> None:
        """End of input, without waiting: the helper closes W&B's service and exits on its own (every run it held
        is already written: finish() waited for it). One that never held a run is ended at once (killed, reaped)."""
        try:
            if not self.used:
                self.process.kill()
                self.process.wait()  # a killed process exits within milliseconds
            self.process.stdin.close()
        except OSError:
            self.process.kill()

    def stop(self, timeout: float) -> None:
        """End of input, waiting up to timeout for the helper to close a run left open (as failed); then killed."""
        try:
            self.process.stdin.close()
            self.process.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


_idle: list[Helper] = []  # started helpers with no open run, for the next jobs of this process


def start_helper_early(overrides: list[str]) -> None:
    """A helper for this process's jobs, started now so that W&B's start-up overlaps torch's import (src/run.py):
    none when WANDB_MODE or a command-line override turns W&B off. A mode known only from the composed config
    (an experiment file, a variant) is seen by start_logger, which ends the idle helper."""
    on_the_command_line = "disabled" if any(arg in DISABLED_OVERRIDES for arg in overrides) else "offline"
    if resolve_mode(on_the_command_line) != "disabled":  # WANDB_MODE wins, as for the job itself
        _idle.append(Helper.spawn())


def take_helper() -> Helper:
    while _idle:
        helper = _idle.pop()
        if helper.process.poll() is None:
            return helper
    return Helper.spawn()


@atexit.register
def close_idle_helpers() -> None:
    while _idle:
        _idle.pop().release()


class HelperLogger:
    """A job's W&B run, held by the helper. log() buffers; the batch goes over once LIVE_INTERVAL_S has passed
    since the last one, and at finish. A failure the helper reports is raised by the next log() or by finish()."""

    def __init__(self, helper: Helper, mode: str, kwargs: dict[str, Any]) -> None:
        self.helper, self.mode, self.note = helper, mode, None
        self.pending: list[Logged] = []
        self.handed_at = time.monotonic()
        self.failure: str | None = None
        self.raised = self.finish_requested = False
        helper.used = True
        helper.send("start", mode, kwargs)

    def log(self, measurement: Measurement) -> None:
        self.pending.append((measurement.step, measurement.epoch, measurement.rows, measurement.replica))
        if time.monotonic() - self.handed_at >= LIVE_INTERVAL_S:
            self.settle(until=None)
            self.raise_failure()
            self.hand_over()

    def hand_over(self) -> None:
        if self.pending:
            self.helper.send("log", self.pending)
        self.pending, self.handed_at = [], time.monotonic()

    def settle(self, until: set[str] | None) -> None:
        """Take the helper's answers: wait for one of `until`, or (None) take those already there. Notes the mode
        that runs and the first failure; raises HelperGone when the helper exited or did not answer in time."""
        while answer := self.helper.answer(REPLY_TIMEOUT_S if until else None):
            if answer[0] == "gone":
                raise HelperGone(answer[1])
            if answer[0] == "started":
                self.mode, self.note = answer[1], answer[2]
            elif answer[-1] is not None:
                self.failure = self.failure or answer[-1]
            if until and answer[0] in until:
                return
        if until:
            raise HelperGone(f"the W&B helper did not answer within {REPLY_TIMEOUT_S} s")

    def raise_failure(self) -> None:
        """The helper's first failure, raised once: finishing a run that failed stays quiet."""
        if self.failure and not self.raised:
            self.raised = True
            raise RuntimeError(self.failure)

    def request_finish(self, exit_code: int) -> None:
        """Hand over the rest and ask the helper to close the run, without waiting (finish() waits), so that the
        job writes its record meanwhile; a helper that is gone is reported by finish()."""
        try:
            self.hand_over()
            self.helper.send("finish", exit_code)
            self.finish_requested = True
        except HelperGone:
            pass

    def finish(self, exit_code: int) -> None:
        """Close the run and wait until W&B holds it; the helper is then free for another job."""
        try:
            if not self.finish_requested:
                self.hand_over()
                self.helper.send("finish", exit_code)
            self.settle(until={"finished"})
        except BaseException:
            self.helper.stop(timeout=5)  # in an unknown state: no later job may use it
            raise
        _idle.append(self.helper)
        self.raise_failure()


def start_logger(configured: str, **kwargs: Any) -> tuple[NullLogger | HelperLogger, str | None]:
    """The logger for the configured mode and, when it had to fall back to offline, one line saying why.

    `logger.mode` is the mode that runs; offline starts without waiting, online waits for wandb.init as W&B
    does itself. kwargs are WandbLogger's (project, entity, run_dir, ...).
    """
    mode, note = choose_mode(configured)
    if mode == "disabled":
        close_idle_helpers()  # one started early may still be starting W&B (1 s of a core the training needs)
        return NullLogger(), note
    logger = HelperLogger(take_helper(), mode, kwargs)
    if mode == "online":
        logger.settle(until={"started", "failed"})
        logger.raise_failure()
    return logger, note or logger.note
