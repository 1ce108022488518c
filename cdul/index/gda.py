"""Training-free labels from patch scores (PIAA, Wang et al., ICML 2026), as its ``learn.py``
and ``test.py`` compute them, in float32 as that code does.

Fit, on the patch bank (``cdul-extract --keep-patches``; entries e normalised, T the class
embeddings, p = softmax(60 e . T^T), each entry's class argmax p):

    mu_c    = sum_{e of c} p_c e / sum_{e of c} p_c      (T_c for a class with no entry)
    Sigma   = cov(e - mu_class(e))  over the n entries  (torch.cov: about their own mean)
    Lambda  = D * pinv((n - 1) Sigma + tr(Sigma) I)      (shared covariance, shrunk)
    W       = Lambda mu^T  [D, C],  b_c = log(1 / C) - mu_c Lambda mu_c^T / 2

done twice: the first fit scores the bank, g = softmax(fit_scale * (e W + b)); of the
entries the first fit assigns to c (argmax of e W + b), those with g_c >= mean + std (of g_c
over them) are kept, with g as their probabilities, and the second fit on them (normalised
again) gives the final W, b. A class whose entries all pass keeps them all (std 0), one with
a single entry keeps none (its std is NaN). With ``keep="robust"`` the threshold is at most
the class's largest g_c, so every class the first fit predicts keeps its best entries.

Precision: float32, as PIAA's code (its ``.float()`` casts). The filter is sensitive to it: a
class whose g_c saturates is exactly 1 everywhere in float32 (std 0: all kept), while in
float64 a few entries come out as 1 - 1e-15, mean + std rises above 1 and no entry is kept.

Score, for an image with patch embeddings f_j (normalised) and global probabilities S_g:

    P_j     = softmax((f_j W + b) / temperature)                   per patch
    S_patch = softmax(patch_scale * max_j P_j)
    S_cls   = softmax(cls_scale * cos(global, T))  = softmax((cls_scale / s) log S_g)
    y       = weight * S_cls + (1 - weight) * S_patch

PIAA's published form is w * softmax(a S_cls) + (1 - w) softmax(b max_j P_gda); its code
(followed here) weighs the class token by 0.1, divides the Gaussian logits by 500 before
the patch softmax, and fits twice with the filter above. Defaults are its VOC settings
(test.py: cls 80, patch 200; learn.py: temperature 100 for VOC, 0.01 for COCO).
S_cls comes from the stored S_g (in float64, then float32): log S_g = s cos - log Z, and
the constant cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cdul.store import Store, StoreError, attr_float, layout

from .gda_options import KEEP_RULES, GdaOptions


@dataclass(frozen=True)
class Fit:
    w: torch.Tensor  # [D, C] float32
    b: torch.Tensor  # [C] float32
    pred: torch.Tensor  # [M] the first fit's class of each bank entry
    kept: torch.Tensor  # [M] bool: the bank entries of the second fit
    empty: list[int]  # classes with no entry in the second fit (their mean is T_c)


def fit(feats: torch.Tensor, probs: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One closed-form fit (module docstring), in the inputs' dtype: -> W [D, C], b [C]."""
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
    w_mat = torch.einsum("nd,dc->cn", mus, prec)
    b = torch.full((c,), 1.0 / c, dtype=x.dtype).log() - torch.einsum("nd,dc,nc->n", mus, prec, mus) / 2
    return w_mat, b


def select(g: torch.Tensor, pred: torch.Tensor, rule: str = "piaa") -> torch.Tensor:
    """[M] bool: per predicted class c, the entries with g_c >= mean + std of g_c over the
    class (rule "robust": the threshold at most the class's largest g_c)."""
    keep = torch.zeros_like(pred, dtype=torch.bool)
    for c in pred.unique().tolist():
        sel = torch.nonzero(pred == c)[:, 0]
        vals = g[sel, c]
        # learn.py sums mean and std as Python floats; the comparison rounds it to float32
        threshold = vals.mean().item() + vals.std().item() if len(sel) > 1 else float("nan")
        if rule == "robust" and not threshold <= vals.max().item():
            threshold = vals.max().item()
        keep[sel] = vals >= threshold
    return keep


