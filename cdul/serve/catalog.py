"""One store as the pages read it: its score sources, a class's images ranked by a source,
one image's scores and tiles, the store's overview.

Sources: every complete label round (``round_000`` is y0 as extraction wrote it, later
rounds come from training or refinement) and, where the store has the similarities,
``S_g``, ``S_ag`` and ``y0`` recomputed from them with round 0's zeta and lambda
(cdul.kernels.aggregate). Nothing is read at start-up but the store's attributes: a
class's ranking reads one column of one source, chunk by chunk, and is kept per
(source, class) in an LRU; cards and image pages read whole store chunks through an LRU of
chunks bounded in bytes. Rows are the only handle a request has on an image: the id, and so
the file, always comes from the store.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from cdul.labels import DEFAULT_RULE, Decision, decide
from cdul.store import Store, attr_float, layout

SIM_SOURCES = ("S_g", "S_ag", "y0")
MAX_PAGE = 200  # cards a page holds at most


class RequestError(Exception):
    """A request that cannot be answered as asked: its HTTP status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class LRU:
    """A thread-safe least-recently-used cache bounded by entries and by bytes (ndarray nbytes)."""

    def __init__(self, entries: int = 64, max_bytes: int = 1 << 62):
        self.entries, self.max_bytes = entries, max_bytes
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key, make: Callable[[], object]):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()  # outside the lock: two threads may make the same value once each
        size = _nbytes(value)
        with self.lock:
            if key not in self.items:
                self.items[key] = value
                self.bytes += size
            while len(self.items) > 1 and (len(self.items) > self.entries or self.bytes > self.max_bytes):
                _, old = self.items.popitem(last=False)
                self.bytes -= _nbytes(old)
        return value


def _nbytes(value) -> int:
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.nbytes
    return len(value) if isinstance(value, bytes) else 64


def number(text: str, what: str) -> int:
    """A whole number as a request spells it (ASCII digits, an optional minus sign), or a 400."""
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise RequestError(400, f"{what} must be a whole number, not {text[:40]!r}")
    return int(text)


def plain(x: float) -> float | None:
    """A score as JSON holds it: None for NaN."""
    return float(x) if np.isfinite(x) else None


