"""A group of decoded images and everything the GPU needs to cut their views, in one buffer.

The loader's worker processes call ``pack``: the images (HWC uint8), the view table, the
taps of every resize (see ``cdul.kernels.resample``) and the segment offsets the scorer
reads all go into one uint8 tensor, so a batch reaches the device with one copy, and
the views of all its images are cut with two kernel launches. Layout of ``data``:

    [view table, int64 [V, N_FIELDS]] [segment offsets, int64 [B + 1]] [taps, int32] [images]

Views are ordered image by image, global view first, then the tiles row-major; failed
images have none. Only the images that decoded (B of them) are segments for the scorer.

With ``--decode gpu`` a plain JPEG reaches ``pack`` undecoded (``Encoded``: its bytes and
its header's size). Its region is reserved after the decoded images, past the end of
``data``; its bytes travel beside it, concatenated in ``jpeg`` (``jpeg_files``: row, start,
stop of each file), and ``gpu_decode.DeviceDecode`` makes the ``full_bytes`` buffer on the
device, copies ``data`` into its start and decodes the files into their regions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cdul.data.transfer import worker_tensor
from cdul.kernels.resample.tables import F_IMG, ViewTable

from .tiling import Tiling


@dataclass(frozen=True)
class ViewSpec:
    """The model's eval preprocess: output size R, interpolation and resize mode."""

    size: int
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"


@dataclass(frozen=True)
class Encoded:
    """A JPEG file left for the device to decode, with the size its header gives."""

    data: bytes
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, 3


@dataclass
class PackedBatch:
    chunk: int
    rows: np.ndarray  # [n] store rows, in order
    hw: np.ndarray  # [n, 2] int32 decoded height, width (0, 0 when failed)
    n_views: np.ndarray  # [n] int32 views of each image (0 when failed)
    n_tiles: np.ndarray  # [n] int32 tiles recorded in the store (a 1 x 1 grid records 1)
    errors: list  # [n] reason of failure, "" when decoded
    data: torch.Tensor  # uint8, the layout above
    images: np.ndarray  # [n, 3] int64 byte offset, height, width of each image in data
    views_off: int = 0
    offsets_off: int = 0
    taps_off: int = 0
    max_rows: int = 0  # the largest intermediate of a view, in rows
    scratch_bytes: int = 0  # what pass 1 of the view kernel writes
    extra: dict = field(default_factory=dict)
    jpeg: torch.Tensor | None = None  # uint8, the undecoded files' bytes one after the other
    jpeg_files: np.ndarray | None = None  # [m, 3] int64 row, start, stop in ``jpeg`` of each file
    full_bytes: int = 0  # the buffer ``data`` becomes once the files are decoded into it

    @property
    def n_view_rows(self) -> int:
        return int(self.n_views.sum())

    @property
    def n_ok(self) -> int:
        return int((self.n_views > 0).sum())

    def pin_memory(self) -> PackedBatch:
        """Called by the DataLoader's pinning thread (pin_memory=True)."""
        self.data = self.data.pin_memory()
        return self

    def encoded(self) -> tuple[list[int], list[torch.Tensor]]:
        """The rows of the undecoded files and their bytes (views into ``jpeg``)."""
        if self.jpeg is None or self.jpeg_files is None:
            return [], []
        return [int(r) for r in self.jpeg_files[:, 0]], [self.jpeg[a:b] for _, a, b in self.jpeg_files.tolist()]

    def image(self, i: int) -> torch.Tensor:
        """Image i as an [H, W, 3] uint8 view into ``data`` (on data's device)."""
        off, h, w = (int(x) for x in self.images[i])
        return self.data[off : off + h * w * 3].view(h, w, 3)


def _views_of(h: int, w: int, tiling: Tiling | None) -> list[tuple[int, int, int, int]]:
    boxes = [(0, 0, h, w)]
    if tiling is not None and not tiling.whole_image:
        boxes += tiling.boxes(h, w)
    return boxes


