"""NUS-WIDE (81 concepts) in the layout of its public release.

    <root>/ImageList/TrainImagelist.txt      one image path a line, Windows separators
    <root>/ImageList/TestImagelist.txt         (``actor\\0001_2124494179.jpg``)
    <root>/Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt   one 0 or 1 a line,
    <root>/Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt      line i for list line i
    <root>/Concepts81.txt                    the concepts, one a line (also found in ConceptsList/)
    <root>/Flickr/<folder>/<file>.jpg        the images the lists name, relative to Flickr/

``split`` is ``train`` (TrainImagelist.txt, the ``_Train`` labels: 161,789 images in the
release) or ``test`` (TestImagelist.txt, ``_Test``: 107,859). An image is positive for a
concept whose label file says 1 on its line and negative where it says 0; NUS-WIDE has no
"difficult" label. The class order is Concepts81.txt's. Its 81 names are English words
(``nighttime``, ``railroad``, ``waterfall``, ``cityscape`` are single words, not run-together
phrases), so they go into the prompts as written.

The lists name images that a download often lacks (the release ships lists and labels; the
pictures come from Flickr): such an image is not an error here. It keeps its row, and the
commands that read it record it as failed with the reason (missing file).
"""

from __future__ import annotations

import numpy as np

from . import fs
from .base import Dataset, DatasetError, check_unique, safe_relpath

SPLITS = {"train": "Train", "test": "Test"}
IMAGE_FOLDER = "Flickr"
CONCEPT_FILES = ("Concepts81.txt", "ConceptsList/Concepts81.txt")


def _lines(path: str, what: str) -> list[str]:
    """The file's lines, stripped; blank lines at the end are dropped, a blank line before
    another is refused (every line stands for one image)."""
    if not fs.exists(path):
        raise DatasetError(f"{path}: {what} not found (the NUS-WIDE release layout is described in the README)")
    lines = [line.strip() for line in fs.read_text(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DatasetError(f"{path}: {what} is empty")
    if "" in lines:
        raise DatasetError(f"{path}:{lines.index('') + 1}: blank line (every line stands for one image)")
    return lines


def read_concepts(root: str) -> tuple[str, list[str]]:
    """(path of the concept list, the concepts in its order)."""
    for name in CONCEPT_FILES:
        path = fs.child(root, name)
        if fs.exists(path):
            concepts = _lines(path, "concept list")
            twice = next((c for i, c in enumerate(concepts) if c in concepts[:i]), None)
            if twice is not None:
                raise DatasetError(f"{path}: concept {twice!r} is listed twice")
            return path, concepts
    raise DatasetError(f"{root}: no concept list (looked for {' and '.join(CONCEPT_FILES)})")


def _labels(path: str, n: int) -> np.ndarray:
    lines = _lines(path, "label file")
    if len(lines) != n:
        raise DatasetError(f"{path}: {len(lines)} labels for the {n} images of the image list (one a line)")
    bad = next((i for i, v in enumerate(lines) if v not in ("0", "1")), None)
    if bad is not None:
        raise DatasetError(f"{path}:{bad + 1}: expected 0 or 1, got {lines[bad]!r}")
    return np.where(np.asarray(lines) == "1", 1, -1).astype(np.int8)


def load_nuswide(root: str, split: str) -> Dataset:
    if split not in SPLITS:
        raise DatasetError(f"NUS-WIDE has the splits {' and '.join(SPLITS)}, not {split!r}")
    if not fs.isdir(root):
        raise DatasetError(f"{root}: not a directory")
    part = SPLITS[split]
    list_path = fs.child(root, f"ImageList/{part}Imagelist.txt")
    rels = [safe_relpath(p, f"{list_path}:{i + 1}") for i, p in enumerate(_lines(list_path, "image list"))]
    ids = [f"{IMAGE_FOLDER}/{rel}" for rel in rels]
    check_unique(ids, list_path)
    _, concepts = read_concepts(root)
    targets = np.empty((len(ids), len(concepts)), dtype=np.int8)
    for c, concept in enumerate(concepts):
        targets[:, c] = _labels(fs.child(root, f"Groundtruth/TrainTestLabels/Labels_{concept}_{part}.txt"), len(ids))
    return Dataset("nuswide", fs.normalise_root(root), split, list(concepts), ids, targets)
