"""Shared helpers: Hydra's compose API over conf/, and the CLI run in a subprocess."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from gradlab.config import register_configs

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
RUN = REPO / "src" / "run.py"

register_configs()


def compose_config(*overrides: str) -> DictConfig:
    """The config that `python src/run.py OVERRIDES` would run with."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_SILENT="true", **extra)
    return env


def interruptible() -> None:
    """Popen's preexec_fn: SIGINT's default disposition in the child even where the tests run with SIGINT ignored
    (a non-interactive shell's background job), so that Python there turns Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, cwd: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    """Run `python src/run.py ARGS` from cwd, as a user would; output is captured as text."""
    return subprocess.run(
        [sys.executable, str(RUN), *args], cwd=cwd, env=cli_env(**env),
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run from, so relative runs/ and data/ land in the test's own space."""
    return tmp_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """The theory's tensors are small: on a busy machine a second torch thread only waits (tanh quadrature ran
    ~100x slower with 2). A module opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
