"""The tiles mode: the global view and a grid (or pixel tiles) of local views, one encoder
row each; alpha and beta are read over the tiles' scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdul.store import layout

from .base import ChunkPart, LocalMode

if TYPE_CHECKING:
    from ..config import ExtractConfig


class TilesPart(ChunkPart):
    """Every tile's scores of a chunk (``--keep-tiles``), as sim/tiles holds them."""

    def put(self, arrays, batch, good, scores, tiles, extra) -> None:
        import numpy as np

        out = arrays.get(layout.SIM_TILES)
        if tiles is None or out is None:
            return
        decoded = batch.n_views > 0
        counts, recorded = batch.n_views[decoded] - 1, batch.n_tiles[decoded]
        ends = np.cumsum(counts)
        for j, (row, n, end) in enumerate(zip(good, counts, ends)):
            t = tiles[end - n : end]
            if not n and recorded[j]:  # a 1 x 1 grid: the tile is the global view
                t = scores[j : j + 1, 0].astype(np.float16)
            keep = min(len(t), out.shape[1])
            out[row, :keep] = t[:keep]


class TilesMode(LocalMode):
    name = "tiles"
    flags = ("--snippet", "--tile-px", "--keep-tiles")

    def views_per_image(self, config: ExtractConfig) -> int:
        t = config.tiling
        return 1 + (config.max_tiles if t.mode != "grid" else t.size**2)

    def view_spec(self, config, size, interpolation, resize_mode):
        from ..packing import ViewSpec

        return ViewSpec(size, interpolation, resize_mode), config.tiling

    def array_sizes(self, config: ExtractConfig) -> dict:
        if not config.keep_tiles:
            return {}
        t = config.tiling
        return {"tiles_max": t.size**2 if t.mode == "grid" else config.max_tiles}

    def chunk_part(self, config: ExtractConfig, n_classes: int) -> ChunkPart:
        return TilesPart()

    def describe(self, config: ExtractConfig) -> dict:
        return config.tiling.describe()
