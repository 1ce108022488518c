"""Scoring: CLIP embeddings of each image's views -> S_g, alpha, beta (docs/algorithm.md §2.2-2.4).

Input layout ("segments"): the encoder outputs of B images stacked in one [M, D] matrix.
Image b owns rows ``offsets[b]:offsets[b+1]``; the first of them is its global view and
the rest are its tiles (zero or more). For each image:

    p_j     = softmax_c(s * <e_j / |e_j|, t_c>)        for every row j of the image
    S_g     = p_global
    alpha_c = max over tiles of p_j[c],  beta_c = min over tiles of p_j[c]
    (no tiles: alpha = beta = S_g, the local view falls back to the global one)

``score_segments`` is the one entry point: it dispatches to the fused Triton kernel for
CUDA tensors when it is available and to the plain-torch reference otherwise (CPU, or
``CDUL_KERNELS=torch``; see ``cdul.kernels.dispatch``).
"""

from __future__ import annotations

import torch

from ..dispatch import fused_available, pick_backend
from .checks import Scores, check_segments, check_shapes
from .reference import score_segments_torch

__all__ = ["Scores", "check_segments", "check_shapes", "score_segments", "score_segments_torch"]


def _triton_available() -> bool:
    return fused_available(__name__)


def score_segments(
    emb,
    offsets,
    text,
    logit_scale: float,
    keep_tiles: bool = False,
    *,
    backend: str | None = None,
    out: torch.Tensor | None = None,
) -> Scores:
    """Score B images whose view embeddings are stacked as segments (see module docstring).

    Offsets given on the CPU are validated, then copied to the embeddings' device. For speed
    on a GPU pass fp16 (or bf16) embeddings and class matrix of the same dtype. ``backend``
    (auto, torch or triton) overrides ``CDUL_KERNELS``. ``out``, a contiguous float32
    [B, 3, C] tensor, receives S_g, alpha and beta side by side, and the returned scores are
    views of it."""
    check_segments(emb, offsets, text)
    offsets = offsets.to(emb.device, non_blocking=True)
    if pick_backend(emb, __name__, backend) == "triton":
        from .fused import score_segments_triton

        return score_segments_triton(emb, offsets, text, logit_scale, keep_tiles=keep_tiles, out=out)
    sc = score_segments_torch(emb, offsets, text, logit_scale, keep_tiles=keep_tiles)
    if out is None:
        return sc
    out.copy_(torch.stack([sc.global_, sc.alpha, sc.beta], dim=1))
    return Scores(out[:, 0], out[:, 1], out[:, 2], sc.tiles)
