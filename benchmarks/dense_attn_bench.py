"""Dense mode's last block: correlative attention written out vs fused.

    python -m cdul.benchmarks.dense_attn_bench [--quick] [--batch 32] [--sizes 224,448]

The last block of a dense pass (``extractor.dense.last_block``) gives every patch token
softmax(q q^T / sqrt(d)) v + softmax(k k^T / sqrt(d)) v and the class token the standard
attention. Two ways to compute it, on a ViT-B-16-shaped block (width 768, 12 heads; random
weights, which cost what trained ones do):

- ``explicit``: the two [1 + P, 1 + P] weight matrices per head written out and summed, as
  SCLIP's ``custom_attn`` does, then one product with v (cdul before the fused form);
- ``fused``: ``last_block``, one ``scaled_dot_product_attention`` call per term, the weight
  matrices never stored.

Per input size S (P = (S / 16)^2 patches) it records the block's time per image, the
ratio explicit / fused, the largest difference between the two outputs and, on CUDA, the
peak memory of each. fp16 on CUDA, float32 on the CPU.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from cdul.extractor.dense import _heads, _merge, last_block

from .common import record, timeit

SUBJECT = "dense_attn"


def explicit_block(blk, z: torch.Tensor) -> torch.Tensor:
    """The last block with the summed weight matrices written out."""
    attn = blk.attn
    qkv = F.linear(blk.ln_1(z), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (_heads(t, attn.num_heads) for t in qkv)
    scale = q.shape[-1] ** -0.5
    csa = torch.softmax(q @ q.transpose(-1, -2) * scale, dim=-1)
    csa = csa + torch.softmax(k @ k.transpose(-1, -2) * scale, dim=-1)
    std0 = torch.softmax(q[:, :, :1] @ k.transpose(-1, -2) * scale, dim=-1)
    weights = torch.cat([std0, csa[:, :, 1:]], dim=2)
    z = z + blk.ls_1(attn.out_proj(_merge(weights @ v)))
    return z + blk.ls_2(blk.mlp(blk.ln_2(z)))


def block(width: int, heads: int, device: torch.device, dtype: torch.dtype):
    from open_clip.transformer import ResidualAttentionBlock

    torch.manual_seed(0)
    return ResidualAttentionBlock(width, heads, mlp_ratio=4.0, batch_first=True).to(device, dtype).eval()


def measure(blk, batch: int, size: int, patch: int, device: torch.device, dtype: torch.dtype, repeat: int) -> dict:
    n = 1 + (size // patch) ** 2
    z = torch.randn(batch, n, blk.attn.embed_dim, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    out, secs, peak = {}, {}, {}
    with torch.no_grad():
        for name, fn in (("explicit", explicit_block), ("fused", last_block)):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            secs[name] = timeit(lambda fn=fn: fn(blk, z), warmup=2, repeat=repeat, sync=sync)
            out[name] = fn(blk, z).float()
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated(device) / 2**20
    diff = (out["explicit"] - out["fused"]).abs().max().item()
    return {"secs": secs, "peak": peak, "diff": diff, "tokens": n}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small block and input (checks the script)")
    p.add_argument("--batch", type=int, default=32, help="images per call")
    p.add_argument("--sizes", default="224,448", help="input sizes S in pixels, comma-separated")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per variant (the median is kept)")
    a = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    width, heads, patch = (64, 4, 16) if a.quick else (768, 12, 16)
    sizes = [64, 128] if a.quick else [int(s) for s in a.sizes.split(",")]
    batch = 2 if a.quick else a.batch
    blk = block(width, heads, device, dtype)
    for size in sizes:
        m = measure(blk, batch, size, patch, device, dtype, a.repeat)
        per = {k: v / batch for k, v in m["secs"].items()}
        ratio = per["explicit"] / per["fused"]
        params = {"width": width, "heads": heads, "size": size, "tokens": m["tokens"], "batch": batch}
        params["dtype"] = str(dtype)
        line = (
            f"S={size} ({m['tokens']} tokens): explicit {1e3 * per['explicit']:.3f} ms/img, "
            f"fused {1e3 * per['fused']:.3f} ms/img, explicit/fused {ratio:.2f}x, max diff {m['diff']:.2e}"
        )
        if m["peak"]:
            line += f", peak MiB {m['peak']['explicit']:.0f} -> {m['peak']['fused']:.0f}"
        print(line)
        for name in ("explicit", "fused"):
            metrics = {"ms_per_image": (1e3 * per[name], "ms")}
            if m["peak"]:
                metrics["peak_mib"] = (m["peak"][name], "MiB")
            record(SUBJECT, name, params, metrics)
        record(SUBJECT, "ratio", params, {"explicit_over_fused": (ratio, "x"), "max_abs_diff": (m["diff"], "")})


if __name__ == "__main__":
    main()
