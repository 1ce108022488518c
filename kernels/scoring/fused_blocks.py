"""The launch choices of the fused scorer: block sizes, and how images and class blocks are
dealt to programs. ``pick_blocks`` makes every choice in one place, from the shapes and the
GPU's SM count; ``score_segments_triton(blocks=...)`` overrides any of them (the tests force
the multi-block paths at small sizes that way).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import triton

FUSED_MAX_CLASSES = 256  # up to this many classes, one class block and a single pass


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


def pow2(n: int, lo: int = 16, hi: int | None = None) -> int:
    """The smallest power of two >= n, at least ``lo`` and at most ``hi``."""
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
    block_k = o.pop("block_k", pow2(d, hi=32 if dot_dtype == torch.float32 else 64))
    block_n = o.pop("block_n", pow2(c) if pow2(c) <= FUSED_MAX_CLASSES else 128)
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
