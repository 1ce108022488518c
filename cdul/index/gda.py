"""Training-free labels from patch scores (PIAA, Wang et al., ICML 2026; SPEC 1.7), as its
``learn.py`` and ``test.py`` compute them.

Fit, on the patch bank (``cdul-extract --keep-patches``; entries e normalised, T the class
embeddings, p = softmax(60 e . T^T), each entry's class argmax p):

    mu_c    = sum_{e of c} p_c e / sum_{e of c} p_c      (T_c for a class with no entry)
    Sigma   = cov(e - mu_class(e))  over the n entries  (torch.cov: about their own mean)
    Lambda  = D * pinv((n - 1) Sigma + tr(Sigma) I)      (shared covariance, shrunk)
    W       = Lambda mu^T  [D, C],  b_c = log(1 / C) - mu_c Lambda mu_c^T / 2

done twice: the first fit scores the bank, g = softmax(fit_scale * (e W + b)); of the
entries the first fit assigns to c, those with g_c >= mean + std (of g_c over them) are kept,
with g as their probabilities, and the second fit on them gives the final W, b.

Score, for an image with patch embeddings f_j (normalised) and global probabilities S_g:

    P_j     = softmax((f_j W + b) / temperature)                   per patch
    S_patch = softmax(patch_scale * max_j P_j)
    S_cls   = softmax(cls_scale * cos(global, T))  = softmax((cls_scale / s) log S_g)
    y       = weight * S_cls + (1 - weight) * S_patch

PIAA's published form is w * softmax(a S_cls) + (1 - w) softmax(b max_j P_gda); its code
(followed here) weighs the class token by 0.1, divides the Gaussian logits by 500 before
the patch softmax, and fits twice with the filter above. Defaults are its VOC settings
(test.py: cls 80, patch 200; learn.py: temperature 100 for VOC, 0.01 for COCO).
S_cls comes from the stored S_g: log S_g = s cos - log Z, and the constant cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cdul.store import Store, StoreError, attr_float, layout


@dataclass(frozen=True)
class GdaOptions:
    weight: float = 0.1  # of S_cls (test.py: 0.1 * cls_probs + 0.9 * patch_probs)
    cls_scale: float = 80.0  # test.py --cls
    patch_scale: float = 200.0  # test.py --patch (VOC)
    temperature: float = 500.0  # test.py: compute_gda_adapter_probs_batch(temperature=500)
    fit_scale: float = 100.0  # learn.py --temperature (VOC)


def fit(feats: torch.Tensor, probs: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One closed-form fit (module docstring): -> W [D, C], b [C]."""
    c, d = text.shape
    labels = probs.argmax(dim=1)
    mus = text.clone()
    centred = []
    for i in labels.unique().tolist():
        sel = labels == i
        w = probs[sel, i]
        mus[i] = (w[:, None] * feats[sel]).sum(0) / w.sum()
        centred.append(feats[sel] - mus[i])
    x = torch.cat(centred)
    if x.shape[0] < 2:
        raise StoreError("the patch bank has fewer than 2 usable entries: extract with a larger --keep-patches")
    cov = x.T.cov()
    prec = d * torch.linalg.pinv((x.shape[0] - 1) * cov + cov.trace() * torch.eye(d, dtype=x.dtype))
    w_mat = (mus @ prec).T
    b = torch.full((c,), 1.0 / c, dtype=x.dtype).log() - torch.einsum("nd,dc,nc->n", mus, prec, mus) / 2
    return w_mat, b


