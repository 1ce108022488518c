"""cdul from Python: the commands as functions, and a read-only view of a store.

    import cdul
    cdul.extract("photos/", out="photos.zarr", dataset="folder", classes="classes.txt")
    view = cdul.open_store("photos.zarr")
    view.to_pandas()                      # scores of the latest label round, one row an image
    cdul.export(store="photos.zarr", out="labels.csv")
    cdul.predict(checkpoint="runs/x/best.pt", data="new_photos/", out="preds.parquet")

Keyword arguments are the commands' options, underscores for dashes (``top_k`` is
``--top-k``; ``True`` gives a flag, ``False`` its ``--no-`` form where it has one, ``None``
the command's default). ``extract`` and ``train`` run the click command itself in this
process, so their checks, defaults and messages are the command's; ``export`` and
``cdul-export`` both call ``cdul.readout.export_labels``, ``predict`` and ``cdul-predict``
``cdul.trainer.predict.predict_dataset``. Every failure is a ``CdulError``
whose message is the one line the command would print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from cdul.readout import ExportResult, StoreView, export_labels

if TYPE_CHECKING:
    from cdul.trainer.predict import PredictSummary


class CdulError(Exception):
    """A command that could not do what it was asked; ``code`` is the command's exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def open_store(path_or_url: str) -> StoreView:
    """A finished store, read-only: ``classes``, ``ids``, ``summary``, ``rounds`` (each label
    round's parameters), ``labels(round)``, ``to_pandas(...)``, ``to_xarray()``."""
    from cdul.store import StoreError

    try:
        return StoreView(str(path_or_url))
    except StoreError as exc:
        raise CdulError(str(exc)) from None


def export(
    *,
    store: str,
    out: str,
    round: object = "latest",
    threshold: float | None = None,
    top_k: int | None = None,
    scores: bool = False,
    quiet: bool = True,
) -> ExportResult:
    """Write the store's labels as a table (.csv, .jsonl or .parquet), as ``cdul-export`` does."""
    from cdul.labels import Decision
    from cdul.store import StoreError

    bar = _Bar("export", quiet)
    try:
        decision = Decision(threshold=threshold, top_k=top_k)
        return export_labels(str(store), str(out), round=round, decision=decision, scores=scores, progress=bar)
    except (StoreError, ValueError) as exc:
        raise CdulError(str(exc)) from None
    except OSError as exc:  # the disk, or permissions: name the file
        raise CdulError(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)) from None
    finally:
        bar.close()


def predict(
    *,
    checkpoint: str,
    data: str,
    out: str,
    dataset: str = "folder",
    split: str = "val",
    threshold: float | None = None,
    top_k: int | None = None,
    scores: bool = False,
    limit: int | None = None,
    part_size: int = 10_000,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    amp: str = "bf16",
    follow_symlinks: bool = False,
    overwrite: bool = False,
    quiet: bool = True,
) -> PredictSummary:
    """Label the images of ``data`` with a trained classifier into the table ``out``, as
    ``cdul-predict`` does (resumable: the same call after an interruption keeps the finished
    parts). Returns a PredictSummary (images, failed, failures, rule, images_per_s, ...)."""
    from cdul.cli.common import default_workers
    from cdul.data import fs
    from cdul.labels import Decision
    from cdul.trainer.predict import PredictError, predict_dataset

    fs.follow_symlinks(follow_symlinks)
    try:
        return predict_dataset(
            checkpoint=str(checkpoint), data=str(data), out=str(out), dataset=dataset, split=split,
            decision=Decision(threshold=threshold, top_k=top_k), scores=scores, limit=limit, part_size=part_size,
            batch_size=batch_size, workers=default_workers() if workers is None else workers,
            device=device, amp=amp, overwrite=overwrite, progress=not quiet,
        )  # fmt: skip
    except (PredictError, ValueError) as exc:
        raise CdulError(str(exc)) from None
    except OSError as exc:
        raise CdulError(f"{out}: {exc.strerror or exc}") from None


