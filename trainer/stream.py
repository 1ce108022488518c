"""Pseudo labels streamed from the store, one chunk at a time.

The trainer never holds the [N, C] label matrix. An epoch of one rank is a
:class:`LabelStream`: it visits that rank's chunks in an order fixed by (seed, epoch), reads
each chunk's ids, status and labels when the batch sampler reaches it, hands out its rows in
an order fixed by (seed, epoch, chunk), keeps the chunk's labels while its rows are in flight
(the DataLoader prefetches a few batches), takes back the updated rows, and, once every
row of a chunk has come back, writes the whole chunk to the new label round and forgets it.
So at most the chunks spanned by the prefetch window are in memory, whatever N is.

Rows of images that failed extraction, or whose labels are not finite, are never handed out;
they are written to the new round unchanged with the rest of their chunk. Labels outside
[0, 1] are clipped to it as their chunk is read (and so written back clipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cdul.store import Store, layout


def chunk_order(n_chunks: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """The chunks rank ``rank`` of ``world`` trains on in ``epoch``: a permutation of all
    chunks (the same on every rank), dealt out so each rank owns whole chunks."""
    perm = np.random.default_rng([seed, epoch]).permutation(n_chunks)
    return [int(k) for k in perm[rank::world]]


def row_order(n_rows: int, seed: int, epoch: int, chunk: int) -> np.ndarray:
    """The order of the rows of one chunk; it does not depend on which rank owns the chunk."""
    return np.random.default_rng([seed, epoch, chunk]).permutation(n_rows)


def usable_rows(status: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows to train on: extraction succeeded and every label is finite."""
    return (np.asarray(status) == layout.OK) & np.isfinite(labels).all(axis=1)


@dataclass
class RoundScan:
    """What a pass over a label round found, for the rows whose image is ok."""

    rows: np.ndarray  # usable rows per chunk
    ok: int = 0
    not_finite: int = 0
    out_of_range: int = 0
    first_not_finite: int = -1  # image index
    first_out_of_range: int = -1


def scan_round(store: Store, round_k: int) -> RoundScan:
    """Usable rows per chunk, and the ok rows whose labels are not finite or leave [0, 1]
    (a pass over the round, one chunk at a time)."""
    name = layout.round_name(round_k)
    scan = RoundScan(np.zeros(store.n_chunks, dtype=np.int64))
    for chunk in store.chunks(layout.STATUS, name):
        status, labels, a = chunk[layout.STATUS], chunk[name], chunk.start
        ok, usable = status == layout.OK, usable_rows(status, labels)
        scan.rows[chunk.k] = usable.sum()
        scan.ok += int(ok.sum())
        bad = ok & ~usable
        outside = usable & ((labels < 0) | (labels > 1)).any(axis=1)
        if bad.any() and scan.first_not_finite < 0:
            scan.first_not_finite = a + int(np.argmax(bad))
        if outside.any() and scan.first_out_of_range < 0:
            scan.first_out_of_range = a + int(np.argmax(outside))
        scan.not_finite += int(bad.sum())
        scan.out_of_range += int(outside.sum())
    return scan


def count_rows(store: Store, round_k: int) -> np.ndarray:
    """Usable rows per chunk."""
    return scan_round(store, round_k).rows


@dataclass
class _Live:
    start: int
    labels: np.ndarray  # [rows of the chunk, C] float32, updated in place
    flight: np.ndarray  # [rows of the chunk] bool: handed out and not yet committed


