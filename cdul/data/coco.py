"""MS-COCO 2014 from its instances JSON.

    <root>/annotations/instances_<split>2014.json
    <root>/<split>2014/<file_name>

An image is positive for every category it has an instance of (crowd instances included)
and negative for the rest; COCO has no "difficult" label.
"""

from __future__ import annotations

import json

import numpy as np

from . import fs
from .base import Dataset, DatasetError, check_unique, safe_relpath


def _need(obj: dict, key: str, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise DatasetError(f"{where}: missing key {key!r}")
    return obj[key]


def load_coco(root: str, split: str, year: str = "2014") -> Dataset:
    ann = fs.child(root, f"annotations/instances_{split}{year}.json")
    if not fs.exists(ann):
        raise DatasetError(f"{ann}: annotation file not found (expected the COCO {year} layout under {root})")
    try:
        data = json.loads(fs.read_text(ann))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{ann}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    cats = _need(data, "categories", ann)
    images = _need(data, "images", ann)
    annotations = _need(data, "annotations", ann)
    cats = sorted(cats, key=lambda c: _need(c, "id", f"{ann}: categories[]"))
    cat_index: dict[int, int] = {}  # category id -> column
    for c in cats:
        cid = c["id"]
        if cid in cat_index:
            raise DatasetError(f"{ann}: category id {cid} appears twice")
        cat_index[cid] = len(cat_index)
    names = [str(_need(c, "name", f"{ann}: category {c['id']}")) for c in cats]
    img_index: dict[int, int] = {}  # image id -> row
    ids: list[str] = []
    for i, im in enumerate(images):
        where = f"{ann}: images[{i}]"
        iid = _need(im, "id", where)
        if iid in img_index:
            raise DatasetError(f"{where}: image id {iid} appears twice")
        img_index[iid] = len(ids)
        ids.append(safe_relpath(f"{split}{year}/{_need(im, 'file_name', where)}", where))
    check_unique(ids, ann)
    targets = np.full((len(ids), len(names)), -1, dtype=np.int8)
    for i, a in enumerate(annotations):
        where = f"{ann}: annotations[{i}]"
        iid, cid = _need(a, "image_id", where), _need(a, "category_id", where)
        if iid not in img_index:
            raise DatasetError(f"{where}: image_id {iid} is not among the images")
        if cid not in cat_index:
            raise DatasetError(f"{where}: category_id {cid} is not among the categories")
        targets[img_index[iid], cat_index[cid]] = 1
    return Dataset(f"coco{year}", fs.normalise_root(root), split, names, ids, targets)
