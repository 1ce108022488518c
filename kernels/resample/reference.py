"""The view kernel's reference: the same packed tables, read one view at a time with plain
torch and int64 sums (see ``tables.py`` for the tables and ``fused.py`` for the maths)."""

from __future__ import annotations

import torch

from .tables import F_COL0, F_IMG, F_IMG_W, F_KX, F_KY, F_NROWS, F_ROW0, F_XT, F_YT, N_FIELDS

_HALF = 1 << 21


def resample_views_torch(
    data: torch.Tensor, views_off: int, taps_off: int, n_views: int, size: int, mul, add
) -> torch.Tensor:
    """The reference: the same tables, read one view at a time with plain torch (int64
    sums). Returns [n_views, 3, size, size] float32 on ``data``'s device."""
    dev = data.device
    table = data[views_off : views_off + n_views * N_FIELDS * 8].view(torch.int64).view(n_views, N_FIELDS).tolist()
    whole = (data.numel() - taps_off) // 4 * 4  # the images after the taps need not end on 4 bytes
    taps_all = data[taps_off : taps_off + whole].view(torch.int32)
    out = torch.empty(n_views, 3, size, size, device=dev)
    mul = torch.tensor([float(x) for x in mul], device=dev).view(3, 1, 1)
    add = torch.tensor([float(x) for x in add], device=dev).view(3, 1, 1)

    def axis(t: int, k: int):
        starts = taps_all[t : t + size].long()
        return starts, taps_all[t + size : t + size + size * k].view(size, k).long()

    for v, f in enumerate(table):
        img_h_rows = f[F_ROW0] + f[F_NROWS]
        img = data[f[F_IMG] : f[F_IMG] + img_h_rows * f[F_IMG_W] * 3].view(img_h_rows, f[F_IMG_W], 3).long()
        xs, xt = axis(f[F_XT], f[F_KX])
        ys, yt = axis(f[F_YT], f[F_KY])
        rows = img[f[F_ROW0] :]  # [NROWS, W, 3]
        cols = f[F_COL0] + xs[:, None] + torch.arange(f[F_KX], device=dev)[None, :]  # [R, KX]
        tmp = ((rows[:, cols, :] * xt[None, :, :, None]).sum(2) + _HALF >> 22).clamp(0, 255)  # [NROWS, R, 3]
        rsel = ys[:, None] + torch.arange(f[F_KY], device=dev)[None, :]  # [R, KY]
        lev = ((tmp[rsel] * yt[:, :, None, None]).sum(1) + _HALF >> 22).clamp(0, 255)  # [R, R, 3]
        out[v] = lev.permute(2, 0, 1).float() * mul + add
    return out
