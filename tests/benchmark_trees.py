"""Tiny synthetic trees in the layout of each benchmark the paper reports on: VOC 2012,
VOC 2007, COCO 2014 and NUS-WIDE. Random images, random labels: for plumbing, not accuracy."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from cdul.data.voc import VOC_KEYS
from cdul.sample import write_voc_layout

NUS_CONCEPTS = ("airport", "nighttime", "sunset", "rainbow", "military")


def _image(rng, path: str, size: int = 24) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)).save(path, format="JPEG")


def _voc_items(rng, n: int, prefix: str) -> dict:
    items = {}
    for i in range(n):
        keys = [k for k in VOC_KEYS if rng.random() < 0.15] or [VOC_KEYS[i % len(VOC_KEYS)]]
        items[f"{prefix}_{i:03d}"] = (rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), keys)
    return items


def make_voc_tree(root: str, year: str, n: int = 6, seed: int = 0) -> str:
    """VOCdevkit/VOC<year> with the splits the benchmark uses: train and val (2012), trainval and
    test (2007), all labelled."""
    rng = np.random.default_rng(seed)
    train, test = ("train", "val") if year == "2012" else ("trainval", "test")
    write_voc_layout(root, _voc_items(rng, n, "tr"), train, year)
    write_voc_layout(root, _voc_items(rng, n, "ev"), test, year)
    return root


def make_coco_tree(root: str, n: int = 6, n_classes: int = 4, seed: int = 0) -> str:
    """annotations/instances_{train,val}2014.json and the images they name."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 10 + c, "name": f"thing {c}"} for c in range(n_classes)]
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split in ("train", "val"):
        images, anns = [], []
        for i in range(n):
            name = f"COCO_{split}2014_{i:012d}.jpg"
            _image(rng, os.path.join(root, f"{split}2014", name))
            images.append({"id": i, "file_name": name})
            for c in rng.choice(n_classes, size=int(rng.integers(1, 3)), replace=False):
                anns.append({"id": len(anns), "image_id": i, "category_id": 10 + int(c)})
        with open(os.path.join(root, "annotations", f"instances_{split}2014.json"), "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return root


def make_nuswide_tree(
    root: str, n: int = 6, seed: int = 0, missing: int = 0, concepts=NUS_CONCEPTS, concept_dir: str = ""
) -> str:
    """The NUS-WIDE release layout: ImageList/{Train,Test}Imagelist.txt (backslashes), one
    Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt per concept, Concepts81.txt
    (in ``concept_dir``), and Flickr/<folder>/<file>.jpg; the last ``missing`` images of each
    list are not written (as in a download that lacks them)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "ImageList"), exist_ok=True)
    os.makedirs(os.path.join(root, "Groundtruth", "TrainTestLabels"), exist_ok=True)
    os.makedirs(os.path.join(root, concept_dir), exist_ok=True)
    with open(os.path.join(root, concept_dir, "Concepts81.txt"), "w") as f:
        f.write("".join(f"{c}\n" for c in concepts))
    for part in ("Train", "Test"):
        names = [f"{concepts[i % len(concepts)]}\\{i:04d}_{part.lower()}{i}.jpg" for i in range(n)]
        with open(os.path.join(root, "ImageList", f"{part}Imagelist.txt"), "w") as f:
            f.write("".join(f"{name}\r\n" for name in names))  # written on Windows
        for name in names[: n - missing]:
            _image(rng, os.path.join(root, "Flickr", *name.split("\\")))
        labels = rng.random((n, len(concepts))) < 0.4
        labels[np.arange(n), np.arange(n) % len(concepts)] = True  # every image has its folder's concept
        for c, concept in enumerate(concepts):
            with open(os.path.join(root, "Groundtruth", "TrainTestLabels", f"Labels_{concept}_{part}.txt"), "w") as f:
                f.write("".join(f"{int(v)}\n" for v in labels[:, c]))
    return root


def make_tree(kind: str, root: str, n: int = 6, seed: int = 0) -> str:
    """A tree of the benchmark ``kind`` (voc2012, voc2007, coco2014, nuswide) under ``root``."""
    if kind in ("voc2012", "voc2007"):
        return make_voc_tree(root, kind[3:], n, seed)
    if kind == "coco2014":
        return make_coco_tree(root, n, seed=seed)
    return make_nuswide_tree(root, n, seed)
