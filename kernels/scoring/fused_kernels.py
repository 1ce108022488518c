"""The Triton kernels of the fused scorer (``fused.py`` has the formulas and launches them).

Three kernels, on the raw fp16/bf16/fp32 inputs with the norms folded into the logits
(``logit = dot(e_j, t_c) * rowscale[j] * colscale[c]``, base-2 exponentials):

1. ``inv_norm_kernel``: ``colscale`` [C] (the class matrix is small: read once).
2. ``row_stats_kernel``, only when C does not fit one class block: a grid over blocks of
   rows (of all images at once) x ``csplit`` slices of the class blocks. Each program
   computes its rows' norms, then walks its class blocks with an online softmax (running
   max m and running sum l, rescaled by ``exp2(m_old - m_new)`` at each block) and stores
   the base-2 log-sum-exp of its slice ([csplit, M] fp32) and ``rowscale`` ([M] fp32).
   Slicing the classes keeps the GPU busy when M is only a few thousand rows.
3. ``segment_scores_kernel``: a grid over (class block, row split, group of images). Each
   program walks the rows of its images in steps of ``seg_block_m`` rows, recomputes the
   logits of its class block with ``tl.dot``, turns them into probabilities with the
   combined log-sum-exp, and reduces max / min over each image's tile rows in registers,
   carrying the open image's partial max / min from one step to the next. Global-view rows
   are scattered straight to S_g (and to alpha, beta for images without tiles). When C fits
   one class block (``fused``) this kernel computes the norms and the softmax itself, kernel
   2 is skipped, and ``emb`` is read from memory once.

The logits are recomputed in kernel 3 rather than stored: where C is large the work is
GEMM-bound, and a second fp16 tensor-core pass costs less than writing and reading C x M
floats. Short segments (a 3 x 3 grid: 10 rows) are packed ``group`` images to a program, so
a ``tl.dot`` sees a full row block and a class block is fetched once for all of them. Long
ones (pixel tiling: thousands of rows) with few programs in flight are dealt to ``split``
programs that combine their max / min with float atomics (max and min are order-free, so
results stay deterministic). Class blocks vary fastest in the grid, so programs reading the
same rows run together and the rows come from HBM about once.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _inv_norms(x_ptr, rows, rmask, stride_r, D, scale, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """scale / |x_r| for a block of BLOCK_R rows, with F.normalize's eps."""
    ss = tl.zeros([BLOCK_R], dtype=tl.float32)
    for k0 in range(0, D, BLOCK_D):
        ks = k0 + tl.arange(0, BLOCK_D)
        x = tl.load(
            x_ptr + rows.to(tl.int64)[:, None] * stride_r + ks[None, :],
            mask=rmask[:, None] & (ks < D)[None, :],
            other=0.0,
        ).to(tl.float32)
        ss += tl.sum(x * x, axis=1)
    return scale / tl.maximum(tl.sqrt(ss), 1e-12)


