"""Independent references for dense mode, written the way the published code does it:
SCLIP's ``VisionTransformer.forward`` / ``custom_attn(csa=True)`` / ``interpolate_pos_encoding``
(wangf3014/SCLIP, clip/model.py) on one image at a time, in float64, and PIAA's
``param_estimation`` and its two fits (akang-wang/PIAA, learn.py) and scoring (test.py), in
float32 as that code runs them (its ``.float()`` casts; on the CPU, where no fp16 autocast applies)."""

from __future__ import annotations

import math

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from clip_reference import Reference
from torch import nn


def interpolate_pos_encoding(visual, x, w, h):
    """SCLIP's, with open_clip's attribute names."""
    pos = visual.positional_embedding
    npatch = x.shape[1] - 1
    N = pos.shape[0] - 1
    if npatch == N and w == h:
        return pos
    class_pos_embed = pos[[0]]
    patch_pos_embed = pos[1:]
    dim = x.shape[-1]
    w0 = w // visual.patch_size[0]
    h0 = h // visual.patch_size[1]
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos_embed = nn.functional.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
        mode="bicubic",
    )
    assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def custom_attn(attn_layer, x, csa=True):
    """SCLIP's custom_attn on LND tokens."""
    num_heads = attn_layer.num_heads
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim**-0.5
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    if csa:
        q_attn = torch.bmm(q, q.transpose(1, 2)) * scale
        k_attn = torch.bmm(k, k.transpose(1, 2)) * scale
        attn_weights = F.softmax(q_attn, dim=-1) + F.softmax(k_attn, dim=-1)
    else:
        attn_weights = F.softmax(torch.bmm(q * scale, k.transpose(1, 2)), dim=-1)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(attn_output)


@torch.no_grad()
def sclip_forward(visual, x):
    """SCLIP's forward(return_all=True, csa=True): [1, 3, S, S] -> [1, 1 + P, D]."""
    _, _, w, h = x.shape
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat(
        [visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype), x], dim=1
    )
    x = x + interpolate_pos_encoding(visual, x, w, h).to(x.dtype)
    x = visual.ln_pre(x)
    for blk in visual.transformer.resblocks[:-1]:  # open_clip's blocks are batch first
        x = blk(x)
    x = x.permute(1, 0, 2)  # NLD -> LND
    for blk in visual.transformer.resblocks[-1:]:
        x = x + custom_attn(blk.attn, blk.ln_1(x), csa=True)
        x = x + blk.mlp(blk.ln_2(x))
    x = x.permute(1, 0, 2)
    return visual.ln_post(x) @ visual.proj


class DenseReference(Reference):
    """Per image: the patch features of SCLIP's pass at ``size`` px and the scores over them."""

    def dense(self, path, size: int | None = None) -> dict:
        size = size or self.size
        image = self.open(path)
        x = open_clip.image_transform(size, is_train=False)(image).double()[None]
        feats = F.normalize(sclip_forward(self.model.visual, x)[0, 1:], dim=-1).numpy()
        probs = np.stack([self.probs(f) for f in feats])
        return {"patches": feats, "alpha": probs.max(0), "beta": probs.min(0), "global": self.probs(self.embed(image))}


def piaa_bank(feats: np.ndarray, rows: np.ndarray, text: np.ndarray, k: int) -> dict:
    """learn.py's bank: per predicted class, the k patches of lowest entropy -> {class: set of (row, patch)}."""
    f = torch.from_numpy(feats)
    logits = f @ torch.from_numpy(text).T
    probs = F.softmax(logits * 60.0, dim=-1)
    ent = -(probs * probs.clamp_min(1e-10).log()).sum(dim=-1)
    pred = logits.argmax(dim=-1)
    out = {}
    for c in pred.unique().tolist():
        idx = torch.where(pred == c)[0]
        top = idx[torch.topk(ent[idx], min(k, len(idx)), largest=False).indices]
        out[c] = {tuple(rows[i]) for i in top.tolist()}
    return out


