"""Train one manual-backprop MLP per job: `python src/run.py -m depth=2,10,30`."""

import os
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gradlab.config import register_configs
from gradlab.experiment import Job, run_job
from gradlab.sweeps import threads_per_job

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    threads = threads_per_job(hc.launcher, len(os.sched_getaffinity(0)))
    if threads:
        torch.set_num_threads(threads)  # parallel jobs must not oversubscribe the cores
    multirun = hc.mode == RunMode.MULTIRUN
    job = Job(
        run_dir=Path(hc.runtime.output_dir),
        group=Path(hc.sweep.dir).name if multirun else None,
        name=hc.job.override_dirname or "defaults",
    )
    return run_job(cfg, job)


if __name__ == "__main__":
    main()
