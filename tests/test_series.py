"""Series identity: every config key that can change a run's result splits series; seeds and bookkeeping do not.
On a real toy sweep: each series keeps its own accuracy and gets the theory of its own recorded network.
"""

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import report
from analysis.load import NoRecordedFacts, load
from analysis.predict import architecture, predicted_profile, predicted_profiles
from analysis.series import BOOKKEEPING_KEYS, flatten, label_series
from conftest import run_cli
from gradlab import theory
from gradlab.config import Config

BASE_CONFIG = {"depth": 6, "width": 64, "activation": "tanh", "init": "xavier_uniform", "seed": 0, "replicas": 1,
               "log_every": 5, "skip_completed": False, "data_dir": "data", "device": "cpu",
               "dataset.name": "toy", "dataset.kind": "moons", "dataset.noise": 0.2,
               "logger.mode": "offline", "logger.project": "gradlab", "logger.entity": None}  # fmt: skip


def runs_varying(key: str, values: list) -> pd.DataFrame:
    """Two seeds of each value of key, every other key at BASE_CONFIG's value."""
    rows = [{**BASE_CONFIG, key: value, "seed": seed} for value in values for seed in (0, 1)]
    return label_series(pd.DataFrame(rows).assign(run=range(len(rows))), list(dict.fromkeys([*BASE_CONFIG, key])))


def test_nested_config_keys_get_dotted_names_and_lists_become_tuples():
    config = {"depth": 3, "dataset": {"name": "toy", "kind": "xor"}, "logger": {"entity": None}, "sizes": [2, 1]}
    assert flatten(config) == {"depth": 3, "dataset.name": "toy", "dataset.kind": "xor", "logger.entity": None,
                               "sizes": (2, 1)}


@pytest.mark.parametrize("key, values", [("dataset.kind", ["moons", "xor"]), ("dataset.noise", [0.2, 0.5]),
                                         ("replicas", [1, 4]), ("log_every", [1, 5]), ("width", [16, 64]),
                                         ("a_key_added_later", [None, 3])])
def test_a_key_that_can_change_the_result_splits_series(key: str, values: list):
    runs = runs_varying(key, values)
    assert runs.series.nunique() == 2
    assert all(sorted(group.seed) == [0, 1] for _, group in runs.groupby("series"))  # the seeds of each value
    assert runs.groupby("series")[key].nunique(dropna=False).eq(1).all()


@pytest.mark.parametrize("key", ["logger.mode", "logger.project", "logger.entity", "skip_completed", "data_dir",
                                 "device"])
def test_a_bookkeeping_key_does_not_split_series(key: str):
    runs = runs_varying(key, ["first", "second"])
    assert runs.series.nunique() == 1 and sorted(runs.seed) == [0, 0, 1, 1]


def test_every_bookkeeping_key_names_a_key_of_the_config_schema():
    """A renamed key would otherwise leave the list, and split series, in silence."""
    assert set(BOOKKEEPING_KEYS) <= {field.name for field in dataclasses.fields(Config)}


def test_a_swept_key_is_named_in_the_line_label_and_the_facet_column():
    runs = runs_varying("dataset.kind", ["moons", "xor"])
    assert sorted(runs.series.unique()) == ["dataset.kind=moons", "dataset.kind=xor"]
    assert sorted(runs.column.unique()) == ["xavier_uniform · dataset.kind=moons", "xavier_uniform · dataset.kind=xor"]


def test_depth_is_the_line_label_and_the_other_swept_keys_go_to_the_column():
    rows = [{**BASE_CONFIG, "depth": depth, "dataset.kind": kind} for depth in (3, 6) for kind in ("moons", "xor")]
    runs = label_series(pd.DataFrame(rows).assign(run=range(4)), list(BASE_CONFIG))
    assert sorted(runs.line.unique()) == ["depth=3", "depth=6"]
    assert sorted(runs.curve.unique()) == ["dataset.kind=moons", "dataset.kind=xor"]
    assert runs.series.nunique() == 4
    assert runs[runs.depth == 6].shade.min() > runs[runs.depth == 3].shade.max()  # deeper is darker
    assert (runs.groupby("depth").shade.nunique() == 1).all()  # one color per depth in every panel, as its legend


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory) -> Path:
    """dataset.kind (moons, xor) x depth (3, 6) on the toy set: one logit, trained with BCE."""
    root = tmp_path_factory.mktemp("toy")
    result = run_cli("-m", "dataset=toy", "dataset.kind=moons,xor", "depth=3,6", "epochs=1", "logger.mode=disabled",
                     "hydra.sweep.dir=runs/multirun/toy", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "runs" / "multirun" / "toy"


def job_records(sweep: Path) -> list[tuple[dict, dict]]:
    """(config as written by Hydra, summary.json) of every job in the sweep, read straight from the files."""
    jobs = sorted(sweep.glob("*_*"))
    return [(yaml.safe_load((job / ".hydra" / "config.yaml").read_text()),
             json.loads((job / "summary.json").read_text())) for job in jobs]


def copy_of(sweep: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sweep, tmp_path / sweep.name))


