"""The two losses and the gradient-alignment label step (docs/algorithm.md §3.1-3.2, paper Eq. 7-8).

Everything here works on one batch of logits ``z`` [B, C] and soft labels ``y`` [B, C] and
returns per-sample quantities, so the same code serves the network step (mean over the
batch) and the label step (per sample).

Per-sample losses, summed over classes:

- ``kl``:  l_i = KL(y_hat_i || p_i) = sum_c y_hat_ic (log y_hat_ic - log p_ic),
  y_hat_i = y_i / sum_c y_ic, p_i = softmax(z_i)
- ``bce``: l_i = sum_c BCE(sigmoid(z_ic), y_ic)

Label step, with the network frozen (``z`` detached):

    g = dl_i / dy_i,   w = N(y; mu, sigma),   y <- sigmoid(logit(y) - eta * w * g)

``g`` is taken of the per-sample loss, not of the batch mean: sample i's labels only appear
in l_i, so autograd of sum_i l_i gives every row its own gradient, and the step a label
takes does not shrink as the batch grows. ``y`` is clamped to [eps, 1 - eps] before the
step (so ``logit(y)`` and the KL gradient are finite even for labels of exactly 0 or 1) and
after it (so the next round starts inside the same interval).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import DEFAULT_EPS, LOSSES


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """[B, C] logits and soft labels -> [B] losses (float32 or wider, summed over classes)."""
    z = logits.float()
    y = y.to(z.dtype)
    if kind == "kl":
        total = y.sum(dim=1, keepdim=True)
        # A row of zeros has no distribution: its y_hat is zero and so is its loss (no NaN).
        y_hat = y / total.clamp_min(torch.finfo(z.dtype).tiny)
        return (torch.xlogy(y_hat, y_hat) - y_hat * F.log_softmax(z, dim=1)).sum(dim=1)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(dim=1)
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")


def scores(logits: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """The classifier's class probabilities as its loss defines them: softmax under ``kl``
    (a distribution over classes, as the KL target is), sigmoid under ``bce``."""
    z = logits.float()
    if kind == "kl":
        return torch.softmax(z, dim=1)
    if kind == "bce":
        return torch.sigmoid(z)
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")


def gaussian_weight(y: torch.Tensor, mu: float = 0.5, sigma: float = 1.0) -> torch.Tensor:
    """N(y; mu, sigma), the density itself (peak 1 / (sigma sqrt(2 pi)), about 0.399 for sigma 1)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return torch.exp(-0.5 * ((y - mu) / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))


def label_gradient(logits: torch.Tensor, y: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """g = d l_i / d y_i for every sample, by autograd, with the logits held fixed."""
    z = logits.detach().float()
    with torch.enable_grad():
        y = y.detach().to(z.dtype).requires_grad_(True)
        (g,) = torch.autograd.grad(per_sample_loss(z, y, kind).sum(), y)
    return g


def align_labels(
    logits: torch.Tensor,
    y: torch.Tensor,
    *,
    kind: str = "kl",
    lr: float = 1.0,
    mu: float = 0.5,
    sigma: float = 1.0,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """One gradient-alignment step of the soft labels ``y`` [B, C]; returns the new labels
    (float32, in [eps, 1 - eps]). An entry whose step is not finite keeps its clamped value."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        y0 = y.detach().float().clamp(eps, 1.0 - eps)
        g = label_gradient(logits, y0, kind)
        step = lr * gaussian_weight(y0, mu, sigma) * g
        step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
        new = torch.sigmoid(torch.logit(y0) - step)
        return new.clamp(eps, 1.0 - eps)
