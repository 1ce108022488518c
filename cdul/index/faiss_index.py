"""A faiss inner-product index over a store's ``emb/global`` (normalised, so inner product
is cosine similarity), built chunk by chunk.

Exact search (``IndexFlatIP``) up to ``FLAT_MAX`` images; beyond, an inverted-file index
(``IndexIVFFlat``, nlist ~ 4 sqrt(N) lists, nprobe 16 probed), trained on an evenly spread
sample. Both are overridable. On a machine with faiss-gpu and a GPU the index moves to the
GPU. For a local store the built index is kept (see :func:`cache_folders`) and reused while
the embeddings it was built from are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from cdul.data.fs import atomic_write_text
from cdul.data.outputs import OutputError, inside, replace_into
from cdul.limits import bounded
from cdul.store import Store, held_record, is_url, layout

FLAT_MAX = 200_000
INDEX_KINDS = ("auto", "flat", "ivf")  # auto: flat up to FLAT_MAX images, IVF beyond


@dataclass(frozen=True)
class IndexSpec:
    kind: str  # "flat" or "ivf"
    nlist: int = 0
    nprobe: int = 0


def choose_index(
    n: int, kind: str = "auto", nlist: int | None = None, nprobe: int | None = None, note=None
) -> IndexSpec:
    """The index for n images; a --nlist above n (each list allocates) or a --nprobe above
    the lists is clamped, and ``note`` hears of it."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be auto, flat or ivf, not {kind!r}")
    if kind == "auto":
        kind = "flat" if n <= FLAT_MAX else "ivf"
    if kind == "flat":
        return IndexSpec("flat")
    if nlist:
        nlist = bounded(nlist, n, "--nlist", "images", note)
    nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))  # faiss wants >= 39 points per list
    return IndexSpec("ivf", nlist, bounded(nprobe, nlist, "--nprobe", "lists", note) if nprobe else min(16, nlist))


def require_embeddings(store: Store) -> None:
    if not store.has(layout.EMB_GLOBAL):
        raise ValueError(f"{store.url} has no image embeddings: extract with --keep-embeddings")


def embedding_chunks(store: Store):
    """(start, rows, embeddings) per chunk: float32, only rows with a finite embedding of an OK image."""
    require_embeddings(store)
    for chunk in store.chunks(layout.EMB_GLOBAL, layout.STATUS):
        emb = chunk[layout.EMB_GLOBAL].astype(np.float32)
        ok = (chunk[layout.STATUS] == layout.OK) & np.isfinite(emb).all(1)
        yield chunk.start, np.flatnonzero(ok) + chunk.start, np.ascontiguousarray(emb[ok])


def _training_sample(store: Store, size: int) -> np.ndarray:
    n_valid = sum(len(rows) for _, rows, _ in embedding_chunks(store))
    step = max(1, n_valid // size)
    parts, seen = [], 0
    for _, _, emb in embedding_chunks(store):
        take = np.arange((-seen) % step, len(emb), step)
        parts.append(emb[take])
        seen += len(emb)
    return np.concatenate(parts)


def build_index(store: Store, spec: IndexSpec, gpu: bool | None = None):
    import faiss

    dim = store.array(layout.EMB_GLOBAL).shape[1]
    index: faiss.Index
    if spec.kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, spec.nlist, faiss.METRIC_INNER_PRODUCT)
        sample = _training_sample(store, max(256 * spec.nlist, 10_000))
        if len(sample) < spec.nlist:
            raise ValueError(f"{len(sample)} embeddings cannot train {spec.nlist} lists; use --index flat")
        ivf.train(sample)
        ivf.nprobe = spec.nprobe
        ivf.quantizer_trains_alone = "\x00"  # a C char; 0: k-means over the quantizer as its index
        index = ivf
    for _, rows, emb in embedding_chunks(store):
        if len(rows):
            index.add_with_ids(emb, rows.astype(np.int64))
    return to_gpu(index) if gpu is not False else index


def to_gpu(index):
    """The index on GPU 0 where faiss-gpu and a GPU are there; unchanged otherwise."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    res = faiss.StandardGpuResources()
    moved = faiss.index_cpu_to_gpu(res, 0, index)
    moved.cdul_resources = res  # keep the resources alive as long as the index
    return moved


def _fingerprint(store: Store, spec: IndexSpec) -> dict:
    return {"config_hash": store.attrs.get("config_hash"), "summary": store.attrs.get("summary"), "spec": asdict(spec)}


def cache_folders(store: Store) -> tuple[list[str], str | None]:
    """(folders an index may be read from, the folder a new one is kept in). A command that
    holds the store's lock (cdul-refine) keeps it in ``<store>/_index``; one that only reads
    the store (cdul-search) never writes into it, and keeps it in the user's cache
    (``$XDG_CACHE_HOME/cdul/faiss``, by store path), or nowhere when that cannot be written."""
    if is_url(store.url):
        return [], None
    own = os.path.join(store.url, "_index")
    if held_record(store.url):
        return [own], own
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(os.path.realpath(store.url).encode()).hexdigest()[:16]
    user = os.path.join(base, "cdul", "faiss", key)
    return [own, user], user


def _read_cached(folder: str, name: str, want: dict, spec: IndexSpec, dim: int):
    """The kept index when its record matches ``want``; None when there is none, it is stale,
    or either file cannot be read (a damaged cache is rebuilt, never an error)."""
    import faiss

    path, meta = os.path.join(folder, name + ".faiss"), os.path.join(folder, name + ".json")
    try:
        with open(meta, encoding="utf-8") as f:
            if json.load(f) != json.loads(json.dumps(want)):
                return None
        index = faiss.read_index(path)
    except (OSError, ValueError, RuntimeError, RecursionError):  # faiss raises RuntimeError for a damaged file
        return None
    if index.d != dim:
        return None
    if spec.kind == "ivf" and not isinstance(index, faiss.IndexIVF):  # read_index gives the saved index's class
        return None
    return index


def _keep(index, folder: str, name: str, want: dict) -> None:
    import faiss

    try:
        os.makedirs(folder, exist_ok=True)
        tmp = inside(folder, f".tmp-{os.getpid()}-{name}.faiss")
        faiss.write_index(index, tmp)
        replace_into(tmp, folder, name + ".faiss")
        atomic_write_text(inside(folder, name + ".json"), json.dumps(want))
    except (OSError, RuntimeError, OutputError):  # a cache that cannot be written: keep it in memory only
        pass


def load_or_build(store: Store, spec: IndexSpec, gpu: bool | None = None):
    """The cached index when it matches the store; otherwise a new one, kept for next time."""
    require_embeddings(store)
    name, want = f"{spec.kind}-{spec.nlist}", _fingerprint(store, spec)
    dim = store.array(layout.EMB_GLOBAL).shape[1]
    readable, writable = cache_folders(store)
    index = next((i for i in (_read_cached(f, name, want, spec, dim) for f in readable) if i is not None), None)
    if index is None:
        index = build_index(store, spec, gpu=False)
        if writable:
            _keep(index, writable, name, want)
    if spec.kind == "ivf":
        import faiss

        assert isinstance(index, faiss.IndexIVF)  # read back or built as one
        index.nprobe = spec.nprobe
    return to_gpu(index) if gpu is not False else index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row ids), each [q, k]; ids of -1 where fewer than k were found."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    return index.search(queries, k)
