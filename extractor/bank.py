"""The patch bank of ``--keep-patches K`` (dense mode), as PIAA's ``learn.py`` builds it.

Every patch embedding e (normalised) gets class probabilities p = softmax(60 * e . T^T),
its class argmax_c p and its entropy H = -sum_c p_c log max(p_c, 1e-10). For each class
the bank keeps the K patches of that class with the lowest entropy (the most confident).

Entries are ordered by (class, entropy, store row, patch index), so the bank of a split
does not depend on how its images were batched, distributed or resumed: each batch
offers its K best per class, each chunk keeps its K best per class (stored with the
chunk), and finalising merges the chunks' banks into the split's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cdul.store import layout

BANK_SCALE = 60.0  # PIAA learn.py: probs_flat = softmax(logits_flat * 60.0)


def patch_entropy(patches: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, D] normalised patch embeddings -> (class [M], entropy [M]), in float32."""
    logits = patches.float() @ text.float().T
    p = torch.softmax(BANK_SCALE * logits, dim=-1)
    return logits.argmax(dim=-1), -(p * p.clamp_min(1e-10).log()).sum(dim=-1)


def batch_candidates(patches: torch.Tensor, text: torch.Tensor, k: int) -> dict:
    """[B, P, D] normalised patch embeddings of one batch -> its best K per class, as flat
    tensors: cls [M], score [M] (entropy), image [M] (in the batch), patch [M], emb [M, D] fp16."""
    b, p, d = patches.shape
    flat = patches.reshape(b * p, d)
    cls, ent = patch_entropy(flat, text)
    order = torch.argsort(ent, stable=True)  # ties: the lower flat index first
    order = order[torch.argsort(cls[order], stable=True)]
    sorted_cls = cls[order]
    counts = torch.bincount(sorted_cls, minlength=text.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=order.device) - starts[sorted_cls]
    keep = order[rank < k]
    return {"cls": cls[keep], "score": ent[keep], "image": keep // p, "patch": keep % p, "emb": flat[keep].half()}


def to_entries(cand: dict, rows: np.ndarray) -> dict:
    """A batch's candidates (on the host) with their store rows: the flat entry form."""
    source = np.stack([rows[np.asarray(cand["image"])], np.asarray(cand["patch"])], axis=1).astype(np.int32)
    return {
        "cls": np.asarray(cand["cls"], np.int64),
        "score": np.asarray(cand["score"], np.float32),
        "source": source,
        "emb": np.asarray(cand["emb"], np.float16),
    }


def merge(parts: list[dict], k: int) -> dict:
    """The best K per class of several entry sets, ordered by (class, entropy, row, patch)."""
    parts = [p for p in parts if len(p["cls"])]
    if not parts:
        return empty_entries(0)
    e = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.lexsort((e["source"][:, 1], e["source"][:, 0], e["score"], e["cls"]))
    cls = e["cls"][order]
    starts = np.searchsorted(cls, cls, side="left")
    keep = order[np.arange(len(order)) - starts < k]
    return {key: v[keep] for key, v in e.items()}


def empty_entries(d: int) -> dict:
    return {
        "cls": np.zeros(0, np.int64),
        "score": np.zeros(0, np.float32),
        "source": np.zeros((0, 2), np.int32),
        "emb": np.zeros((0, d), np.float16),
    }


def to_slots(entries: dict, n_classes: int, k: int, d: int) -> dict:
    """Entries -> the stored form: emb [C, K, D], score [C, K], source [C, K, 2], padded
    with NaN / -1 where a class has fewer than K."""
    emb = np.full((n_classes, k, d), np.nan, np.float16)
    score = np.full((n_classes, k), np.nan, np.float32)
    source = np.full((n_classes, k, 2), -1, np.int32)
    cls = entries["cls"]
    slot = np.arange(len(cls)) - np.searchsorted(cls, cls, side="left")
    emb[cls, slot], score[cls, slot], source[cls, slot] = entries["emb"], entries["score"], entries["source"]
    return {"emb": emb, "score": score, "source": source}


def from_slots(emb: np.ndarray, score: np.ndarray, source: np.ndarray) -> dict:
    cls, slot = np.nonzero(np.isfinite(score))
    return {"cls": cls.astype(np.int64), "score": score[cls, slot], "source": source[cls, slot], "emb": emb[cls, slot]}


class ChunkBank:
    """The bank of one chunk, merged batch by batch (at most K entries per class held)."""

    def __init__(self, n_classes: int, k: int, d: int):
        self.c, self.k, self.d = n_classes, k, d
        self.entries = empty_entries(d)

    def add(self, entries: dict) -> None:
        self.entries = merge([self.entries, entries], self.k)

    def arrays(self) -> dict:
        s = to_slots(self.entries, self.c, self.k, self.d)
        return {
            layout.BANK_CHUNK_EMB: s["emb"],
            layout.BANK_CHUNK_SCORE: s["score"],
            layout.BANK_CHUNK_SOURCE: s["source"],
        }


def merge_chunk_banks(store, k: int) -> int:
    """Finalise: the split's bank from the chunks' banks (one chunk read at a time).
    Returns the number of entries kept."""
    c, d = len(store.classes), store.array(layout.BANK_EMB).shape[-1]
    total = empty_entries(d)
    names = (layout.BANK_CHUNK_EMB, layout.BANK_CHUNK_SCORE, layout.BANK_CHUNK_SOURCE)
    for chunk in store.chunks(*names):
        total = merge([total, from_slots(*(chunk[n] for n in names))], k)
    s = to_slots(total, c, k, d)
    store.array(layout.BANK_EMB)[...] = s["emb"]
    store.array(layout.BANK_SCORE)[...] = s["score"]
    store.array(layout.BANK_SOURCE)[...] = s["source"]
    return len(total["cls"])


def dense_extras(emb: torch.Tensor, b: int, text: torch.Tensor, keep_patches: int, keep_embeddings: bool) -> dict:
    """What dense mode keeps beyond the scores, from the encoder's [B * (1 + P), D] rows:
    the normalised patch embeddings (fp16) and the batch's bank candidates."""
    patches = F.normalize(emb.float().reshape(b, -1, emb.shape[-1])[:, 1:], dim=-1)
    out = {}
    if keep_embeddings:
        out["patches"] = patches.half()
    if keep_patches:
        out.update({f"bank_{key}": v for key, v in batch_candidates(patches, text, keep_patches).items()})
    return out
