"""Multi-label metrics: average precision under two protocols, mAP with the VOC
"difficult" rule, and CF1/OF1 at a threshold.

Targets use the VOC convention: 1 positive, -1 negative, 0 difficult. By default difficult
entries are left out of that class's AP (``difficult="ignore"``, the VOC protocol);
``difficult="positive"`` counts them as positives.

AP protocols (``protocol``):

- ``all-points``: the area under the precision-recall step curve, ``sum_k (R_k - R_{k-1}) P_k``
  over the distinct scores, highest first (tied scores enter together), as scikit-learn's
  average_precision_score computes it.
- ``voc07-11pt``: the VOC 2007 devkit's ``VOCevalcls.m``. Images sorted by decreasing score
  (MATLAB's ``sort`` is stable: tied images keep their order in the image list, and each
  image is its own point of the curve), ``rec = cumsum(tp) / n_pos``,
  ``prec = cumsum(tp) / (cumsum(tp) + cumsum(fp))``, then
  ``AP = 1/11 sum_{t in 0:0.1:1} max(prec[rec >= t])`` (0 where no recall reaches t).
  The eleven t are MATLAB's ``0:0.1:1``, built from both ends (``k * 0.1`` up to the middle,
  ``1 - k * 0.1`` after it): its fourth point is ``3 * 0.1 = 0.30000000000000004``, so a recall
  of exactly 3/10 does not reach it, as in the devkit. Difficult images (label 0) are neither
  tp nor fp there, which is what leaving them out does.

A class with no positive has AP NaN under both and is left out of the mean.
"""

from __future__ import annotations

import numpy as np

PROTOCOLS = ("all-points", "voc07-11pt")


def default_protocol(kind: object) -> str:
    """The AP protocol a dataset kind's published numbers use: the VOC 2007 devkit's
    11-point AP for voc2007, all points for every other kind."""
    return "voc07-11pt" if kind == "voc2007" else "all-points"


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"the AP protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    return protocol


