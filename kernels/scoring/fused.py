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
fp32 accumulation) and every exponential is an ``exp2``. The three kernels (class norms, row
statistics when C needs several class blocks, per-image scores) are in ``fused_kernels``;
``pick_blocks`` in ``fused_blocks`` makes every launch choice; :func:`score_segments_triton`
here checks the inputs, allocates the outputs and launches the kernels.

fp32 inputs (or mixed dtypes, promoted to fp32) use ``input_precision="ieee"`` and keep full
fp32 accuracy; pass fp16 or bf16 embeddings and class matrix for tensor-core speed. Under
``TRITON_INTERPRET=1`` the same kernels run on CPU tensors (slowly): that is how the tests
exercise this path without a GPU.
"""

from __future__ import annotations

from typing import TypedDict

import torch
import triton
import triton.language as tl

from .checks import Scores, check_shapes
from .fused_blocks import FUSED_MAX_CLASSES, Blocks, pick_blocks, pow2
from .fused_kernels import inv_norm_kernel, row_stats_kernel, segment_scores_kernel

__all__ = ["FUSED_MAX_CLASSES", "LOG2E", "Blocks", "pick_blocks", "score_segments_triton"]

LOG2E = 1.4426950408889634
_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


class _Placement(TypedDict):
    """The ``device`` and ``dtype`` keywords of a tensor factory, passed on with ``**``."""

    device: torch.device
    dtype: torch.dtype


def _is_interpreted() -> bool:
    return type(segment_scores_kernel).__name__ == "InterpretedFunction"


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
    f32: _Placement = dict(device=dev, dtype=torch.float32)

    colscale = torch.empty(c, **f32)
    inv_norm_kernel[(triton.cdiv(c, 16),)](
        text, colscale, text.stride(0), c, d, 1.0, BLOCK_R=16, BLOCK_D=pow2(d, hi=128), num_warps=4
    )
    if cfg.fused:
        rowscale = lse = colscale  # not read by the fused kernel
    else:
        rowscale, lse = torch.empty(m, **f32), torch.empty(cfg.csplit, m, **f32)
        row_stats_kernel[(triton.cdiv(m, cfg.block_m), cfg.csplit)](
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
    segment_scores_kernel[(n_cblocks * cfg.split * triton.cdiv(b, cfg.group),)](
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
