"""One batch of gradient-alignment training (docs/algorithm.md §3), and the guard against steps that are
not finite.

Per batch (:class:`Step`):

1. Network step: forward, per-sample loss against the batch's current labels, mean over
   the batch's readable images, backward, optional clipping, optimizer step.
2. Label step, in update epochs only and only when the network step was taken:
   ``labels.align_labels`` on the logits of that same forward pass, detached (the network
   frozen: no gradient reaches it, and no second forward pass is paid for).

A non-finite loss or gradient skips the optimizer step and the label step of that batch, puts
the BatchNorm statistics of its forward pass back, and is counted; an epoch that skips more
than half its steps stops the run (:func:`check_diverged`).
Under DDP the decision must be the same on every rank: a rank whose loss is not finite poisons
its gradients with NaN, the all-reduce spreads them, and every rank sees a non-finite gradient
norm.
"""

from __future__ import annotations

import numpy as np
import torch

from . import labels as L
from .config import TrainConfig
from .evaluate import autocast
from .images import Normalise
from .model import unwrap
from .start import TrainError

# What a step returns to be added up over an epoch, in this order.
STATS = ("loss x images", "images of the steps taken", "images", "steps", "skipped", "unreadable", "|label change|")


class Step:
    """The network and label step of one batch, for ``model`` (plain or under DDP)."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, opt, scaler, device: torch.device):
        self.cfg, self.model, self.opt, self.scaler, self.device = cfg, model, opt, scaler, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.bn_stats = [
            b
            for m in unwrap(model).modules()
            if isinstance(m, torch.nn.modules.batchnorm._NormBase)
            for b in m.buffers()
        ]
        self.norm = Normalise().to(device)

    def __call__(self, images, y_host, ok, update: bool):
        """-> (new labels [B, C] as numpy or None, statistics to add up: :data:`STATS`)."""
        cfg, dev, params = self.cfg, self.device, self.params
        x = self.norm(images.to(dev, non_blocking=True), contiguous=dev.type != "cuda")
        y = y_host.to(dev, non_blocking=True)
        okd = ok.to(dev, non_blocking=True)
        stats_before = [b.clone() for b in self.bn_stats]  # put back if the step is skipped
        with autocast(dev, cfg.amp):
            logits = self.model(x)
        per = L.per_sample_loss(logits, y, cfg.loss)
        per = torch.where(okd, per, torch.zeros_like(per))  # unreadable images weigh nothing
        loss = per.sum() / okd.sum().clamp_min(1)
        # A non-finite loss makes the gradients NaN, so that after DDP's all-reduce every
        # rank skips this step (a finite-gradient inf loss would otherwise step on some ranks).
        poison = torch.where(torch.isfinite(loss), 0.0, float("nan"))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss * (1.0 + poison)).backward()
        self.scaler.unscale_(self.opt)
        if cfg.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        # The one CPU<->GPU sync of a step: the host decides whether to step, and the bar
        # shows the loss. (GradScaler syncs the same way for fp16.)
        finite, loss_value = torch.stack([torch.isfinite(norm).float(), loss.detach().float()]).tolist()
        if finite:
            self.scaler.step(self.opt)
        elif self.bn_stats:  # a skipped step leaves no trace, in the BatchNorm statistics either
            torch._foreach_copy_(self.bn_stats, stats_before)
        self.scaler.update()
        n_ok = int(ok.sum())
        new, change = None, 0.0
        if update and finite:
            moved = L.align_labels(
                logits, y, kind=cfg.loss, lr=cfg.label_lr, mu=cfg.psi_mu, sigma=cfg.psi_sigma, eps=cfg.label_eps
            )
            moved = torch.where(okd[:, None], moved, y)  # unreadable images keep their labels
            new = moved.cpu().numpy()  # sync: the stream writes them to the store
            change = float(np.abs(new - y_host.numpy())[ok.numpy()].sum())
        stats = np.array(
            [
                loss_value * n_ok if finite else 0.0,
                n_ok if finite else 0,
                n_ok,
                1,
                0 if finite else 1,
                len(ok) - n_ok,
                change,
            ]
        )
        return new, stats


def check_diverged(epoch: int, steps: float, skipped: float) -> None:
    """Stop a run whose epoch skipped more than half its steps (their loss or gradient was
    not finite on some rank)."""
    if skipped * 2 > steps:
        raise TrainError(
            f"training diverged in epoch {epoch}: {int(skipped)} of {int(steps)} steps had a loss or "
            "gradient that is not finite; lower --lr (or set --clip-grad) and start again"
        )