def binary_targets(targets: np.ndarray, difficult: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (positive mask, mask of entries that count)."""
    if difficult not in ("ignore", "positive", "negative"):
        raise ValueError(f"difficult must be ignore, positive or negative, not {difficult!r}")
    targets = np.asarray(targets)
    pos = targets == 1
    valid = np.ones(targets.shape, dtype=bool)
    if difficult == "ignore":
        valid = targets != 0
    elif difficult == "positive":
        pos = pos | (targets == 0)
    return pos, valid


def precision_recall(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score, highest first; empty without a positive."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positive[order]
    # one threshold per distinct score: tied scores enter the curve together
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    return tps / n_pos, tps / (last + 1)


def matlab_steps() -> np.ndarray:
    """``0:0.1:1`` as MATLAB's colon operator builds it: from both ends towards the middle."""
    k = np.arange(6)
    t = np.empty(11)
    t[k], t[10 - k] = 0.0 + k * 0.1, 1.0 - k * 0.1
    t[5] = 0.5
    return t


def eleven_point_ap(scores: np.ndarray, positive: np.ndarray) -> float:
    """The VOC 2007 devkit's AP (see the module docstring). NaN when there is no positive."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    tp = np.cumsum(positive[np.argsort(-scores, kind="stable")])
    recall, precision = tp / n_pos, tp / np.arange(1, len(tp) + 1)
    # the best precision at each recall or beyond: a running maximum from the end
    best = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, matlab_steps(), side="left")  # first index with recall >= t
    return float(np.sum(np.where(first < len(best), best[np.minimum(first, len(best) - 1)], 0.0)) / 11)


def average_precision(scores: np.ndarray, positive: np.ndarray, protocol: str = "all-points") -> float:
    """AP of one class under ``protocol`` (``all-points``: the area under the precision-recall
    step curve, sklearn's average_precision_score; ``voc07-11pt``: the VOC 2007 devkit's).
    NaN when there is no positive."""
    if check_protocol(protocol) == "voc07-11pt":
        return eleven_point_ap(scores, positive)
    recall, precision = precision_recall(scores, positive)
    if not len(recall):
        return float("nan")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_ap(
    scores: np.ndarray,
    targets: np.ndarray,
    difficult: str = "ignore",
    rows: np.ndarray | None = None,
    protocol: str = "all-points",
) -> np.ndarray:
    """AP of every class under ``protocol`` (NaN for a class with no positive). `rows` masks
    images out (e.g. failed)."""
    scores = np.asarray(scores, dtype=np.float64)
    pos, valid = binary_targets(targets, difficult)
    if rows is not None:
        valid = valid & np.asarray(rows, dtype=bool)[:, None]
    valid = valid & np.isfinite(scores)
    return np.array(
        [average_precision(scores[valid[:, c], c], pos[valid[:, c], c], protocol) for c in range(scores.shape[1])]
    )


def mean_of(ap: np.ndarray) -> float:
    """The mean over classes with at least one positive (NaN AP)."""
    ap = np.asarray(ap)[np.isfinite(ap)]
    return float(ap.mean()) if len(ap) else float("nan")


def mean_ap(
    scores: np.ndarray, targets: np.ndarray, difficult: str = "ignore", rows=None, protocol: str = "all-points"
) -> float:
    """mAP in [0, 1] over classes with at least one positive."""
    return mean_of(per_class_ap(scores, targets, difficult, rows, protocol))


def streamed_per_class_ap(
    chunks,
    n: int,
    n_classes: int,
    difficult: str = "ignore",
    max_bytes: int = 256 << 20,
    protocol: str = "all-points",
) -> np.ndarray:
    """Per-class AP over data read chunk by chunk, in bounded memory whatever n is.

    ``chunks()`` returns a fresh iterator of ``(scores [m, C], targets [m, C], rows [m])`` over
    consecutive rows (``rows`` masks out images, e.g. failed ones). AP needs a whole class
    column, so classes go in blocks of at most about ``max_bytes`` (one pass when they fit)."""
    block = int(max(1, min(n_classes, max_bytes // max(1, n * 10))))
    ap: list[float] = []
    for c0 in range(0, n_classes, block):
        c1 = min(n_classes, c0 + block)
        scores = np.empty((n, c1 - c0), dtype=np.float64)
        targets = np.empty((n, c1 - c0), dtype=np.int8)
        rows = np.empty(n, dtype=bool)
        start = 0
        for s, t, r in chunks():
            stop = start + len(s)
            scores[start:stop], targets[start:stop], rows[start:stop] = s[:, c0:c1], t[:, c0:c1], r
            start = stop
        if start != n:
            raise ValueError(f"the chunks held {start} rows, not {n}")
        ap.extend(per_class_ap(scores, targets, difficult, rows=rows, protocol=protocol).tolist())
    return np.asarray(ap)


def pseudo_label_map(
    chunks,
    n: int,
    n_classes: int,
    difficult: str = "ignore",
    max_bytes: int = 256 << 20,
    protocol: str = "all-points",
) -> float:
    """mAP in percent of label scores (pseudo labels, similarities) against the targets, over
    the rows that count; NaN when no class has a positive. ``chunks`` is what
    streamed_per_class_ap takes, so labels can be read chunk by chunk in bounded memory;
    arrays already in memory are one chunk: ``lambda: [(scores, targets, rows)]``."""
    return 100 * mean_of(streamed_per_class_ap(chunks, n, n_classes, difficult, max_bytes, protocol))


def f1_scores(
    scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5, difficult: str = "ignore", rows=None
) -> dict:
    """Per-class (CP, CR, CF1) and overall (OP, OR, OF1) at `threshold`."""
    scores = np.asarray(scores, dtype=np.float64)
    pos, valid = binary_targets(targets, difficult)
    if rows is not None:
        valid = valid & np.asarray(rows, dtype=bool)[:, None]
    pred = scores >= threshold
    tp = ((pred & pos) & valid).sum(0).astype(np.float64)
    fp = ((pred & ~pos) & valid).sum(0).astype(np.float64)
    fn = ((~pred & pos) & valid).sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cp = np.nanmean(np.where(tp + fp > 0, tp / (tp + fp), 0.0))
        cr = np.nanmean(np.where(tp + fn > 0, tp / (tp + fn), np.nan))
        op = tp.sum() / max(tp.sum() + fp.sum(), 1.0)
        orc = tp.sum() / max(tp.sum() + fn.sum(), 1.0)
    cf1 = 2 * cp * cr / (cp + cr) if cp + cr > 0 else 0.0
    of1 = 2 * op * orc / (op + orc) if op + orc > 0 else 0.0
    return {
        "CP": float(cp),
        "CR": float(cr),
        "CF1": float(cf1),
        "OP": float(op),
        "OR": float(orc),
        "OF1": float(of1),
        "threshold": threshold,
    }
