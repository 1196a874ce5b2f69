"""What each figure of the report is handed to draw, for the tests that check which rows a figure reads."""

import matplotlib.pyplot as plt
import pandas as pd

from analysis import catalog, catalog_instruments


def drawn_rows(inputs: catalog.Inputs, monkeypatch) -> dict[str, pd.DataFrame]:
    """Each figure's rows, as the catalog (and catalog_instruments) hands them to its panels."""
    handed = []
    for module in (catalog, catalog_instruments):
        monkeypatch.setattr(module, "facet_grid", lambda rows, *args, **kwargs: handed.append(rows))
        monkeypatch.setattr(module, "facet_wrap", lambda rows, *args, **kwargs: handed.append(rows))
    frames = {}
    for spec in catalog.FIGURES:
        handed.clear()
        spec.build(inputs)
        plt.close("all")  # what a builder drew itself (a message, figure 19's own panels)
        frames[spec.name] = pd.concat(handed) if handed else pd.DataFrame()
    return frames