def learn(
    bank: torch.Tensor, text: torch.Tensor, fit_scale: float, bank_scale: float = 60.0, keep: str = "piaa"
) -> Fit:
    """The two fits of learn.py on bank entries [M, D], in float32.
    ``bank_scale``: the scale of the bank's class probabilities (the store records it)."""
    if keep not in KEEP_RULES:
        raise ValueError(f"unknown filter {keep!r}: one of {', '.join(KEEP_RULES)}")
    text = text.float()
    feats = F.normalize(bank.float(), dim=-1)
    w1, b1 = fit(feats, torch.softmax(feats @ text.T * bank_scale, dim=-1), text)
    logits = feats @ w1 + b1
    g = torch.softmax(logits * fit_scale, dim=-1)
    pred = logits.argmax(dim=-1)
    kept = select(g, pred, keep)
    if int(kept.sum()) < 2:
        raise StoreError(
            "no class of the patch bank has entries above mean + std: extract with a larger --keep-patches"
        )
    w, b = fit(F.normalize(feats[kept], dim=-1), g[kept], text)
    present = set(g[kept].argmax(dim=1).tolist())
    return Fit(w, b, pred, kept, [c for c in range(len(text)) if c not in present])


def score(
    patches: torch.Tensor, s_g: torch.Tensor, logit_scale: float, w: torch.Tensor, b: torch.Tensor, opts: GdaOptions
) -> torch.Tensor:
    """[B, P, D] patch embeddings and [B, C] S_g -> [B, C] labels (module docstring), float32."""
    f = F.normalize(patches.float(), dim=-1)
    logits = f @ w + b
    e = ((logits - logits.amax(dim=-1, keepdim=True)) / opts.temperature).exp()  # test.py's softmax
    p = e / e.sum(dim=-1, keepdim=True)
    s_patch = torch.softmax(p.amax(dim=1) * opts.patch_scale, dim=-1)
    log_g = s_g.double().clamp_min(torch.finfo(torch.float32).tiny).log()
    s_cls = torch.softmax(opts.cls_scale / logit_scale * log_g, dim=-1).float()
    return opts.weight * s_cls + (1.0 - opts.weight) * s_patch


def _finished(store: Store) -> None:
    if not store.attrs.get("complete"):
        raise StoreError(f"{store.url} is not finished: rerun its cdul-extract command to complete it")


def read_bank(store: Store) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(bank entries [M, D], class embeddings [C, D]) in float32, and the bank's scale."""
    _finished(store)
    if not store.has(layout.BANK_EMB):
        raise StoreError(f"{store.url} has no {layout.BANK_EMB}: extract it with --local dense --keep-patches K")
    emb = np.asarray(store.array(layout.BANK_EMB)[...], np.float32)
    score_ = np.asarray(store.array(layout.BANK_SCORE)[...])
    entries = emb[np.isfinite(score_)]
    text = np.asarray(store.array(layout.TEXT)[...], np.float32)
    return torch.from_numpy(entries), torch.from_numpy(text), attr_float(store.array(layout.BANK_EMB).attrs["scale"])


def check_scored(store: Store, bank_store: Store, text: torch.Tensor) -> None:
    """The scored store has patch embeddings, and the bank's classes and class embeddings
    (PIAA: the bank of the train split, the scores of val, one model and prompt)."""
    _finished(store)
    if not store.has(layout.EMB_PATCHES):
        raise StoreError(
            f"{store.url} has no {layout.EMB_PATCHES}: extract it with --local dense --keep-patch-embeddings"
        )
    if list(store.classes) != list(bank_store.classes):
        raise StoreError(f"{bank_store.url} and {store.url} have other classes: give the bank of the same classes")
    mine = torch.from_numpy(np.asarray(store.array(layout.TEXT)[...], np.float32))
    if mine.shape != text.shape or not torch.allclose(mine, text, rtol=0, atol=1e-5):
        raise StoreError(
            f"{bank_store.url} and {store.url} have other class embeddings: extract both with one model and prompt"
        )


def refine_gda(
    store: Store,
    opts: GdaOptions = GdaOptions(),  # noqa: B008 (frozen: one shared default is safe)
    *,
    bank_store: Store | None = None,
    batch: int = 256,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, list[str]]:
    """Fit on the bank of ``bank_store`` (default: the store's own), score every image of the
    store and write the labels as its next round; returns the round's number and the classes
    with no entry in the second fit."""
    if not 0.0 <= opts.weight <= 1.0:
        raise ValueError("the weight of S_cls must be in [0, 1]")
    bank_store = bank_store or store
    bank, text, bank_scale = read_bank(bank_store)
    check_scored(store, bank_store, text)
    result = learn(bank, text, opts.fit_scale, bank_scale, opts.keep)
    w, b, empty = result.w, result.b, [store.classes[c] for c in result.empty]
    logit_scale = attr_float(store.section("model")["logit_scale"])
    new_k = store.label_rounds()[-1] + 1 if store.label_rounds() else 0
    base = store.round_array(0).attrs.asdict() if 0 in store.label_rounds() else {}
    with store.writing_round(
        new_k,
        {
            "source": "cdul-refine --gda",
            **asdict(opts),
            "bank_store": bank_store.url,
            "bank_entries": len(bank),
            "entries_second_fit": int(result.kept.sum()),
            "classes_without_entries": empty,
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
    return new_k, empty
