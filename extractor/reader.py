"""Decoding and packing in DataLoader workers. Each item is one batch: a fixed group of
whole images of one chunk, decoded and packed into one buffer (``packing.pack``). Image
ids are read lazily from the store, one chunk at a time, so a worker's memory does not
grow with the dataset."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset, Sampler

from cdul.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image
from cdul.store import Store, layout

from .packing import PackedBatch, ViewSpec, pack
from .tiling import Tiling


def read_image(read: Callable[[str], bytes], rel: str, *, exif: bool, max_pixels: int):
    """An [H, W, 3] uint8 array, or the reason it could not be had (a str). ``read`` is the
    dataset's ``cdul.data.sample_reader``."""
    try:
        data = read(rel)
    except FileNotFoundError:
        return f"file not found: {rel}"
    except OSError as exc:
        return f"cannot read {rel}: {exc}"
    try:
        return decode_image(data, exif=exif, max_pixels=max_pixels)
    except DecodeError as exc:
        return str(exc)


class BatchReader(Dataset):
    """``reader[(k, start, stop)]`` -> the PackedBatch of store rows [start, stop) of chunk k."""

    def __init__(
        self,
        store_url: str,
        read: Callable[[str], bytes],
        spec: ViewSpec,
        tiling: Tiling | None,
        *,
        exif: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.store_url, self.read, self.spec, self.tiling = store_url, read, spec, tiling
        self.exif, self.max_pixels = exif, max_pixels
        self._store = None
        self._chunk = (-1, None)

    def _ids(self, k: int):
        if self._store is None:  # opened in the DataLoader worker, not pickled into it
            self._store = Store.open(self.store_url)
        if self._chunk[0] != k:
            start, stop = self._store.chunk_bounds(k)
            self._chunk = (k, self._store.read(layout.IDS, start, stop))
        return self._chunk[1]

    def __getitem__(self, item: tuple[int, int, int]) -> PackedBatch:
        k, start, stop = item
        ids = self._ids(k)
        first = k * self._store.chunk_len
        decoded = [
            read_image(self.read, str(ids[i - first]), exif=self.exif, max_pixels=self.max_pixels)
            for i in range(start, stop)
        ]
        return pack(k, range(start, stop), decoded, self.spec, self.tiling)


class BatchSampler(Sampler):
    """(chunk, start, stop) of every batch: each chunk cut into groups of ``per_batch``
    images, chunk after chunk, in order. The cut depends only on the chunk."""

    def __init__(self, chunks: list[int], bounds: list[tuple[int, int]], per_batch: int):
        self.chunks, self.bounds, self.per_batch = chunks, bounds, max(1, int(per_batch))

    def __iter__(self):
        for k, (start, stop) in zip(self.chunks, self.bounds):
            for a in range(start, stop, self.per_batch):
                yield k, a, min(a + self.per_batch, stop)

    def __len__(self) -> int:
        return sum(-(-(stop - start) // self.per_batch) for start, stop in self.bounds)


def unbatched(batch):
    """The DataLoader's collate for items that are batches already."""
    return batch


__all__ = ["BatchReader", "BatchSampler", "read_image", "unbatched"]
