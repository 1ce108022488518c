"""What an epoch adds to its record besides the training numbers (the classifier's scores on
the labelled split), and the one line the log shows for the record."""

from __future__ import annotations

import math

import torch

from cdul.metrics import default_protocol

from .config import TrainConfig
from .distributed import Dist
from .evaluate import classifier_report, predict
from .start import ValSplit


def val_scores(
    model: torch.nn.Module, val: ValSplit, classes: list[str], cfg: TrainConfig, env: Dist, device: torch.device
) -> dict:
    """The plain ``model`` scored on ``val`` by every rank; the metrics on rank 0, {} elsewhere."""
    env.sync_buffers(model)  # every rank scores with rank 0's model
    scores = predict(
        model,
        val.root,
        val.ids,
        kind=val.kind,
        size=cfg.img_size,
        loss=cfg.loss,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        device=device,
        amp=cfg.amp,
        env=env,
    )
    if not env.main:
        return {}
    protocol = cfg.ap or default_protocol(val.kind)
    rep = classifier_report(
        scores, val.targets, classes, difficult=cfg.difficult, threshold=cfg.threshold, protocol=protocol
    )
    return {
        "val_map": rep["map"],
        **{f"val_{k}": rep[k] for k in ("CF1", "OF1", "CP", "CR", "OP", "OR")},
        "val_images": rep["images"],
    }


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def epoch_line(r: dict) -> str:
    """An epoch's record as the log's one line."""
    parts = [
        f"epoch {r['epoch']}",
        f"loss {_fmt(r['loss'], '.4f')}",
        f"{r['images_per_s']:.1f} img/s",
        f"pseudo mAP {_fmt(r.get('pseudo_map'))}",
    ]
    if "val_map" in r:
        parts += [
            f"val mAP {_fmt(r['val_map'])}",
            f"CF1 {_fmt(r.get('val_CF1'), '.3f')}",
            f"OF1 {_fmt(r.get('val_OF1'), '.3f')}",
        ]
    if r.get("label_round_written") is not None:
        parts.append(f"wrote round {r['label_round_written']}")
    if r.get("skipped_steps"):
        parts.append(f"{r['skipped_steps']} steps skipped (non-finite)")
    return ", ".join(parts)
