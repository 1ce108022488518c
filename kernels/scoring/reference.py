"""The reference: plain torch, float32, the C x M probabilities in memory (see the package
docstring for the layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import Scores


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
