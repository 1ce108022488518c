"""A store's labels as a table: one row per image that did not fail, read and written chunk
by chunk, so memory stays flat in the store's size.

Each row holds the image id as the store holds it, the classes ``cdul.labels.decide`` keeps
from the chosen scores (``--round``), and with ``scores`` every class's score. Where the
store has ground truth (``targets``), the decisions are scored per class against it,

    precision_c = TP_c / (TP_c + FP_c),  recall_c = TP_c / (TP_c + FN_c)

over the exported images, VOC "difficult" entries left out (as in ``cdul.metrics``), and
the scores by their mAP (``cdul.metrics.pseudo_label_map``, a second pass over the store).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from cdul.labels import DEFAULT_RULE, Decision, decide, open_table
from cdul.metrics import binary_targets, default_protocol, pseudo_label_map
from cdul.store import Store, layout

from .scores import ScoreSource, open_finished, score_source


@dataclass(frozen=True)
class ClassQuality:
    """One class's decisions against the ground truth: counts, precision and recall (NaN
    where undefined: nothing decided, or no positive)."""

    name: str
    positives: int
    decided: int
    true_positives: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.decided if self.decided else float("nan")

    @property
    def recall(self) -> float:
        return self.true_positives / self.positives if self.positives else float("nan")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the table, its row count, the failed images left out, the
    scores and rule used, and where the store has ground truth, ``classes`` (per-class
    quality of the decisions) and ``map`` (mAP in percent of the scores)."""

    out: str
    images: int
    failed: int
    source: str
    rule: str
    labels_per_image: float
    seconds: float
    classes: tuple[ClassQuality, ...] = ()
    map: float | None = None


class _Counts:
    """Per-class TP, decided and positive counts, summed chunk by chunk."""

    def __init__(self, c: int):
        self.tp, self.decided, self.positives = (np.zeros(c, np.int64) for _ in range(3))

    def add(self, kept: np.ndarray, targets: np.ndarray) -> None:
        pos, valid = binary_targets(targets, "ignore")
        self.tp += (kept & pos & valid).sum(0)
        self.decided += (kept & valid).sum(0)
        self.positives += (pos & valid).sum(0)

    def quality(self, classes: list[str]) -> tuple[ClassQuality, ...]:
        return tuple(
            ClassQuality(name, int(p), int(d), int(t))
            for name, p, d, t in zip(classes, self.positives, self.decided, self.tp)
        )


def export_labels(
    store_url: str,
    out: str,
    *,
    round: object,
    decision: Decision = DEFAULT_RULE,
    scores: bool = False,
    progress=None,
) -> ExportResult:
    """Write the table ``out`` (format from its extension) from the store at ``store_url``.
    ``progress(done, total)`` is called after each chunk with the images read so far. Raises StoreError for a store
    that is not finished or damaged, or lacks the round; ValueError (TableError) for a bad
    ``out`` or ``round``."""
    started = time.perf_counter()
    store = open_finished(store_url)
    source = score_source(store, round)
    has_truth = store.has(layout.TARGETS)
    counts = _Counts(len(store.classes))
    written = failed = n_labels = 0
    names = [layout.IDS, layout.STATUS] + ([layout.TARGETS] if has_truth else [])
    with open_table(out, store.classes, scores=scores) as table:
        for chunk in store.chunks(*names):
            ok = chunk[layout.STATUS] == layout.OK
            failed += int((chunk[layout.STATUS] == layout.FAILED).sum())
            values = source.read(chunk.start, chunk.stop)[ok]
            kept = decide(values, decision)
            table.write(chunk[layout.IDS][ok].tolist(), kept, values if scores else None)
            if has_truth:
                counts.add(kept, chunk[layout.TARGETS][ok])
            written, n_labels = written + int(ok.sum()), n_labels + int(kept.sum())
            if progress:
                progress(chunk.stop, store.n)
    quality = counts.quality(store.classes) if has_truth else ()
    return ExportResult(
        out=os.fspath(out),
        images=written,
        failed=failed,
        source=source.name,
        rule=decision.describe(),
        labels_per_image=n_labels / written if written else 0.0,
        seconds=time.perf_counter() - started,
        classes=quality,
        map=scores_map(store, source) if has_truth and written else None,
    )


def scores_map(store: Store, source: ScoreSource) -> float:
    """mAP (percent) of the source's scores against the targets over the ok images, read
    chunk by chunk, under the AP protocol the store's summary records (else its dataset's)."""

    def chunks():
        for chunk in store.chunks(layout.TARGETS, layout.STATUS):
            yield source.read(chunk.start, chunk.stop), chunk[layout.TARGETS], chunk[layout.STATUS] == layout.OK

    maps = store.section("summary").get("pseudo_label_map")
    recorded = maps.get("ap") if isinstance(maps, dict) else None
    protocol = str(recorded or default_protocol(store.section("dataset").get("kind")))
    return pseudo_label_map(chunks, store.n, len(store.classes), protocol=protocol)
