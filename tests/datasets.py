"""Small datasets the tests build on disk: real photos from scikit-image plus generated images."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cdul.data.voc import VOC_KEYS


def real_photos() -> dict[str, tuple[np.ndarray, list[str]]]:
    """skimage's bundled photos with the VOC classes they show."""
    from skimage import data

    gray = data.camera()
    return {
        "astronaut": (data.astronaut(), ["person"]),
        "chelsea": (data.chelsea(), ["cat"]),
        "coffee": (data.coffee(), []),
        "camera": (np.stack([gray] * 3, axis=-1), ["person"]),
        "rocket": (data.rocket(), []),
    }


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


def make_voc(root: str, split: str = "train", n_generated: int = 0, photos: bool = True, odd: bool = True,
             seed: int = 0, year: str = "2012") -> str:
    """A VOCdevkit/VOC<year> folder: JPEGs, the split list and one label file per class."""
    base = os.path.join(root, "VOCdevkit", f"VOC{year}")
    os.makedirs(os.path.join(base, "JPEGImages"), exist_ok=True)
    os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
    rng = np.random.default_rng(seed)
    labels: dict[str, list[str]] = {}
    if photos:
        for name, (arr, classes) in real_photos().items():
            Image.fromarray(arr).save(os.path.join(base, "JPEGImages", f"{name}.jpg"), quality=90)
            labels[name] = classes
    if odd:
        for name, im in odd_images(seed).items():
            # VOC ids name JPEGs; odd modes are written as PNG bytes under .jpg when JPEG cannot hold them
            path = os.path.join(base, "JPEGImages", f"{name}.jpg")
            if im.mode == "RGBA":
                im.save(path, format="PNG")
            else:
                im.save(path, format="JPEG", quality=95)
            labels[name] = []
    for i in range(n_generated):
        h, w = rng.integers(40, 160, size=2)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        name = f"gen_{i:04d}"
        Image.fromarray(arr).save(os.path.join(base, "JPEGImages", f"{name}.jpg"), quality=90)
        labels[name] = [VOC_KEYS[int(rng.integers(0, len(VOC_KEYS)))]]
    names = sorted(labels)
    with open(os.path.join(base, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n in names))
    for key in VOC_KEYS:
        with open(os.path.join(base, "ImageSets", "Main", f"{key}_{split}.txt"), "w") as f:
            for n in names:
                value = 1 if key in labels[n] else -1
                if n == "camera" and key == "person":
                    value = 0  # a difficult entry
                f.write(f"{n} {value:2d}\n")
    return base