def pack(chunk: int, rows, decoded: list, spec: ViewSpec, tiling: Tiling | None) -> PackedBatch:
    """``decoded``: per row, an [H, W, 3] uint8 array, an ``Encoded`` file, or a failure
    reason (str). The arrays and files are taken: their entries are set to None as they are
    copied in (bounded memory)."""
    n = len(decoded)
    hw = np.zeros((n, 2), np.int32)
    n_views = np.zeros(n, np.int32)
    n_tiles = np.zeros(n, np.int32)
    errors = [""] * n
    table = ViewTable(spec.size, spec.interpolation, spec.resize_mode)
    ok = []
    for i, item in enumerate(decoded):
        if isinstance(item, str):
            errors[i] = item
            continue
        h, w = item.shape[:2]
        hw[i] = h, w
        boxes = _views_of(h, w, tiling)
        n_views[i] = len(boxes)
        n_tiles[i] = 1 if (tiling is not None and tiling.whole_image) else len(boxes) - 1
        ok.append(i)
        for top, left, bh, bw in boxes:
            table.add(i, w, top, left, bh, bw)
    views = table.array()
    offsets = np.concatenate([[0], np.cumsum(n_views[ok])]).astype(np.int64)
    tap_arr = table.taps.array()
    views_off, offsets_off = 0, views.nbytes
    taps_off = offsets_off + offsets.nbytes
    images, prefix, end = _place(decoded, ok, hw, _align(taps_off + tap_arr.nbytes, 16))
    # the table's image field becomes the image's byte offset
    if len(views):
        views[:, F_IMG] = images[views[:, F_IMG], 0]
    data = worker_tensor((max(prefix, 16),), torch.uint8)  # shared memory in a worker: see transfer
    buf = data.numpy()
    buf[views_off:offsets_off] = views.view(np.uint8).ravel()
    buf[offsets_off:taps_off] = offsets.view(np.uint8)
    buf[taps_off : taps_off + tap_arr.nbytes] = tap_arr.view(np.uint8)
    files = [i for i in ok if isinstance(decoded[i], Encoded)]
    for i in ok:
        if isinstance(decoded[i], Encoded):
            continue
        off, h, w = images[i]
        buf[off : off + h * w * 3] = np.ascontiguousarray(decoded[i]).reshape(-1)
        decoded[i] = None  # the caller's list: each decoded image is freed once it is packed
    batch = PackedBatch(
        chunk,
        np.asarray(rows, np.int64),
        hw,
        n_views,
        n_tiles,
        errors,
        data,
        images,
        views_off,
        offsets_off,
        taps_off,
        table.max_rows,
        table.scratch,
    )
    if files:
        batch.jpeg, batch.jpeg_files = _files(decoded, files)
        batch.full_bytes = max(end, 16)
    return batch


def _place(decoded: list, ok: list[int], hw: np.ndarray, cursor: int) -> tuple[np.ndarray, int, int]:
    """[n, 3] byte offset, height, width of each image from ``cursor`` on: the decoded arrays
    first, then the regions of the ``Encoded`` files; and where each part ends."""
    images = np.zeros((len(decoded), 3), np.int64)
    prefix = cursor
    for i in sorted(ok, key=lambda i: isinstance(decoded[i], Encoded)):  # stable: row order within each
        h, w = hw[i]
        images[i] = cursor, h, w
        cursor = _align(cursor + int(h) * int(w) * 3, 16)
        if not isinstance(decoded[i], Encoded):
            prefix = cursor
    return images, prefix, cursor


def _files(decoded: list, rows: list[int]) -> tuple[torch.Tensor, np.ndarray]:
    """The ``Encoded`` files of ``rows`` in one uint8 tensor, and their row, start, stop."""
    stops = np.cumsum([len(decoded[i].data) for i in rows]).astype(np.int64)
    jpeg = worker_tensor((max(int(stops[-1]), 1),), torch.uint8)
    buf = jpeg.numpy()
    table = np.zeros((len(rows), 3), np.int64)
    start = 0
    for k, i in enumerate(rows):
        buf[start : stops[k]] = np.frombuffer(decoded[i].data, np.uint8)
        table[k] = i, start, stops[k]
        start = int(stops[k])
        decoded[i] = None
    return jpeg, table


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a
