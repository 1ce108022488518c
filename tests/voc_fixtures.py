"""Small datasets the tests build on disk: real photos from scikit-image plus generated images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cdul.sample import generated_images, labels_store, sample_photos, write_voc_layout

PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket")


def odd_images(seed: int = 0) -> dict[str, Image.Image]:
    """Generated images of awkward sizes and modes."""
    rng = np.random.default_rng(seed)

    def rgb(h, w):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    return {
        "tiny_1x1": rgb(1, 1),
        "thin_7x500": rgb(7, 500),
        "tall_500x7": rgb(500, 7),
        "gray_90x120": Image.fromarray(rng.integers(0, 256, (90, 120), dtype=np.uint8), mode="L"),
        "rgba_64x80": Image.fromarray(rng.integers(0, 256, (64, 80, 4), dtype=np.uint8), mode="RGBA"),
        "small_5x5": rgb(5, 5),
    }


def make_voc(
    root: str,
    split: str = "train",
    n_generated: int = 0,
    photos: bool = True,
    odd: bool = True,
    seed: int = 0,
    year: str = "2012",
) -> str:
    """A VOCdevkit/VOC<year> folder: 5 real photos (camera's "person" marked difficult), the odd
    images, and `n_generated` noise images; JPEGs, the split list and one label file per class."""
    items = {}
    if photos:
        items.update({k: v for k, v in sample_photos().items() if k in PHOTOS})
    if odd:
        items.update({name: (im, []) for name, im in odd_images(seed).items()})
    items.update(generated_images(n_generated, seed))
    return write_voc_layout(root, items, split, year, difficult={"camera": ["person"]} if photos else None)


def make_label_store(
    url: str, ids: list[str], classes: list[str], labels: np.ndarray, *, chunk_len: int = 8, **options
):
    """A finished store as the trainer reads it, written directly (small chunks for tests);
    ``options`` as cdul.sample.labels_store takes them (targets, status, root, kind)."""
    return labels_store(url, ids, classes, labels, chunk_len=chunk_len, source="test", **options)
