"""What a training run measures, as data: a Block of (layer, time, name) rows for all replicas, and one
replica's Measurement at one step. The loop makes them; the run record, W&B and the progress bar read them."""

from typing import NamedTuple

import torch
from torch import Tensor

Key = tuple[int | None, int | None, str]  # (layer or None: the whole network; time step or None; metric name)
Row = tuple[int | None, int | None, str, float]  # a Key and its value


class Block(NamedTuple):
    """Measurements as one tensor: row i of `values` is keys[i], one column per replica (1 if none)."""

    keys: list[Key]
    values: Tensor  # (len(keys), R)

    def per_replica(self) -> list[list[Row]]:
        """Each replica's rows as (layer, time, name, float), with one device sync for all of them."""
        columns = self.values.T.tolist()
        return [[(*key, v) for key, v in zip(self.keys, column, strict=True)] for column in columns]


def block(keys: list[Key], values: list[Tensor]) -> Block:
    """A Block from per-key values that are each 0-d, or (R,)."""
    return Block(keys, torch.stack([v.to(torch.float64).reshape(-1) for v in values]))


def whole(*names: str) -> list[Key]:
    """The keys of whole-network metrics: no layer, no time step."""
    return [(None, None, name) for name in names]


def concat(*blocks: Block) -> Block:
    return Block([k for b in blocks for k in b.keys], torch.cat([b.values for b in blocks]))


class Measurement(NamedTuple):
    step: int
    epoch: int
    rows: list[Row]  # (layer or None for the whole network, time step or None, name, value)
    epoch_end: bool  # rows hold the full train/test evaluation that closes an epoch (or step 0)
    replica: int = 0  # which replica of a replica-batched run; 0 otherwise
    spectrum: list[list[float]] | None = None  # the Jacobian's ln s (-inf: exactly 0), per fixed example, when measured
