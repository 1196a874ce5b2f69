"""Every network family, by the name the config's `net` key gives it: how a validated config and the loaded data
build one (gradlab.network's protocol), the facts about it that its run record keeps, the config keys only it
reads, and the data it takes.

Adding a family: a class with the protocol's methods (gradlab.network.Network), a build function here, and its
line in NETWORKS. The loop, the record and the report need nothing else.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from gradlab.data import Split
from gradlab.inits import get_init
from gradlab.losses import Loss
from gradlab.mlp import MLP
from gradlab.network import Network
from gradlab.rnn import RNN
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


def build_rnn(cfg: Any, split: Split, loss: Loss) -> Built:
    """An RNN of cfg.width units reading the data's sequences (N, T, n_in), its logits from h_T."""
    _, steps, n_in = split.x_train.shape
    net = RNN(n_in, cfg.width, loss.out_dim(split.n_classes), cell=cfg.cell, activation=cfg.activation,
              init=cfg.init, recurrent_init=cfg.recurrent_init, recurrent_gain=cfg.recurrent_gain,
              forget_bias=cfg.forget_bias, readout=cfg.readout, seed=cfg.seed, replicas=cfg.replicas,
              init_gain=cfg.init_gain, dtype=split.x_train.dtype, device=cfg.device)
    identity = cfg.recurrent_init == "identity"  # W = I: one weight of 1 per unit, so width * Var = 1
    recurrent = 1 / cfg.width if identity else get_init(cfg.recurrent_init).variance(cfg.width, cfg.width)
    square = net.W.reshape(cfg.replicas, cfg.width, -1)[..., : cfg.width].double()  # a vanilla cell's W, per replica
    radius = torch.linalg.eigvals(square).abs().amax(-1).tolist() if cfg.cell == "vanilla" else None
    facts = {"cell": cfg.cell, "readout": cfg.readout, "seq_len": steps, "n_in": n_in, "width": cfg.width,
             "sigma_w2": cfg.recurrent_gain**2 * cfg.width * recurrent,
             "sigma_u2": cfg.init_gain**2 * n_in * get_init(cfg.init).variance(n_in, cfg.width), "sigma_b2": 0.0,
             "input_q0_mean": float(split.x_train.double().pow(2).mean()), "spectral_radius": radius,
             "jacobian": {"examples": 0, "why_none": "net=rnn: the input-output Jacobian is measured for MLPs only"}}
    return Built(net, facts, 0)


class Family(NamedTuple):
    build: Callable[[Any, Split, Loss], Built]
    keys: tuple[str, ...]  # the config keys only this family reads; every other family leaves them at their defaults
    sequence: bool  # takes sequence data sets (N, T, n_in), else vectors (N, n_in)


MLP_KEYS = ("depth", "arch", "residual_scale", "norm", "bias_std", "jacobian.examples",
            "jacobian.every_epoch", "dataset.q0")
NETWORKS: dict[str, Family] = {
    "mlp": Family(build_mlp, MLP_KEYS, sequence=False),
    "rnn": Family(build_rnn, ("cell", "recurrent_init", "recurrent_gain", "forget_bias", "readout"), sequence=True),
}
