"""Every network family, by the name the config's `net` key gives it: how a validated config and the loaded data
build one (gradlab.network's protocol), and the facts about it that its run record keeps.

Adding a family: a class with the protocol's methods (gradlab.network.Network), a build function here, and its
line in NETWORKS. The loop, the record and the report need nothing else.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from gradlab.data import Split
from gradlab.losses import Loss
from gradlab.mlp import MLP
from gradlab.network import Network
from gradlab.theory import layer_scales


class Built(NamedTuple):
    net: Network
    facts: dict[str, Any]  # what the theory and the analysis need of this network; goes into summary.json
    jacobian_examples: int  # fixed test examples whose input-output Jacobian the loop measures (0: none)


def build_mlp(cfg: Any, split: Split, loss: Loss) -> Built:
    """An MLP of cfg.depth layers, cfg.width units wide, from the data's features to the loss's logits."""
    sizes = [split.x_train.shape[1], *[cfg.width] * (cfg.depth - 1), loss.out_dim(split.n_classes)]
    net = MLP(sizes, cfg.activation, cfg.init, seed=cfg.seed, replicas=cfg.replicas, init_gain=cfg.init_gain,
              device=cfg.device, dtype=split.x_train.dtype, arch=cfg.arch, residual_scale=cfg.residual_scale,
              norm=cfg.norm, bias_std=cfg.bias_std)
    jacobian = mlp_jacobian(cfg, sizes, len(split.x_test))
    facts = {"layer_sizes": sizes, "sigma_w2": layer_scales(sizes, cfg.init, cfg.init_gain),
             "sigma_b2": cfg.bias_std**2, "jacobian": jacobian}
    return Built(net, facts, jacobian["examples"])


def mlp_jacobian(cfg: Any, sizes: list[int], n_test: int) -> dict[str, Any]:
    """What the record holds of J = d h^{depth-1} / d x, or why it holds none."""
    if cfg.jacobian.examples == 0:
        return {"examples": 0, "why_none": "jacobian.examples=0"}
    if cfg.depth == 1:
        return {"examples": 0, "why_none": "depth 1 has no hidden layer, so no input-output Jacobian"}
    return {"examples": min(cfg.jacobian.examples, n_test), "shape": [sizes[-2], sizes[0]],
            "every_epoch": cfg.jacobian.every_epoch, "mode": "evaluation (batch norm: running statistics)"}


NETWORKS: dict[str, Callable[[Any, Split, Loss], Built]] = {
    "mlp": build_mlp,
}
