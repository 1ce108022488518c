"""The scoring op's record and its input checks, shared by the reference and the fused kernel."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Scores:
    global_: torch.Tensor  # [B, C] float32
    alpha: torch.Tensor  # [B, C] float32
    beta: torch.Tensor  # [B, C] float32
    tiles: torch.Tensor | None  # [M - B, C] float16, tile rows in segment order, when asked for


_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_shapes(emb: torch.Tensor, offsets: torch.Tensor, text: torch.Tensor) -> None:
    """Shapes and dtypes: nothing that reads a value (no device sync)."""
    if emb.dim() != 2 or text.dim() != 2:
        raise ValueError(f"emb and text must be 2-D, got {tuple(emb.shape)} and {tuple(text.shape)}")
    if emb.shape[1] != text.shape[1]:
        raise ValueError(f"embedding width {emb.shape[1]} != class embedding width {text.shape[1]}")
    if emb.shape[1] == 0 or text.shape[0] == 0:
        raise ValueError(f"need D >= 1 and C >= 1, got D={emb.shape[1]}, C={text.shape[0]}")
    if offsets.dim() != 1 or offsets.numel() < 2 or offsets.numel() - 1 > emb.shape[0]:
        raise ValueError(
            f"offsets must be 1-D with B + 1 entries, 1 <= B <= M={emb.shape[0]}, got shape {tuple(offsets.shape)}"
        )
    if offsets.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"offsets must be int32 or int64, got {offsets.dtype}")
    for name, t in (("emb", emb), ("text", text)):
        if t.dtype not in _DTYPES:
            raise ValueError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")


def check_segments(emb: torch.Tensor, offsets: torch.Tensor, text: torch.Tensor) -> None:
    """Shapes, and the offsets' values where they are on the CPU (free to read there)."""
    check_shapes(emb, offsets, text)
    if offsets.is_cuda:  # reading values back from the GPU would stall the stream: pass CPU offsets
        return
    counts = offsets[1:] - offsets[:-1]
    if int(offsets[0]) != 0 or int(offsets[-1]) != emb.shape[0] or bool((counts < 1).any()):
        raise ValueError("offsets must start at 0, end at emb.shape[0], and give every image >= 1 row")
