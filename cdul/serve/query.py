"""Search and neighbours over a store's image embeddings (``emb/global``), as cdul-search
does it: the query goes through the store's own CLIP (cdul.cli.search.QueryEncoder,
loaded once, on the first query), the faiss index is cdul.index's (exact up to 200,000
images, kept in ``<store>/_index`` as cdul-search keeps it, or held in memory only where
the store cannot be written). Both are made on first use, never at start-up.
"""

from __future__ import annotations

import threading

import numpy as np

from cdul.store import layout

from .catalog import Catalog, RequestError

MAX_K = 200  # results a search returns at most
MAX_UPLOAD = 32 << 20  # bytes of an uploaded query image


class Finder:
    def __init__(self, cat: Catalog, weights_cache: str | None = None):
        self.cat, self.weights_cache = cat, weights_cache
        self._index = self._encoder = None
        self.lock = threading.Lock()

    def _require_embeddings(self) -> None:
        if not self.cat.store.has(layout.EMB_GLOBAL):
            raise RequestError(404, f"{self.cat.url} keeps no image embeddings: extract with --keep-embeddings")

    def index(self):
        from cdul.index import build_index, choose_index, load_or_build

        self._require_embeddings()
        with self.lock:
            if self._index is None:
                spec = choose_index(self.cat.n)
                try:
                    self._index = load_or_build(self.cat.store, spec, gpu=False)
                except OSError:  # a store this process cannot write: the index lives in memory
                    self._index = build_index(self.cat.store, spec, gpu=False)
            return self._index

    def encoder(self):
        from cdul.cli.search import QueryEncoder
        from cdul.extractor.clip_model import WeightsUnavailableError

        self._require_embeddings()
        with self.lock:
            if self._encoder is None:
                try:
                    self._encoder = QueryEncoder(self.cat.store, self.weights_cache)
                except WeightsUnavailableError as exc:
                    raise RequestError(503, f"the store's CLIP cannot be loaded here: {exc}") from None
                except ValueError as exc:
                    raise RequestError(404, str(exc)) from None
            return self._encoder

    def hits(self, vector: np.ndarray, k: int, exclude: int | None = None) -> list[dict]:
        from cdul.index import search

        scores, rows = search(self.index(), vector[None], k + (exclude is not None))
        keep = [(s, r) for s, r in zip(scores[0], rows[0]) if r >= 0 and r != exclude][:k]
        cat = self.cat
        cards = cat.cards(np.array([r for _, r in keep], dtype=np.int64), cat.default_source())
        for card, (s, _) in zip(cards, keep):
            card["score"] = float(s)
        return cards

    def neighbours(self, row: int, k: int) -> list[dict]:
        self._require_embeddings()
        emb = self.cat.rows(layout.EMB_GLOBAL, np.array([row]))[0].astype(np.float32)
        if not np.isfinite(emb).all():
            raise RequestError(404, f"image {row} has no embedding (it failed or is not extracted yet)")
        return self.hits(emb, k, exclude=row)

    def by_text(self, text: str, k: int) -> list[dict]:
        text = text.strip()
        if not text or len(text) > 300:
            raise RequestError(400, "a text query must have 1..300 characters")
        encoder = self.encoder()
        with self.lock:
            vector = encoder.text(text)
        return self.hits(vector, k)

    def by_image(self, data: bytes, k: int) -> list[dict]:
        from cdul.data.decode import DecodeError

        if not data:
            raise RequestError(400, "send the query image as the request body")
        if len(data) > MAX_UPLOAD:
            raise RequestError(413, f"the query image is over {MAX_UPLOAD >> 20} MB")
        encoder = self.encoder()
        try:
            with self.lock:
                vector = encoder.image(data)
        except DecodeError as exc:
            raise RequestError(400, f"the uploaded file is not an image: {exc}") from None
        return self.hits(vector, k)
