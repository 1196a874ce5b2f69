"""gradlab: vanishing and exploding gradients in networks whose backward pass is written by hand (MLPs, RNNs).

The names below load on first use (PEP 562), so that `from gradlab import tracking` imports no torch: src/run.py
starts the W&B helper through it before torch's import.
"""

from importlib import import_module
from typing import Any

HOMES = {"ACTIVATIONS": "activations", "Activation": "activations", "INITS": "inits", "Init": "inits",
         "LOSSES": "losses", "Loss": "losses", "MLP": "mlp", "RNN": "rnn"}  # public name -> the module that defines it
__all__ = sorted(HOMES)


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module 'gradlab' has no attribute {name!r}")
    return getattr(import_module(f"gradlab.{HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
