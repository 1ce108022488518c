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

from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Launch:
    """What every launch of one call shares: unit-stride inputs, sizes and launch choices."""

    emb: torch.Tensor  # [M, D]
    text: torch.Tensor  # [C, D]
    offsets: torch.Tensor  # [B + 1]
    cfg: Blocks
    scale: float  # logit scale * log2(e)
    dot_tl: tl.dtype
    precision: str

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """(M, B, C, D)."""
        return self.emb.shape[0], self.offsets.numel() - 1, self.text.shape[0], self.emb.shape[1]

    @property
    def f32(self) -> _Placement:
        return dict(device=self.emb.device, dtype=torch.float32)


def _prepare(emb, offsets, text, logit_scale: float, blocks: dict | None) -> _Launch:
    """Checks, unit-stride inputs (the last dimension is read in BLOCK_K runs; a no-op when it
    already is), the dot dtype and precision, and the block choices."""
    _check(emb, offsets, text)
    emb = emb if emb.stride(1) == 1 else emb.contiguous()
    text = text if text.stride(1) == 1 else text.contiguous()
    offsets = offsets.contiguous()
    m, d = emb.shape
    c, b = text.shape[0], offsets.numel() - 1
    dot_dtype = emb.dtype if emb.dtype == text.dtype else torch.float32
    precision = "ieee" if dot_dtype == torch.float32 else "tf32"  # tf32: ignored for 16-bit
    cfg = pick_blocks(m, b, c, d, dot_dtype, emb.device, blocks)
    return _Launch(emb, text, offsets, cfg, float(logit_scale) * LOG2E, _TL_DTYPES[dot_dtype], precision)


def _row_terms(run: _Launch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(colscale [C], rowscale [M], lse [CSPLIT, M]): the class norms, and when C needs several
    class blocks the per-row scales and log-sum-exps (the fused path reads neither)."""
    m, _, c, d = run.sizes
    cfg = run.cfg
    colscale = torch.empty(c, **run.f32)
    inv_norm_kernel[(triton.cdiv(c, 16),)](
        run.text, colscale, run.text.stride(0), c, d, 1.0, BLOCK_R=16, BLOCK_D=pow2(d, hi=128), num_warps=4
    )
    if cfg.fused:
        return colscale, colscale, colscale  # not read by the fused kernel
    rowscale, lse = torch.empty(m, **run.f32), torch.empty(cfg.csplit, m, **run.f32)
    row_stats_kernel[(triton.cdiv(m, cfg.block_m), cfg.csplit)](
        run.emb,
        run.text,
        colscale,
        rowscale,
        lse,
        run.emb.stride(0),
        run.text.stride(0),
        m,
        c,
        d,
        run.scale,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        CSPLIT=cfg.csplit,
        DOT_DTYPE=run.dot_tl,
        PRECISION=run.precision,
        num_warps=8 if cfg.block_m * cfg.block_n >= 128 * 128 else 4,
        num_stages=cfg.num_stages,
    )
    return colscale, rowscale, lse


def _outputs(run: _Launch, out: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S_g, alpha, beta) [B, C] float32, in ``out`` when given; with a split over tiles, alpha
    and beta start from the identities of the atomic max / min that combine the parts."""
    _, b, c, _ = run.sizes
    f32, split, dev = run.f32, run.cfg.split, run.emb.device
    if out is not None:
        if out.shape != (b, 3, c) or out.dtype != torch.float32 or not out.is_contiguous() or out.device != dev:
            raise ValueError(f"out must be a contiguous float32 [{b}, 3, {c}] tensor on {dev}")
        s_g, alpha, beta = out[:, 0], out[:, 1], out[:, 2]
        if split > 1:
            alpha.zero_()
            beta.fill_(float("inf"))
        return s_g, alpha, beta
    if split > 1:
        return torch.empty(b, c, **f32), torch.zeros(b, c, **f32), torch.full((b, c), float("inf"), **f32)
    return torch.empty(b, c, **f32), torch.empty(b, c, **f32), torch.empty(b, c, **f32)


def _launch_segments(run: _Launch, terms, s_g, alpha, beta, tiles, keep_tiles: bool) -> None:
    """The per-image scores: one program per (class block, tile split, group of images)."""
    m, b, c, d = run.sizes
    cfg = run.cfg
    n_cblocks = triton.cdiv(c, cfg.block_n)
    colscale, rowscale, lse = terms
    segment_scores_kernel[(n_cblocks * cfg.split * triton.cdiv(b, cfg.group),)](
        run.emb,
        run.text,
        run.offsets,
        colscale,
        rowscale,
        lse,
        s_g,
        alpha,
        beta,
        tiles,
        run.emb.stride(0),
        run.text.stride(0),
        s_g.stride(0),
        m,
        b,
        c,
        d,
        run.scale,
        BLOCK_M=cfg.seg_block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        N_CBLOCKS=n_cblocks,
        GROUP=cfg.group,
        SPLIT=cfg.split,
        CSPLIT=cfg.csplit,
        FUSED=cfg.fused,
        KEEP_TILES=keep_tiles,
        DOT_DTYPE=run.dot_tl,
        PRECISION=run.precision,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )


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
    run = _prepare(emb, offsets, text, logit_scale, blocks)
    terms = _row_terms(run)
    s_g, alpha, beta = _outputs(run, out)
    m, b, c, _ = run.sizes
    tiles = torch.empty(m - b, c, device=run.emb.device, dtype=torch.float16) if keep_tiles else s_g
    _launch_segments(run, terms, s_g, alpha, beta, tiles, keep_tiles)
    return Scores(s_g, alpha, beta, tiles if keep_tiles else None)