class LabelStream:
    """One epoch of one rank over the label round ``round_k``.

    Iterating it yields batches of ``(image index, image id)`` (it is the DataLoader's
    batch sampler). For each batch the training loop calls :meth:`labels` and then
    :meth:`commit` (with the new labels, or None to keep them). Completed chunks go to
    ``out`` (a zarr array of the new round, or None when this epoch writes no round).
    """

    def __init__(
        self,
        store: Store,
        round_k: int,
        chunks: list[int],
        *,
        seed: int,
        epoch: int,
        batch_size: int,
        out=None,
        min_batch: int = 2,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.store = store
        self.source = layout.round_name(round_k)
        self.chunks = list(chunks)
        self.seed, self.epoch, self.batch_size, self.min_batch = seed, epoch, batch_size, min_batch
        self.out = out
        self._live: dict[int, _Live] = {}
        self._done: list[int] = []
        self.peak_live = 0  # most chunks held at once: the memory bound, observable
        self.chunks_written = 0

    # -- the batch sampler --------------------------------------------------------------------
    def _load(self, k: int) -> list[tuple[int, str]]:
        chunk = self.store.chunk(k, layout.IDS, self.source, layout.STATUS)
        start, stop, ids = chunk.start, chunk.stop, chunk[layout.IDS]
        labels = np.array(chunk[self.source], dtype=np.float32)
        ok = usable_rows(chunk[layout.STATUS], labels)
        labels[ok] = np.clip(labels[ok], 0.0, 1.0)
        order = row_order(stop - start, self.seed, self.epoch, k)
        rows = order[ok[order]]
        flight = np.zeros(stop - start, dtype=bool)
        flight[rows] = True
        self._live[k] = _Live(start, labels, flight)
        self.peak_live = max(self.peak_live, len(self._live))
        if not len(rows):
            self._done.append(k)
        return [(start + int(r), str(ids[r])) for r in rows]

    def __iter__(self) -> Iterator[list[tuple[int, str]]]:
        pending: list[tuple[int, str]] = []
        ready: list[list[tuple[int, str]]] = []
        for k in self.chunks:
            pending.extend(self._load(k))
            while len(pending) >= self.batch_size:
                ready.append(pending[: self.batch_size])
                pending = pending[self.batch_size :]
            # Hold the newest batch back: a tail too small for BatchNorm joins it at the end.
            while len(ready) > 1:
                yield ready.pop(0)
        if pending:
            if len(pending) < self.min_batch and ready:
                ready[-1] = ready[-1] + pending
            else:
                ready.append(pending)
        yield from ready

    # -- labels in, labels out -----------------------------------------------------------------
    def _groups(self, index: np.ndarray):
        chunk = index // self.store.chunk_len
        for k in np.unique(chunk):
            mask = chunk == k
            live = self._live.get(int(k))
            if live is None:
                raise KeyError(f"chunk {int(k)} is not in flight (rows {index[mask][:4].tolist()} ...)")
            yield int(k), live, mask, index[mask] - live.start

    def labels(self, index) -> np.ndarray:
        """[B, C] float32 current labels of the images ``index`` (a copy)."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), len(self.store.classes)), dtype=np.float32)
        for _, live, mask, rows in self._groups(index):
            out[mask] = live.labels[rows]
        return out

    def commit(self, index, new: np.ndarray | None = None) -> None:
        """Rows ``index`` are done for this epoch, with labels ``new`` (None: unchanged)."""
        index = np.asarray(index, dtype=np.int64)
        for k, live, mask, rows in self._groups(index):
            if not live.flight[rows].all():
                raise RuntimeError(f"rows of chunk {k} committed that are not in flight (twice?)")
            if new is not None:
                live.labels[rows] = new[mask]
            live.flight[rows] = False
            if not live.flight.any():
                self._done.append(k)
        self.flush()

    def flush(self) -> None:
        """Write every completed chunk to the new round (if any) and drop it from memory."""
        while self._done:
            k = self._done.pop(0)
            live = self._live.pop(k)
            if self.out is not None:
                self.out[live.start : live.start + len(live.labels)] = live.labels
                self.chunks_written += 1

    def close(self) -> None:
        """End of the epoch: every chunk must have come back."""
        self.flush()
        if self._live:
            raise RuntimeError(f"chunks {sorted(self._live)[:8]} still have rows in flight at the end of the epoch")
