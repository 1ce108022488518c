"""Resample: the eval preprocess of every view of a batch (PIL's antialiased resize of a box
of an image to R x R, 8-bit levels after each pass, then ``level * mul[c] + add[c]``).

The op's parts: ``tables`` builds, on the host, the taps of every resize and the view table
that the loader packs and both implementations read (the maths and the table's format are
there); ``fused.resample_views`` is the Triton kernel (two launches); and
``reference.resample_views_torch`` reads the same tables one view at a time with plain torch
and int64 sums. Both give PIL's levels bit for bit.

``resample_views`` is the one entry point: the Triton kernel for CUDA tensors when it is
available, the reference otherwise (CPU, or ``CDUL_KERNELS=torch``; see
``cdul.kernels.dispatch``). This package imports no triton, so the loader's worker processes
never load it.
"""

from __future__ import annotations

import torch

from ..dispatch import fused_available, pick_backend
from .reference import resample_views_torch
from .tables import F_COL0, F_IMG, F_IMG_W, F_KX, F_KY, F_NROWS, F_ROW0, F_SCR, F_XT, F_YT, N_FIELDS

__all__ = [
    "F_COL0",
    "F_IMG",
    "F_IMG_W",
    "F_KX",
    "F_KY",
    "F_NROWS",
    "F_ROW0",
    "F_SCR",
    "F_XT",
    "F_YT",
    "N_FIELDS",
    "resample_views",
    "resample_views_torch",
]


def _triton_available() -> bool:
    return fused_available(__name__)


def resample_views(
    data: torch.Tensor,
    views_off: int,
    taps_off: int,
    n_views: int,
    max_rows: int,
    scratch: torch.Tensor,
    out: torch.Tensor,
    mul,
    add,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Write views 0..n_views-1 of the packed batch ``data`` into ``out[:n_views]`` and return
    that slice (arguments as ``fused.resample_views``; ``scratch`` is used by the kernel only).
    ``backend`` (auto, torch or triton) overrides ``CDUL_KERNELS``."""
    if pick_backend(data, __name__, backend) == "triton":
        from .fused import resample_views as fused

        fused(data, views_off, taps_off, n_views, max_rows, scratch, out, mul, add)
    elif n_views:
        size = out.shape[2]
        out[:n_views].copy_(resample_views_torch(data, views_off, taps_off, n_views, size, mul, add))
    return out[:n_views]