def param_estimation(image_features, banks, initial_mean):
    """learn.py's, step by step but for the device: float32 throughout."""
    sorted_classes = sorted(banks.keys())
    vecs = torch.cat([item[0].unsqueeze(0) for c in sorted_classes for item in banks[c]], dim=0).float()
    labels = torch.tensor([class_idx for class_idx in sorted_classes for _ in banks[class_idx]])
    cache_pro = torch.cat([item[2].unsqueeze(0) for c in sorted_classes for item in banks[c]], dim=0).float()
    mus = torch.cat(
        [
            (
                (cache_pro[labels == i][:, i].unsqueeze(1) * vecs[labels == i]).sum(dim=0)
                / cache_pro[labels == i][:, i].sum()
            ).unsqueeze(0)
            if i in banks
            else initial_mean[i].unsqueeze(0)
            for i in range(initial_mean.shape[0])
        ]
    )
    center_vecs = torch.cat([vecs[labels == i] - mus[i].unsqueeze(0) for i in banks])
    cov_inv = center_vecs.shape[1] * torch.linalg.pinv(
        (center_vecs.shape[0] - 1) * center_vecs.T.cov() + center_vecs.T.cov().trace() * torch.eye(center_vecs.shape[1])
    )
    ps = torch.ones(initial_mean.shape[0]) * 1.0 / initial_mean.shape[0]
    W = torch.einsum("nd, dc -> cn", mus, cov_inv)
    b = ps.log() - torch.einsum("nd, dc, nc -> n", mus, cov_inv, mus) / 2
    return W, b


def _banks(features, probs):
    preds = probs.argmax(dim=-1)
    banks = {}
    for pred_cls in preds.unique().tolist():
        mask = preds == pred_cls
        banks[pred_cls] = [(f, i, p) for i, (f, p) in enumerate(zip(features[mask], probs[mask]))]
    return banks


def piaa_learn(bank_feats: torch.Tensor, text: torch.Tensor, temperature: float = 100.0, kept=None):
    """learn.py after the bank is built: fit, keep the entries above mean + std, fit again.
    ``kept``: a list that receives, per first-fit class, (class, entries it predicts, entries kept)."""
    text = text.float()
    combined = F.normalize(bank_feats.float(), dim=-1)
    probs = F.softmax(combined @ text.T * 60.0, dim=-1)
    W, b = param_estimation(combined, _banks(combined, probs), text)
    logits_gda = combined @ W + b.unsqueeze(0)
    probs_gda = F.softmax(logits_gda * temperature, dim=-1)
    preds_gda = logits_gda.argmax(dim=-1)
    good_f, good_p = [], []
    for pred_cls in sorted(preds_gda.unique().tolist()):
        mask = preds_gda == pred_cls
        p = probs_gda[mask][:, pred_cls]
        good = p >= p.mean().item() + p.std().item()
        if kept is not None:
            kept.append((pred_cls, int(mask.sum()), int(good.sum())))
        good_f.append(combined[mask][good])
        good_p.append(probs_gda[mask][good])
    combined = F.normalize(torch.cat(good_f), dim=-1)
    return param_estimation(combined, _banks(combined, torch.cat(good_p)), text)


def piaa_test(cls_feats, patch_feats, text, W, b, cls=80, patch=200):
    """test.py's combination for one batch: [B, D] class-token and [B, P, D] patch embeddings."""
    cls_feats, patch_feats, text = cls_feats.float(), patch_feats.float(), text.float()
    cls_feats = cls_feats / cls_feats.norm(dim=-1, keepdim=True)
    cls_probs = torch.softmax(cls_feats @ text.T * cls, dim=-1)
    patch_feats = patch_feats / patch_feats.norm(dim=-1, keepdim=True)
    logits = patch_feats @ W + b
    x = logits - torch.max(logits, dim=-1, keepdim=True)[0]
    x = torch.exp(x / 500)
    gda_probs = x / torch.sum(x, dim=-1, keepdim=True)
    patch_probs = torch.softmax(torch.max(gda_probs, dim=1)[0] * patch, dim=-1)
    return 0.1 * cls_probs + 0.9 * patch_probs


def clustered_bank(seed: int, classes: int, k: int, d: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A bank of k entries per class around random unit class embeddings (spread sigma), as the
    fp16 store holds it, and the embeddings [C, D] float32. Tight clusters saturate the first
    fit: softmax(100 * GDA logits) is exactly 1 in float32 for whole classes."""
    r = np.random.default_rng(seed)
    text = r.standard_normal((classes, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    e = text[:, None, :] + sigma * r.standard_normal((classes, k, d))
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    return e.astype(np.float16), text.astype(np.float32)
