"""Names, dtypes and version of the cdul store (docs/store.md).

The store is the contract between the extractor and the trainer. This module only says
what the arrays are called and how they are shaped; it knows nothing of CLIP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FORMAT = "cdul-store"
FORMAT_VERSION = 1
DEFAULT_CHUNK_LEN = 1024

# images/status values
PENDING, OK, FAILED = 0, 1, 2

IDS = "images/id"
HW = "images/hw"
N_TILES = "images/n_tiles"
STATUS = "images/status"
ERROR = "images/error"
TARGETS = "targets"
SIM_GLOBAL = "sim/global"
SIM_ALPHA = "sim/alpha"
SIM_BETA = "sim/beta"
SIM_TILES = "sim/tiles"
EMB_GLOBAL = "emb/global"
EMB_PATCHES = "emb/patches"  # [N, P, D] float16, --keep-patch-embeddings (dense mode)
TEXT = "text/emb"  # [C, D] float32 class embeddings, with a bank or patch embeddings
# The patch bank (--keep-patches K): each chunk's own K per class, then the split's K per class.
BANK_CHUNK_EMB = "bank/chunks/emb"  # [n_chunks, C, K, D] float16
BANK_CHUNK_SCORE = "bank/chunks/score"  # [n_chunks, C, K] float32 entropy, NaN where empty
BANK_CHUNK_SOURCE = "bank/chunks/source"  # [n_chunks, C, K, 2] int32 (store row, patch), -1 where empty
BANK_EMB = "bank/emb"  # [C, K, D] float16
BANK_SCORE = "bank/score"  # [C, K] float32
BANK_SOURCE = "bank/source"  # [C, K, 2] int32
PER_CHUNK = frozenset({BANK_CHUNK_EMB, BANK_CHUNK_SCORE, BANK_CHUNK_SOURCE})  # indexed by chunk, not image
DONE = "_build/done"
LABELS = "labels"
# Root coordinate variables: xarray indexes every array by them (a DataTree's groups inherit them).
IMAGE, CLASS, TILE = "image", "class", "tile"


def round_name(k: int) -> str:
    return f"{LABELS}/round_{k:03d}"


def local_mode(attrs: Mapping) -> dict:
    """The store's local views from its root attributes: ``tiling`` is ``{mode: grid, G}``,
    ``{mode: pixel, P}`` or ``{mode: dense, size: S px, grid: g}`` (g x g patches an image).
    A dense store written before dense mode was recorded there says grid; its hashed
    configuration (``local``, ``dense_size``) says dense, and that wins (grid unknown)."""
    tiling = dict(attrs.get("tiling") or {})
    config = attrs.get("config") or {}
    if tiling.get("mode") != "dense" and config.get("local") == "dense":
        return {"mode": "dense", "size": config.get("dense_size") or None, "grid": None}
    return tiling


@dataclass(frozen=True)
class ArraySpec:
    """An array chunked along the image axis: shape is (N, *trailing)."""

    name: str
    trailing: tuple[int, ...]
    dtype: npt.DTypeLike
    fill: object
    dims: tuple[str, ...]
    lead: str = "image"  # the first axis: "image" (N, chunked as the store), "chunk" (one each) or "none"


def result_specs(
    n_classes: int, *, tiles_max: int = 0, embed_dim: int = 0, patches: int = 0, bank: int = 0, text_dim: int = 0
) -> list[ArraySpec]:
    """The arrays the extractor fills chunk by chunk (``patches``: P patch embeddings of
    width ``text_dim`` per image; ``bank``: K bank entries per class; both need ``text_dim``)."""
    c = n_classes
    specs = [
        ArraySpec(HW, (2,), np.int32, 0, ("image", "axis")),
        ArraySpec(N_TILES, (), np.int32, 0, ("image",)),
        ArraySpec(STATUS, (), np.uint8, PENDING, ("image",)),
        ArraySpec(ERROR, (), str, "", ("image",)),
        ArraySpec(SIM_GLOBAL, (c,), np.float32, np.nan, ("image", "class")),
        ArraySpec(SIM_ALPHA, (c,), np.float32, np.nan, ("image", "class")),
        ArraySpec(SIM_BETA, (c,), np.float32, np.nan, ("image", "class")),
    ]
    if tiles_max:
        specs.append(ArraySpec(SIM_TILES, (tiles_max, c), np.float16, np.nan, ("image", "tile", "class")))
    if embed_dim:
        specs.append(ArraySpec(EMB_GLOBAL, (embed_dim,), np.float16, np.nan, ("image", "embedding")))
    d = text_dim
    if patches:
        specs.append(ArraySpec(EMB_PATCHES, (patches, d), np.float16, np.nan, ("image", "patch", "embedding")))
    if bank:
        k = bank
        specs += [
            ArraySpec(BANK_CHUNK_EMB, (c, k, d), np.float16, np.nan, ("chunk", "class", "entry", "embedding"), "chunk"),
            ArraySpec(BANK_CHUNK_SCORE, (c, k), np.float32, np.nan, ("chunk", "class", "entry"), "chunk"),
            ArraySpec(BANK_CHUNK_SOURCE, (c, k, 2), np.int32, -1, ("chunk", "class", "entry", "where"), "chunk"),
            ArraySpec(BANK_EMB, (c, k, d), np.float16, np.nan, ("class", "entry", "embedding"), "none"),
            ArraySpec(BANK_SCORE, (c, k), np.float32, np.nan, ("class", "entry"), "none"),
            ArraySpec(BANK_SOURCE, (c, k, 2), np.int32, -1, ("class", "entry", "where"), "none"),
        ]
    if patches or bank:
        specs.append(ArraySpec(TEXT, (c, d), np.float32, np.nan, ("class", "embedding"), "none"))
    return specs