def export_onnx(*, checkpoint: str, out: str) -> dict:
    """Write the classifier of a cdul-train checkpoint as ONNX (``cdul-export --checkpoint``):
    probabilities out, class names, input size, mean and std in its metadata."""
    from cdul.trainer.classifier import ClassifierError, load_classifier
    from cdul.trainer.onnx_export import ExportError
    from cdul.trainer.onnx_export import export_onnx as write_onnx

    if not str(out).lower().endswith(".onnx"):
        raise CdulError(f"--out {out}: a checkpoint is exported as ONNX; give a name ending in .onnx")
    try:
        return write_onnx(load_classifier(str(checkpoint), "cpu"), str(out))
    except (ClassifierError, ExportError) as exc:
        raise CdulError(str(exc)) from None
    except OSError as exc:
        raise CdulError(f"{out}: {exc.strerror or exc}") from None


class _Bar:
    """A tqdm bar over images, shown from the first ``(done, total)`` call on."""

    def __init__(self, desc: str, quiet: bool):
        self.desc, self.quiet = desc, quiet
        self.bar: Any = None  # a tqdm bar, made at the first call

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc=self.desc, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class ExtractSummary:
    """A finished extraction: the store, its counts and, with ground truth, the pseudo-label
    mAP of S_g, S_ag and y0 (``pseudo_label_map``, percent)."""

    store: str
    images: int
    ok: int
    failed: int
    pseudo_label_map: dict | None


@dataclass(frozen=True)
class TrainSummary:
    """A finished training run: its folder, epochs, the latest label round, and the best
    validation mAP and its epoch where there was a validation split."""

    out_dir: str
    epochs: int
    label_round: int
    best_map: float | None
    best_epoch: int | None


def extract(dataset_root: str, *, out: str, **options) -> ExtractSummary:
    """``cdul-extract DATASET_ROOT --out OUT ...``: score a dataset into a store."""
    from cdul.cli.extract import main

    run_command(main, "cdul-extract", [str(dataset_root)], {"out": out, **options})
    summary = open_store(out).summary
    plm = summary.get("pseudo_label_map")
    counts = {k: int(summary.get(k, 0)) for k in ("images", "ok", "failed")}
    return ExtractSummary(str(out), **counts, pseudo_label_map=dict(plm) if isinstance(plm, dict) else None)


def train(*, store: str, out_dir: str, **options) -> TrainSummary:
    """``cdul-train --store STORE --out-dir OUT_DIR ...``: train on the store's labels."""
    from cdul.cli.train import main

    result = run_command(main, "cdul-train", [], {"store": store, "out_dir": out_dir, **options})
    result = result if isinstance(result, dict) else {}
    return TrainSummary(
        out_dir=str(out_dir),
        epochs=int(result.get("epochs", 0)),
        label_round=int(result.get("label_round", 0)),
        best_map=result.get("best_map"),
        best_epoch=result.get("best_epoch"),
    )


def command_args(command: click.Command, name: str, positional: Sequence[str], options: dict) -> list[str]:
    """The command line of ``command`` for keyword ``options`` named as its long options
    (``keep_tiles`` for ``--keep-tiles``, ``no_exif=True`` or ``exif=False`` for ``--no-exif``)."""
    by_key: dict[str, tuple[click.Option, bool]] = {}
    for p in command.params:
        if isinstance(p, click.Option):
            for primary, opts in ((True, p.opts), (False, p.secondary_opts)):
                by_key.update({o[2:].replace("-", "_"): (p, primary) for o in opts if o.startswith("--")})
    args = [*positional]
    for key, value in options.items():
        if key not in by_key:
            raise CdulError(f"{name}: no option {key!r} (its options: {', '.join(sorted(by_key))})")
        param, primary = by_key[key]
        if value is None:
            continue
        if param.is_flag and not param.count:
            # the flag's own form, or its --no- form (a plain flag left out is off)
            args += param.opts[:1] if bool(value) == primary else param.secondary_opts[:1]
            continue
        values = value if param.multiple and isinstance(value, (list, tuple)) else [value]
        for v in values:
            args += [param.opts[0], *(map(str, v) if isinstance(v, (list, tuple)) else [str(v)])]
    return args


def run_command(command: click.Command, name: str, positional: Sequence[str], options: dict):
    """Run a click command in this process; its failure becomes a CdulError with its message."""
    from cdul.cli.common import CommandFailed, silent_failures

    args = command_args(command, name, positional, options)
    try:
        with silent_failures():
            return command.main(args, prog_name=name, standalone_mode=False)
    except CommandFailed as exc:
        raise CdulError(exc.message, int(exc.code or 1)) from None
    except click.ClickException as exc:
        raise CdulError(exc.format_message(), exc.exit_code) from None
    except click.exceptions.Abort:
        raise CdulError(f"{name}: interrupted", 130) from None
