"""Stores of generated CLIP-like embeddings whose clusters carry known labels."""

from __future__ import annotations

import numpy as np

from cdul.store import Store, layout


def clustered(n: int, dim: int = 32, clusters: int = 40, classes: int = 6, spread: float = 0.35, seed: int = 0):
    """(unit embeddings [n, dim], cluster of each, targets [n, classes] in {1, -1})."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    which = rng.integers(0, clusters, n)
    emb = centres[which] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cluster_labels = rng.random((clusters, classes)) < 0.3
    cluster_labels[np.arange(clusters), rng.integers(0, classes, clusters)] = True
    targets = np.where(cluster_labels[which], 1, -1).astype(np.int8)
    return emb.astype(np.float32), which, targets


def embedding_store(
    url: str, emb: np.ndarray, labels: np.ndarray, targets=None, chunk_len: int = 512, failed=()
) -> Store:
    n, c = labels.shape
    specs = [s for s in layout.result_specs(c, embed_dim=emb.shape[1]) if s.name in (layout.STATUS, layout.EMB_GLOBAL)]
    store = Store.create(
        url,
        ids=[f"img{i:06d}.jpg" for i in range(n)],
        classes=[f"c{j}" for j in range(c)],
        specs=specs,
        targets=targets,
        chunk_len=chunk_len,
        attrs={"config_hash": "generated"},
    )
    status = np.full(n, layout.OK, np.uint8)
    status[list(failed)] = layout.FAILED
    for chunk in store.chunks():
        a, b = chunk.start, chunk.stop
        store.write_chunk(chunk.k, {layout.STATUS: status[a:b], layout.EMB_GLOBAL: emb[a:b].astype(np.float16)})
    arr = store.begin_round(0, {"zeta": 0.5, "lam": 0.0})
    labels = labels.astype(np.float32).copy()
    labels[list(failed)] = np.nan
    arr[:] = labels
    store.finish_round(0)
    return store
