"""Chance level: what a network that learned nothing scores, from the facts its run recorded, never by reloading the
data. On n classes, guessing scores accuracy 1/n, and predicting 1/n for each class a cross-entropy of ln n; one
logit (binary cross-entropy) is two classes: 1/2 and ln 2."""

import math

LOSSES_WITH_CHANCE = ("cross_entropy", "bce")  # gradlab.losses: the losses whose chance level is ln(classes)


def classes(run: tuple) -> int | None:
    """The classes a run told apart: its logits (the last of its recorded layer_sizes), 2 for one logit; None where
    the run recorded no sizes."""
    sizes = getattr(run, "layer_sizes", None)
    return max(sizes[-1], 2) if isinstance(sizes, tuple) and sizes else None


def chance_accuracy(run: tuple) -> float:
    """1 / classes; NaN where the run recorded no sizes."""
    count = classes(run)
    return math.nan if count is None else 1 / count


def chance_loss(run: tuple) -> float:
    """ln(classes) for the loss the run recorded it trained with (loss_in_force); NaN where it recorded none."""
    count = classes(run)
    if count is None or getattr(run, "loss_in_force", None) not in LOSSES_WITH_CHANCE:
        return math.nan
    return math.log(count)
