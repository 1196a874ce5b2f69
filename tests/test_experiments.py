"""The curated experiments: each file gives its command, composes, and sweeps only valid values."""

import itertools
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF
from gradlab.validation import validate

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_the_curated_experiments_are_there():
    assert EXPERIMENTS == ["adam_vs_sgd", "bengio1994", "cohen2021", "exploding", "glorot2010", "he2015",
                           "he2016_residual", "hochreiter1997", "ioffe2015_batchnorm", "klambauer2017_selu",
                           "le2015_irnn", "mccandlish2018", "pascanu2013", "pennington2017", "saxe2014",
                           "schoenholz2017", "seq_digits", "vanishing"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_file_opens_with_its_command(name):
    lines = (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"  # Hydra reads its directives only before any other line
    command = f"# python src/run.py -m +experiment={name} && python analysis/report.py"
    assert re.fullmatch(re.escape(command) + r"( --best-over \w+)?", lines[1])  # the report's options, if any


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_the_experiment_passes_the_config_checks(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
        params = {key: str(values).split(",") for key, values in cfg.hydra.sweeper.params.items()}
        assert Path(cfg.hydra.sweep.dir).name.endswith(f"_{name}")
        jobs = list(itertools.product(*[[f"{key}={v}" for v in values] for key, values in params.items()]))
        assert len(jobs) >= 6
        for job in jobs:
            validate(compose("config", overrides=[f"+experiment={name}", *job]))
