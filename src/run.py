"""Train one manual-backprop MLP per job: `python src/run.py -m depth=2,10,30`."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gradlab.config import register_configs
from gradlab.experiment import Job, run_job

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    job = Job(
        run_dir=Path(hc.runtime.output_dir),
        group=Path(hc.sweep.dir).name if multirun else None,
        name=hc.job.override_dirname or "defaults",
    )
    return run_job(cfg, job)


if __name__ == "__main__":
    main()
