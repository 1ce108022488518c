"""The settings of the Gaussian-discriminant labelling (``cdul-refine --gda``, see gda.py) as
one record, without torch: its defaults are PIAA's VOC settings and the command's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

KEEP_RULES = ("piaa", "robust")


@dataclass(frozen=True)
class GdaOptions:
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"keep": KEEP_RULES}

    weight: float = 0.1  # of S_cls (test.py: 0.1 * cls_probs + 0.9 * patch_probs)
    cls_scale: float = 80.0  # test.py --cls
    patch_scale: float = 200.0  # test.py --patch (VOC)
    temperature: float = 500.0  # test.py: compute_gda_adapter_probs_batch(temperature=500)
    fit_scale: float = 100.0  # learn.py --temperature (VOC)
    keep: str = "piaa"  # the filter between the fits: learn.py's mean + std, or "robust"