class Catalog:
    """A store opened for the pages (attributes only: no array is read here)."""

    def __init__(self, url: str, *, data_root: str | None = None, rule: Decision = DEFAULT_RULE, cache_bytes=256 << 20):
        self.store = store = Store.open(url)
        self.url, self.n, self.classes = store.url, store.n, store.classes
        dataset = store.section("dataset")
        self.kind = str(dataset.get("kind", "folder"))
        self.root = data_root or str(dataset.get("root", ""))
        r0 = store.round_array(0).attrs.asdict() if 0 in store.label_rounds() else {}
        self.zeta, self.lam = attr_float(r0.get("zeta", 0.5)), attr_float(r0.get("lam", 0.0))
        self.rule = rule
        self.chunk_cache = LRU(entries=1 << 20, max_bytes=cache_bytes)
        self.rankings = LRU(entries=64)
        self.memo = LRU(entries=256)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """The decided labels of score rows [m, C] under the rule cdul-export also applies."""
        return decide(scores, self.rule)

    def named(self, decided: np.ndarray, scores: np.ndarray) -> list[str]:
        """The names of one image's decided classes, best score first."""
        order = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf), kind="stable")
        return [self.classes[c] for c in order if decided[c]]

    def caveat(self) -> str | None:
        """cdul-report's warning where the store's CLIP had random weights (None otherwise)."""
        model = dict(self.store.section("model"))
        if not model:
            return None
        from cdul.report import caveats

        return caveats({"model": model})[0]

    # -- sources ----------------------------------------------------------------------------
    def sources(self) -> list[str]:
        rounds = [f"round_{k:03d}" for k in self.store.label_rounds()]
        return rounds + (list(SIM_SOURCES) if self.store.has(layout.SIM_ALPHA) else [])

    def default_source(self) -> str:
        sources = self.sources()
        if not sources:
            raise RequestError(404, f"{self.url} has no scores yet (is extraction finished?)")
        rounds = [s for s in sources if s.startswith("round_")]
        return rounds[-1] if rounds else sources[0]

    def source(self, name: str | None) -> str:
        """A source name from a request, checked; the default for None or an empty string."""
        if not name:
            return self.default_source()
        if name not in self.sources():
            raise RequestError(400, f"unknown source {name[:40]!r}: choose one of {', '.join(self.sources())}")
        return name

    def _compose(self, source: str, get: Callable[[str], np.ndarray]) -> np.ndarray:
        """A source's scores from the arrays ``get`` reads (for some rows, and some classes)."""
        if source.startswith("round_"):
            return get(layout.round_name(int(source[6:])))
        if source == "S_g":
            return get(layout.SIM_GLOBAL)
        from cdul.kernels import aggregate_local, initial_labels  # imports torch: not at start-up

        alpha, beta = get(layout.SIM_ALPHA), get(layout.SIM_BETA)
        if source == "S_ag":
            return aggregate_local(alpha, beta, self.zeta)
        return initial_labels(get(layout.SIM_GLOBAL), alpha, beta, self.zeta, self.lam)

    def block(self, source: str, a: int, b: int, c: int | None = None) -> np.ndarray:
        """A source's scores of rows a:b, read straight from the store: one class c, or all."""
        cols = slice(None) if c is None else c
        return np.asarray(
            self._compose(source, lambda name: np.asarray(self.store.array(name)[a:b, cols])), dtype=np.float32
        )

    # -- reading rows -------------------------------------------------------------------------
    def chunk(self, name: str, k: int) -> np.ndarray:
        a, b = self.store.chunk_bounds(k)
        return self.chunk_cache.get((name, k), lambda: self.store.read(name, a, b))

    def rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of one array, in the order given, read through the chunk cache."""
        rows = np.asarray(rows, dtype=np.int64)
        parts, where = [], []
        which = rows // self.store.chunk_len
        for k in np.unique(which):
            sel = np.flatnonzero(which == k)
            parts.append(self.chunk(name, int(k))[rows[sel] - k * self.store.chunk_len])
            where.append(sel)
        if not parts:
            return np.asarray(self.store.array(name)[0:0])
        out = np.concatenate(parts)
        inverse = np.empty(len(rows), np.int64)
        inverse[np.concatenate(where)] = np.arange(len(rows))
        return out[inverse]

    def scores(self, source: str, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._compose(source, lambda name: self.rows(name, rows)), dtype=np.float32)

    def status(self) -> np.ndarray:
        """images/status of every image (one byte an image), read once chunk by chunk."""
        return self.memo.get(
            "status", lambda: np.concatenate([c[layout.STATUS] for c in self.store.chunks(layout.STATUS)])
        )

    def check_row(self, text: str) -> int:
        row = number(text, "an image's row")
        if not 0 <= row < self.n:
            raise RequestError(404, f"no image at row {row}: this store has rows 0..{self.n - 1}")
        return row

    def check_class(self, text: str) -> int:
        c = number(text, "a class's index")
        if not 0 <= c < len(self.classes):
            raise RequestError(404, f"no class {c}: this store has classes 0..{len(self.classes) - 1}")
        return c

    # -- a class's ranking ----------------------------------------------------------------
    def ranking(self, source: str, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ok images with a finite score for class c, best first."""

        def make():
            bounds = [self.store.chunk_bounds(k) for k in range(self.store.n_chunks)]
            column = np.concatenate([self.block(source, a, b, c) for a, b in bounds])
            valid = np.flatnonzero((self.status() == layout.OK) & np.isfinite(column))
            order = valid[np.argsort(-column[valid], kind="stable")].astype(np.int32)
            return order, column[order]

        return self.rankings.get((source, c), make)

    def cards(self, rows: np.ndarray, source: str) -> list[dict]:
        """What a thumbnail card shows: id, the decided labels (best score first) and the ground
        truth, with the decided labels the truth denies (``wrong``) and the true ones not
        decided (``missed``)."""
        rows = np.asarray(rows, dtype=np.int64)
        ids = self.rows(layout.IDS, rows)
        scores = self.scores(source, rows)
        decided = self.decide(scores)
        truth = self.rows(layout.TARGETS, rows) if self.store.has(layout.TARGETS) else None
        names = self.classes
        out = []
        for i, row in enumerate(rows):
            card = {"row": int(row), "id": str(ids[i]), "decided": self.named(decided[i], scores[i])}
            if truth is not None:
                card["truth"] = [names[c] for c in np.flatnonzero(truth[i] == 1)]
                card["wrong"] = [names[c] for c in np.flatnonzero(decided[i] & (truth[i] == -1))]
                card["missed"] = [names[c] for c in np.flatnonzero(~decided[i] & (truth[i] == 1))]
            out.append(card)
        return out

    def class_page(self, c: int, source: str, page: int, size: int) -> dict:
        order, scores = self.ranking(source, c)
        pages = max(1, -(-len(order) // size))
        if page >= pages:
            raise RequestError(404, f"page {page} is past the last page ({pages - 1}) of class {self.classes[c]!r}")
        sel = slice(page * size, (page + 1) * size)
        cards = self.cards(order[sel], source)
        for card, score in zip(cards, scores[sel]):
            card["score"] = plain(score)
        return {
            "store": self.url,
            "class": {"index": c, "name": self.classes[c]},
            "source": source,
            "sources": self.sources(),
            "rule": self.rule.describe(),
            "caveat": self.caveat(),
            "page": page,
            "size": size,
            "pages": pages,
            "total": len(order),
            "images": cards,
        }