def test_a_swept_dataset_kind_makes_two_series_each_with_its_own_accuracy(toy_sweep: Path):
    inputs, table, _ = report.analyse([toy_sweep], progress=False)
    assert list(table["dataset.kind"]) == ["moons", "xor"]
    assert inputs.runs.series.nunique() == 4  # 2 kinds x 2 depths, one seed each
    for config, summary in job_records(toy_sweep):
        row = table[table["dataset.kind"] == config["dataset"]["kind"]].iloc[0]
        assert row[f"accuracy at depth {config['depth']}"] == f"{summary['final_test_accuracy']:.3f}"


def dotted_keys(config: dict) -> set[str]:
    """config.yaml's keys as runs.csv names them: dataset.kind for kind under dataset (the config nests once)."""
    keys = set()
    for key, value in config.items():
        keys |= {f"{key}.{inner}" for inner in value} if isinstance(value, dict) else {key}
    return keys


def test_runs_csv_has_a_dotted_column_per_config_key(toy_sweep: Path, tmp_path: Path):
    sweep = copy_of(toy_sweep, tmp_path)
    runs = pd.read_csv(report.build([sweep], progress=False).parent / "runs.csv")
    for config, _ in job_records(toy_sweep):
        assert dotted_keys(config) <= set(runs.columns)
    assert sorted(runs["dataset.kind"]) == sorted(config["dataset"]["kind"] for config, _ in job_records(toy_sweep))


def test_toy_theory_is_that_of_its_own_one_logit_network_without_reloading_data(toy_sweep: Path, monkeypatch):
    monkeypatch.setattr("gradlab.data.DATASETS", {})  # any attempt to reload a data set fails
    loaded = load([toy_sweep], progress=False)
    assert set(predicted_profiles(loaded.runs, loaded.metrics).run) == set(loaded.runs.run)
    for run in loaded.runs.itertuples(index=False):
        summary = json.loads((Path(run.job_dir) / "summary.json").read_text())
        sizes, q0s = summary["layer_sizes"], summary["input_q0_quantiles"]
        assert sizes[-1] == 1 and summary["loss_in_force"] == "bce"
        profile = predicted_profile(*architecture(run))
        assert len(profile) == run.depth
        assert profile == pytest.approx(theory.log10_delta_rms_profile(sizes, run.activation, run.init, q0s))
        two_logits = theory.log10_delta_rms_profile([*sizes[:-1], 2], run.activation, run.init, q0s)
        assert profile != pytest.approx(two_logits, rel=1e-6, abs=0)


def forget_facts(summary_path: Path) -> None:
    summary = json.loads(summary_path.read_text())
    for fact in ("layer_sizes", "loss_in_force", "input_q0_quantiles"):
        summary.pop(fact)
    summary_path.write_text(json.dumps(summary))


def test_runs_recorded_without_facts_get_no_theory_and_one_warning(toy_sweep: Path, tmp_path: Path):
    sweep = copy_of(toy_sweep, tmp_path)
    for path in sweep.glob("*/summary.json"):
        forget_facts(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs, table, _ = report.analyse([sweep], progress=False)
    assert [w.category for w in caught if issubclass(w.category, NoRecordedFacts)] == [NoRecordedFacts]
    assert "delta_rms_predicted" not in set(inputs.metrics.name)
    assert inputs.runs.predicted_bulk_ratio.isna().all() and table.predicted.isna().all()
    assert (inputs.ratios.source == "measured").all()
    with pytest.warns(NoRecordedFacts):
        assert report.build([sweep], progress=False).exists()
