"""Decoding and packing in DataLoader workers. Each item is one batch: a fixed group of
whole images of one chunk, decoded and packed into one buffer (``packing.pack``). The
sampler hands each batch its image ids with its rows; it takes them from the caller one
chunk at a time (the pipeline reads them from the store), so neither it nor the workers
hold the whole dataset's ids, and the workers never open the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch.utils.data import Dataset, Sampler

from cdul.data.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image, plain_jpeg_size

from .packing import Encoded, PackedBatch, ViewSpec, pack
from .tiling import Tiling


def read_image(read: Callable[[str], bytes], rel: str, *, exif: bool, max_pixels: int, encoded: bool = False):
    """An [H, W, 3] uint8 array, or the reason it could not be had (a str). ``read`` is the
    dataset's ``cdul.data.sample_reader``. With ``encoded``, a plain JPEG (``plain_jpeg_size``)
    is not decoded: its bytes come back as ``Encoded``, for the device to decode."""
    try:
        data = read(rel)
    except FileNotFoundError:
        return f"file not found: {rel}"
    except OSError as exc:
        return f"cannot read {rel}: {exc}"
    size = plain_jpeg_size(data, exif=exif, max_pixels=max_pixels) if encoded else None
    if size is not None:
        return Encoded(data, *size)
    return decoded_or_reason(data, exif=exif, max_pixels=max_pixels)


def decoded_or_reason(data: bytes, *, exif: bool, max_pixels: int):
    """``decode_image`` of a file's bytes: its [H, W, 3] uint8 array, or why not (a str)."""
    try:
        return decode_image(data, exif=exif, max_pixels=max_pixels)
    except DecodeError as exc:
        return str(exc)


class BatchReader(Dataset):
    """``reader[(k, start, stop, ids)]`` -> the PackedBatch of store rows [start, stop) of
    chunk k, whose image ids are ``ids``; with ``decode="gpu"`` its plain JPEGs undecoded."""

    def __init__(
        self,
        read: Callable[[str], bytes],
        spec: ViewSpec,
        tiling: Tiling | None,
        *,
        exif: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode: str = "pil",
    ):
        self.read, self.spec, self.tiling = read, spec, tiling
        self.exif, self.max_pixels, self.encoded = exif, max_pixels, decode == "gpu"

    def __getitem__(self, item: tuple[int, int, int, tuple[str, ...]]) -> PackedBatch:
        k, start, stop, ids = item
        decoded = [
            read_image(self.read, rel, exif=self.exif, max_pixels=self.max_pixels, encoded=self.encoded) for rel in ids
        ]
        return pack(k, range(start, stop), decoded, self.spec, self.tiling)


class BatchSampler(Sampler):
    """(chunk, start, stop, ids) of every batch: each chunk cut into groups of ``per_batch``
    images, chunk after chunk, in order. The cut depends only on the chunk. ``ids_of(k)``
    gives chunk k's image ids (called once per chunk, when its first batch is due)."""

    def __init__(
        self,
        chunks: list[int],
        bounds: list[tuple[int, int]],
        per_batch: int,
        ids_of: Callable[[int], Iterable[str]],
    ):
        self.chunks, self.bounds, self.per_batch = chunks, bounds, max(1, int(per_batch))
        self.ids_of = ids_of

    def __iter__(self):
        for k, (start, stop) in zip(self.chunks, self.bounds):
            ids = [str(i) for i in self.ids_of(k)]
            for a in range(start, stop, self.per_batch):
                b = min(a + self.per_batch, stop)
                yield k, a, b, tuple(ids[a - start : b - start])

    def __len__(self) -> int:
        return sum(-(-(stop - start) // self.per_batch) for start, stop in self.bounds)


def unbatched(batch):
    """The DataLoader's collate for items that are batches already."""
    return batch


__all__ = ["BatchReader", "BatchSampler", "decoded_or_reason", "read_image", "unbatched"]
