"""A finished store of generated scores, written straight through the store API (no CLIP, no
extraction), for cdul-serve's tests and benchmark: N images of a folder dataset, C classes
(VOC's 20 by default), ground truth, S_g, alpha, beta, every image's tiles (a 3 x 3 grid),
global embeddings and two label rounds. The first ``files`` images exist as small JPEGs
under the dataset root (crops of real photos, their ground truth the classes they show,
their scores leaning towards it); the rest are listed only (their thumbnails answer 404),
so 100,000 images take seconds.
The model recorded is the tests' random-weight ``cdul-tiny-rn`` (embedding width 32), so
search by text works offline against ``dim=32`` embeddings.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cdul.data import VOC_NAMES
from cdul.store import Store, layout

TILES = 9  # a 3 x 3 grid


def write_images(root: str, ids: list[str], seed: int = 0) -> list[list[str]]:
    """Small JPEGs, one per id: random crops of the photos scikit-image ships (cdul.sample),
    at a few sizes; returns the VOC classes each shows."""
    from cdul.sample import sample_photos

    rng = np.random.default_rng(seed)
    photos = list(sample_photos().values())
    shown = []
    for i, rel in enumerate(ids):
        pixels, labels = photos[i % len(photos)]
        h, w = pixels.shape[:2]
        ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        im = Image.fromarray(pixels[top : top + ch, left : left + cw]).resize((128, 96) if i % 3 else (96, 128))
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        im.save(path, quality=85)
        shown.append(labels)
    return shown


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _chunk_arrays(rng, start: int, n: int, c: int, dim: int, targets: np.ndarray) -> dict[str, np.ndarray]:
    """One chunk's results: scores that lean towards the true classes, failed images aside."""
    logits = rng.normal(0, 1, (n, c)) + 3.0 * (targets == 1)
    tiles = _softmax(logits[:, None, :] * 3 + rng.normal(0, 1.5, (n, TILES, c)))
    emb = rng.normal(0, 1, (n, dim)) + 2.0 * (targets[:, :dim] == 1) @ np.eye(min(c, dim), dim)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return {
        layout.HW: np.where(((start + np.arange(n)) % 3 > 0)[:, None], [[96, 128]], [[128, 96]]).astype(np.int32),
        layout.N_TILES: np.full(n, TILES, np.int32),
        layout.STATUS: np.full(n, layout.OK, np.uint8),
        layout.ERROR: np.full(n, "", dtype=object).astype(str),
        layout.SIM_GLOBAL: _softmax(logits * 2).astype(np.float32),
        layout.SIM_ALPHA: tiles.max(1).astype(np.float32),
        layout.SIM_BETA: tiles.min(1).astype(np.float32),
        layout.SIM_TILES: tiles.astype(np.float16),
        layout.EMB_GLOBAL: emb.astype(np.float16),
    }


def synthetic_store(
    url: str, root: str, n: int, *, classes: int = 20, dim: int = 32, chunk_len: int = 1024, files: int = 64, seed=0
) -> Store:
    """Write the store at ``url`` (its dataset under ``root``) and return it, opened."""
    from cdul.kernels import initial_labels

    rng = np.random.default_rng(seed)
    ids = [f"images/{i // 1000:03d}/img_{i:06d}.jpg" for i in range(n)]
    shown = write_images(root, ids[:files], seed)
    names = list(VOC_NAMES) if classes == len(VOC_NAMES) else [f"class {j:02d}" for j in range(classes)]
    targets = np.where(rng.random((n, classes)) < 0.12, 1, -1).astype(np.int8)
    for i, labels in enumerate(shown):  # the pictures that exist: the classes they show
        targets[i] = [1 if name in labels else -1 for name in names]
    store = Store.create(
        url,
        ids=ids,
        classes=names,
        specs=layout.result_specs(classes, tiles_max=TILES, embed_dim=dim),
        targets=targets,
        chunk_len=chunk_len,
        attrs={
            "dataset": {"kind": "folder", "root": root, "split": "train"},
            "model": {"name": "cdul-tiny-rn", "pretrained": "none", "embed_dim": dim},
            "tiling": {"mode": "grid", "G": 3},
            "config": {"exif": True},
            "config_hash": f"synthetic-{n}-{classes}-{dim}-{seed}",
            "summary": {"images": n, "ok": n, "failed": 0},
        },
    )
    rounds = [store.begin_round(0, {"zeta": 0.5, "lam": 0.0}), None]
    for chunk in store.chunks():
        a, b = chunk.start, chunk.stop
        arrays = _chunk_arrays(rng, a, b - a, classes, dim, targets[a:b])
        store.write_chunk(chunk.k, arrays)
        y0 = initial_labels(arrays[layout.SIM_GLOBAL], arrays[layout.SIM_ALPHA], arrays[layout.SIM_BETA], 0.5, 0.0)
        rounds[0][a:b] = y0  # type: ignore[index]
    store.finish_round(0)
    rounds[1] = store.begin_round(1, {"epoch": 1, "source": "synthetic"})
    for chunk in store.chunks(layout.round_name(0), layout.TARGETS):
        moved = chunk[layout.round_name(0)] + 0.3 * (chunk[layout.TARGETS] == 1)
        rounds[1][chunk.start : chunk.stop] = np.clip(moved, 0, 1)  # type: ignore[index]
    store.finish_round(1)
    store.set_attrs(complete=True)
    return store
