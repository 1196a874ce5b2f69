"""An MLP's architecture, described once: the MLP's forward, backward and tangents and the mean-field theory
(gradlab.theory) all read it from here.

Every architecture is one recursion over x^l, the input of the next phi:

    x^1 = z^1 = x W^1 + b^1,
    x^l = skip x^{l-1} + branch z^l,   z^l = phi(n^l(x^{l-1})) W^l + b^l   (l = 2..depth-1),
    logits = z^depth = phi(n^depth(x^{depth-1})) W^depth + b^depth,

where n^l is layer l's norm (the identity without one). A plain net has skip 0 and branch 1, so x^l = z^l;
the reduced residual net of Yang & Schoenholz 2017 has skip 1 and branch alpha (residual_scale).
"""

from collections.abc import Callable
from typing import NamedTuple


class Architecture(NamedTuple):
    name: str
    skip: bool  # x^l keeps x^{l-1} (a residual stream) in the hidden layers 2..depth-1
    branch: float  # the weight of z^l in x^l in the hidden layers 2..depth-1
    outputs_phi: bool  # layer l's output h^l, which the statistics measure, is phi(n(x^l)) (plain) or x^l

    def carry(self, l: int, depth: int) -> tuple[bool, float]:
        """(skip, branch) of layer l: the first layer and the readout have no skip and branch 1."""
        return (self.skip, self.branch) if 1 < l < depth else (False, 1.0)

    def row_layer(self, l: int) -> int:
        """The layer whose rows report phi and the norm at layer l's input (l >= 2): plain nets count them with
        the layer whose z^{l-1} they transform (l - 1), residual nets with the block whose branch they feed (l)."""
        return l - 1 if self.outputs_phi else l

    def input_layer(self, row: int) -> int:
        """The layer whose input phi and norm the rows of layer `row` report: the inverse of row_layer."""
        return row + 1 if self.outputs_phi else row


ARCHITECTURES: dict[str, Callable[[float], Architecture]] = {  # from residual_scale, which a plain net ignores
    "plain": lambda residual_scale: Architecture("plain", skip=False, branch=1.0, outputs_phi=True),
    "residual": lambda residual_scale: Architecture("residual", skip=True, branch=residual_scale, outputs_phi=False),
}
ARCHS = tuple(ARCHITECTURES)


def get_architecture(name: str, residual_scale: float = 1.0) -> Architecture:
    """The architecture registered as name, with branch weight residual_scale where it has a skip."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown arch {name!r}. Expect one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](residual_scale)
