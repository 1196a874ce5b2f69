"""Train one manual-backprop MLP per job: `python src/run.py -m depth=2,10,30`."""

import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gradlab.config import ConfigError, register_configs
from gradlab.data import DataUnavailable
from gradlab.experiment import Job, JobInterrupted, run_job
from gradlab.sweeps import available_cores, threads_per_job

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    threads = threads_per_job(hc.launcher, available_cores())
    if threads:
        torch.set_num_threads(threads)  # parallel jobs must not oversubscribe the cores
    multirun = hc.mode == RunMode.MULTIRUN
    job = Job(
        run_dir=Path(hc.runtime.output_dir),
        group=Path(hc.sweep.dir).name if multirun else None,
        name=hc.job.override_dirname or "defaults",
    )
    try:
        return run_job(cfg, job)
    except (ConfigError, DataUnavailable) as error:  # nothing ran and no record is left: say why in one line
        print(f"gradlab: {error}", file=sys.stderr)
        sys.exit(2)
    except JobInterrupted as error:
        print(f"gradlab: {error}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
