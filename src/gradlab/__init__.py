"""gradlab: vanishing and exploding gradients in MLPs whose backward pass is written by hand."""

from gradlab.activations import ACTIVATIONS, Activation
from gradlab.inits import INITS, Init
from gradlab.losses import LOSSES, Loss
from gradlab.mlp import MLP

__all__ = ["ACTIVATIONS", "INITS", "LOSSES", "MLP", "Activation", "Init", "Loss"]
