"""Dense local scores in one forward pass (docs/algorithm.md §4): a ViT whose last block attends with
SCLIP's correlative self-attention (Wang et al., ECCV 2024), so that each patch token
describes its own region.

For an input x of S x S pixels (grid g = S // patch, P = g * g patches), with the blocks of
open_clip's ``VisionTransformer``:

    z = ln_pre(conv1(x) tokens, class token first, + position embeddings)
        (learnt at the model's input size R; at another S they are resized as SCLIP's
        ``interpolate_pos_encoding`` does: bicubic, scale factor (g + 0.1) / g_R)
    z = every block but the last, unchanged
    last block, per head with q, k, v = in_proj(ln_1(z)) and d the head width:
        A   = softmax(q q^T / sqrt(d)) + softmax(k k^T / sqrt(d))      (correlative)
        z'  = z + ls_1(out_proj(A v))
        z'' = z' + ls_2(mlp(ln_2(z')))                                  (SCLIP keeps both)
    patch features = ln_post(z''[1:]) @ proj                           [P, D]

The class token takes the standard path through the last block (softmax(q_0 k^T / sqrt(d))
attention; every other token as above, since attention is per query), so at S = R its
ln_post and proj give exactly the model's usual image embedding: S_g of this pass equals
the tiles mode's S_g. At S != R the class token would see resized position embeddings, so
the global embedding comes from a normal pass at R instead.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .options import MAX_DENSE_PATCHES

if TYPE_CHECKING:
    from open_clip.transformer import VisionTransformer

    from .encoder import Encoder

REFUSAL = "--local dense needs a ViT image tower of open_clip"


def check_dense_tower(visual: torch.nn.Module) -> None:
    """Raise ValueError (one line) unless ``visual`` is a plain open_clip ViT."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    name = type(visual).__name__
    if not isinstance(visual, VisionTransformer):
        raise ValueError(f"{REFUSAL}; this model's tower is {name}")
    if visual.attn_pool is not None or visual.proj is None:
        raise ValueError(f"{REFUSAL} with class-token pooling and a projection (this one pools otherwise)")
    if getattr(visual, "pool_type", "tok") != "tok":
        raise ValueError(f"{REFUSAL} pooled by its class token (this one pools by {visual.pool_type})")
    last = visual.transformer.resblocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or not last.attn._qkv_same_embed_dim:
        raise ValueError(f"{REFUSAL} whose blocks use nn.MultiheadAttention (this one has {type(last).__name__})")


def resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """[1 + g_R^2, W] learnt position embeddings -> [1 + grid^2, W], as SCLIP resizes them."""
    n = pos.shape[0] - 1
    g0 = math.isqrt(n)
    if grid == g0:
        return pos
    w = pos.shape[1]
    patch = pos[1:].reshape(1, g0, g0, w).permute(0, 3, 1, 2)
    factor = (grid + 0.1) / g0
    patch = F.interpolate(patch.float(), scale_factor=(factor, factor), mode="bicubic").to(pos.dtype)
    patch = patch.permute(0, 2, 3, 1).reshape(grid * grid, w)
    return torch.cat([pos[:1], patch])


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, w = t.shape
    return t.reshape(b, n, heads, w // heads).transpose(1, 2)  # [B, H, N, d]


def _merge(t: torch.Tensor) -> torch.Tensor:
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


def last_block(blk, z: torch.Tensor) -> torch.Tensor:
    """The last block on [B, 1 + P, W] tokens: the class token the standard way, the patch
    tokens with correlative self-attention (module docstring).

    Each term of A v is one attention, softmax(q q^T / sqrt(d)) v = sdpa(q, q, v), so the
    two [P, 1 + P] weight matrices are never written out: ``scaled_dot_product_attention``
    runs each as one fused kernel where the device has one (flash or memory-efficient
    attention on CUDA), and the sum is taken on the [P, d] outputs."""
    attn = blk.attn
    h = attn.num_heads
    q, k, v = (_heads(t, h) for t in F.linear(blk.ln_1(z), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1))
    sdpa = F.scaled_dot_product_attention  # its default scale is 1 / sqrt(d)
    patches = sdpa(q[:, :, 1:], q, v) + sdpa(k[:, :, 1:], k, v)
    cls = sdpa(q[:, :, :1], k, v)
    z = z + blk.ls_1(attn.out_proj(_merge(torch.cat([cls, patches], dim=2))))
    return z + blk.ls_2(blk.mlp(blk.ln_2(z)))


class DenseTower(torch.nn.Module):
    """[B, 3, S, S] views -> [B, 1 + P, D]: the class token's embedding, then every patch's."""

    visual: VisionTransformer  # what check_dense_tower lets through

    def __init__(self, visual: torch.nn.Module):
        super().__init__()
        check_dense_tower(visual)
        self.visual = visual
        self.patch = self.visual.patch_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.visual
        grid = x.shape[-1] // self.patch
        z = v.conv1(x)
        z = z.reshape(z.shape[0], z.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(z.dtype).expand(z.shape[0], 1, -1)
        z = torch.cat([cls, z], dim=1) + resize_pos_embed(v.positional_embedding, grid).to(z.dtype)
        z = v.ln_pre(v.patch_dropout(z))
        first = not v.transformer.batch_first
        z = z.transpose(0, 1) if first else z
        for blk in v.transformer.resblocks[:-1]:
            z = blk(z)
        z = z.transpose(0, 1) if first else z
        z = last_block(v.transformer.resblocks[-1], z)
        return v.ln_post(z) @ v.proj


def dense_grid(model_cfg: dict, size: int) -> int:
    """Patches per side of a pass at ``size`` px, from an open_clip model config."""
    vision = model_cfg.get("vision_cfg", {})
    if "timm_model_name" in vision and vision.get("timm_model_name"):
        raise ValueError(f"{REFUSAL}; this model's tower is a timm model")
    if isinstance(vision.get("layers"), (list, tuple)) or "patch_size" not in vision:
        raise ValueError(f"{REFUSAL}; this model's tower is a ResNet")
    if vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok":
        raise ValueError(f"{REFUSAL} pooled by its class token (this one pools otherwise)")
    patch = int(vision["patch_size"])
    if size < patch:
        raise ValueError(f"--dense-size {size} is smaller than one {patch} px patch")
    grid = size // patch
    if grid * grid > MAX_DENSE_PATCHES:
        most = math.isqrt(MAX_DENSE_PATCHES) * patch
        raise ValueError(
            f"--dense-size {size} makes {grid} x {grid} patches a pass; at most {MAX_DENSE_PATCHES} "
            f"(--dense-size {most} for this model's {patch} px patches)"
        )
    return grid


class DenseEncoder:
    """The encoder stage of dense mode: ``(global views or None, dense views)`` of n images
    -> [n * (1 + P), D] rows, each image's class token (or, with ``global_tower``, its
    embedding from a normal pass on the global views) first, then its P patches."""

    def __init__(self, dense: Encoder, global_encoder: Encoder | None = None):
        self.dense, self.glob = dense, global_encoder
        self.in_dtype = dense.in_dtype
        self.rows_per_image = 0

    def __call__(self, views, n: int) -> torch.Tensor:
        global_views, dense_views = views
        out = self.dense(dense_views, n)  # [n, 1 + P, D]
        if self.glob is not None:
            out = torch.cat([self.glob(global_views, n)[:, None].to(out.dtype), out[:, 1:]], dim=1)
        self.rows_per_image = out.shape[1]
        return out.reshape(-1, out.shape[-1])

    @property
    def calls(self) -> int:
        return self.dense.calls + (self.glob.calls if self.glob else 0)

    @property
    def rows(self) -> int:
        return self.dense.rows + (self.glob.rows if self.glob else 0)
