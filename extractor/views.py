"""The model's eval preprocess, as batched tensor ops: global view and tiles (docs/algorithm.md §2.3).

CLIP's eval preprocess (open_clip, ``resize_mode="shortest"``) is: resize the short side
to R with PIL's antialiased bicubic filter, centre-crop R x R, scale to [0, 1], normalise.
Here it is done on tensors (on the GPU when there is one) and exactly reproduces PIL's
geometry: PIL's resampling is separable, so each axis is a matrix whose rows are the
filter taps of one output pixel. Keeping only the rows of the centre crop, and slicing the
input to the columns those rows touch, gives crop-after-resize results at the cost of a
crop, even for a 100000 x 2 image. All tiles of one image share their size, so they go
through the same two matrix products as one batch. The taps are PIL's 22-bit fixed-point
coefficients and each pass rounds and clamps to 8 bits as PIL does, so in float64 (on the
CPU) the views equal PIL's bit for bit; in float32 (on GPUs) a few pixels in 10^4 differ by
one grey level (two where a side of 3 pixels or less is upscaled to R).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypedDict

import numpy as np
import torch

from .tiling import Tiling

_SUPPORT = {"bicubic": 2.0, "bilinear": 1.0}
PRECISION_BITS = 22  # PIL's PRECISION_BITS = 32 - 8 - 2: taps are 22-bit fixed point
_ONE = float(1 << PRECISION_BITS)


def _bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """PIL's ``bicubic_filter``, operation for operation (``* x * x``, not ``x ** 2``)."""
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


@lru_cache(maxsize=4096)
def pil_taps(
    in_size: int, out_size: int, keep_start: int, keep_len: int, interpolation: str = "bicubic"
) -> tuple[np.ndarray, np.ndarray]:
    """PIL's resampling of one axis, in_size -> out_size, for the outputs
    [keep_start, keep_start + keep_len): (first input of each output [keep_len] int32,
    fixed-point taps [keep_len, K] int32, in units of 2**-22).

    This is ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` of PIL's Resample.c, done
    for all outputs at once in float64 with the same operations in the same order (the
    taps' sum is sequential, as PIL's loop). K is the widest window; shorter windows are
    padded with zero taps, and a window that would run past the last input is moved back
    (its taps shifted right) so that every ``first + k`` is a valid input index."""
    if interpolation not in _SUPPORT:
        raise ValueError(f"interpolation must be bicubic or bilinear, not {interpolation!r}")
    if in_size < 1 or out_size < 1 or keep_len < 1:
        raise ValueError(f"sizes must be >= 1, got in {in_size}, out {out_size}, kept {keep_len}")
    filt = _bicubic if interpolation == "bicubic" else _bilinear
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT[interpolation] * filterscale
    ss = 1.0 / filterscale
    center = (np.arange(keep_start, keep_start + keep_len, dtype=np.float64) + 0.5) * scale
    # C casts truncate toward zero; both bounds are then clamped to the image
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64)
    k = int((xmax - xmin).max())
    x = np.arange(k)[None, :]
    inside = x < (xmax - xmin)[:, None]
    w = np.where(inside, filt(((x + xmin[:, None]).astype(np.float64) - center[:, None] + 0.5) * ss), 0.0)
    total = np.cumsum(w, axis=1)[:, -1]  # sequential, as PIL's ww += w
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    taps = np.trunc(w * _ONE + np.where(w < 0, -0.5, 0.5)).astype(np.int32)
    first = np.minimum(xmin, in_size - k)  # keep first + k - 1 inside the image
    shift = xmin - first
    if shift.any():
        rows, cols = np.nonzero(shift[:, None] + x < k)
        moved = np.zeros_like(taps)
        moved[rows, cols + shift[rows]] = taps[rows, cols]
        taps = moved
    first = first.astype(np.int32)
    first.setflags(write=False)  # cached: shared by every caller
    taps.setflags(write=False)
    return first, taps


def resample_matrix(
    in_size: int, out_size: int, keep_start: int, keep_len: int, interpolation: str = "bicubic"
) -> tuple[int, np.ndarray]:
    """The same taps as a dense float64 matrix over the inputs they touch: (first input
    used, [keep_len, window] taps), for the matrix-product path."""
    first, taps = pil_taps(in_size, out_size, keep_start, keep_len, interpolation)
    lo = int(first.min())
    width = int(first.max()) - lo + taps.shape[1]
    mat = np.zeros((keep_len, width), dtype=np.float64)
    cols = (first - lo)[:, None] + np.arange(taps.shape[1])[None, :]
    np.put_along_axis(mat, cols, taps / _ONE, axis=1)
    return lo, mat


def output_geometry(h: int, w: int, size: int, resize_mode: str = "shortest") -> tuple[int, int, int, int]:
    """(resized_h, resized_w, crop_top, crop_left) of the eval preprocess, as torchvision computes them."""
    if resize_mode == "squash":
        return size, size, 0, 0
    if resize_mode != "shortest":
        raise ValueError(f"resize mode {resize_mode!r} is not supported (shortest or squash)")
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        new_h, new_w = h, w
    else:
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    return new_h, new_w, top, left


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    """Round half up and clamp to [0, 255], as PIL's 8-bit resampling does after each pass.

    In float64 the taps are exact multiples of 2**-22 and every partial sum is exact, so this
    reproduces PIL bit for bit. In float32 the products are rounded; a bias of 1e-4 grey
    levels puts exact halves back on PIL's side (a value that truly lies within 1e-4 below a
    half then rounds the other way)."""
    bias = 0.5 if x.dtype == torch.float64 else 0.5 + 1e-4
    return x.add_(bias).floor_().clamp_(0.0, 255.0)


