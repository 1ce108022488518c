"""Which classes an image is said to have, from its scores: the decision rule the pages
show ("decided labels") and count per class.

A class is decided for an image when its score reaches ``threshold``. The rule is one
object with one method (``decide``), so a shared rule can replace it without touching the
pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Rule:
    threshold: float = DEFAULT_THRESHOLD

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """[m, C] scores -> [m, C] bool: the decided labels (NaN scores decide nothing)."""
        with np.errstate(invalid="ignore"):
            return np.asarray(scores) >= self.threshold

    def describe(self) -> str:
        return f"score >= {self.threshold:g}"
