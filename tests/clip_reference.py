"""An independent, per-image reference of docs/algorithm.md §2.2-2.5, written plainly: PIL crops one tile
at a time, open_clip's own eval transform, float64 encoders, numpy formulas."""

from __future__ import annotations

import copy
import math

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from cdul.extractor.clip_model import register_model


def make_checkpoint(path, arch: str = "cdul-tiny-rn", seed: int = 1, logit_scale: float | None = None):
    """A random-weight CLIP saved as a state dict, so the extractor and the reference share weights."""
    register_model(arch)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None).eval()
    if logit_scale is not None:
        model.logit_scale.data.fill_(math.log(logit_scale))
    torch.save(model.state_dict(), path)
    return model


class Reference:
    def __init__(self, model, arch: str, classes: list[str], template: str = "a photo of a {}."):
        self.model = copy.deepcopy(model).double().eval()
        size = self.model.visual.image_size
        self.size = size[0] if isinstance(size, (tuple, list)) else size
        self.transform = open_clip.image_transform(self.size, is_train=False)
        tokens = open_clip.get_tokenizer(arch)([template.format(c) for c in classes])
        with torch.no_grad():
            self.text = F.normalize(self.model.encode_text(tokens), dim=-1)
        self.scale = float(self.model.logit_scale.detach().exp())

    @staticmethod
    def open(path) -> Image.Image:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")

    @staticmethod
    def boxes(width: int, height: int, snippet: int | None = None, tile_px: int | None = None):
        """(left, upper, right, lower) PIL boxes of the tiles, row-major, as docs/algorithm.md §2.3 says."""
        if snippet is not None:
            h, w = height // snippet, width // snippet
            rows = cols = snippet if h and w else 0
        else:
            h = w = tile_px
            rows, cols = height // tile_px, width // tile_px
        return [(j * w, i * h, (j + 1) * w, (i + 1) * h) for i in range(rows) for j in range(cols)]

    @torch.no_grad()
    def embed(self, image: Image.Image) -> np.ndarray:
        x = self.transform(image).double()[None]
        return F.normalize(self.model.encode_image(x), dim=-1)[0].numpy()

    def probs(self, emb: np.ndarray) -> np.ndarray:
        logits = self.scale * emb @ self.text.numpy().T
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def scores(self, path, snippet: int | None = 3, tile_px: int | None = None) -> dict:
        image = self.open(path)
        g_emb = self.embed(image)
        s_g = self.probs(g_emb)
        tiles = [
            self.probs(self.embed(image.crop(box))) for box in self.boxes(image.width, image.height, snippet, tile_px)
        ]
        if tiles:
            t = np.stack(tiles)
            alpha, beta = t.max(0), t.min(0)
        else:
            t, alpha, beta = np.zeros((0, len(s_g))), s_g, s_g
        return {
            "global": s_g,
            "alpha": alpha,
            "beta": beta,
            "tiles": t,
            "emb": g_emb,
            "hw": (image.height, image.width),
        }


def y0(s_g, alpha, beta, zeta: float, lam: float):
    """Eq. 5-6 element by element, the slow way."""
    out = np.empty_like(s_g)
    for c in range(len(s_g)):
        gamma = 1.0 if alpha[c] >= zeta else 0.0
        s_ag = gamma * alpha[c] + (1.0 - gamma) * beta[c]
        out[c] = 0.5 * (s_g[c] + s_ag + lam * abs(s_g[c] - s_ag))
    return out