@triton.jit
def inv_norm_kernel(x_ptr, out_ptr, stride_r, R, D, scale, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    tl.store(out_ptr + rows, _inv_norms(x_ptr, rows, rmask, stride_r, D, scale, BLOCK_R, BLOCK_D), mask=rmask)


@triton.jit
def _logits_block(
    emb_ptr,
    text_ptr,
    rows,
    rmask,
    cols,
    cmask,
    stride_em,
    stride_tc,
    D,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
    ROW_NORMS: tl.constexpr,
):
    """Raw dot products [BLOCK_M, BLOCK_N] in fp32, and the rows' sums of squares if asked."""
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    ss = tl.zeros([BLOCK_M], dtype=tl.float32)
    e_rows = emb_ptr + rows.to(tl.int64)[:, None] * stride_em
    t_rows = text_ptr + cols.to(tl.int64)[:, None] * stride_tc
    for k0 in range(0, D, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        kmask = ks < D
        a = tl.load(e_rows + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        t = tl.load(t_rows + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
        acc = tl.dot(a.to(DOT_DTYPE), tl.trans(t.to(DOT_DTYPE)), acc, input_precision=PRECISION)
        if ROW_NORMS:
            af = a.to(tl.float32)
            ss += tl.sum(af * af, axis=1)
    return acc, ss


@triton.jit(do_not_specialize=["M"])  # one compiled variant whatever the batch's row count
def row_stats_kernel(
    emb_ptr,
    text_ptr,
    colscale_ptr,
    rowscale_ptr,
    lse_ptr,
    stride_em,
    stride_tc,
    M,
    C,
    D,
    scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    CSPLIT: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    part = tl.program_id(1)  # this program's class blocks: part, part + CSPLIT, ...
    # Row norms first: the block's rows then sit in L2 for the class loop below.
    rs = _inv_norms(emb_ptr, rows, rmask, stride_em, D, scale, BLOCK_M, BLOCK_K)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(part * BLOCK_N, C, CSPLIT * BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < C
        acc, _ = _logits_block(
            emb_ptr,
            text_ptr,
            rows,
            rmask,
            cols,
            cmask,
            stride_em,
            stride_tc,
            D,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            DOT_DTYPE,
            PRECISION,
            False,
        )
        cs = tl.load(colscale_ptr + cols, mask=cmask, other=0.0)
        logit = tl.where(cmask[None, :], acc * rs[:, None] * cs[None, :], float("-inf"))
        m_new = tl.maximum(m_i, tl.max(logit, axis=1))
        l_i = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(logit - m_new[:, None]), axis=1)
        m_i = m_new
    if part == 0:
        tl.store(rowscale_ptr + rows, rs, mask=rmask)
    tl.store(lse_ptr + part * M + rows, m_i + tl.log2(l_i), mask=rmask)


@triton.jit
def _row_lse(lse_ptr, rows, rmask, M, BLOCK_M: tl.constexpr, CSPLIT: tl.constexpr):
    """Combine the CSPLIT partial log-sum-exps (base 2) of each row into one."""
    m_i = tl.load(lse_ptr + rows, mask=rmask, other=0.0)
    l_i = tl.full([BLOCK_M], 1.0, dtype=tl.float32)
    for j in tl.static_range(1, CSPLIT):
        x = tl.load(lse_ptr + j * M + rows, mask=rmask, other=0.0)
        m_new = tl.maximum(m_i, x)
        l_i = l_i * tl.exp2(m_i - m_new) + tl.exp2(x - m_new)
        m_i = m_new
    return m_i + tl.log2(l_i)


@triton.jit(do_not_specialize=["M", "B"])  # one compiled variant whatever the batch's size
def segment_scores_kernel(
    emb_ptr,
    text_ptr,
    offsets_ptr,
    colscale_ptr,
    rowscale_ptr,
    lse_ptr,
    sg_ptr,
    alpha_ptr,
    beta_ptr,
    tiles_ptr,
    stride_em,
    stride_tc,
    stride_o,
    M,
    B,
    C,
    D,
    scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    N_CBLOCKS: tl.constexpr,
    GROUP: tl.constexpr,
    SPLIT: tl.constexpr,
    CSPLIT: tl.constexpr,
    FUSED: tl.constexpr,
    KEEP_TILES: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    cblock = pid % N_CBLOCKS
    part = (pid // N_CBLOCKS) % SPLIT
    first = (pid // (N_CBLOCKS * SPLIT)) * GROUP  # this program's images: [first, last)
    last = tl.minimum(first + GROUP, B)
    row_lo = tl.load(offsets_ptr + first).to(tl.int64)
    row_hi = tl.load(offsets_ptr + last).to(tl.int64)
    cols = cblock * BLOCK_N + tl.arange(0, BLOCK_N)
    cmask = cols < C
    cs = tl.load(colscale_ptr + cols, mask=cmask, other=0.0)

    # The open image: its rows are [cur_start, cur_end); amax / amin hold its partial max / min.
    cur = first
    cur_start = row_lo
    cur_end = tl.load(offsets_ptr + first + 1).to(tl.int64)
    amax = tl.zeros([BLOCK_N], dtype=tl.float32)  # probabilities are >= 0
    amin = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
    for r0 in range(row_lo + part * BLOCK_M, row_hi, SPLIT * BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        rmask = rows < row_hi
        acc, ss = _logits_block(
            emb_ptr,
            text_ptr,
            rows,
            rmask,
            cols,
            cmask,
            stride_em,
            stride_tc,
            D,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            DOT_DTYPE,
            PRECISION,
            FUSED,
        )
        if FUSED:  # all classes are in this block: the softmax is local
            rs = scale / tl.maximum(tl.sqrt(ss), 1e-12)
            logit = tl.where(cmask[None, :], acc * rs[:, None] * cs[None, :], float("-inf"))
            z = tl.exp2(logit - tl.max(logit, axis=1)[:, None])
            p = z * (1.0 / tl.sum(z, axis=1))[:, None]
        else:
            rs = tl.load(rowscale_ptr + rows, mask=rmask, other=0.0)
            lse = _row_lse(lse_ptr, rows, rmask, M, BLOCK_M, CSPLIT)
            p = tl.where(cmask[None, :], tl.exp2(acc * rs[:, None] * cs[None, :] - lse[:, None]), 0.0)

        # Visit the images that have rows in this block, in order (one, unless GROUP > 1).
        b0 = cur  # the image of the block's first row
        seg = tl.zeros([BLOCK_M], dtype=tl.int32) + cur  # image of each row
        go = r0 < row_hi
        while go:
            seg = tl.where(rows >= cur_start, cur, seg)
            if tl.maximum(cur_start + 1, r0) < tl.minimum(cur_end, r0 + BLOCK_M):  # tiles here
                tile = (rows > cur_start) & (rows < cur_end)
                amax = tl.maximum(amax, tl.max(tl.where(tile[:, None], p, 0.0), axis=0))
                amin = tl.minimum(amin, tl.min(tl.where(tile[:, None], p, float("inf")), axis=0))
            if SPLIT == 1:  # the whole image is this program's: close it where it ends
                ends = cur_end <= r0 + BLOCK_M
                if ends:
                    if cur_end - cur_start > 1:
                        out = cur.to(tl.int64) * stride_o + cols
                        tl.store(alpha_ptr + out, amax, mask=cmask)
                        tl.store(beta_ptr + out, amin, mask=cmask)
                    amax = tl.zeros([BLOCK_N], dtype=tl.float32)
                    amin = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
                    cur += 1
                    cur_start = cur_end
                    cur_end = tl.load(offsets_ptr + cur + 1, mask=cur < last, other=0).to(tl.int64)
                go = ends & (cur_start < r0 + BLOCK_M) & (cur < last)
            else:  # SPLIT > 1 serves one image, met once per block
                go = cur < first

        # Global-view rows are scattered to S_g (and to alpha, beta when the image has no
        # tiles: the local view falls back to the global one); tile rows to the tile output.
        # Offsets within the block are int32 (< BLOCK_M * C) from an int64 base: fewer registers.
        head_row = tl.load(offsets_ptr + seg, mask=rmask, other=-1)
        next_row = tl.load(offsets_ptr + seg + 1, mask=rmask, other=0)
        local = (seg - b0)[:, None] * stride_o + cols[None, :]
        head = (rmask & (rows == head_row))[:, None] & cmask[None, :]
        tl.store(sg_ptr + b0.to(tl.int64) * stride_o + local, p, mask=head)
        lone = head & (next_row - head_row == 1)[:, None]
        tl.store(alpha_ptr + b0.to(tl.int64) * stride_o + local, p, mask=lone)
        tl.store(beta_ptr + b0.to(tl.int64) * stride_o + local, p, mask=lone)
        if KEEP_TILES:  # tile row r of image b is row r - b - 1 of the tile output
            local = (tl.arange(0, BLOCK_M) - (seg - b0))[:, None] * C + cols[None, :]
            tile = (rmask & (rows > head_row))[:, None] & cmask[None, :]
            tl.store(tiles_ptr + (r0 - b0 - 1) * C + local, p.to(tl.float16), mask=tile)

    # SPLIT is a compile-time constant: kept as its own `if` so the branch is resolved when compiling.
    if SPLIT > 1:  # noqa: SIM102 - partial max / min of one image, combined across programs (order-free)
        if (cur_end - cur_start > 1) & (row_lo + part * BLOCK_M < row_hi):
            out = first.to(tl.int64) * stride_o + cols
            tl.atomic_max(alpha_ptr + out, amax, mask=cmask, sem="relaxed")
            tl.atomic_min(beta_ptr + out, amin, mask=cmask, sem="relaxed")
