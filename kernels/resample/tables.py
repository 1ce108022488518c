"""The resample op's tables, built on the host: PIL's antialiased taps of every resize and the
view table that says which box of which image becomes which view. No triton here: the loader's
worker processes and the CPU path import this module alone.

Taps. PIL resamples separably; one axis in_size -> out_size has, per output x, the window
``[xmin, xmax)`` around ``center = (x + 0.5) * in / out`` with support
``s = a * max(in / out, 1)`` (a = 2 bicubic, 1 bilinear) and weights
``w_k = f((xmin + k - center + 0.5) / max(in / out, 1))`` normalised to sum 1, then rounded to
22-bit fixed point (PIL's PRECISION_BITS; ``pil_taps`` follows Resample.c operation for
operation). The eval preprocess resizes the short side to R and crops the centre R x R
(``output_geometry``, as torchvision computes it); only the kept outputs get taps.

View table: one int64 row of ``N_FIELDS`` per view (``ViewTable``):

- ``F_IMG``: byte offset of the view's image (HWC uint8) in the packed buffer
- ``F_IMG_W``: the image's width in pixels (its rows are ``3 * F_IMG_W`` bytes apart)
- ``F_ROW0``: first image row read by the row pass; ``F_NROWS`` rows are read
- ``F_COL0``: image column that the column starts of the row pass are relative to
- ``F_XT``, ``F_KX``: int32 offset and width K of the row pass's taps table
- ``F_YT``, ``F_KY``: the same for the column pass (starts relative to ``F_ROW0``)
- ``F_SCR``: byte offset of the view's intermediate (``F_NROWS x R x 3`` uint8) in scratch

A taps table at int32 offset t holds ``starts[R]`` then ``taps[R, K]`` (22-bit fixed point).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

F_IMG, F_IMG_W, F_ROW0, F_COL0, F_NROWS, F_XT, F_KX, F_YT, F_KY, F_SCR = range(10)
N_FIELDS = 10

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


class TapsTable:
    """The taps tables of one batch, deduplicated by geometry (all tiles of a grid share theirs)."""

    def __init__(self, size: int, interpolation: str):
        self.size, self.interpolation = size, interpolation
        self.parts: list[np.ndarray] = []
        self.length = 0
        self.seen: dict[tuple, tuple] = {}

    def axis(self, in_size: int, out_size: int, keep_start: int) -> tuple[int, int, int, int]:
        """(int32 offset, K, first input read, inputs read) of one axis's table."""
        key = (in_size, out_size, keep_start)
        if key not in self.seen:
            first, taps = pil_taps(in_size, out_size, keep_start, self.size, self.interpolation)
            lo = int(first.min())
            span = int(first.max()) - lo + taps.shape[1]
            part = np.concatenate([first - lo, taps.ravel()]).astype(np.int32)
            self.seen[key] = (self.length, taps.shape[1], lo, span)
            self.parts.append(part)
            self.length += part.size
        return self.seen[key]

    def array(self) -> np.ndarray:
        """All tables, end to end, int32."""
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.int32)


class ViewTable:
    """The view table of one batch and its taps, a row per view, in the order views are added."""

    def __init__(self, size: int, interpolation: str = "bicubic", resize_mode: str = "shortest"):
        self.size, self.resize_mode = size, resize_mode
        self.taps = TapsTable(size, interpolation)
        self.rows: list[list[int]] = []
        self.scratch = 0  # bytes of scratch the row pass writes, all views together
        self.max_rows = 0  # the largest intermediate of a view, in rows

    def add(self, image: int, img_w: int, top: int, left: int, box_h: int, box_w: int) -> None:
        """The view of the box (top, left, box_h, box_w) of image ``image`` (its F_IMG field, a
        byte offset once the images are placed), whose width is ``img_w``."""
        new_h, new_w, ctop, cleft = output_geometry(box_h, box_w, self.size, self.resize_mode)
        xt, kx, x_lo, _ = self.taps.axis(box_w, new_w, cleft)
        yt, ky, y_lo, y_rows = self.taps.axis(box_h, new_h, ctop)
        row = [0] * N_FIELDS
        row[F_IMG], row[F_IMG_W], row[F_ROW0], row[F_COL0] = image, img_w, top + y_lo, left + x_lo
        row[F_NROWS], row[F_XT], row[F_KX], row[F_YT], row[F_KY], row[F_SCR] = y_rows, xt, kx, yt, ky, self.scratch
        self.rows.append(row)
        self.scratch += y_rows * self.size * 3
        self.max_rows = max(self.max_rows, y_rows)

    def array(self) -> np.ndarray:
        """The rows as int64 [V, N_FIELDS]."""
        return np.array(self.rows, np.int64).reshape(-1, N_FIELDS)
