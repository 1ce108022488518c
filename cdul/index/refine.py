"""Neighbourhood label refinement: y <- (1 - W) y + W * mean of y over the K nearest
neighbours of the image (by CLIP image embedding, the image itself excluded), written as a
new label round.

Memory stays bounded: queries go chunk by chunk, the new round is written chunk by chunk,
and neighbours' labels are read through a cache of whole store chunks limited to
``cache_bytes`` (the index itself holds the embeddings, 4 D bytes an image)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from cdul.limits import bounded
from cdul.store import Store

from .faiss_index import IndexSpec, embedding_chunks, load_or_build, search


class LabelRows:
    """Random access to the rows of one label round through an LRU cache of its chunks."""

    def __init__(self, store: Store, round_k: int, cache_bytes: int = 2 << 30):
        self.store, self.array = store, store.round_array(round_k)
        row_bytes = 4 * len(store.classes)
        self.max_chunks = max(2, cache_bytes // max(1, row_bytes * store.chunk_len))
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.reads = 0

    def chunk(self, k: int) -> np.ndarray:
        if k in self.cache:
            self.cache.move_to_end(k)
            return self.cache[k]
        a, b = self.store.chunk_bounds(k)
        rows = np.asarray(self.array[a:b])
        self.reads += 1
        self.cache[k] = rows
        if len(self.cache) > self.max_chunks:
            self.cache.popitem(last=False)
        return rows

    def rows(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), len(self.store.classes)), np.float32)
        chunks = ids // self.store.chunk_len
        for k in np.unique(chunks):
            sel = chunks == k
            out[sel] = self.chunk(int(k))[ids[sel] - k * self.store.chunk_len]
        return out


def neighbour_mean(labels: LabelRows, rows: np.ndarray, found: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean label of each row's k nearest neighbours other than itself; (means, has_neighbours)."""
    keep = (found != rows[:, None]) & (found >= 0)
    # at most k: where the image itself was not among the k + 1 found, drop the farthest
    keep &= np.cumsum(keep, axis=1) <= k
    flat = found[keep]
    values = labels.rows(flat)
    counts = keep.sum(1)
    sums = np.zeros((len(rows), values.shape[1]), np.float64)
    np.add.at(sums, np.repeat(np.arange(len(rows)), counts), values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts[:, None]).astype(np.float32), counts > 0


def refine_labels(
    store: Store,
    knn: int,
    weight: float,
    spec: IndexSpec,
    *,
    from_round: int | None = None,
    gpu: bool | None = None,
    cache_bytes: int = 2 << 30,
    progress: Callable[[int], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> int:
    """Write the refined labels as the next round; returns its number. A ``knn`` above the
    other images there are is clamped to them (``note`` hears of it)."""
    if knn < 1:
        raise ValueError("--knn must be >= 1")
    if not 0.0 <= weight <= 1.0:
        raise ValueError("--weight must be in [0, 1]")
    source = store.latest_round() if from_round is None else from_round
    if source not in store.label_rounds():
        raise ValueError(f"round {source} is not a complete label round of {store.url}")
    index = load_or_build(store, spec, gpu)
    knn = bounded(knn, index.ntotal - 1, "--knn", "other images with embeddings", note)
    labels = LabelRows(store, source, cache_bytes)
    new_k = store.label_rounds()[-1] + 1
    base = store.round_array(0).attrs.asdict() if 0 in store.label_rounds() else {}
    with store.writing_round(
        new_k,
        {
            "source": "cdul-refine",
            "from_round": source,
            "knn": knn,
            "weight": weight,
            "index": spec.kind,
            "nlist": spec.nlist,
            "nprobe": spec.nprobe,
            "zeta": base.get("zeta"),
            "lam": base.get("lam"),
            "epoch": None,
        },
    ) as out:
        for start, rows, emb in embedding_chunks(store):
            stop = min(start + store.chunk_len, store.n)
            y = labels.chunk(start // store.chunk_len).copy()
            if len(rows):
                _, found = search(index, emb, knn + 1)
                mean, has = neighbour_mean(labels, rows, found, knn)
                local = rows - start
                y[local[has]] = (1.0 - weight) * y[local[has]] + weight * mean[has]
            out[start:stop] = y
            if progress:
                progress(stop - start)
    return new_k


__all__ = ["LabelRows", "neighbour_mean", "refine_labels"]
