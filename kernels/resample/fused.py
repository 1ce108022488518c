"""The model's eval preprocess for every view of a batch in two Triton launches.

Input: one packed uint8 buffer ``data`` (the images, HWC, and the tables below, as the
extractor's loader packs them) and a view table. Output: the normalised views, written
straight into the encoder's batch buffer ``out`` [N, 3, R, R] (any strides: channels_last
works; fp32, fp16 or bf16).

Each view is a box of one image resized to R x R the way PIL does it (the eval preprocess
of CLIP: resize the short side with an antialiased filter, centre-crop, then
``level * mul[c] + add[c]``). PIL resamples separably with 22-bit fixed-point taps and
rounds to 8 bits after each pass; here the same integer arithmetic runs on the GPU:

    pass 1 (rows):    tmp[r, x, c] = clip8((2**21 + sum_k img[ROW0 + r, COL0 + xs[x] + k, c] * xt[x, k]) >> 22)
    pass 2 (columns): out[v, c, y, x] = clip8((2**21 + sum_k tmp[ys[y] + k, x, c] * yt[y, k]) >> 22) * mul[c] + add[c]

Integer sums do not depend on their order, so the 8-bit levels equal PIL's bit for bit on
any device (the float64 matrix path of ``cdul.extractor.views`` computes the same numbers).
The taps and starts (``xs``, ``ys``) come precomputed from the host (they depend on the
sizes alone and are cached there). Only the rows of the centre crop are computed, and
pass 1 reads only the input rows that pass 2 needs.

The view table's format is in ``tables.py``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _clip8(acc):
    return tl.minimum(tl.maximum(acc >> 22, 0), 255)


@triton.jit
def _mac3(p, m, t, acc0, acc1, acc2):
    """acc_c += t * pixel[c] for the three interleaved channels at p (8-bit, HWC)."""
    acc0 += tl.load(p, mask=m, other=0).to(tl.int32) * t
    acc1 += tl.load(p + 1, mask=m, other=0).to(tl.int32) * t
    acc2 += tl.load(p + 2, mask=m, other=0).to(tl.int32) * t
    return acc0, acc1, acc2


@triton.jit(do_not_specialize=["views_off", "taps_off"])  # offsets vary batch by batch
def _rows_kernel(data_ptr, scratch_ptr, views_off, taps_off, R, BLOCK_R: tl.constexpr, BLOCK_X: tl.constexpr):
    """Pass 1: program (view, block of intermediate rows, block of output columns)."""
    v = tl.program_id(0)
    row = (data_ptr + views_off).to(tl.pointer_type(tl.int64)) + v * 10  # fields: see tables.py
    img = tl.load(row + 0)
    img_w = tl.load(row + 1)
    row0 = tl.load(row + 2)
    col0 = tl.load(row + 3)
    n_rows = tl.load(row + 4)
    xt = tl.load(row + 5)
    kx = tl.load(row + 6)
    scr = tl.load(row + 9)
    rows = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(2) * BLOCK_X + tl.arange(0, BLOCK_X)
    rmask = rows < n_rows
    cmask = cols < R
    taps = (data_ptr + taps_off).to(tl.pointer_type(tl.int32)) + xt
    start = tl.load(taps + cols, mask=cmask, other=0).to(tl.int64)
    base = img + ((row0 + rows).to(tl.int64) * img_w)[:, None] * 3 + ((col0 + start) * 3)[None, :]
    m = rmask[:, None] & cmask[None, :]
    acc0 = tl.full([BLOCK_R, BLOCK_X], 1 << 21, tl.int32)
    acc1 = tl.full([BLOCK_R, BLOCK_X], 1 << 21, tl.int32)
    acc2 = tl.full([BLOCK_R, BLOCK_X], 1 << 21, tl.int32)
    steps = tl.where(tl.program_id(1) * BLOCK_R < n_rows, kx, 0)  # idle programs skip the loop
    for k in range(0, steps):
        t = tl.load(taps + R + cols * kx + k, mask=cmask, other=0)[None, :]
        acc0, acc1, acc2 = _mac3(data_ptr + base + k * 3, m, t, acc0, acc1, acc2)
    dst = scratch_ptr + scr + (rows.to(tl.int64)[:, None] * R + cols[None, :]) * 3
    tl.store(dst, _clip8(acc0).to(tl.uint8), mask=m)
    tl.store(dst + 1, _clip8(acc1).to(tl.uint8), mask=m)
    tl.store(dst + 2, _clip8(acc2).to(tl.uint8), mask=m)


@triton.jit(do_not_specialize=["views_off", "taps_off"])
def _cols_kernel(
    data_ptr,
    scratch_ptr,
    out_ptr,
    views_off,
    taps_off,
    R,
    stride_n,
    stride_c,
    stride_h,
    stride_w,
    mul0,
    mul1,
    mul2,
    add0,
    add1,
    add2,
    BLOCK_Y: tl.constexpr,
    BLOCK_X: tl.constexpr,
):
    """Pass 2: program (view, block of output rows, block of output columns)."""
    v = tl.program_id(0)
    row = (data_ptr + views_off).to(tl.pointer_type(tl.int64)) + v * 10
    yt = tl.load(row + 7)
    ky = tl.load(row + 8)
    scr = tl.load(row + 9)
    ys = tl.program_id(1) * BLOCK_Y + tl.arange(0, BLOCK_Y)
    xs = tl.program_id(2) * BLOCK_X + tl.arange(0, BLOCK_X)
    ymask = ys < R
    xmask = xs < R
    m = ymask[:, None] & xmask[None, :]
    taps = (data_ptr + taps_off).to(tl.pointer_type(tl.int32)) + yt
    start = tl.load(taps + ys, mask=ymask, other=0).to(tl.int64)
    base = scr + (start[:, None] * R + xs[None, :]) * 3
    acc0 = tl.full([BLOCK_Y, BLOCK_X], 1 << 21, tl.int32)
    acc1 = tl.full([BLOCK_Y, BLOCK_X], 1 << 21, tl.int32)
    acc2 = tl.full([BLOCK_Y, BLOCK_X], 1 << 21, tl.int32)
    for k in range(0, ky):
        t = tl.load(taps + R + ys * ky + k, mask=ymask, other=0)[:, None]
        acc0, acc1, acc2 = _mac3(scratch_ptr + base + k * R * 3, m, t, acc0, acc1, acc2)
    dst = out_ptr + v.to(tl.int64) * stride_n + ys[:, None] * stride_h + xs[None, :] * stride_w
    ty = out_ptr.dtype.element_ty
    tl.store(dst, (_clip8(acc0).to(tl.float32) * mul0 + add0).to(ty), mask=m)
    tl.store(dst + stride_c, (_clip8(acc1).to(tl.float32) * mul1 + add1).to(ty), mask=m)
    tl.store(dst + 2 * stride_c, (_clip8(acc2).to(tl.float32) * mul2 + add2).to(ty), mask=m)


def _is_interpreted() -> bool:
    return type(_rows_kernel).__name__ == "InterpretedFunction"


def pick_view_blocks(size: int) -> tuple[int, int]:
    """(rows per program, columns per program) for both passes. The interpreter runs one
    program at a time in Python: there, few large programs are fastest."""
    if _is_interpreted():
        return 64, triton.next_power_of_2(size)
    return 16, 64


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
) -> None:
    """Write views 0..n_views-1 of the packed batch ``data`` into ``out[:n_views]``.

    ``data`` is the packed uint8 buffer, ``views_off`` / ``taps_off`` the byte offsets of
    its view and taps tables (8- and 4-aligned), ``max_rows`` the largest NROWS of a view,
    ``scratch`` a uint8 buffer of at least sum(NROWS * R * 3) bytes (SCR offsets index it),
    ``mul``/``add`` three floats each (the normalisation per channel)."""
    if data.dtype != torch.uint8 or scratch.dtype != torch.uint8 or data.dim() != 1:
        raise ValueError("data and scratch must be 1-D uint8 buffers")
    if out.dim() != 4 or out.shape[1] != 3 or out.shape[2] != out.shape[3] or out.shape[0] < n_views:
        raise ValueError(f"out must be [>= {n_views}, 3, R, R], got {tuple(out.shape)}")
    if not (data.device == scratch.device == out.device):
        raise ValueError("data, scratch and out must share a device")
    if not data.is_cuda and not _is_interpreted():
        raise ValueError("the view kernel needs CUDA tensors (CPU tensors only with TRITON_INTERPRET=1)")
    if views_off % 8 or taps_off % 4:
        raise ValueError("the view table must be 8-byte aligned and the taps 4-byte aligned")
    if n_views == 0:
        return
    size = out.shape[2]
    br, bx = pick_view_blocks(size)
    _rows_kernel[(n_views, triton.cdiv(max(max_rows, 1), br), triton.cdiv(size, bx))](
        data, scratch, views_off, taps_off, size, BLOCK_R=br, BLOCK_X=bx, num_warps=4
    )
    sn, sc, sh, sw = out.stride()
    _cols_kernel[(n_views, triton.cdiv(size, br), triton.cdiv(size, bx))](
        data,
        scratch,
        out,
        views_off,
        taps_off,
        size,
        sn,
        sc,
        sh,
        sw,
        *[float(x) for x in mul],
        *[float(x) for x in add],
        BLOCK_Y=br,
        BLOCK_X=bx,
        num_warps=4,
    )
