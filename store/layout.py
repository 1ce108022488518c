"""Names, dtypes and version of the cdul store (SPEC section 2).

The store is the contract between the extractor and the trainer. This module only says
what the arrays are called and how they are shaped; it knows nothing of CLIP.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
DONE = "_build/done"
LABELS = "labels"
# Root coordinate variables: xarray indexes every array by them (a DataTree's groups inherit them).
IMAGE, CLASS, TILE = "image", "class", "tile"


def round_name(k: int) -> str:
    return f"{LABELS}/round_{k:03d}"


@dataclass(frozen=True)
class ArraySpec:
    """An array chunked along the image axis: shape is (N, *trailing)."""

    name: str
    trailing: tuple[int, ...]
    dtype: object
    fill: object
    dims: tuple[str, ...]


def result_specs(n_classes: int, *, tiles_max: int = 0, embed_dim: int = 0) -> list[ArraySpec]:
    """The arrays the extractor fills chunk by chunk."""
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
    return specs
