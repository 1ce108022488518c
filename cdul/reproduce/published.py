"""mAP (percent) that the authors of CDUL and of the methods it is compared with report for
each benchmark, with the setting each used and where it is published. A number this file
could not check against its source is None (written "-"), never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    setting: str
    source: str


METHODS = (
    Method(
        "CDUL",
        "CLIP RN50x64 pseudo labels (global + 3 x 3 snippets), ResNet-101 trained at 448 px",
        "Abdelfattah et al., ICCV 2023, arXiv:2307.16634",
    ),
    Method(
        "CCD",
        "CLIP RN50x64 pseudo labels, classifier-guided local views, trained classifier",
        "Kim and Shim, CVPR 2025, arXiv:2503.16873",
    ),
    Method("TagCLIP", "frozen CLIP, no training", "Lin et al., AAAI 2024, arXiv:2312.12828"),
    Method(
        "PIAA",
        "dense CLIP ViT-B/16 + a Gaussian discriminant on a patch bank, no training (SCLIP + PIAA; a range "
        "spans its dense variants)",
        "PIAA, ICML 2026",
    ),
)

# benchmark -> method -> the reported mAP: a number, a range over the variants the paper
# reports ("73.0-74.6"), or None where it could not be checked here
REPORTED: dict[str, dict[str, str | None]] = {
    "voc2012": {"CDUL": "88.6", "CCD": None, "TagCLIP": None, "PIAA": "91.4"},
    "voc2007": {"CDUL": None, "CCD": None, "TagCLIP": None, "PIAA": None},
    "coco2014": {"CDUL": "69.2", "CCD": None, "TagCLIP": None, "PIAA": "73.0-74.6"},
    "nuswide": {"CDUL": "44.0", "CCD": None, "TagCLIP": None, "PIAA": "49.1-50.6"},
}

TITLES = {"voc2012": "PASCAL VOC 2012", "voc2007": "PASCAL VOC 2007", "coco2014": "MS-COCO 2014", "nuswide": "NUS-WIDE"}


def published_rows(benchmark: str) -> list[tuple[str, str, str, str]]:
    """(method, reported mAP or "-", setting, source) for every method, in METHODS' order."""
    reported = REPORTED[benchmark]
    return [(m.name, reported.get(m.name) or "-", m.setting, m.source) for m in METHODS]
