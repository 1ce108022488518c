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

from typing import TypedDict

import torch

from cdul.kernels.resample.tables import output_geometry, resample_matrix

from .tiling import Tiling


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
