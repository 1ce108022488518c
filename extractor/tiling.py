"""Where the local tiles of an image are (docs/algorithm.md §2.3): non-overlapping, remainder dropped.

- grid mode (``--snippet G``): tiles of h = H // G by w = W // G at
  ``[i*h:(i+1)*h, j*w:(j+1)*w]`` for i, j in 0..G-1, row-major;
- pixel mode (``--tile-px P``): P x P tiles, H // P rows by W // P columns, row-major.

An image too small for the tiling (h or w would be 0, or no P x P tile fits) has no tiles.
Dense mode cuts no tiles (one pass, every patch scored); a store records it as
``{mode: dense, size: S, grid: g}`` instead (``store.layout.local_mode``, ``describe_local``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tiling:
    mode: str  # "grid" or "pixel"
    size: int  # G for grid, P for pixel

    def __post_init__(self):
        if self.mode not in ("grid", "pixel"):
            raise ValueError(f"tiling mode must be 'grid' or 'pixel', not {self.mode!r}")
        if int(self.size) < 1:
            raise ValueError(f"tiling size must be >= 1, got {self.size}")

    @classmethod
    def grid(cls, g: int) -> Tiling:
        return cls("grid", int(g))

    @classmethod
    def pixel(cls, p: int) -> Tiling:
        return cls("pixel", int(p))

    @property
    def whole_image(self) -> bool:
        """A 1 x 1 grid: its one tile is the image itself, so its scores equal the global ones."""
        return self.mode == "grid" and self.size == 1

    def layout(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(rows, cols, tile_h, tile_w); rows = cols = 0 when the image is too small."""
        if self.mode == "grid":
            th, tw = h // self.size, w // self.size
            rows = cols = self.size
        else:
            th = tw = self.size
            rows, cols = h // self.size, w // self.size
        if th == 0 or tw == 0 or rows == 0 or cols == 0:
            return 0, 0, 0, 0
        return rows, cols, th, tw

    def count(self, h: int, w: int) -> int:
        rows, cols, _, _ = self.layout(h, w)
        return rows * cols

    def boxes(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of every tile, row-major."""
        rows, cols, th, tw = self.layout(h, w)
        return [(i * th, j * tw, th, tw) for i in range(rows) for j in range(cols)]

    def describe(self) -> dict:
        return {"mode": self.mode, "G" if self.mode == "grid" else "P": self.size}

    @classmethod
    def from_description(cls, d: dict) -> Tiling:
        """The inverse of describe()."""
        return cls.grid(d["G"]) if d.get("mode", "grid") == "grid" else cls.pixel(d["P"])

    def __str__(self) -> str:
        if self.mode == "grid":
            return f"{self.size} x {self.size} grid of tiles"
        return f"{self.size} x {self.size} px tiles"


def describe_local(d: dict) -> str:
    """A store's local views in words, from its recorded description (``store.layout.local_mode``)."""
    if not d:
        return "no tiles"
    if d.get("mode") == "dense":
        grid, size = d.get("grid"), d.get("size")
        return "dense patches" + (f", {grid} x {grid}" if grid else "") + (f" at {size} px" if size else "")
    return str(Tiling.from_description(d))
