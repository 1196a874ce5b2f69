"""The best over a swept key (Saxe et al.'s protocol: the learning time at each depth's best learning rate)."""

import math
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from analysis import report  # noqa: E402
from analysis.best_over import best_rows  # noqa: E402
from conftest import run_cli  # noqa: E402

CONFIG_KEYS = ["depth", "init", "lr", "seed", "activation"]


def runs_table(steps: dict[tuple[int, str, float], list[float]]) -> pd.DataFrame:
    """Runs of (depth, init, lr) with a learning_step per seed (NaN: never got there)."""
    rows = [{"depth": d, "init": i, "lr": lr, "seed": s, "activation": "linear", "learning_step": v}
            for (d, i, lr), values in steps.items() for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_best_value_is_the_lowest_seed_mean_and_never_counts_as_worst():
    runs = runs_table({(2, "orthogonal", 0.01): [10, 12], (2, "orthogonal", 0.1): [4, math.nan],
                       (2, "orthogonal", 0.3): [6, 6], (8, "orthogonal", 0.01): [math.nan, math.nan],
                       (8, "orthogonal", 0.1): [math.nan, math.nan]})
    rows = best_rows(runs, "lr", "learning_step", CONFIG_KEYS).set_index("depth")
    assert rows.loc[2, "lr"] == 0.3 and rows.loc[2, "learning_step"] == 6  # 0.1 has a seed that never learned
    assert pd.isna(rows.loc[8, "lr"]) and math.isnan(rows.loc[8, "learning_step"])  # never, at every lr
    assert rows.loc[2, "lr tried"] == "0.01, 0.1, 0.3"


def test_best_over_an_unknown_column_names_it():
    with pytest.raises(ValueError, match="no column momentum"):
        best_rows(runs_table({(2, "orthogonal", 0.1): [4]}), "momentum", "learning_step", CONFIG_KEYS)


def test_report_with_best_over_adds_figure_13_and_its_table(tmp_path: Path):
    result = run_cli("-m", "activation=linear", "init=orthogonal", "depth=2,3", "lr=0.01,0.1", "epochs=1",
                     "log_every=1", "jacobian.examples=0", "logger.mode=disabled", "hydra.sweep.dir=sweep",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    index = report.build([tmp_path / "sweep"], progress=False, best_over="lr")
    assert (index.parent / "figures" / "13_best_over.png").exists()
    page = index.read_text()
    assert "learning_step at the best lr (figure 13)" in page and "lr tried" in page
    assert report.main([str(tmp_path / "sweep"), "--best-over", "nope"]) == 2
