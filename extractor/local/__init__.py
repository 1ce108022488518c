"""The local modes of the extractor, by their ``--local`` name (``base.LocalMode`` says what
a mode is; a new one is a module beside these and one line in ``MODES``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdul.store import layout

from .base import ChunkPart, LocalMode, Wired, Wiring
from .dense import DenseMode
from .tiles import TilesMode

if TYPE_CHECKING:
    from ..config import ExtractConfig

MODES: dict[str, LocalMode] = {
    "tiles": TilesMode(),
    "dense": DenseMode(),
}


def local_mode(name: str) -> LocalMode:
    if name not in MODES:
        raise ValueError(f"local must be one of {', '.join(MODES)}, not {name!r}")
    return MODES[name]


def result_specs(config: ExtractConfig, n_classes: int, embed_dim: int) -> list[layout.ArraySpec]:
    """The arrays an extraction with ``config`` fills: the common ones (and the global
    embeddings, ``embed_dim`` wide, when kept) and its local mode's."""
    mode = local_mode(config.local)
    common = layout.result_specs(
        n_classes, embed_dim=embed_dim if config.keep_embeddings else 0, **mode.array_sizes(config)
    )
    return common + mode.extra_specs(config, n_classes)


def flag_owners() -> dict[str, str]:
    """Each mode's own options -> the mode's name."""
    return {flag: name for name, mode in MODES.items() for flag in mode.flags}


__all__ = ["MODES", "ChunkPart", "LocalMode", "Wired", "Wiring", "flag_owners", "local_mode", "result_specs"]
