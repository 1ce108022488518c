"""cdul-train: a classifier trained on the store's pseudo labels, which it refines as it goes."""

from __future__ import annotations

import errno
import os

import click

from cdul.data import DATASETS
from cdul.trainer.config import TrainConfig as TC

from . import common
from .common import CONTEXT, config_option, fail, follow_symlinks_option, version_option, warn_random_store
from .options import record_option as option

HELP = """Train a multi-label classifier on the pseudo labels of --store (written by cdul-extract)
with gradient alignment (CDUL, ICCV 2023, section 3.2): after --warmup epochs, every --update-every-th
epoch also moves each batch's labels along -dL/dy and writes them back as a new label round.

\b
Examples:
  cdul-train --store voc12_train.zarr --val-data data/VOCdevkit --val-split val --out-dir runs/voc12
  torchrun --nproc_per_node 4 $(which cdul-train) --store voc12_train.zarr --val-data data/VOCdevkit \\
      --out-dir runs/voc12 --batch-size 16
  cdul-train --store s.zarr --out-dir runs/x --resume       # continue after a crash or a kill

Defaults follow the paper where it says (ResNet-101, ImageNet initialisation, 448 px, KL loss,
eta 1, mu 0.5, sigma 1, labels updated every epoch); the optimiser values it leaves open are
ours (Adam, lr 1e-5, batch 8, 20 epochs, cosine decay).

RUN (--out-dir) receives last.pt, best.pt (best validation mAP), metrics.jsonl and metrics.csv
(and tensorboard/ with --report-to tensorboard).
"""


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@config_option
@click.option("--store", "-s", required=True, help="The store from cdul-extract (path or fsspec URL).")
@click.option("--out-dir", "-o", required=True, help="Run folder for checkpoints and metrics (local path).")
@option(
    TC,
    "data",
    "--data",
    help="Dataset root of the training images (path or fsspec URL).  [default: the root the store records]",
)
@option(
    TC,
    "val_data",
    "--val-data",
    help="Dataset root of a labelled split to score the classifier on every epoch (none: no val mAP).",
)
@option(TC, "val_split", "--val-split", help="Split of --val-data (VOC: ImageSets/Main/<split>.txt).")
@option(
    TC,
    "val_dataset",
    "--val-dataset",
    type=click.Choice(DATASETS),
    help="Layout of --val-data.  [default: the store's dataset kind]",
)
@option(TC, "val_limit", "--val-limit", type=click.IntRange(min=1), help="Score only the first N validation images.")
@option(TC, "arch", "--arch", help="torchvision classification model (resnet18, resnet50, convnext_tiny, ...).")
@option(
    TC,
    "weights",
    "--weights",
    help="Initial weights: imagenet (torchvision's, cached or downloaded), none (random), or a state-dict "
    "file (an ImageNet .pth or a cdul checkpoint; the head may differ).",
)
@option(TC, "img_size", "--img-size", type=click.IntRange(min=8), help="Square input size in pixels.")
@option(
    TC,
    "augment",
    "--augment/--no-augment",
    help="Random resized crop (area 0.5-1) and horizontal flip, seeded per image and epoch.",
)
@option(
    TC,
    "loss",
    "--loss",
    help="kl: KL(y/sum(y) || softmax(f(x))), the paper's. bce: soft-target BCE on sigmoid(f(x)).",
)
@option(
    TC, "warmup", "--warmup", type=click.IntRange(min=0), help="Epochs trained on fixed labels before any label update."
)
@option(
    TC,
    "update_every",
    "--update-every",
    type=click.IntRange(min=1),
    help="After the warmup, labels move in every k-th epoch (paper: 1) and each such epoch writes a round.",
)
@option(
    TC,
    "label_lr",
    "--label-lr",
    type=click.FloatRange(min=0.0),
    help="eta of y <- sigmoid(logit(y) - eta * N(y; mu, sigma) * dL/dy), per-sample loss.",
)
@option(TC, "psi_mu", "--psi-mu", type=float, help="mu of the Gaussian weight N(y; mu, sigma).")
@option(
    TC,
    "psi_sigma",
    "--psi-sigma",
    type=click.FloatRange(min=0.0, min_open=True),
    help="sigma of the Gaussian weight N(y; mu, sigma).",
)
@option(
    TC,
    "label_eps",
    "--label-eps",
    type=click.FloatRange(0.0, 0.5, min_open=True, max_open=True),
    help="Labels are kept in [eps, 1 - eps] so logit(y) stays finite.",
)
@option(TC, "optimizer", "--optimizer", help="Optimiser of the network.")
@option(TC, "lr", "--lr", type=click.FloatRange(min=0.0, min_open=True), help="Learning rate of the network.")
@option(TC, "momentum", "--momentum", type=click.FloatRange(min=0.0), help="SGD momentum.")
@option(
    TC, "weight_decay", "--weight-decay", type=click.FloatRange(min=0.0), help="Weight decay (L2 for adam and sgd)."
)
@option(
    TC,
    "schedule",
    "--schedule",
    help="Learning-rate schedule, stepped per epoch: cosine to 0 over --epochs, or x --lr-gamma every --lr-step.",
)
@option(TC, "lr_step", "--lr-step", type=click.IntRange(min=1), help="Epochs between decays of --schedule step.")
@option(TC, "lr_gamma", "--lr-gamma", type=click.FloatRange(min=0.0), help="Decay factor of --schedule step.")
@common.batch_size_option("Images per batch and per process.", record=TC)
@option(
    TC, "epochs", "--epochs", type=click.IntRange(min=1), help="Epochs in all (a resumed run counts the done ones)."
)
@option(TC, "clip_grad", "--clip-grad", type=click.FloatRange(min=0.0), help="Clip the gradient norm at this (0: off).")
@common.workers_option("DataLoader processes reading and decoding images (0: in the main process).")
@option(TC, "seed", "--seed", type=int, help="Seeds the initialisation, the chunk and row order and the augmentation.")
@common.device_option
@common.amp_option("Mixed precision on CUDA (fp16 adds a gradient scaler); CPU runs in fp32.")
@common.difficult_option(
    "VOC 'difficult' labels in mAP: left out for that class (VOC protocol) or counted as positives."
)
@common.ap_option("the validation mAP and the pseudo-label mAP it logs")
@common.threshold_option(
    "Score threshold of CF1/OF1. Scores are softmax under --loss kl (they sum to 1 per image), sigmoid under bce."
)
@option(
    TC,
    "early_stop",
    "--early-stop",
    is_flag=True,
    help="Stop once the pseudo-label mAP (needs ground truth in the store) stays below round 0's "
    "for 3 rounds in a row.",
)
@option(
    TC,
    "start_round",
    "--start-round",
    type=click.IntRange(min=0),
    help="New run: train from this label round; later rounds this run's --out-dir wrote are dropped, "
    "others need --drop-rounds-after.  [default: the newest complete round]",
)
@option(
    TC,
    "drop_rounds_after",
    "--drop-rounds-after",
    type=click.IntRange(min=0),
    help="Delete the store's label rounds newer than N, whoever wrote them (cdul-refine, another run), "
    "and train from round N at most. Without it, a run deletes only rounds its own --out-dir wrote "
    "and refuses to start over rounds of others (example: --resume --drop-rounds-after 2).",
)
@option(
    TC,
    "resume",
    "--resume",
    is_flag=True,
    help="Continue the run in --out-dir from last.pt (same options); rounds written after it are redone.",
)
@option(
    TC,
    "report_to",
    "--report-to",
    help="Also log the per-epoch metrics (those of metrics.jsonl) to TensorBoard, in RUN/tensorboard (needs "
    "pip install tensorboard). E.g. --report-to tensorboard, then tensorboard --logdir runs/x",
)
@option(
    TC,
    "overwrite",
    "--overwrite",
    is_flag=True,
    help="Start the run in --out-dir over: removes last.pt, best.pt, metrics.* and tensorboard/events.* there "
    "(no other file) and the label rounds that run wrote into the store. E.g. cdul-train --store s.zarr "
    "--out-dir runs/x --overwrite",
)
@follow_symlinks_option
@option(TC, "quiet", "--quiet", "-q", is_flag=True, help="No progress bar or per-epoch lines.")
def main(**options):
    from cdul.data.transfer import SharedMemoryFull
    from cdul.trainer import ConfigError, TrainConfig, TrainError, train
    from cdul.trainer.tboard import MissingTensorBoard
    from cdul.trainer.tboard import require as require_tensorboard

    quiet = options["quiet"]
    cfg = TrainConfig(**options)
    try:
        cfg.check()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    try:
        require_tensorboard(cfg.report_to)
    except MissingTensorBoard as exc:
        fail(str(exc))
    try:
        result = train(cfg, log=log, on_start=lambda: warn_random_store(cfg.store))
    except TrainError as exc:
        fail(str(exc))
    except SharedMemoryFull as exc:
        fail(f"{exc}; rerun with --resume to continue from the last checkpoint")
    except OSError as exc:
        hint = " (disk full? free some space)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        fail(f"{exc}{hint}; rerun with --resume to continue from the last checkpoint")
    except KeyboardInterrupt:
        fail(f"interrupted; rerun with --resume to continue from {cfg.out_dir}/last.pt", code=130)
    if not quiet and os.environ.get("RANK", "0") == "0":
        best = result.get("best_map")
        best_text = f"; best val mAP {best:.2f} at epoch {result['best_epoch']}" if best is not None else ""
        stopped = " (stopped early)" if result.get("stopped_early") else ""
        click.echo(
            f"done after epoch {result['epochs']}{stopped}; labels at round {result['label_round']}{best_text}; "
            f"run in {result['out_dir']}",
            err=True,
        )
    return result


if __name__ == "__main__":
    main()
