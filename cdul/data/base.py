"""What every dataset reader returns, and the checks they share."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class DatasetError(Exception):
    """A dataset that cannot be read as asked; the message names the file (and line)."""


@dataclass
class Dataset:
    kind: str
    root: str
    split: str
    classes: list[str]  # readable names, used in prompts ("dining table")
    ids: list[str]  # image paths relative to root, POSIX separators
    targets: np.ndarray | None = None  # [N, C] int8: 1 positive, 0 difficult, -1 negative
    class_keys: list[str] = field(default_factory=list)  # names as the dataset files spell them

    def __post_init__(self):
        if not self.class_keys:
            self.class_keys = list(self.classes)
        if self.targets is not None and self.targets.shape != (len(self.ids), len(self.classes)):
            raise ValueError(f"targets shape {self.targets.shape} != ({len(self.ids)}, {len(self.classes)})")

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, limit: int | None) -> Dataset:
        """The first `limit` images (all when limit is None)."""
        if limit is None or limit >= len(self.ids):
            return self
        targets = None if self.targets is None else self.targets[:limit]
        return Dataset(self.kind, self.root, self.split, self.classes, self.ids[:limit], targets, self.class_keys)


def safe_relpath(rel: str, where: str) -> str:
    """Normalise a path from a label file, refusing one that leaves the dataset root."""
    rel = rel.strip().replace("\\", "/")
    if not rel:
        raise DatasetError(f"{where}: empty image path")
    norm = posixpath.normpath(rel)
    if rel.startswith("/") or "://" in rel or norm == ".." or norm.startswith("../") or ":" in norm.split("/")[0]:
        raise DatasetError(f"{where}: image path {rel!r} leaves the dataset root; paths must be relative to it")
    return norm


def label_matrix(rows: Sequence[list[str] | None], classes: list[str], where: list[str]) -> np.ndarray:
    """[N, C] int8 targets from each image's class names (None: no positives); 1 where
    named, -1 elsewhere. ``where[i]`` names row i in the error about an unknown class."""
    index = {n: i for i, n in enumerate(classes)}
    targets = np.full((len(rows), len(classes)), -1, dtype=np.int8)
    for i, row in enumerate(rows):
        for name in row or ():
            if name not in index:
                raise DatasetError(f"{where[i]}: unknown class {name!r} (not in the class list)")
            targets[i, index[name]] = 1
    return targets


def check_unique(ids: list[str], where: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(ids):
        if name in seen:
            raise DatasetError(f"{where}: image {name!r} is listed twice (entries {seen[name] + 1} and {i + 1})")
        seen[name] = i
