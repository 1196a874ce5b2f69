"""What each figure of the report is handed to draw, for the tests that check which rows a figure reads."""

import pandas as pd

from analysis import catalog


def drawn_rows(inputs: catalog.Inputs, monkeypatch) -> dict[str, pd.DataFrame]:
    """Each figure's rows, as the catalog hands them to its panels."""
    handed = []
    monkeypatch.setattr(catalog, "facet_grid", lambda rows, *args, **kwargs: handed.append(rows))
    monkeypatch.setattr(catalog, "facet_wrap", lambda rows, *args, **kwargs: handed.append(rows))
    frames = {}
    for spec in catalog.FIGURES:
        handed.clear()
        spec.build(inputs)
        frames[spec.name] = pd.concat(handed) if handed else pd.DataFrame()
    return frames
