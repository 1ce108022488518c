"""Fused Triton scoring of segment-stacked view embeddings (the package docstring has the layout).

Per image b, with rows ``offsets[b]:offsets[b+1]`` of ``emb`` (global view first, then its
tiles) and the class matrix ``text`` [C, D]:

    logit[j, c] = s * <e_j, t_c> / (|e_j| |t_c|)
    p[j, :]     = softmax(logit[j, :]);  S_g = p[global];  alpha, beta = max, min over tiles

Design. The C x M probability matrix is never written to memory (only the optional fp16
tile output is); what is stored besides the outputs is per row or per class. Norms are
folded into the logits instead of normalising copies of the inputs:
``logit = dot(e_j, t_c) * rowscale[j] * colscale[c]`` with ``rowscale = s * log2(e) / |e_j|``
and ``colscale = 1 / |t_c|``, so ``tl.dot`` runs on the raw fp16/bf16 inputs (tensor cores,
fp32 accumulation) and every exponential is an ``exp2``. Three kernels:

1. ``_inv_norm_kernel``: ``colscale`` [C] (the class matrix is small: read once).
2. ``_row_stats_kernel``, only when C does not fit one class block: a grid over blocks of
   rows (of all images at once) x ``csplit`` slices of the class blocks. Each program
   computes its rows' norms, then walks its class blocks with an online softmax (running
   max m and running sum l, rescaled by ``exp2(m_old - m_new)`` at each block) and stores
   the base-2 log-sum-exp of its slice ([csplit, M] fp32) and ``rowscale`` ([M] fp32).
   Slicing the classes keeps the GPU busy when M is only a few thousand rows.
3. ``_segment_scores_kernel``: a grid over (class block, row split, group of images). Each
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
same rows run together and the rows come from HBM about once. ``pick_blocks`` makes every
launch choice in one place.

fp32 inputs (or mixed dtypes, promoted to fp32) use ``input_precision="ieee"`` and keep full
fp32 accuracy; pass fp16 or bf16 embeddings and class matrix for tensor-core speed. Under
``TRITON_INTERPRET=1`` the same kernels run on CPU tensors (slowly): that is how the tests
exercise this path without a GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import triton
import triton.language as tl

from .checks import Scores, check_shapes

LOG2E = 1.4426950408889634
FUSED_MAX_CLASSES = 256  # up to this many classes, one class block and a single pass
_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


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
def _inv_norm_kernel(x_ptr, out_ptr, stride_r, R, D, scale, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
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


@triton.jit
def _row_stats_kernel(
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


@triton.jit
def _segment_scores_kernel(
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


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Launch configuration. ``block_*`` are powers of two >= 16 (``tl.dot``'s minimum)."""

    block_m: int  # rows per program in the row-statistics pass
    block_n: int  # classes per block (both passes)
    block_k: int  # embedding width per tl.dot step
    fused: bool  # C fits one class block: a single pass, no row statistics
    csplit: int  # programs sharing one row block's class blocks in the row-statistics pass
    seg_block_m: int  # rows per tl.dot in the per-image pass
    group: int  # consecutive images per program in the per-image pass
    split: int  # programs sharing one image's row blocks (only with group == 1)
    num_warps: int
    num_stages: int = 3


@functools.cache
def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # the interpreter runs programs one by one; any small number will do


def _pow2(n: int, lo: int = 16, hi: int | None = None) -> int:
    p = max(lo, triton.next_power_of_2(max(int(n), 1)))
    return min(p, hi) if hi else p