def learn(
    bank: torch.Tensor, text: torch.Tensor, fit_scale: float, bank_scale: float = 60.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two fits of learn.py on bank entries [M, D] (float64) -> the final W, b.
    ``bank_scale``: the scale of the bank's class probabilities (the store records it)."""
    feats = F.normalize(bank, dim=-1)
    w1, b1 = fit(feats, torch.softmax(bank_scale * feats @ text.T, dim=-1), text)
    logits = feats @ w1 + b1
    g = torch.softmax(logits * fit_scale, dim=-1)
    pred = logits.argmax(dim=-1)
    keep = torch.zeros_like(pred, dtype=torch.bool)
    for c in pred.unique().tolist():
        sel = torch.nonzero(pred == c)[:, 0]
        if len(sel) < 2:  # learn.py: the std of one value is NaN, and nothing passes the test
            continue
        vals = g[sel, c]
        keep[sel] = vals >= vals.mean() + vals.std()
    if int(keep.sum()) < 2:
        raise StoreError(
            "no class of the patch bank has entries above mean + std: extract with a larger --keep-patches"
        )
    return fit(feats[keep], g[keep], text)


def score(
    patches: torch.Tensor, s_g: torch.Tensor, logit_scale: float, w: torch.Tensor, b: torch.Tensor, opts: GdaOptions
) -> torch.Tensor:
    """[B, P, D] patch embeddings and [B, C] S_g -> [B, C] labels (module docstring)."""
    f = F.normalize(patches.to(w.dtype), dim=-1)
    p = torch.softmax((f @ w + b) / opts.temperature, dim=-1)
    s_patch = torch.softmax(opts.patch_scale * p.amax(dim=1), dim=-1)
    log_g = s_g.to(w.dtype).clamp_min(torch.finfo(torch.float32).tiny).log()
    s_cls = torch.softmax(opts.cls_scale / logit_scale * log_g, dim=-1)
    return opts.weight * s_cls + (1.0 - opts.weight) * s_patch


def read_bank(store: Store) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(bank entries [M, D], class embeddings [C, D]) in float64, and the bank's scale."""
    if not store.attrs.get("complete"):
        raise StoreError(f"{store.url} is not finished: rerun its cdul-extract command to complete it")
    for name, how in [(layout.BANK_EMB, "--keep-patches K"), (layout.EMB_PATCHES, "--keep-patch-embeddings")]:
        if not store.has(name):
            raise StoreError(f"{store.url} has no {name}: extract it with --local dense {how}")
    emb = np.asarray(store.array(layout.BANK_EMB)[...], np.float64)
    score_ = np.asarray(store.array(layout.BANK_SCORE)[...])
    entries = emb[np.isfinite(score_)]
    text = np.asarray(store.array(layout.TEXT)[...], np.float64)
    return torch.from_numpy(entries), torch.from_numpy(text), attr_float(store.array(layout.BANK_EMB).attrs["scale"])


def refine_gda(
    store: Store, opts: GdaOptions = GdaOptions(), *, batch: int = 256, progress: Callable[[int], None] | None = None
) -> int:
    """Fit on the store's bank, score every image and write the labels as the next round;
    returns its number."""
    if not 0.0 <= opts.weight <= 1.0:
        raise ValueError("the weight of S_cls must be in [0, 1]")
    bank, text, bank_scale = read_bank(store)
    w, b = learn(bank, text, opts.fit_scale, bank_scale)
    logit_scale = attr_float(store.section("model")["logit_scale"])
    new_k = store.label_rounds()[-1] + 1 if store.label_rounds() else 0
    base = store.round_array(0).attrs.asdict() if 0 in store.label_rounds() else {}
    with store.writing_round(
        new_k,
        {
            "source": "cdul-refine --gda",
            **asdict(opts),
            "bank_entries": len(bank),
            "zeta": base.get("zeta"),
            "lam": base.get("lam"),
            "epoch": None,
        },
    ) as out:
        for start in range(0, store.n, store.chunk_len):
            stop = min(start + store.chunk_len, store.n)
            rows = np.full((stop - start, len(store.classes)), np.nan, np.float32)
            for a in range(start, stop, batch):
                z = min(a + batch, stop)
                patches = torch.from_numpy(store.read(layout.EMB_PATCHES, a, z).astype(np.float32))
                s_g = torch.from_numpy(store.read(layout.SIM_GLOBAL, a, z))
                rows[a - start : z - start] = score(patches, s_g, logit_scale, w, b, opts).float().numpy()
            ok = store.read(layout.STATUS, start, stop) == layout.OK
            rows[~ok] = np.nan
            out[start:stop] = rows
            if progress:
                progress(stop - start)
    return new_k
