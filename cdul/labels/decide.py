"""From soft label scores to decided labels: which classes an image is said to have.

Rules, for one image's scores ``s`` over C classes (a row of ``scores [N, C]``):

- ``Decision(threshold=T)``: keep class c where ``s_c >= T`` (T in [0, 1]);
- ``Decision(top_k=K)``: keep the K highest scores (ties: the lower class index first);
- ``Decision()``, the default: keep class c where ``s_c >= RELATIVE_SHARE * max(s)``, i.e.
  the top class and every class scoring at least half as much.

Why the default is relative: CDUL's labels are softmax-shaped. ``S_g`` is a softmax over the
classes, ``y0 = (S_g + S_ag) / 2`` sums to about 1, and training under the KL loss normalises
the labels to a distribution; so two objects of 0.45 each, or three of 0.3, are as confident
as one object of 0.9, and a fixed 0.5 would keep at most one class. A share of the image's
top score keeps them all and always keeps at least the top class (CDUL, like VOC and COCO,
assumes every image shows at least one of the classes). A score that is not finite is never
kept; under the default a row whose top score is not positive keeps nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RELATIVE_SHARE = 0.5  # the default rule: a class is kept from this share of the top score on


@dataclass(frozen=True)
class Decision:
    """One rule: ``threshold`` or ``top_k`` or neither (the relative default), never both.
    Invalid values raise ValueError with a one-line message naming the command-line option."""

    threshold: float | None = None
    top_k: int | None = None

    def __post_init__(self):
        if self.threshold is not None and self.top_k is not None:
            raise ValueError("give --threshold or --top-k, not both")
        if self.threshold is not None:
            t = self.threshold
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
                raise ValueError(f"--threshold must be a number in [0, 1], not {t!r}")
        if self.top_k is not None:
            k = self.top_k
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
                raise ValueError(f"--top-k must be a whole number >= 1, not {k!r}")

    def describe(self) -> str:
        """The rule in a few words, for a command's output."""
        if self.threshold is not None:
            return f"score >= {self.threshold:g}"
        if self.top_k is not None:
            return f"the top {self.top_k} classes"
        return f"score >= {RELATIVE_SHARE:g} x the image's top score"


DEFAULT_RULE = Decision()


def decide(scores: np.ndarray, rule: Decision = DEFAULT_RULE) -> np.ndarray:
    """bool [N, C]: the classes each row of ``scores [N, C]`` keeps under ``rule``."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a matrix [images, classes], not of shape {scores.shape}")
    finite = np.isfinite(scores)
    if rule.threshold is not None:
        return finite & (scores >= rule.threshold)
    if rule.top_k is not None:
        n, c = scores.shape
        k = min(rule.top_k, c)
        order = np.argsort(np.where(finite, -scores, np.inf), axis=1, kind="stable")[:, :k]
        kept = np.zeros((n, c), dtype=bool)
        np.put_along_axis(kept, order, True, axis=1)
        return kept & finite
    masked = np.where(finite, scores, -np.inf)
    top = masked.max(axis=1, initial=-np.inf, keepdims=True)
    return finite & (top > 0) & (masked >= RELATIVE_SHARE * top)
