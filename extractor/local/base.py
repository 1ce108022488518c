"""What a local mode is: how the extractor gets an image's local scores (alpha, beta).

A mode says, from the ``ExtractConfig`` alone or from the loaded model,

- which options belong to it (``flags``; the command refuses them under another mode) and
  how it settles them before they are hashed (``settle``), how many encoder rows an image
  costs (``views_per_image``);
- the views a decoding worker cuts (``view_spec``), the tower it runs (``tower``), and how
  the views, encoder and scorer extras of a worker are wired (``wire``);
- the arrays it writes beyond the common ones (``array_sizes``: its arguments of
  ``store.layout.result_specs``, and ``extra_specs``: arrays of its own), declared once and
  allocated from that declaration, how a chunk fills them (``chunk_part``), and what
  finalising adds (``finalise``);
- the root attribute ``tiling`` that records what it cut (``describe``).

``cdul.extractor.local.MODES`` maps each ``--local`` name to its mode: a new mode is one
module and one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cdul.store import Store, layout

    from ..config import ExtractConfig
    from ..encoder import Encoder
    from ..packing import PackedBatch, ViewSpec
    from ..tiling import Tiling


@dataclass
class Wiring:
    """What a worker built for the tower, for ``LocalMode.wire`` to wrap: the tower's
    encoder and its views (at the view spec's size), ``exact(px)``: the global view alone at
    ``px`` (exact path), and ``plain()``: an encoder of the untouched image tower."""

    config: ExtractConfig
    bundle: Any  # clip_model.ClipBundle
    encoder: Encoder
    views: Callable[[PackedBatch], Any]
    exact: Callable[[int], Callable[[PackedBatch], Any]]
    plain: Callable[[], Encoder]


@dataclass
class Wired:
    """A worker's views, encoder and scorer extras (``extras(emb, n_images, text) -> dict``)."""

    views: Callable[[PackedBatch], Any]
    encoder: Any  # an Encoder, or what a mode wraps it in (``calls``, ``rows``)
    extras: Callable | None = None


class ChunkPart:
    """A mode's share of one chunk's results: nothing beyond the common arrays."""

    def put(self, arrays: dict, batch: PackedBatch, good: np.ndarray, scores: np.ndarray, tiles, extra: dict) -> None:
        """Fill the mode's arrays of ``arrays`` for the batch's decoded rows ``good``."""

    def arrays(self) -> dict:
        """Arrays written once per chunk (not per image)."""
        return {}


class LocalMode:
    name = ""
    flags: tuple[str, ...] = ()  # the command's options that only this mode reads

    def check_flags(self, given: list[str], owners: dict[str, str]) -> None:
        """Raise ValueError (one line) when ``given`` holds another mode's option
        (``owners``: option -> its mode)."""
        for flag in given:
            if flag not in self.flags and owners.get(flag, self.name) != self.name:
                raise ValueError(f"{flag} goes with --local {owners[flag]}")

    def settle(self, config: ExtractConfig, images: int, bound: Callable[[int, int, str, str], int]) -> ExtractConfig:
        """The options with their model-dependent defaults filled in, sizes bounded by what
        ``images`` images (a chunk) can fill (``bound(value, limit, option, what)``)."""
        return config

    def views_per_image(self, config: ExtractConfig) -> int:
        raise NotImplementedError

    def view_spec(
        self, config: ExtractConfig, size: int, interpolation: str, resize_mode: str
    ) -> tuple[ViewSpec, Tiling | None]:
        """The views a decoding worker cuts for a model of input ``size``."""
        raise NotImplementedError

    def tower(self, visual: torch.nn.Module) -> torch.nn.Module:
        return visual

    def wire(self, w: Wiring) -> Wired:
        return Wired(w.views, w.encoder)

    def rows_per_image(self, encoder, batch: PackedBatch) -> int:
        """After the encoder: the rows each image has (0: as the packed offsets say); a mode
        may set the batch's recorded local-view counts here."""
        return 0

    def array_sizes(self, config: ExtractConfig) -> dict:
        """The mode's arguments of ``store.layout.result_specs``."""
        return {}

    def extra_specs(self, config: ExtractConfig, n_classes: int) -> list[layout.ArraySpec]:
        """Arrays of the mode's own that ``store.layout`` does not declare."""
        return []

    def chunk_part(self, config: ExtractConfig, n_classes: int) -> ChunkPart:
        return ChunkPart()

    def finalise(self, store: Store) -> None:
        """What finalising the store adds, once every chunk is done."""

    def describe(self, config: ExtractConfig) -> dict:
        """The root attribute ``tiling``."""
        raise NotImplementedError