STRIP_BYTES = 64 << 20  # working memory of one resize pass, at most (a strip of rows)


class _Placement(TypedDict):
    """The ``device`` and ``dtype`` keywords of a tensor factory, passed on with ``**``."""

    device: torch.device
    dtype: torch.dtype


def exact_dtype(device: torch.device) -> torch.dtype:
    """float64 on the CPU (bit-exact PIL at a few per cent of the encoder's cost); float32 on
    GPUs, where float64 resizing was measured on an H100 to take about as much device time as
    a ViT-B-32 encoding the same views (benchmarks/results/NOTES.md)."""
    return torch.float64 if device.type != "cuda" else torch.float32


class ViewMaker:
    """Turns one decoded image into its normalised global view and tile views."""

    def __init__(
        self,
        size: int,
        mean,
        std,
        *,
        interpolation: str = "bicubic",
        resize_mode: str = "shortest",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        if resize_mode not in ("shortest", "squash"):
            raise ValueError(f"the model's resize mode {resize_mode!r} is not supported (shortest or squash)")
        self.size = int(size)
        self.interpolation = interpolation
        self.resize_mode = resize_mode
        self.device = torch.device(device)
        self.dtype = dtype
        mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._mul = 1.0 / (255.0 * std)
        self._add = -mean / std
        self._mats: dict[tuple[int, int], tuple] = {}
        self.work_dtype = exact_dtype(self.device)

    def _matrices(self, h: int, w: int):
        key = (h, w)
        if key not in self._mats:
            new_h, new_w, top, left = output_geometry(h, w, self.size, self.resize_mode)
            r0, my = resample_matrix(h, new_h, top, self.size, self.interpolation)
            c0, mx = resample_matrix(w, new_w, left, self.size, self.interpolation)
            f: _Placement = dict(device=self.device, dtype=self.work_dtype)
            self._mats[key] = (r0, torch.as_tensor(my, **f), c0, torch.as_tensor(mx.T.copy(), **f))
            if len(self._mats) > 512:
                self._mats.pop(next(iter(self._mats)))
        return self._mats[key]

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, h, w] uint8 -> [B, 3, R, R] float32 in 0..255: PIL's resize, then the centre crop.

        The horizontal pass runs in strips of rows of at most STRIP_BYTES of working
        precision, so a huge image costs a strip, not its whole size in float64 (the
        passes are per row: strips give the same numbers)."""
        h, w = x.shape[-2:]
        r0, my, c0, mxt = self._matrices(h, w)
        x = x[..., r0 : r0 + my.shape[1], c0 : c0 + mxt.shape[0]]
        per_row = x.shape[0] * 3 * x.shape[-1] * torch.finfo(self.work_dtype).bits // 8
        step = max(1, STRIP_BYTES // max(per_row, 1))
        if step >= x.shape[-2]:
            tmp = _to_levels(torch.matmul(x.to(self.work_dtype), mxt))  # horizontal pass first, as PIL
        else:
            tmp = torch.empty(*x.shape[:-1], self.size, dtype=self.work_dtype, device=x.device)
            for i in range(0, x.shape[-2], step):
                tmp[..., i : i + step, :] = _to_levels(torch.matmul(x[..., i : i + step, :].to(self.work_dtype), mxt))
        return _to_levels(torch.matmul(my, tmp)).float()

    def _tiles(self, image: torch.Tensor, rows: int, cols: int, th: int, tw: int) -> torch.Tensor:
        """All tiles of a [3, H, W] image, resized: as one batch while they are small, else
        one at a time (views of the image, no copy of it)."""
        if rows * cols * th * tw * 3 <= STRIP_BYTES:
            tiles = image[:, : rows * th, : cols * tw].reshape(3, rows, th, cols, tw)
            return self.resize(tiles.permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, th, tw))
        return torch.cat(
            [
                self.resize(image[None, :, i * th : (i + 1) * th, j * tw : (j + 1) * tw])
                for i in range(rows)
                for j in range(cols)
            ]
        )

    def make(self, image: torch.Tensor, tiling: Tiling | None) -> tuple[torch.Tensor, int]:
        """[H, W, 3] uint8, as decoded -> ([1 + T, 3, R, R] normalised views, T).

        The global view comes first. A 1 x 1 grid gives no extra view (its tile is the
        global view); the caller records it as one tile."""
        if image.dim() != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an [H, W, 3] image, got shape {tuple(image.shape)}")
        # Copy first, permute on the device: a permuted (non-contiguous) host tensor would be
        # staged through pageable memory, and that copy waits for all queued GPU work.
        image = image.to(self.device, non_blocking=True).permute(2, 0, 1)
        _, h, w = image.shape
        views = [self.resize(image[None])]
        n = 0
        if tiling is not None and not tiling.whole_image:
            rows, cols, th, tw = tiling.layout(h, w)
            n = rows * cols
            if n:
                views.append(self._tiles(image, rows, cols, th, tw))
        out = torch.cat(views) if len(views) > 1 else views[0]
        out = out.mul_(self._mul).add_(self._add)
        return out.to(self.dtype), n
