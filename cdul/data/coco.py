"""MS-COCO 2014 from its instances JSON.

    <root>/annotations/instances_<split>2014.json
    <root>/<split>2014/<file_name>

An image is positive for every category it has an instance of (crowd instances included)
and negative for the rest; COCO has no "difficult" label.
"""

from __future__ import annotations

import numpy as np

from . import fs
from .base import Dataset, DatasetError, check_unique, safe_relpath
from .inputs import INTEGER, NAME, TEXT, field, items, load_object


def _categories(ann: str, data) -> tuple[dict[int, int], list[str]]:
    """Category id -> column, and the names in column order (by id)."""
    cats = [
        (field(c, "id", INTEGER, where), field(c, "name", NAME, where).strip(), where)
        for where, c in items(data, "categories", ann)
    ]
    cat_index: dict[int, int] = {}
    names: dict[str, int] = {}
    for cid, name, where in sorted(cats):
        if cid in cat_index:
            raise DatasetError(f"{where}: category id {cid} appears twice")
        if name in names:
            raise DatasetError(f"{where}: category name {name!r} appears twice (ids {names[name]} and {cid})")
        cat_index[cid], names[name] = len(cat_index), cid
    return cat_index, list(names)


def load_coco(root: str, split: str, year: str = "2014") -> Dataset:
    ann = fs.child(root, f"annotations/instances_{split}{year}.json")
    if not fs.exists(ann):
        raise DatasetError(f"{ann}: annotation file not found (expected the COCO {year} layout under {root})")
    data = load_object(ann)
    cat_index, names = _categories(ann, data)
    img_index: dict[int, int] = {}  # image id -> row
    ids: list[str] = []
    for where, im in items(data, "images", ann):
        iid = field(im, "id", INTEGER, where)
        if iid in img_index:
            raise DatasetError(f"{where}: image id {iid} appears twice")
        img_index[iid] = len(ids)
        ids.append(safe_relpath(f"{split}{year}/{field(im, 'file_name', TEXT, where)}", where))
    check_unique(ids, ann)
    targets = np.full((len(ids), len(names)), -1, dtype=np.int8)
    for where, a in items(data, "annotations", ann):
        iid, cid = field(a, "image_id", INTEGER, where), field(a, "category_id", INTEGER, where)
        if iid not in img_index:
            raise DatasetError(f"{where}: image_id {iid} is not among the images")
        if cid not in cat_index:
            raise DatasetError(f"{where}: category_id {cid} is not among the categories")
        targets[img_index[iid], cat_index[cid]] = 1
    if not names:
        raise DatasetError(f"{ann}: 'categories' is empty; a dataset needs at least one class")
    return Dataset(f"coco{year}", fs.normalise_root(root), split, names, ids, targets)