def pick_blocks(
    m: int, b: int, c: int, d: int, dot_dtype: torch.dtype, device: torch.device, override: dict | None = None
) -> Blocks:
    """All launch choices, from the shapes and the SM count (queried here, at launch time).

    ``override`` replaces any field; the choices after it are derived from the replaced value.
    """
    o = dict(override or {})
    unknown = set(o) - {f.name for f in dataclasses.fields(Blocks)}
    if unknown:
        raise ValueError(f"unknown block settings {sorted(unknown)}")
    want = 4 * _num_sms(device)  # programs enough to fill the GPU a few times over
    block_k = o.pop("block_k", _pow2(d, hi=32 if dot_dtype == torch.float32 else 64))
    block_n = o.pop("block_n", _pow2(c) if _pow2(c) <= FUSED_MAX_CLASSES else 128)
    fused = o.pop("fused", c <= block_n)
    n_cblocks = triton.cdiv(c, block_n)
    block_m = o.pop("block_m", 128 if m >= 1024 else 64)
    csplit = o.pop("csplit", 1 if fused else min(n_cblocks, triton.cdiv(want, triton.cdiv(m, block_m))))
    # Short segments: several images per program, so a tl.dot sees a full row block and the
    # class block is fetched once for all of them; only while there are programs to spare.
    avg_rows = m / b
    group = o.pop("group", max(1, min(b * n_cblocks // want, math.ceil(256 / avg_rows))))
    # Fewest padded rows, counting each step's fetch of the class block as block_n / 4 rows.
    # A step visits every image it overlaps, so steps spanning images stay at <= 64 rows;
    # <= 8192 probabilities per step (32 a thread at 8 warps) keeps them in registers.
    sizes = [s for s in (16, 32, 64, 128) if s * block_n <= max(16 * block_n, 8192) and (group == 1 or s <= 64)]
    prog_rows = group * avg_rows
    seg_block_m = min(sizes, key=lambda s: (math.ceil(prog_rows / s) * (s + block_n / 4), -s))
    while group == 1 and seg_block_m > 32 and b * n_cblocks * math.ceil(avg_rows / seg_block_m) < want:
        seg_block_m //= 2  # few long images: smaller steps give more programs (see split)
    seg_block_m = o.pop("seg_block_m", seg_block_m)
    split = o.pop(
        "split",
        1
        if group > 1
        else max(1, min(triton.cdiv(want, b * n_cblocks), triton.cdiv(math.ceil(avg_rows), seg_block_m))),
    )
    num_warps = o.pop("num_warps", 8 if seg_block_m * block_n >= 4096 else 4)
    cfg = Blocks(block_m, block_n, block_k, fused, csplit, seg_block_m, group, split, num_warps, **o)
    if cfg.fused and c > cfg.block_n:
        raise ValueError(f"fused needs every class in one block: C={c} > block_n={cfg.block_n}")
    for name in ("block_m", "block_n", "block_k", "seg_block_m"):
        v = getattr(cfg, name)
        if v < 16 or v & (v - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {v}")
    if min(cfg.group, cfg.split, cfg.csplit) < 1 or (cfg.split > 1 and cfg.group > 1):
        raise ValueError(
            f"need group, split, csplit >= 1 and split == 1 when group > 1, got "
            f"group={cfg.group}, split={cfg.split}, csplit={cfg.csplit}"
        )
    if cfg.csplit > n_cblocks:
        raise ValueError(f"csplit={cfg.csplit} exceeds the {n_cblocks} class blocks")
    return cfg


def _is_interpreted() -> bool:
    return type(_segment_scores_kernel).__name__ == "InterpretedFunction"


def _check(emb: torch.Tensor, offsets: torch.Tensor, text: torch.Tensor) -> None:
    """Metadata checks only (reading the offsets back from the GPU would stall the stream)."""
    check_shapes(emb, offsets, text)
    if not (emb.device == offsets.device == text.device):
        raise ValueError(
            f"emb, offsets and text must share a device, got {emb.device}, {offsets.device}, {text.device}"
        )
    if not emb.is_cuda and not _is_interpreted():
        raise ValueError("the Triton scorer needs CUDA tensors (CPU tensors only with TRITON_INTERPRET=1)")


def score_segments_triton(
    emb: torch.Tensor,
    offsets: torch.Tensor,
    text: torch.Tensor,
    logit_scale: float,
    keep_tiles: bool = False,
    *,
    blocks: dict | None = None,
    out: torch.Tensor | None = None,
) -> Scores:
    """S_g, alpha, beta (and fp16 tile probabilities) for segment-stacked embeddings.

    ``blocks`` overrides fields of :class:`Blocks` (e.g. ``{"block_n": 16, "split": 2}``) to
    force the multi-block paths at small sizes. ``out``, a contiguous float32 [B, 3, C]
    tensor, receives S_g, alpha and beta side by side (one copy brings all three back).
    """
    _check(emb, offsets, text)
    # The last dimension is read in BLOCK_K runs: make it unit-stride (a no-op when it is).
    emb = emb if emb.stride(1) == 1 else emb.contiguous()
    text = text if text.stride(1) == 1 else text.contiguous()
    offsets = offsets.contiguous()
    m, d = emb.shape
    c, b = text.shape[0], offsets.numel() - 1
    dot_dtype = emb.dtype if emb.dtype == text.dtype else torch.float32
    dot_tl = _TL_DTYPES[dot_dtype]
    precision = "ieee" if dot_dtype == torch.float32 else "tf32"  # tf32: ignored for 16-bit
    cfg = pick_blocks(m, b, c, d, dot_dtype, emb.device, blocks)
    scale = float(logit_scale) * LOG2E
    dev = emb.device
    f32 = dict(device=dev, dtype=torch.float32)

    colscale = torch.empty(c, **f32)
    _inv_norm_kernel[(triton.cdiv(c, 16),)](
        text, colscale, text.stride(0), c, d, 1.0, BLOCK_R=16, BLOCK_D=_pow2(d, hi=128), num_warps=4
    )
    if cfg.fused:
        rowscale = lse = colscale  # not read by the fused kernel
    else:
        rowscale, lse = torch.empty(m, **f32), torch.empty(cfg.csplit, m, **f32)
        _row_stats_kernel[(triton.cdiv(m, cfg.block_m), cfg.csplit)](
            emb,
            text,
            colscale,
            rowscale,
            lse,
            emb.stride(0),
            text.stride(0),
            m,
            c,
            d,
            scale,
            BLOCK_M=cfg.block_m,
            BLOCK_N=cfg.block_n,
            BLOCK_K=cfg.block_k,
            CSPLIT=cfg.csplit,
            DOT_DTYPE=dot_tl,
            PRECISION=precision,
            num_warps=8 if cfg.block_m * cfg.block_n >= 128 * 128 else 4,
            num_stages=cfg.num_stages,
        )

    if out is not None:
        if out.shape != (b, 3, c) or out.dtype != torch.float32 or not out.is_contiguous() or out.device != dev:
            raise ValueError(f"out must be a contiguous float32 [{b}, 3, {c}] tensor on {dev}")
        s_g, alpha, beta = out[:, 0], out[:, 1], out[:, 2]
        if cfg.split > 1:  # partial max / min are combined with atomics: start from the identities
            alpha.zero_()
            beta.fill_(float("inf"))
    elif cfg.split > 1:
        s_g = torch.empty(b, c, **f32)
        alpha, beta = torch.zeros(b, c, **f32), torch.full((b, c), float("inf"), **f32)
    else:
        s_g, alpha, beta = torch.empty(b, c, **f32), torch.empty(b, c, **f32), torch.empty(b, c, **f32)
    tiles = torch.empty(m - b, c, device=dev, dtype=torch.float16) if keep_tiles else s_g
    n_cblocks = triton.cdiv(c, cfg.block_n)
    _segment_scores_kernel[(n_cblocks * cfg.split * triton.cdiv(b, cfg.group),)](
        emb,
        text,
        offsets,
        colscale,
        rowscale,
        lse,
        s_g,
        alpha,
        beta,
        tiles,
        emb.stride(0),
        text.stride(0),
        s_g.stride(0),
        m,
        b,
        c,
        d,
        scale,
        BLOCK_M=cfg.seg_block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        N_CBLOCKS=n_cblocks,
        GROUP=cfg.group,
        SPLIT=cfg.split,
        CSPLIT=cfg.csplit,
        FUSED=cfg.fused,
        KEEP_TILES=keep_tiles,
        DOT_DTYPE=dot_tl,
        PRECISION=precision,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return Scores(s_g, alpha, beta, tiles if keep_tiles else None)
