"""Each loss against torch: its value, its gradient (autograd and finite differences), its stability."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gradlab.losses import LOSSES

BATCH = 6
N_CLASSES = {"cross_entropy": 5, "bce": 2, "mse": 4}


def logits_and_targets(name: str, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits (B, out_dim) and class-index targets (B,) for loss `name`."""
    gen = torch.Generator().manual_seed(seed)
    k = N_CLASSES[name]
    logits = scale * torch.randn(BATCH, LOSSES[name].out_dim(k), generator=gen, dtype=torch.float64)
    targets = torch.randint(0, k, (BATCH,), generator=gen)
    return logits, targets


def torch_squared_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0.5 * ||logits - t||^2 per example by torch's mse_loss; t = one-hot of class indices, float targets as given."""
    if not targets.is_floating_point():
        targets = F.one_hot(targets, logits.shape[-1]).to(logits.dtype).expand_as(logits)
    return 0.5 * F.mse_loss(logits, targets, reduction="none").sum(-1)


def torch_loss(name: str, logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    """torch's own per-example (reduction="none") or mean loss."""
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(reduction=reduction)(logits, targets)
    if name == "mse":  # the mean over examples, not torch's mean over every logit
        per_example = torch_squared_error(logits, targets)
        return per_example if reduction == "none" else per_example.mean()
    return nn.BCEWithLogitsLoss(reduction=reduction)(logits.squeeze(1), targets.to(logits.dtype))


def test_every_loss_has_a_torch_reference():
    assert set(N_CLASSES) == set(LOSSES)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_value_matches_torch(name, seed):
    logits, targets = logits_and_targets(name, seed)
    per_example = LOSSES[name].value(logits, targets)
    assert per_example.shape == (BATCH,)
    torch.testing.assert_close(per_example, torch_loss(name, logits, targets, "none"), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(per_example.mean(), torch_loss(name, logits, targets, "mean"), rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fused_value_and_grad_match_torch_and_autograd(name, seed):
    logits, targets = logits_and_targets(name, seed)
    leaf = logits.clone().requires_grad_(True)
    expected_value = torch_loss(name, leaf, targets, "none")
    (expected_grad,) = torch.autograd.grad(expected_value.sum(), leaf)
    value, grad = LOSSES[name].value_and_grad(logits, targets)
    assert value.shape == (BATCH,) and grad.shape == logits.shape
    torch.testing.assert_close(value, expected_value.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fused_value_and_grad_keep_leading_replica_dimensions(name):
    logits, targets = logits_and_targets(name)
    stacked = torch.stack([logits, 2 * logits])  # (R=2, B, C), targets shared
    value, grad = LOSSES[name].value_and_grad(stacked, targets)
    assert value.shape == stacked.shape[:-1] and grad.shape == stacked.shape
    for r in range(2):
        torch.testing.assert_close(value[r], LOSSES[name].value(stacked[r], targets), rtol=1e-14, atol=0)
        torch.testing.assert_close(grad[r], LOSSES[name].value_and_grad(stacked[r], targets)[1], rtol=1e-14, atol=0)


@pytest.mark.parametrize("targets_kind", ["shared class indices", "own class indices", "float"])
def test_mse_with_replicas_matches_torch_and_autograd(targets_kind):
    gen = torch.Generator().manual_seed(5)
    replicas, k = 3, N_CLASSES["mse"]
    logits = 3 * torch.randn(replicas, BATCH, k, generator=gen, dtype=torch.float64)  # (R, B, C)
    targets = {"shared class indices": torch.randint(0, k, (BATCH,), generator=gen),
               "own class indices": torch.randint(0, k, (replicas, BATCH), generator=gen),
               "float": torch.randn(replicas, BATCH, k, generator=gen, dtype=torch.float64)}[targets_kind]
    leaf = logits.clone().requires_grad_(True)
    expected_value = torch_squared_error(leaf, targets)
    (expected_grad,) = torch.autograd.grad(expected_value.sum(), leaf)  # loss_b depends on its own row only
    value, grad = LOSSES["mse"].value_and_grad(logits, targets)
    assert value.shape == (replicas, BATCH) and grad.shape == logits.shape
    torch.testing.assert_close(value, expected_value.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(LOSSES["mse"].value(logits, targets), value, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_grad_matches_central_differences(name, seed):
    logits, targets = logits_and_targets(name, seed)
    loss, eps = LOSSES[name], 1e-6
    _, grad = loss.value_and_grad(logits, targets)
    # loss_b depends on row b only, so one column's nudge measures that column for every example.
    for c in range(logits.shape[1]):
        nudge = torch.zeros_like(logits)
        nudge[:, c] = eps
        slope = (loss.value(logits + nudge, targets) - loss.value(logits - nudge, targets)) / (2 * eps)
        torch.testing.assert_close(grad[:, c], slope, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_does_not_modify_logits(name):
    logits, targets = logits_and_targets(name)
    kept = logits.clone()
    LOSSES[name].value_and_grad(logits, targets)
    LOSSES[name].value(logits, targets)
    assert torch.equal(logits, kept)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_is_stable_at_huge_logits(dtype):
    logits = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    targets = torch.tensor([0, 1, 2])
    value, grad = LOSSES["cross_entropy"].value_and_grad(logits, targets)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, torch.tensor([0.0, 2e4, 0.0], dtype=dtype))
    torch.testing.assert_close(LOSSES["cross_entropy"].value(logits, targets), value, rtol=0, atol=0)
    expected_grad = torch.tensor([[0.0, 0, 0], [1.0, -1, 0], [0, 0, 0]], dtype=dtype)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_is_stable_at_huge_logits(dtype):
    logits = torch.tensor([[1e4], [1e4], [-1e4], [-1e4]], dtype=dtype)
    targets = torch.tensor([1, 0, 0, 1])
    value, grad = LOSSES["bce"].value_and_grad(logits, targets)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, torch.tensor([0.0, 1e4, 0.0, 1e4], dtype=dtype))
    torch.testing.assert_close(LOSSES["bce"].value(logits, targets), value, rtol=0, atol=0)
    torch.testing.assert_close(grad, torch.tensor([[0.0], [1.0], [0.0], [-1.0]], dtype=dtype))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_at_huge_logits_matches_torch(name):
    logits, targets = logits_and_targets(name, scale=1e4)
    torch.testing.assert_close(
        LOSSES[name].value(logits, targets), torch_loss(name, logits, targets, "none"), rtol=1e-12, atol=1e-12
    )


def test_cross_entropy_matches_tutorial_value():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(42)
        x = torch.rand(100, 10)
        y = torch.randint(0, 10, (100,))
    value = LOSSES["cross_entropy"].value(x, y).mean()
    torch.testing.assert_close(value, nn.CrossEntropyLoss()(x, y))
    assert abs(value.item() - 2.3436) < 5e-5


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_predicted_class_is_the_most_probable(name):
    logits, _ = logits_and_targets(name, seed=4)
    if name == "cross_entropy":
        expected = torch.softmax(logits, dim=1).argmax(dim=1)
    elif name == "mse":  # the class whose one-hot target is nearest
        expected = torch.cdist(logits, torch.eye(logits.shape[1], dtype=logits.dtype)).argmin(dim=1)
    else:
        expected = (torch.sigmoid(logits.squeeze(1)) > 0.5).long()
    assert torch.equal(LOSSES[name].predict(logits), expected)


def test_output_sizes():
    assert LOSSES["cross_entropy"].out_dim(7) == 7
    assert LOSSES["cross_entropy"].n_classes is None
    assert LOSSES["bce"].out_dim(2) == 1
    assert LOSSES["bce"].n_classes == 2
    assert LOSSES["mse"].out_dim(7) == 7 and LOSSES["mse"].out_dim(2) == 2
    assert LOSSES["mse"].n_classes is None
