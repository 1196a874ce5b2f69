"""The tutorial's two slips, each caught: a wrong tanh derivative, and a sigmoid before softmax."""

import math

import torch

from gradlab.activations import ACTIVATIONS, Activation
from gradlab.losses import LOSSES
from gradlab.mlp import MLP

CE = LOSSES["cross_entropy"]


def backward_error_against_autograd(net: MLP, x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative error of net.backward's dW against autograd on the same forward."""
    grads = net.backward(CE.value_and_grad(net.forward(x), y)[1] / len(y))
    weights = [w.clone().requires_grad_(True) for w in net.weights]
    h = x
    for l, (w, b) in enumerate(zip(weights, net.biases, strict=True), start=1):
        z = h @ w + b
        h = ACTIVATIONS[net.activation_name].fn(z) if l < net.depth else z
    CE.value(h, y).mean().backward()
    d_weights = grads[: net.depth]  # parameters() order: each W^l first
    return max(float((dW - w.grad).norm() / w.grad.norm()) for dW, w in zip(d_weights, weights, strict=True))


def tutorial_tanh_slip(z: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(z)
    return h * (1 - h)  # the sigmoid's derivative, written in terms of the layer's output


def test_registry_tanh_backward_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,), generator=gen)
    net = MLP([5, 7, 7, 3], activation="tanh", init="xavier_normal", dtype=torch.float64)
    assert backward_error_against_autograd(net, x, y) < 1e-10


def test_tutorials_tanh_derivative_slip_fails_the_autograd_check():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,), generator=gen)
    net = MLP([5, 7, 7, 3], activation="tanh", init="xavier_normal", dtype=torch.float64)
    net.activation = Activation(torch.tanh, tutorial_tanh_slip, ACTIVATIONS["tanh"].saturated)
    assert backward_error_against_autograd(net, x, y) > 0.1


def test_network_output_is_unsquashed_logits():
    net = MLP([4, 8, 10], activation="sigmoid", init="normal", seed=1)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(2))
    logits = net.forward(x)
    last_hidden = net.hidden[-1]
    assert torch.equal(logits, last_hidden @ net.weights[-1] + net.biases[-1])
    assert logits.min() < 0 or logits.max() > 1


def test_sigmoid_before_softmax_cross_entropy_cannot_reach_a_confident_loss():
    """With outputs squashed into [0, 1], even a perfect prediction costs log(1 + 9/e) on 10 classes."""
    perfect = torch.full((1, 10), -20.0)
    perfect[0, 3] = 20.0
    target = torch.tensor([3])
    on_logits = float(CE.value(perfect, target))
    on_sigmoid = float(CE.value(torch.sigmoid(perfect), target))
    assert on_logits < 1e-6
    assert math.isclose(on_sigmoid, math.log(1 + 9 / math.e), rel_tol=1e-6)
