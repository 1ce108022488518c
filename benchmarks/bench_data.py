"""Benchmark datasets: VOC-layout folders of JPEGs of VOC-like size, made once and reused."""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
from PIL import Image

from cdul.sample import sample_photos, write_voc_layout


def work_dir() -> str:
    path = os.environ.get("CDUL_BENCH_DIR") or os.path.join(tempfile.gettempdir(), "cdul-bench")
    os.makedirs(path, exist_ok=True)
    return path


UNIQUE = 512  # distinct pictures; larger sets repeat them under new names (same decoding cost)


def jpeg_dataset(n: int, size=(375, 500), seed: int = 0, tag: str = "voc") -> str:
    """n JPEGs cut from the bundled photos (random crops resized to `size`), with their labels;
    past UNIQUE images the pictures repeat, so a large set is quick to make."""
    root = os.path.join(work_dir(), f"{tag}-{n}-{size[0]}x{size[1]}-{seed}")
    split = os.path.join(root, "VOCdevkit", "VOC2012", "ImageSets", "Main", "train.txt")
    if os.path.exists(split):
        return root
    photos = list(sample_photos().values())
    rng = np.random.default_rng(seed)
    items = {}
    for i in range(n):
        if i >= UNIQUE:
            items[f"img_{i:06d}"] = items[f"img_{i % UNIQUE:06d}"]
            continue
        arr, labels = photos[i % len(photos)]
        h, w = arr.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        im = Image.fromarray(arr[top : top + ch, left : left + cw]).resize((size[1], size[0]), Image.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=92)
        items[f"img_{i:06d}"] = (buf.getvalue(), labels)
    write_voc_layout(root, items)
    return root


def small_jpegs(n: int, size: int = 48, seed: int = 0) -> str:
    """n small JPEGs (coloured noise) in a VOC layout with random labels: for scale tests."""
    from cdul.sample import generated_images

    root = os.path.join(work_dir(), f"small-{n}-{size}-{seed}")
    if os.path.exists(os.path.join(root, "VOCdevkit", "VOC2012", "ImageSets", "Main", "train.txt")):
        return root
    items = generated_images(n, seed=seed, size=(size, size + 1))
    write_voc_layout(root, items)
    return root


def label_store(path: str, root: str, chunk_len: int = 256, seed: int = 0):
    """A finished store over a VOC-layout root whose round 0 holds random soft labels: what the
    trainer reads, without running CLIP first."""
    import shutil

    from cdul.data import load_dataset
    from cdul.sample import labels_store

    data = load_dataset("voc2012", root, "train")
    shutil.rmtree(path, ignore_errors=True)
    labels = np.random.default_rng(seed).uniform(0.01, 0.99, (len(data), len(data.classes))).astype(np.float32)
    return labels_store(
        path,
        data.ids,
        data.classes,
        labels,
        targets=data.targets,
        chunk_len=chunk_len,
        root=data.root,
        kind=data.kind,
        source="benchmark",
    )
