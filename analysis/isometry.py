"""Dynamical isometry at init, for the findings: how the input-output Jacobian J's singular values spread, beside the
delta_rms verdict (which says how the back-propagated signal's size changes per layer, not how J's directions spread).

J was measured at step 0 where a run recorded jac_* metrics: jac_isometry, the share of its singular values s in
gradlab.jacobian.ISOMETRY_BAND [0.5, 2], and jac_log_sv_std, the std of ln s. A network is isometric at init when
at least ISOMETRIC_SHARE of its singular values lie in the band (mean over seeds): most input directions reach the
last hidden layer within a factor 2 (Saxe et al. 2014; Pennington et al. 2017). One that is not is told apart by
its spread: narrow when the std of ln s is below NARROW_SPREAD (the singular values within about a factor e of each
other: J scales every direction alike, by a gain away from 1), spread otherwise (it amplifies some directions and
crushes others).
"""

import math

import pandas as pd

from analysis.needs import JACOBIAN_AT_INIT
from gradlab.jacobian import ISOMETRY_BAND

ISOMETRIC_SHARE = 0.5
NARROW_SPREAD = 1.0  # std of ln s
ISOMETRIC, NARROW, SPREAD = "isometric", "not isometric: narrow, off 1", "not isometric: spread"
AT_INIT = {name: f"{name}_at_init" for name in JACOBIAN_AT_INIT}  # metric: its run column
BAND = f"[{ISOMETRY_BAND[0]:g}, {ISOMETRY_BAND[1]:g}]"
SHARE_COLUMN, SPREAD_COLUMN, VERDICT_COLUMN = f"J share in {BAND}", "J std ln s", "J verdict"


def with_jacobian_at_init(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """runs with a column per AT_INIT metric: its value at step 0 (NaN where the run did not measure J)."""
    at_init = metrics[(metrics.step == 0) & metrics.name.isin(list(AT_INIT))]
    values = at_init.pivot_table(index="run", columns="name", values="value", observed=True)
    return runs.assign(**{column: runs.run.map(values[name]) if name in values else math.nan
                          for name, column in AT_INIT.items()})


def isometry_verdict(share: float, spread: float) -> str:
    """ISOMETRIC when at least ISOMETRIC_SHARE of J's singular values lie in the band, else NARROW or SPREAD by the
    std of ln s; '' where J was not measured."""
    if not math.isfinite(share):
        return ""
    if share >= ISOMETRIC_SHARE:
        return ISOMETRIC
    return NARROW if spread < NARROW_SPREAD else SPREAD


def jacobian_cells(deepest: pd.DataFrame) -> dict[str, object]:
    """The findings' J columns for the runs of one configuration at one depth: share in the band and std of ln s
    (means over the seeds that measured J), and the verdict; {} where none did."""
    if "jac_isometry_at_init" not in deepest or deepest.jac_isometry_at_init.isna().all():
        return {}
    share = float(deepest.jac_isometry_at_init.astype(float).mean())  # NaN of a seed without J left out
    spread = float(deepest.jac_log_sv_std_at_init.astype(float).mean())
    return {SHARE_COLUMN: share, SPREAD_COLUMN: spread, VERDICT_COLUMN: isometry_verdict(share, spread)}
