"""Decoding in DataLoader workers: image ids are read lazily from the store, one chunk at
a time, so a worker's memory does not grow with the dataset."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler

from cdul.data import fs
from cdul.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image
from cdul.store import Store, layout


@dataclass
class Decoded:
    index: int  # row in the store
    image: torch.Tensor | None  # [H, W, 3] uint8, None when decoding failed
    hw: tuple[int, int]
    error: str

    def pin_memory(self) -> "Decoded":
        """Called by the DataLoader's pinning thread when it runs with pin_memory=True."""
        if self.image is None:
            return self
        return Decoded(self.index, self.image.pin_memory(), self.hw, self.error)


class ImageReader(Dataset):
    def __init__(self, store_url: str, root: str, *, exif: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.store_url = store_url
        self.root = root
        self.exif = exif
        self.max_pixels = max_pixels
        self._store = None
        self._chunk = (-1, None)

    def _path(self, index: int) -> str:
        if self._store is None:  # opened in the DataLoader worker, not pickled into it
            self._store = Store.open(self.store_url)
        k = index // self._store.chunk_len
        if self._chunk[0] != k:
            start, stop = self._store.chunk_bounds(k)
            self._chunk = (k, self._store.read(layout.IDS, start, stop))
        return str(self._chunk[1][index - k * self._store.chunk_len])

    def __len__(self) -> int:
        return Store.open(self.store_url).n

    def __getitem__(self, index: int) -> Decoded:
        rel = self._path(index)
        try:
            data = fs.read_bytes(fs.join(self.root, rel))
        except FileNotFoundError:
            return Decoded(index, None, (0, 0), f"file not found: {rel}")
        except OSError as exc:
            return Decoded(index, None, (0, 0), f"cannot read {rel}: {exc}")
        try:
            arr = decode_image(data, exif=self.exif, max_pixels=self.max_pixels)
        except DecodeError as exc:
            return Decoded(index, None, (0, 0), str(exc))
        return Decoded(index, torch.from_numpy(arr), (arr.shape[0], arr.shape[1]), "")


class ChunkSampler(Sampler):
    """Every row of the given chunks, chunk after chunk, in order."""

    def __init__(self, bounds: list[tuple[int, int]]):
        self.bounds = bounds

    def __iter__(self):
        for start, stop in self.bounds:
            yield from range(start, stop)

    def __len__(self) -> int:
        return sum(stop - start for start, stop in self.bounds)


def collate_list(batch: list[Decoded]) -> list[Decoded]:
    return batch


__all__ = ["ImageReader", "ChunkSampler", "Decoded", "collate_list"]
