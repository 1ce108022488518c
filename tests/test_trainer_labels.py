"""The label step of docs/algorithm.md §3.2 against plain references written here: the losses in float64
numpy, their gradient by central finite differences, the update formula term by term."""

import math

import numpy as np
import pytest
import torch

from cdul.trainer.labels import align_labels, gaussian_weight, label_gradient, per_sample_loss, scores


def ref_loss(z: np.ndarray, y: np.ndarray, kind: str) -> float:
    """One sample's loss, float64, straight from the definitions."""
    if kind == "kl":
        y_hat = y / y.sum()
        log_p = z - z.max() - math.log(np.exp(z - z.max()).sum())
        return float(sum(a * (math.log(a) - b) for a, b in zip(y_hat, log_p) if a > 0))
    p = 1.0 / (1.0 + np.exp(-z))
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())


def ref_grad(z: np.ndarray, y: np.ndarray, kind: str, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(y)
    for c in range(len(y)):
        up, down = y.copy(), y.copy()
        up[c] += h
        down[c] -= h
        g[c] = (ref_loss(z, up, kind) - ref_loss(z, down, kind)) / (2 * h)
    return g


def ref_update(z, y, kind, lr, mu, sigma, eps):
    y = np.clip(y, eps, 1 - eps)
    w = np.exp(-((y - mu) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    g = ref_grad(z, y, kind)
    logit = np.log(y / (1 - y))
    return np.clip(1 / (1 + np.exp(-(logit - lr * w * g))), eps, 1 - eps)


def batch(seed: int, b: int = 5, c: int = 7):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (b, c))
    y = rng.uniform(0.02, 0.98, (b, c))
    return z, y


@pytest.mark.parametrize("kind", ["kl", "bce"])
def test_per_sample_loss_matches_definition(kind):
    z, y = batch(1)
    got = per_sample_loss(torch.tensor(z), torch.tensor(y), kind).double().numpy()
    want = np.array([ref_loss(z[i], y[i], kind) for i in range(len(z))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["kl", "bce"])
def test_label_gradient_matches_finite_differences(kind):
    z, y = batch(2)
    got = label_gradient(torch.tensor(z), torch.tensor(y), kind).double().numpy()
    want = np.stack([ref_grad(z[i], y[i], kind) for i in range(len(z))])
    worst = np.unravel_index(np.abs(got - want).argmax(), got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg=f"worst at {worst}")


@pytest.mark.parametrize("kind", ["kl", "bce"])
@pytest.mark.parametrize("lr,mu,sigma", [(1.0, 0.5, 1.0), (5.0, 0.3, 0.25)])
def test_align_labels_matches_reference(kind, lr, mu, sigma):
    z, y = batch(3)
    eps = 1e-6
    got = (
        align_labels(
            torch.tensor(z, dtype=torch.float32),
            torch.tensor(y, dtype=torch.float32),
            kind=kind,
            lr=lr,
            mu=mu,
            sigma=sigma,
            eps=eps,
        )
        .double()
        .numpy()
    )
    want = np.stack([ref_update(z[i], y[i], kind, lr, mu, sigma, eps) for i in range(len(z))])
    worst = np.unravel_index(np.abs(got - want).argmax(), got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"worst at {worst}")
    assert np.abs(got - np.clip(y, eps, 1 - eps)).max() > 1e-3  # the step did something


@pytest.mark.parametrize("kind", ["kl", "bce"])
def test_label_step_does_not_depend_on_the_batch(kind):
    z, y = batch(4, b=6)
    zt, yt = torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    whole = align_labels(zt, yt, kind=kind)
    parts = torch.cat([align_labels(zt[:1], yt[:1], kind=kind), align_labels(zt[1:], yt[1:], kind=kind)])
    torch.testing.assert_close(whole, parts)


@pytest.mark.parametrize("kind", ["kl", "bce"])
def test_clamp_keeps_labels_of_exactly_zero_and_one_finite(kind):
    z = torch.tensor([[3.0, -2.0, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    eps = 1e-6
    new = align_labels(z, y, kind=kind, lr=1.0, eps=eps)
    assert torch.isfinite(new).all()
    assert (new >= eps).all() and (new <= 1 - eps).all()
    assert torch.isfinite(torch.logit(new)).all()
    # and a second step from there stays finite too
    assert torch.isfinite(torch.logit(align_labels(z, new, kind=kind, eps=eps))).all()


def test_all_zero_row_has_finite_kl_loss():
    loss = per_sample_loss(torch.zeros(1, 3), torch.zeros(1, 3), "kl")
    assert torch.isfinite(loss).all() and float(loss) == 0.0


def test_gaussian_weight_is_the_density():
    y = torch.tensor([0.5, 0.0, 1.0])
    w = gaussian_weight(y, 0.5, 1.0).double()
    want = torch.tensor([1 / math.sqrt(2 * math.pi) * math.exp(-0.5 * d * d) for d in (0.0, -0.5, 0.5)])
    torch.testing.assert_close(w, want.double(), rtol=1e-6, atol=1e-7)


def test_scores_follow_the_loss():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(scores(z, "kl").sum(), torch.tensor(1.0))
    torch.testing.assert_close(scores(z, "bce"), torch.sigmoid(z))
