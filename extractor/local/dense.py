"""The dense mode (``--local dense``): one pass per image through a ViT whose last block
attends with SCLIP's correlative self-attention (``extractor/dense.py``), scoring every patch
as a local view; optionally every patch embedding (emb/patches) and the patch bank of
``--keep-patches`` (``extractor/bank.py``: each chunk keeps its best K per class, finalising
merges them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdul.store import layout

from .base import ChunkPart, LocalMode, Wired

if TYPE_CHECKING:
    from ..config import ExtractConfig

BANK_KEYS = "bank_"


class DensePart(ChunkPart):
    """A chunk's patch embeddings and its part of the patch bank."""

    def __init__(self, n_classes: int, k: int, d: int):
        from ..bank import ChunkBank

        self.bank = ChunkBank(n_classes, k, d) if k else None

    def put(self, arrays, batch, good, scores, tiles, extra) -> None:
        from ..bank import to_entries

        if "patches" in extra and layout.EMB_PATCHES in arrays:
            arrays[layout.EMB_PATCHES][good] = extra["patches"]
        if self.bank is not None and f"{BANK_KEYS}cls" in extra:
            cand = {k[len(BANK_KEYS) :]: v for k, v in extra.items() if k.startswith(BANK_KEYS)}
            self.bank.add(to_entries(cand, batch.rows[batch.n_views > 0]))

    def arrays(self) -> dict:
        return self.bank.arrays() if self.bank is not None else {}


class DenseMode(LocalMode):
    name = "dense"
    flags = ("--dense-size", "--keep-patches", "--keep-patch-embeddings")

    def check_flags(self, given, owners) -> None:
        if any(owners.get(f) == "tiles" for f in given):
            raise ValueError("--local dense scores patches, not tiles: drop --snippet, --tile-px and --keep-tiles")
        super().check_flags(given, owners)

    def size(self, config: ExtractConfig) -> int:
        from ..clip_model import model_input_size

        return config.dense_size or model_input_size(config.model)

    def grid(self, config: ExtractConfig) -> int:
        from ..clip_model import model_config
        from ..dense import dense_grid

        return dense_grid(model_config(config.model), self.size(config))

    def settle(self, config, images, bound):
        import dataclasses

        config = dataclasses.replace(config, dense_size=self.size(config))
        patches = self.grid(config) ** 2 * images  # a tower dense mode cannot run is refused here
        if config.keep_patches:
            keep = bound(config.keep_patches, patches, "--keep-patches", "patches of a chunk")
            config = dataclasses.replace(config, keep_patches=keep)
        return config

    def views_per_image(self, config: ExtractConfig) -> int:
        return 2

    def view_spec(self, config, size, interpolation, resize_mode):
        from ..packing import ViewSpec

        return ViewSpec(config.dense_size or size, interpolation, resize_mode), None

    def tower(self, visual):
        from ..dense import DenseTower

        return DenseTower(visual)

    def wire(self, w) -> Wired:
        """The class token and patches from one pass; at a size other than the model's, the
        global embedding from a normal pass at the model's size."""
        from ..dense import DenseEncoder

        spec, _ = self.view_spec(w.config, w.bundle.input_size, w.bundle.interpolation, w.bundle.resize_mode)
        glob = None
        if spec.size != w.bundle.input_size:
            glob = w.exact(w.bundle.input_size)
            encoder = DenseEncoder(w.encoder, w.plain())
        else:
            encoder = DenseEncoder(w.encoder)
        tower_views = w.views

        def views(batch):
            return glob(batch) if glob else None, tower_views(batch)

        c = w.config
        extras = None
        if c.keep_patches or c.keep_patch_embeddings:
            from ..bank import dense_extras

            def extras(emb, b, text):
                return dense_extras(emb, b, text, c.keep_patches, c.keep_patch_embeddings)

        return Wired(views, encoder, extras)

    def rows_per_image(self, encoder, batch) -> int:
        rows = encoder.rows_per_image
        batch.n_tiles[batch.n_views > 0] = rows - 1  # the store counts an image's patches as its local views
        return rows

    def array_sizes(self, config: ExtractConfig) -> dict:
        """Patches per image, bank entries per class and the embedding width (from the
        model's config; no weights loaded)."""
        if not (config.keep_patches or config.keep_patch_embeddings):
            return {}
        from ..clip_model import model_embed_dim

        return {
            "patches": self.grid(config) ** 2 if config.keep_patch_embeddings else 0,
            "bank": config.keep_patches,
            "text_dim": model_embed_dim(config.model),
        }

    def chunk_part(self, config: ExtractConfig, n_classes: int) -> ChunkPart:
        if not config.keep_patches:
            return DensePart(n_classes, 0, 0)
        return DensePart(n_classes, config.keep_patches, self.array_sizes(config)["text_dim"])

    def finalise(self, store) -> None:
        from ..bank import BANK_SCALE, merge_chunk_banks

        if store.has(layout.BANK_EMB):
            k = store.array(layout.BANK_EMB).shape[1]
            store.array(layout.BANK_EMB).attrs.update({"entries": merge_chunk_banks(store, k), "scale": BANK_SCALE})

    def describe(self, config: ExtractConfig) -> dict:
        """Dense mode cuts no tiles: it records its pass's size and patch grid (the hashed
        configuration keeps the tiling option as given, so a store written before this
        record still resumes)."""
        return {"mode": "dense", "size": self.size(config), "grid": self.grid(config)}
