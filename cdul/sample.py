"""A small VOC-layout sample that needs no download: real photos that scikit-image ships,
with their VOC labels written by hand, topped up with generated images."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cdul.data.voc import VOC_KEYS


def sample_photos() -> dict[str, tuple[np.ndarray, list[str]]]:
    """skimage's bundled photos and the VOC classes they show (empty: none of the 20)."""
    from skimage import data

    def rgb(gray):
        return np.stack([gray] * 3, axis=-1)

    photos = {
        "astronaut": (data.astronaut(), ["person"]),
        "camera": (rgb(data.camera()), ["person"]),
        "chelsea": (data.chelsea(), ["cat"]),
        "horse": (rgb(np.where(data.horse(), 255, 0).astype(np.uint8)), ["horse"]),
        "coffee": (data.coffee(), []),
        "rocket": (data.rocket(), []),
        "clock": (rgb(data.clock()), []),
        "coins": (rgb(data.coins()), []),
    }
    return photos


def write_voc_layout(
    root: str, items: dict, split: str = "train", year: str = "2012", difficult: dict[str, list[str]] | None = None
) -> str:
    """Write VOCdevkit/VOC<year>: items maps image id -> (PIL image, HxWx3 array or the bytes
    of an image file, VOC keys).
    Images go to JPEGImages/<id>.jpg (RGBA and other modes JPEG cannot hold as PNG bytes)."""
    base = os.path.join(root, "VOCdevkit", f"VOC{year}")
    os.makedirs(os.path.join(base, "JPEGImages"), exist_ok=True)
    os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
    difficult = difficult or {}
    for name, (image, _) in items.items():
        path = os.path.join(base, "JPEGImages", f"{name}.jpg")
        if isinstance(image, bytes):  # an encoded file, written as it is
            with open(path, "wb") as f:
                f.write(image)
            continue
        im = image if isinstance(image, Image.Image) else Image.fromarray(image)
        if im.mode in ("RGB", "L"):
            im.save(path, format="JPEG", quality=92)
        else:
            im.save(path, format="PNG")
    names = sorted(items)
    with open(os.path.join(base, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n in names))
    for key in VOC_KEYS:
        with open(os.path.join(base, "ImageSets", "Main", f"{key}_{split}.txt"), "w") as f:
            for n in names:
                value = 0 if key in difficult.get(n, []) else (1 if key in items[n][1] else -1)
                f.write(f"{n} {value:2d}\n")
    return base


def generated_images(
    n: int, seed: int = 0, size=(40, 160), prefix: str = "gen"
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Random-noise images of random sizes with a random VOC label each (filler, not signal)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        h, w = rng.integers(size[0], size[1], size=2)
        out[f"{prefix}_{i:04d}"] = (
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            [VOC_KEYS[int(rng.integers(0, len(VOC_KEYS)))]],
        )
    return out


def val_photos() -> dict[str, tuple[np.ndarray, list[str]]]:
    """More of skimage's bundled photos, for a validation split that shares none with train."""
    from skimage import data

    def rgb(gray):
        return np.stack([gray] * 3, axis=-1)

    return {
        "motorcycle": (data.stereo_motorcycle()[0], ["motorbike"]),
        "moon": (rgb(data.moon()), []),
        "page": (rgb(data.page()), []),
    }


PHOTO = "photo"
FILLER = "filler"
# what the demo's report says about the two kinds of image in the sample
SAMPLE_NOTE = (
    f"Images marked {PHOTO} are real photographs that scikit-image ships, with their VOC labels written "
    f"by hand. Images marked {FILLER} are random noise with a made-up label, there only to make the "
    "splits larger: their scores and their ground truth mean nothing. The val split shares no image "
    "with train."
)


def build_sample(root: str, n_generated: int = 8) -> dict[str, str]:
    """The demo's dataset. Split "train": the photos but the cameraman, plus `n_generated`
    filler images; split "val": the cameraman, other photos and other filler, none of them in
    train (the checkpoint kept is chosen on val). Returns image id -> PHOTO or FILLER, for
    both splits (the classifier never sees labels of either: it trains on pseudo labels)."""
    photos = sample_photos()
    val = {"camera": photos.pop("camera"), **val_photos()}
    splits = {
        "train": {**photos, **generated_images(n_generated, seed=0, prefix="gen")},
        "val": {**val, **generated_images(n_generated, seed=1, prefix="val")},
    }
    kinds = {}
    for split, items in splits.items():
        write_voc_layout(root, items, split)
        kinds.update({f"JPEGImages/{name}.jpg": PHOTO if name in photos or name in val else FILLER for name in items})
    return kinds


def labels_store(
    url: str,
    ids: list[str],
    classes: list[str],
    labels: np.ndarray,
    *,
    targets=None,
    status=None,
    chunk_len: int = 1024,
    root: str = "",
    kind: str = "folder",
    source: str = "given",
):
    """A finished store written directly, without CLIP: image ids, status, optional ground
    truth, and ``labels`` [N, C] as round 0. What cdul-train reads; for tests, benchmarks and
    for training on soft labels that came from elsewhere."""
    from cdul.store import Store, StoreLock, layout

    with StoreLock(url, create=True):  # a writer like any other
        specs = [s for s in layout.result_specs(len(classes)) if s.name == layout.STATUS]
        store = Store.create(
            url,
            ids=ids,
            classes=classes,
            specs=specs,
            targets=targets,
            chunk_len=chunk_len,
            attrs={"dataset": {"kind": kind, "root": root, "split": "train"}},
        )
        status = np.full(len(ids), layout.OK, np.uint8) if status is None else np.asarray(status, np.uint8)
        with store.writing_round(0, {"zeta": 0.5, "lam": 0.0, "source": source, "epoch": None}) as arr:
            for chunk in store.chunks():
                a, b = chunk.start, chunk.stop
                store.write_chunk(chunk.k, {layout.STATUS: status[a:b]})
                arr[a:b] = np.asarray(labels[a:b], dtype=np.float32)
        store.set_attrs(complete=True)
    return store
