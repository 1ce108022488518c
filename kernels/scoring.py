"""Scoring: CLIP embeddings of each image's views -> S_g, alpha, beta (SPEC 1.2-1.4).

Input layout ("segments"): the encoder outputs of B images stacked in one [M, D] matrix.
Image b owns rows ``offsets[b]:offsets[b+1]``; the first of them is its global view and
the rest are its tiles (zero or more). For each image:

    p_j     = softmax_c(s * <e_j / |e_j|, t_c>)        for every row j of the image
    S_g     = p_global
    alpha_c = max over tiles of p_j[c],  beta_c = min over tiles of p_j[c]
    (no tiles: alpha = beta = S_g, the local view falls back to the global one)

``score_segments`` is the one entry point: it dispatches to the fused Triton kernel for
CUDA tensors when it is available and to the plain-torch reference otherwise (CPU, or
``CDUL_KERNELS=torch``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Scores:
    global_: torch.Tensor  # [B, C] float32
    alpha: torch.Tensor  # [B, C] float32
    beta: torch.Tensor  # [B, C] float32
    tiles: torch.Tensor | None  # [M - B, C] float16, tile rows in segment order, when asked for


def check_segments(emb: torch.Tensor, offsets: torch.Tensor, text: torch.Tensor) -> None:
    if emb.dim() != 2 or text.dim() != 2:
        raise ValueError(f"emb and text must be 2-D, got {tuple(emb.shape)} and {tuple(text.shape)}")
    if emb.shape[1] != text.shape[1]:
        raise ValueError(f"embedding width {emb.shape[1]} != class embedding width {text.shape[1]}")
    if offsets.dim() != 1 or offsets.numel() < 2:
        raise ValueError("offsets must be 1-D with at least 2 entries (B + 1)")
    if offsets.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"offsets must be int32 or int64, got {offsets.dtype}")
    if offsets.is_cuda:  # reading values back from the GPU would stall the stream: pass CPU offsets
        return
    counts = offsets[1:] - offsets[:-1]
    if int(offsets[0]) != 0 or int(offsets[-1]) != emb.shape[0] or bool((counts < 1).any()):
        raise ValueError("offsets must start at 0, end at emb.shape[0], and give every image >= 1 row")


def score_segments_torch(emb, offsets, text, logit_scale: float, keep_tiles: bool = False) -> Scores:
    """The reference: plain torch, float32, the C x M probabilities in memory."""
    offsets = offsets.to(device=emb.device, dtype=torch.int64)
    b = offsets.numel() - 1
    e = F.normalize(emb.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    probs = torch.softmax(float(logit_scale) * (e @ t.T), dim=-1)  # [M, C]
    heads = offsets[:-1]
    s_g = probs[heads]
    counts = offsets[1:] - heads
    seg = torch.repeat_interleave(torch.arange(b, device=emb.device), counts)
    is_tile = torch.ones(emb.shape[0], dtype=torch.bool, device=emb.device)
    is_tile[heads] = False
    tile_probs, tile_seg = probs[is_tile], seg[is_tile]
    index = tile_seg[:, None].expand_as(tile_probs)
    alpha = s_g.clone().scatter_reduce_(0, index, tile_probs, "amax", include_self=False)
    beta = s_g.clone().scatter_reduce_(0, index, tile_probs, "amin", include_self=False)
    return Scores(s_g, alpha, beta, tile_probs.half() if keep_tiles else None)


def _backend(emb: torch.Tensor) -> str:
    choice = os.environ.get("CDUL_KERNELS", "auto").lower()
    if choice not in ("auto", "torch", "triton"):
        raise ValueError(f"CDUL_KERNELS must be auto, torch or triton, not {choice!r}")
    if choice == "auto":
        return "triton" if emb.is_cuda and _triton_available() else "torch"
    return choice


def _triton_available() -> bool:
    try:
        from . import triton_scoring  # noqa: F401
    except ImportError:
        return False
    return True


def score_segments(emb, offsets, text, logit_scale: float, keep_tiles: bool = False) -> Scores:
    """Score B images whose view embeddings are stacked as segments (see module docstring).

    Offsets given on the CPU are validated, then copied to the embeddings' device. For speed
    on a GPU pass fp16 (or bf16) embeddings and class matrix of the same dtype."""
    check_segments(emb, offsets, text)
    offsets = offsets.to(emb.device, non_blocking=True)
    if _backend(emb) == "triton":
        from .triton_scoring import score_segments_triton

        return score_segments_triton(emb, offsets, text, logit_scale, keep_tiles=keep_tiles)
    return score_segments_torch(emb, offsets, text, logit_scale, keep_tiles=keep_tiles)
