"""Train one manual-backprop MLP per job: `python src/run.py -m depth=2,10,30`."""

import ctypes
import gc
import sys
from pathlib import Path

from gradlab import tracking  # no torch in it: the helper starts first

# W&B's start-up (imports and service, about 1 s of one core) runs in the helper while this process imports torch,
# so that it takes the other core; gradlab.tracking's jobs take the helper over.
tracking.start_helper_early(sys.argv[1:])


def keep_freed_memory() -> None:
    """Tell glibc's malloc to keep freed memory for the next step instead of returning it to the OS: by default
    each step's freed tensors shrink the heap (and those over 128 KB are unmapped), and the next step faults the
    pages back in. Measured on 2 cores, one epoch of train() in one process, the old and new spine interleaved:
    depth 30, width 64, 8 replicas 224-250 ms -> 210 ms. Not glibc (macOS, musl): nothing to do."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's mallopt parameters (malloc.h)
    libc.mallopt(m_trim_threshold, 1 << 30)  # return the heap's free top only beyond 1 GiB
    libc.mallopt(m_top_pad, 256 << 20)  # and grow it 256 MiB at a time
    libc.mallopt(m_mmap_threshold, 32 << 20)  # tensors below 32 MiB come from the heap, not from mmap


keep_freed_memory()

import hydra  # noqa: E402  (after the helper's start, on purpose)
import torch  # noqa: E402
from hydra._internal.utils import get_args_parser  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from gradlab.config import ConfigError, register_configs  # noqa: E402
from gradlab.data import DataUnavailable  # noqa: E402
from gradlab.experiment import Job, JobInterrupted, run_job  # noqa: E402
from gradlab.overrides import check_overrides, config_groups  # noqa: E402
from gradlab.sweeps import available_cores, threads_per_job  # noqa: E402

CORES = torch.get_num_threads()  # torch's own count (OMP_NUM_THREADS, else the cores), before any job changes it
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    parallel = threads_per_job(hc.launcher, available_cores())  # parallel jobs must not oversubscribe the cores
    multirun = hc.mode == RunMode.MULTIRUN
    job = Job(
        run_dir=Path(hc.runtime.output_dir),
        name=hc.job.override_dirname or "defaults",
        sweep_dir=Path(hc.sweep.dir) if multirun else None,
        number=hc.job.num if multirun else None,
        cores=min(parallel or CORES, CORES),
    )
    try:
        return run_job(cfg, job)
    except (ConfigError, DataUnavailable) as error:  # nothing ran and no record is left: say why in one line
        print(f"gradlab: {error}", file=sys.stderr)
        sys.exit(2)
    except JobInterrupted as error:
        print(f"gradlab: {error}", file=sys.stderr)
        sys.exit(130)


def check_command_line() -> None:
    """Unknown keys and config-group options, however they are written, as one line and exit 2 before Hydra runs
    (Hydra would report `detph=30` in several lines and exit 1, and add `+detph=30` to the config silently)."""
    overrides = get_args_parser().parse_known_args()[0].overrides
    try:
        check_overrides(overrides, config_groups(CONF_DIR))
    except ConfigError as error:
        print(f"gradlab: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    check_command_line()
    try:
        main()
    finally:
        gc.freeze()  # the exit's last collection would walk torch's objects (0.3 s); the OS frees them at once
