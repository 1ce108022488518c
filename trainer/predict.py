"""Labelling new images with a trained classifier: cdul-predict's job.

For each image of a dataset (any reader of cdul.data; a folder needs no labels) the
classifier's scores (cdul.trainer.classifier: softmax or sigmoid of its logits), the classes
a rule keeps (cdul.labels.decide: ``--threshold``, ``--top-k`` or the relative default) and,
for an image that cannot be read, why, as a table (cdul.labels.tables: .csv, .jsonl or
.parquet, by the extension of ``out``).

The scores are made part by part in a work folder beside the output (predict_parts), so a
killed run resumes where it stopped when the same command is run again; the table is
assembled from the parts at the end, under its own name only once complete, and the work
folder is removed after it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from cdul.data import OWN_CLASSES, Dataset, DatasetError, load_dataset, outputs
from cdul.data.transfer import SharedMemoryFull
from cdul.labels import Decision, TableError, decide, open_table, table_format

from . import predict_parts as P
from .classifier import Classifier, ClassifierError, load_classifier
from .predict_parts import PredictError

ERROR = "error"  # the table's column saying why an image has no labels


@dataclass
class PredictSummary:
    out: str
    images: int  # rows of the table
    failed: int  # images that could not be read or decoded (their row has an error)
    scored: int  # images this run scored (the others came from parts a previous run finished)
    parts: int
    parts_kept: int  # parts a previous run had finished
    seconds: float  # this run's scoring
    classes: list[str]
    rule: str  # the decision rule, in words
    failures: list[tuple[str, str]] = field(default_factory=list)  # the first (image, reason) pairs

    @property
    def images_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else float("nan")


def check_out(out: str) -> None:
    """Refuse an output that could not be written before any work is done."""
    try:
        table_format(out)
    except TableError as exc:
        raise PredictError(str(exc)) from None
    try:
        outputs.table_file(out)
    except outputs.OutputError as exc:
        raise PredictError(f"{exc} (preds.parquet, say)") from None


def open_dataset(kind: str, data: str, split: str, classes: list[str], limit: int | None) -> Dataset:
    """The split to label. A folder or webdataset takes the classifier's class names; one
    whose labels name other classes is read with its own (its labels are not used here)."""
    own = kind in OWN_CLASSES
    try:
        return load_dataset(kind, data, split, classes=classes if own else None).head(limit)
    except DatasetError as exc:
        first = exc
    try:
        return load_dataset(kind, data, split).head(limit)
    except DatasetError:
        raise PredictError(f"{first} (--dataset {kind})") from None


def predict_dataset(
    *,
    checkpoint: str,
    data: str,
    out: str,
    dataset: str,
    split: str,
    decision: Decision | None = None,
    scores: bool = False,
    limit: int | None = None,
    part_size: int,
    batch_size: int,
    workers: int,
    device: str,
    amp: str,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictSummary:
    """Label the images of ``data`` (see the module docstring) into the table ``out``; a
    PredictError says, in one line, why it cannot be done. The settings' defaults are those
    of ``cdul.api.predict`` and cdul-predict."""
    if part_size < 1 or batch_size < 1 or workers < 0:
        raise PredictError("--part-size and --batch-size must be at least 1, --workers at least 0")
    check_out(out)
    decision = decision or Decision()
    try:
        clf = load_classifier(checkpoint, device)
    except ClassifierError as exc:
        raise PredictError(str(exc)) from None
    ds = open_dataset(dataset, data, split, clf.classes, limit)
    folder = P.work_dir(out)
    P.check_folder(folder)
    os.makedirs(folder, exist_ok=True)
    with P.Lock(folder):
        P.use_manifest(folder, P.settings(clf, checkpoint, ds, part_size, amp), overwrite)
        todo = P.pending_parts(folder, len(ds.ids), part_size, len(clf.classes))
        pending = sum(len(P.parts_of(len(ds.ids), part_size)[k]) for k in todo)
        started = time.perf_counter()
        _score(clf, ds, folder, todo, pending, part_size, batch_size, workers, amp, progress)
        seconds = time.perf_counter() - started
        summary = _assemble(clf, ds, folder, out, decision, scores, part_size)
        P.remove_work(folder)
    if not os.listdir(folder):
        os.rmdir(folder)
    n_parts = len(P.parts_of(len(ds.ids), part_size))
    summary.scored, summary.parts, summary.parts_kept, summary.seconds = pending, n_parts, n_parts - len(todo), seconds
    return summary


def _score(clf: Classifier, ds: Dataset, folder: str, todo, pending, part_size, batch_size, workers, amp, progress):
    from tqdm import tqdm

    bar = tqdm(total=pending, unit="img", desc="predict", disable=not progress or not pending, dynamic_ncols=True)

    def update(n: int) -> None:
        bar.update(n)

    try:
        P.score_parts(
            clf, ds, folder, todo, part_size=part_size, batch_size=batch_size, workers=workers, amp=amp,
            progress=update,
        )  # fmt: skip
    except SharedMemoryFull as exc:
        raise PredictError(str(exc)) from None
    finally:
        bar.close()


def _assemble(clf: Classifier, ds: Dataset, folder: str, out: str, decision, with_scores, part_size) -> PredictSummary:
    """The table from the finished parts, in the dataset's order."""
    failed = 0
    failures: list[tuple[str, str]] = []
    try:
        with open_table(out, clf.classes, scores=with_scores, extra_columns=[ERROR]) as table:
            for index, s, error in P.iter_parts(folder, len(ds.ids), part_size, len(clf.classes)):
                ids = [ds.ids[i] for i in index.tolist()]
                errors = [str(e) or None for e in error.tolist()]
                table.write(ids, decide(s, decision), s if with_scores else None, errors=errors)
                bad = [(i, e) for i, e in zip(ids, errors) if e]
                failed += len(bad)
                failures += bad[: max(0, 10 - len(failures))]
    except (TableError, OSError) as exc:
        raise PredictError(f"--out {out}: {exc}") from None
    return PredictSummary(out, len(ds.ids), failed, 0, 0, 0, 0.0, list(clf.classes), decision.describe(), failures)
