"""Final test accuracy per configuration: the mean over its seeds that did not diverge, and how many diverged. The
findings, figure 6 and the trainability map all read it from here."""

import pandas as pd


def seed_mean_accuracy(runs: pd.DataFrame, by: str | list[str], sort: bool = True) -> pd.DataFrame:
    """Per group of runs by `by`: accuracy (mean final test accuracy of the seeds that did not diverge; NaN where
    every seed diverged or none recorded one), diverged (the seeds that diverged) and runs (all its seeds)."""
    kept = runs.assign(accuracy=runs.final_test_accuracy.astype(float).where(runs.status != "diverged"),
                       diverged=runs.status == "diverged")
    return kept.groupby(by, sort=sort).agg(accuracy=("accuracy", "mean"), diverged=("diverged", "sum"),
                                           runs=("run", "count"))
