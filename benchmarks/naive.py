"""The baseline, written the way the public reproduction extracted: one image at a time,
PIL decode, tiles cut one by one with PIL, open_clip's PIL transform per crop, float32, a
batch of one image's crops, one output file per image."""

from __future__ import annotations

import os
import time

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from cdul.extractor.clip_model import register_model


def load(model: str, classes: list[str], device: str):
    arch = register_model(model)
    torch.manual_seed(0)
    net = open_clip.create_model(arch, pretrained=None).to(device).eval()
    size = net.visual.image_size
    preprocess = open_clip.image_transform(size if isinstance(size, int) else size[0], is_train=False)
    with torch.no_grad():
        tokens = open_clip.get_tokenizer(arch)([f"a photo of a {c}." for c in classes]).to(device)
        text = F.normalize(net.encode_text(tokens).float(), dim=-1)
    return net, preprocess, text, float(net.logit_scale.exp())


def boxes(width: int, height: int, snippet: int | None, tile_px: int | None):
    if snippet:
        h, w = height // snippet, width // snippet
        n = snippet if h and w else 0
        return [(j * w, i * h, (j + 1) * w, (i + 1) * h) for i in range(n) for j in range(n)]
    return [
        (j * tile_px, i * tile_px, (j + 1) * tile_px, (i + 1) * tile_px)
        for i in range(height // tile_px)
        for j in range(width // tile_px)
    ]


@torch.no_grad()
def run(
    paths: list[str],
    out_dir: str,
    net,
    preprocess,
    text,
    scale: float,
    device: str,
    snippet: int | None = 3,
    tile_px: int | None = None,
) -> dict:
    """-> {"images", "tiles", "seconds"}, writing one .npy per image to out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    tiles = 0
    start = time.perf_counter()
    for path in paths:
        img = Image.open(path).convert("RGB")
        crops = [img] + [img.crop(b) for b in boxes(img.width, img.height, snippet, tile_px)]
        x = torch.stack([preprocess(c) for c in crops]).to(device)
        e = F.normalize(net.encode_image(x).float(), dim=-1)
        p = (scale * e @ text.T).softmax(-1).cpu().numpy()
        tile_p = p[1:] if len(p) > 1 else p[:1]
        np.save(os.path.join(out_dir, os.path.basename(path) + ".npy"), np.stack([p[0], tile_p.max(0), tile_p.min(0)]))
        tiles += len(crops) - 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"images": len(paths), "tiles": tiles, "seconds": time.perf_counter() - start}
