"""Thumbnails and pictures of a store's images, made on demand and cached.

An image is named by its store row only: its id comes from the store, its bytes from the
dataset reader of the store's kind (a file under the root for folder, VOC and COCO, a
member of a tar shard for WebDataset; cdul.data.sample_reader, which refuses a path that
leaves the root), its pixels from cdul.data.decode (EXIF orientation as extraction applied
it). The JPEG made from it is kept in an LRU in memory bounded in bytes and, with a cache
folder, on disk under ``<folder>/<store key>/<size>/<row>.jpg`` (written whole, then
renamed into place); the folder may not lie inside the dataset.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading

import numpy as np

from cdul.data import sample_reader
from cdul.data.decode import DecodeError, decode_image
from cdul.data.fs import atomic_write_bytes
from cdul.store import layout

from .catalog import LRU, Catalog, RequestError

MIN_SIZE, MAX_SIZE = 32, 1024  # the longest side of a thumbnail or picture, in pixels
# images decoded at once, whatever the number of requests (a decoded image can be large)
DECODING = threading.BoundedSemaphore(max(2, os.cpu_count() or 1))


def check_cache_dir(cache_dir: str, roots: list[str]) -> None:
    """Refuse a cache folder inside a dataset root (the cache never writes into a dataset)."""
    where = os.path.realpath(cache_dir)
    for root in roots:
        if root and "://" not in root:
            top = os.path.realpath(root)
            if os.path.commonpath([where, top]) == top:
                raise ValueError(f"--cache-dir {cache_dir} lies inside the dataset {root}: choose a folder outside it")


class Pictures:
    """JPEGs of one store's images at a requested longest side."""

    def __init__(self, cat: Catalog, cache_dir: str | None = None, cache_bytes: int = 64 << 20):
        self.cat = cat
        self.read = sample_reader(cat.kind, cat.root)
        self.exif = bool(cat.store.section("config").get("exif", True))
        self.memory = LRU(entries=1 << 20, max_bytes=cache_bytes)
        self.folder = None
        if cache_dir:
            key = hashlib.sha256(
                f"{os.path.abspath(cat.url)}|{cat.store.attrs.get('config_hash')}".encode()
            ).hexdigest()
            self.folder = os.path.join(cache_dir, key[:16])

    def jpeg(self, row: int, size: int) -> bytes:
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise RequestError(400, f"size must be {MIN_SIZE}..{MAX_SIZE} pixels, not {size}")
        return self.memory.get((row, size), lambda: self._on_disk(row, size))

    def _on_disk(self, row: int, size: int) -> bytes:
        if self.folder is None:
            return self._make(row, size)
        path = os.path.join(self.folder, str(size), f"{row}.jpg")
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            data = self._make(row, size)
            atomic_write_bytes(path, data)
            return data

    def _make(self, row: int, size: int) -> bytes:
        from PIL import Image

        image_id = str(self.cat.rows(layout.IDS, np.array([row]))[0])
        try:
            with DECODING:
                im = Image.fromarray(decode_image(self.read(image_id), exif=self.exif))
                im.thumbnail((size, size), Image.Resampling.BICUBIC)
        except (OSError, DecodeError) as exc:  # an image that cannot be read is named, not a server error
            raise RequestError(404, f"image {row} ({image_id}) cannot be shown: {exc}") from None
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=85)
        return out.getvalue()
