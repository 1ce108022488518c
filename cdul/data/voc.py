"""PASCAL VOC (2007, 2012) in the VOCdevkit layout.

    <root>/JPEGImages/<id>.jpg
    <root>/ImageSets/Main/<split>.txt              one image id a line
    <root>/ImageSets/Main/<class>_<split>.txt      "<id> <1|0|-1>" a line (0 = difficult)

``root`` may be the VOC2012 folder itself, a VOCdevkit folder holding it, or the folder
above VOCdevkit.
"""

from __future__ import annotations

import numpy as np

from . import fs
from .base import Dataset, DatasetError, check_unique

VOC_CLASSES = [
    ("aeroplane", "aeroplane"),
    ("bicycle", "bicycle"),
    ("bird", "bird"),
    ("boat", "boat"),
    ("bottle", "bottle"),
    ("bus", "bus"),
    ("car", "car"),
    ("cat", "cat"),
    ("chair", "chair"),
    ("cow", "cow"),
    ("diningtable", "dining table"),
    ("dog", "dog"),
    ("horse", "horse"),
    ("motorbike", "motorbike"),
    ("person", "person"),
    ("pottedplant", "potted plant"),
    ("sheep", "sheep"),
    ("sofa", "sofa"),
    ("train", "train"),
    ("tvmonitor", "tv monitor"),
]
VOC_KEYS = [k for k, _ in VOC_CLASSES]
VOC_NAMES = [n for _, n in VOC_CLASSES]


def find_voc_root(root: str, year: str) -> str:
    for cand in (root, fs.child(root, f"VOC{year}"), fs.child(root, f"VOCdevkit/VOC{year}")):
        if fs.isdir(fs.child(cand, "JPEGImages")) and fs.isdir(fs.child(cand, "ImageSets/Main")):
            return cand
    raise DatasetError(
        f"{root}: no VOC{year} layout found (looked for JPEGImages/ and ImageSets/Main/ in it, in VOC{year}/ "
        f"and in VOCdevkit/VOC{year}/)"
    )


def _split_ids(path: str) -> list[str]:
    ids = []
    for lineno, line in enumerate(fs.read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:
            raise DatasetError(f"{path}:{lineno}: expected one image id, got {line.strip()!r}")
        ids.append(fields[0])
    check_unique(ids, path)
    return ids


def _class_labels(path: str, index: dict[str, int], column: np.ndarray) -> None:
    seen = set()
    for lineno, line in enumerate(fs.read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("1", "0", "-1"):
            raise DatasetError(f"{path}:{lineno}: expected '<image id> <1|0|-1>', got {line.strip()!r}")
        name, value = fields
        if name not in index:
            raise DatasetError(f"{path}:{lineno}: image {name!r} is not in the split list")
        if name in seen:
            raise DatasetError(f"{path}:{lineno}: image {name!r} appears twice")
        seen.add(name)
        column[index[name]] = int(value)
    if len(seen) != len(index):
        missing = next(n for n in index if n not in seen)
        raise DatasetError(f"{path}: no label for image {missing!r} ({len(index) - len(seen)} images missing)")


def load_voc(root: str, split: str, year: str) -> Dataset:
    base = find_voc_root(root, year)
    main = fs.child(base, "ImageSets/Main")
    split_file = fs.child(main, f"{split}.txt")
    if not fs.exists(split_file):
        raise DatasetError(f"{split_file}: split file not found (splits are named by ImageSets/Main/<split>.txt)")
    names = _split_ids(split_file)
    index = {n: i for i, n in enumerate(names)}
    class_files = [fs.child(main, f"{key}_{split}.txt") for key in VOC_KEYS]
    present = [fs.exists(p) for p in class_files]
    targets = None
    if any(present):
        if not all(present):
            missing = class_files[present.index(False)]
            raise DatasetError(f"{missing}: class label file missing (the others for split {split!r} exist)")
        targets = np.zeros((len(names), len(VOC_KEYS)), dtype=np.int8)
        for c, path in enumerate(class_files):
            _class_labels(path, index, targets[:, c])
    ids = [f"JPEGImages/{n}.jpg" for n in names]
    return Dataset(f"voc{year}", fs.normalise_root(base), split, list(VOC_NAMES), ids, targets, list(VOC_KEYS))
