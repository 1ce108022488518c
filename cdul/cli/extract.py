"""cdul-extract: a dataset on disk -> a Zarr store of CLIP similarities and initial pseudo labels."""

from __future__ import annotations

import dataclasses
import errno
import os
import sys

import click

from cdul.data import DATASETS, DatasetError, fs, load_dataset
from cdul.data.inputs import InputError, check_template
from cdul.extractor.config import ExtractConfig, RunOptions
from cdul.extractor.local import MODES as LOCAL_MODES
from cdul.extractor.local import flag_owners, local_mode
from cdul.extractor.options import COMPILE_MODES, DECODE_MODES, MAX_SNIPPET, MAX_TILES_KEPT, PRECISION_MODES, VIEW_MODES
from cdul.extractor.plan import ExtractPlan
from cdul.limits import bounded

from . import common
from .common import CONTEXT, FailureLimit, config_option, fail, follow_symlinks_option, note, version_option, warn
from .extract_output import ProgressBar, memory_advice, out_of_memory, print_summary, verify_store, worker_hint

# The records whose defaults are the options' defaults (a test holds them equal)
CONFIG, RUN = ExtractConfig(model="", pretrained=""), RunOptions()
PLAN = {f.name: f.default for f in dataclasses.fields(ExtractPlan)}
RESUME = "chunks finished so far are kept; rerun the same command to resume"
HELP = """Score every image of DATASET_ROOT and its local tiles against the class prompts with
CLIP, and write S_g, alpha, beta and the initial pseudo labels y0 to a resumable Zarr store.

\b
Examples:
  cdul-extract data/VOCdevkit --dataset voc2012 --split train --out voc12_train.zarr \\
      --model RN50x64 --pretrained openai --snippet 3 --gpus 0,1
  cdul-extract photos/ --dataset folder --classes classes.txt --out photos.zarr --gpus cpu
  cdul-extract 'shards/{000000..000099}.tar' --dataset webdataset --classes classes.txt --out web.zarr

Rerunning the same command resumes an interrupted run; chunks already written are kept.
"""


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@config_option
@click.argument("dataset_root")
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default="voc2012",
    help="Layout of DATASET_ROOT (webdataset: a folder of .tar shards, a shard, or a brace pattern).",
)
@click.option("--split", default="train", help="Split to extract (VOC: ImageSets/Main/<split>.txt; COCO: train/val).")
@click.option("--out", "-o", "out", required=True, help="Store path or fsspec URL (e.g. voc12_train.zarr).")
@click.option(
    "--model", default="RN50x64", help="open_clip architecture, hf-hub:/local-dir: reference, or JSON config."
)
@click.option("--pretrained", default="openai", help="open_clip tag, checkpoint file, or 'none' (random weights).")
@click.option("--cache-dir", default=None, help="Where open_clip caches downloaded weights.")
@click.option(
    "--snippet",
    type=click.IntRange(min=1, max=MAX_SNIPPET),
    default=None,
    help="Grid mode: cut each image into G x G tiles.  [default: 3]",
)
@click.option("--tile-px", type=click.IntRange(min=1), default=None, help="Pixel mode: P x P tiles instead of a grid.")
@click.option(
    "--local",
    "local",
    type=click.Choice(list(LOCAL_MODES)),
    default=CONFIG.local,
    help="Local scores from tiles (one encoder pass each), or dense: one pass per image "
    "whose last block uses SCLIP's correlative self-attention, scoring every patch (ViT towers).",
)
@click.option(
    "--dense-size",
    type=click.IntRange(min=1),
    default=None,
    help="Dense mode: run the pass at N x N px (position embeddings resized).  [default: the model's input size]",
)
@click.option(
    "--keep-patches",
    type=click.IntRange(min=1),
    default=None,
    help="Dense mode: keep each class's K most confident patch embeddings of the split (bank/), for cdul-refine --gda.",
)
@click.option(
    "--keep-patch-embeddings",
    is_flag=True,
    help="Dense mode: store every patch embedding (emb/patches, fp16: P x D x 2 bytes an image).",
)
@click.option("--prompt", "template", default=CONFIG.template, help="Prompt template; {} is the class name.")
@click.option(
    "--prompts",
    type=click.Choice(["single", "ensemble"]),
    default="ensemble" if CONFIG.ensemble else "single",
    help="'ensemble' averages open_clip's ImageNet templates.",
)
@click.option(
    "--classes", default=None, help="File of class names, one a line (folder and webdataset datasets; renames others)."
)
@click.option("--csv", "csv_path", default=None, help="Folder dataset: CSV 'path,labels' (default ROOT/labels.csv).")
@click.option("--gpus", default="auto", help="Devices, one worker each: 0,1 | all | cpu | cpu,cpu | auto.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Crops per encoder batch.  [default: 256 on GPU; 8 on CPU, where larger batches "
    "fall out of cache and run slower]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Decoding processes per device worker.  [default on GPU: CPU count / devices - 1, at most 32; "
    "on CPU: 0, decoding in the worker itself, since the encoder already uses every core]",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads per worker.")
@click.option(
    "--precision",
    type=click.Choice(PRECISION_MODES),
    default=CONFIG.precision,
    help="Encoder precision; auto is fp16 autocast on CUDA, fp32 on CPU.",
)
@click.option(
    "--views",
    type=click.Choice(VIEW_MODES),
    default=RUN.views,
    help="How views are cut and resized. kernel: every view of a batch in two Triton launches "
    "(PIL's 8-bit levels exactly; on the CPU through Triton's interpreter, slow, for tests). "
    "exact: one image at a time with matrix products (float64 on the CPU, bit-exact PIL; float32 "
    "on GPUs). auto: kernel on CUDA, exact on the CPU.",
)
@click.option(
    "--compile",
    "compile_mode",
    type=click.Choice(COMPILE_MODES),
    default=RUN.compile,
    help="How the image tower runs. cuda-graph: captured once in a CUDA graph and replayed, one "
    "launch per batch instead of hundreds (the same kernels as eager). default, reduce-overhead, "
    "max-autotune: torch.compile in that mode, compiled once at start-up (the store's last_run "
    "records tower_recompiles, 0 when one graph served the run). With any of these every encoder "
    "call has --batch-size rows (a short last piece is padded). none: eager. auto: the fastest "
    "mode measured for the device (cuda-graph on CUDA, none on the CPU). Example: --compile default",
)
@click.option(
    "--decode",
    type=click.Choice(DECODE_MODES),
    default=CONFIG.decode,
    help="Who decodes plain JPEGs. pil: the decoding workers, PIL's pixels exactly. gpu: the CUDA "
    "device, with nvJPEG, in one call per batch (every other file is still decoded by the workers): "
    "for runs that the CPU workers' decoding holds back; nvJPEG's chroma upsampling differs from PIL's "
    "by a few levels, so a store made with it resumes only with it. Example: --gpus 0 --decode gpu",
)
@click.option("--chunk-len", type=click.IntRange(min=1), default=PLAN["chunk_len"], help="Images per store chunk.")
@click.option(
    "--zeta", type=click.FloatRange(0.0, 1.0), default=PLAN["zeta"], help="Threshold of the local aggregation."
)
@click.option(
    "--lam",
    type=click.FloatRange(-1.0, 1.0),
    default=PLAN["lam"],
    help="lambda of y0 = (S_g + S_ag + lam|S_g - S_ag|)/2.",
)
@common.ap_option("the pseudo-label mAP printed at the end")
@click.option("--keep-tiles", is_flag=True, help="Also store every tile's class probabilities (sim/tiles, fp16).")
@click.option(
    "--max-tiles",
    type=click.IntRange(1, MAX_TILES_KEPT),
    default=CONFIG.max_tiles,
    help="Tiles kept per image with --tile-px.",
)
@click.option("--keep-embeddings", is_flag=True, help="Also store the normalised global image embeddings.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images of the split.")
@click.option("--exif/--no-exif", default=CONFIG.exif, help="Apply EXIF orientation before anything else.")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=CONFIG.max_pixels,
    help="Refuse (record as failed) images with more pixels.",
)
@click.option(
    "--max-failures",
    type=FailureLimit(),
    default="1%",
    help="Images that may fail to decode (a count, or a percentage of the split) before the "
    "command exits with status 3; failed images are recorded in the store either way.",
)
@follow_symlinks_option
@click.option("--overwrite", is_flag=True, help="Delete an existing store at --out and start over.")
@click.option(
    "--verify",
    "verify_only",
    is_flag=True,
    help="Only check the store at --out (every finished chunk readable, finite where ok) and say what is "
    "damaged; changes nothing. Exit status 1 when something is.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def main(**options) -> None:
    if options["verify_only"]:
        verify_store(options["out"])
        return
    plan, data = build_plan(options)
    summary = run(plan, data, quiet=options["quiet"])
    if summary.result is None:  # a torchrun rank other than 0
        return
    print_summary(summary.store, summary.result, summary.speed)
    if summary.speed.get("extrapolated"):
        click.echo("(throughput above extrapolates rank 0's counts to all ranks)")
    failed, allowed = summary.result["summary"]["failed"], options["max_failures"].allowed(len(data))
    if not summary.result["summary"]["ok"]:  # whatever --max-failures allows: nothing was extracted
        fail(f"not one of the {len(data)} images could be read; their reasons are listed above", code=3)
    if failed > allowed:
        fail(
            f"{failed} of {len(data)} images failed, more than --max-failures allows ({allowed}); "
            "their reasons are in the store (images/error) and listed above",
            code=3,
        )


def build_plan(o: dict):
    """The command's options -> (the extraction's plan, the dataset): every check that
    refuses an option with one line, then ``plan.plan_extraction`` (the one place the
    per-device defaults and auto choices are settled)."""
    _check_options(o)
    import torch

    from cdul.extractor.clip_model import (
        WeightsUnavailableError,
        check_model,
        model_embed_dim,
        register_model,
        resolve_weights,
    )
    from cdul.extractor.config import WorkerConfig
    from cdul.extractor.plan import SettingError, plan_extraction
    from cdul.extractor.runner import parse_devices, torchrun_env
    from cdul.store import StoreError, check_location
    from cdul.store.layout import DEFAULT_CHUNK_LEN

    dist = torchrun_env()
    try:
        devices = parse_devices(o["gpus"], torch.cuda.device_count())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gpus") from None
    if o["views"] == "kernel" and devices[0] == "cpu" and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # on the CPU the kernels run through Triton's interpreter
    try:
        check_location(o["out"], processes=dist[1] if dist else len(devices))
    except StoreError as exc:
        fail(str(exc))
    fs.follow_symlinks(o["follow_symlinks"])  # listing shards already follows it; workers read it from the environment
    try:
        data = load_dataset(o["dataset"], o["dataset_root"], o["split"], csv_path=o["csv_path"], classes=o["classes"])
    except DatasetError as exc:
        fail(str(exc))
    data = data.head(o["limit"])
    # sizes that allocate: never above what the split can fill (the defaults are always allowed)
    chunk_len = bounded(o["chunk_len"], max(len(data), DEFAULT_CHUNK_LEN), "--chunk-len", "images in the split", note)
    config = extract_config(o)
    mode = local_mode(o["local"])
    batch_size = o["batch_size"]
    if batch_size:
        limit = max(256, len(data) * mode.views_per_image(config))
        batch_size = bounded(batch_size, limit, "--batch-size", "views of the split", note)
    if o["pretrained"].lower() in ("none", "random"):
        warn(
            "--pretrained none: random weights. The similarities and pseudo labels say nothing about accuracy; "
            "use them for speed and plumbing only."
        )
    _check_out(o["out"])
    try:
        check_model(o["model"])
        config = mode.settle(
            config,
            min(len(data), chunk_len),
            lambda value, most, option, what: bounded(value, most, option, what, note),
        )
        resolve_weights(register_model(o["model"]), o["pretrained"], o["cache_dir"])
        embed_dim = model_embed_dim(o["model"]) if o["keep_embeddings"] else 0
    except (WeightsUnavailableError, ValueError) as exc:
        fail(str(exc))
    cfg = WorkerConfig(store=o["out"], root=data.root, kind=data.kind, config=config, run=run_options(o, batch_size))
    settings = {"zeta": o["zeta"], "lam": o["lam"], "ap": o["ap"], "overwrite": o["overwrite"]}
    try:
        plan = plan_extraction(cfg, devices, chunk_len=chunk_len, embed_dim=embed_dim, torchrun=dist, **settings)
    except SettingError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None
    return plan, data


def _check_options(o: dict) -> None:
    check_local_options(
        o["local"],
        {
            "--snippet": o["snippet"] is not None,
            "--tile-px": o["tile_px"] is not None,
            "--keep-tiles": o["keep_tiles"],
            "--dense-size": o["dense_size"],
            "--keep-patches": o["keep_patches"],
            "--keep-patch-embeddings": o["keep_patch_embeddings"],
        },
    )
    if o["snippet"] is not None and o["tile_px"] is not None:
        raise click.UsageError("--snippet and --tile-px are two tilings: give one of them")
    try:
        check_template(o["template"])
    except InputError as exc:
        fail(str(exc))


def extract_config(o: dict):
    """The hashed record of the options (an unset tiling: the record's; dense mode's sizes as
    given: ``LocalMode.settle`` fills in the model's)."""
    from cdul.extractor.tiling import Tiling

    tiling = CONFIG.tiling
    if o["tile_px"] or o["snippet"]:
        tiling = Tiling.pixel(o["tile_px"]) if o["tile_px"] else Tiling.grid(o["snippet"])
    return ExtractConfig(
        model=o["model"],
        pretrained=o["pretrained"],
        template=o["template"],
        ensemble=o["prompts"] == "ensemble",
        tiling=tiling,
        precision=o["precision"],
        keep_tiles=o["keep_tiles"],
        max_tiles=o["max_tiles"],
        keep_embeddings=o["keep_embeddings"],
        exif=o["exif"],
        max_pixels=o["max_pixels"],
        follow_symlinks=o["follow_symlinks"],
        local=o["local"],
        dense_size=o["dense_size"] or 0,
        keep_patches=o["keep_patches"] or 0,
        keep_patch_embeddings=o["keep_patch_embeddings"],
        decode=o["decode"],
    )


def run_options(o: dict, batch_size: int | None):
    """How the run goes (unset sizes: the plan's per-device defaults)."""
    return RunOptions(
        cache_dir=o["cache_dir"],
        batch_size=batch_size or 0,
        loader_workers=-1 if o["workers"] is None else o["workers"],
        threads=o["threads"],
        views=o["views"],
        compile=o["compile_mode"],
    )


def run(plan, data, quiet: bool):
    """Extract with a progress bar; every failure is one line and a non-zero exit."""
    from cdul.data.transfer import SharedMemoryFull
    from cdul.extractor.clip_model import WeightsUnavailableError
    from cdul.extractor.job import Progress, extract
    from cdul.extractor.runner import WorkerFailed
    from cdul.store import StoreError, StoreLockedError, store_exists

    bar = ProgressBar(quiet or bool(plan.torchrun and plan.torchrun[0] != 0))
    progress = Progress(start=bar.start, update=bar.update, close=bar.close, note=lambda m: click.echo(m, err=True))
    try:
        return extract(plan, data, progress)
    except (StoreError, StoreLockedError, DatasetError, WeightsUnavailableError) as exc:
        fail(str(exc))
    except SharedMemoryFull as exc:
        fail(f"{exc}; {RESUME}")
    except WorkerFailed as exc:
        fail(f"{exc}{worker_hint(plan, exc)}; {RESUME}")
    except KeyboardInterrupt:
        fail(f"interrupted; {RESUME}", code=130)
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not out_of_memory(exc):
            raise
        fail(f"{memory_advice(plan, exc)}; {RESUME}")
    except OSError as exc:
        hint = " (disk full? free some space)" if getattr(exc, "errno", None) == errno.ENOSPC else ""
        resume = f"; {RESUME}" if store_exists(plan.store) else ""
        fail(f"{exc}{hint}{resume}")


def check_local_options(local: str, given: dict[str, object]) -> None:
    """Options that only mean something in one local mode are refused in the others."""
    try:
        local_mode(local).check_flags([flag for flag, value in given.items() if value], flag_owners())
    except ValueError as exc:
        fail(str(exc))


def _check_out(out: str) -> None:
    from cdul.data.outputs import OutputError, store_target
    from cdul.store import normalise

    try:
        store_target(normalise(out))
    except OutputError as exc:
        fail(str(exc))
