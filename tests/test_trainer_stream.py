"""Label streaming: bounded memory (reads instrumented), order fixed by seed and epoch,
skipped rows carried over unchanged, rounds written chunk by chunk."""

import collections
import math

import numpy as np
import pytest
import torch
from voc_fixtures import make_label_store

from cdul.store import Store, layout
from cdul.trainer.stream import LabelStream, chunk_order, count_rows, row_order

N, C, CHUNK = 203, 3, 8


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.uniform(0.05, 0.95, (N, C)).astype(np.float32)
    status = np.full(N, layout.OK, np.uint8)
    status[[3, 40, 41, 200]] = layout.FAILED
    labels[[7, 100]] = np.nan
    status[16:24] = layout.FAILED  # a chunk with nothing to train on
    return make_label_store(
        str(tmp_path / "s.zarr"),
        [f"img/{i:04d}.png" for i in range(N)],
        ["a", "b", "c"],
        labels,
        status=status,
        chunk_len=CHUNK,
    )


def usable(store):
    labels = store.read(layout.round_name(0))
    return np.flatnonzero((store.read(layout.STATUS) == layout.OK) & np.isfinite(labels).all(1))


def instrument(store, monkeypatch):
    reads = []
    original = store.read

    def read(name, start=0, stop=None):
        reads.append((name, start, store.n if stop is None else stop))
        return original(name, start, stop)

    monkeypatch.setattr(store, "read", read)
    return reads


def drive(stream, window: int, new=None):
    """Consume the stream as the training loop does, with ``window`` batches in flight."""
    flight, order = collections.deque(), []
    for batch in stream:
        flight.append(batch)
        if len(flight) > window:
            done = flight.popleft()
            idx = np.array([i for i, _ in done])
            order += idx.tolist()
            stream.commit(idx, None if new is None else new(idx, stream.labels(idx)))
    while flight:
        idx = np.array([i for i, _ in flight.popleft()])
        order += idx.tolist()
        stream.commit(idx, None if new is None else new(idx, stream.labels(idx)))
    stream.close()
    return order


@pytest.mark.parametrize("batch_size,window", [(4, 2), (5, 0), (13, 3)])
def test_reads_are_chunk_sized_and_memory_bounded(store, monkeypatch, batch_size, window):
    reads = instrument(store, monkeypatch)
    stream = LabelStream(store, 0, chunk_order(store.n_chunks, 1, 1), seed=1, epoch=1, batch_size=batch_size)
    drive(stream, window)
    assert reads, "the stream read nothing"
    for name, start, stop in reads:
        assert start % CHUNK == 0 and 0 < stop - start <= CHUNK, (name, start, stop)
    label_reads = [r for r in reads if r[0] == layout.round_name(0)]
    assert sorted(r[1] for r in label_reads) == [k * CHUNK for k in range(store.n_chunks)]  # each chunk once
    bound = 2 + math.ceil((window + 2) * batch_size / CHUNK)
    assert stream.peak_live <= bound < store.n_chunks, (stream.peak_live, bound)


def test_real_dataloader_keeps_memory_bounded(store):
    class Echo(torch.utils.data.Dataset):
        def __getitem__(self, item):
            return item[0]

    stream = LabelStream(store, 0, chunk_order(store.n_chunks, 0, 1), seed=0, epoch=1, batch_size=4)
    loader = torch.utils.data.DataLoader(
        Echo(), batch_sampler=stream, num_workers=1, prefetch_factor=2, collate_fn=lambda items: np.array(items)
    )
    seen = []
    for idx in loader:
        stream.labels(idx)
        stream.commit(idx)
        seen += idx.tolist()
    stream.close()
    assert sorted(seen) == usable(store).tolist()
    assert stream.peak_live <= 2 + math.ceil(4 * 4 / CHUNK)


def test_order_is_a_permutation_fixed_by_seed_and_epoch(store):
    def order(seed, epoch):
        return drive(
            LabelStream(store, 0, chunk_order(store.n_chunks, seed, epoch), seed=seed, epoch=epoch, batch_size=6), 1
        )

    first = order(3, 1)
    assert sorted(first) == usable(store).tolist() and len(set(first)) == len(first)
    assert order(3, 1) == first
    assert order(3, 2) != first and order(4, 1) != first
    # chunks come one after another, in chunk_order, each in row_order
    chunks = [i // CHUNK for i in first]
    visited = [k for j, k in enumerate(chunks) if j == 0 or chunks[j - 1] != k]
    expected = [k for k in chunk_order(store.n_chunks, 3, 1) if any(i // CHUNK == k for i in first)]
    assert visited == expected
    k = visited[0]
    rows = [i - k * CHUNK for i in first if i // CHUNK == k]
    assert rows == [r for r in row_order(min(CHUNK, N - k * CHUNK), 3, 1, k) if k * CHUNK + r in set(first)]


def test_ranks_own_disjoint_whole_chunks():
    parts = [chunk_order(26, 5, 2, rank, 3) for rank in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(26))
    assert all(abs(len(p) - len(q)) <= 1 for p in parts for q in parts)


def test_round_written_chunk_by_chunk_with_skipped_rows_unchanged(store, monkeypatch):
    old = store.read(layout.round_name(0))
    out = store.begin_round(1, {"source": "test"})
    writes = []
    original = out.__setitem__

    class Spy:
        def __setitem__(self, key, value):
            writes.append((key.start, key.stop))
            original(key, value)

    stream = LabelStream(store, 0, chunk_order(store.n_chunks, 0, 1), seed=0, epoch=1, batch_size=5, out=Spy())
    drive(stream, 2, new=lambda idx, y: y + 0.01)
    assert sorted(writes) == [store.chunk_bounds(k) for k in range(store.n_chunks)]
    assert store.label_rounds() == [0]  # invisible until finished
    store.finish_round(1)
    new = Store.open(store.url).read(layout.round_name(1))
    moved = np.zeros(N, bool)
    moved[usable(store)] = True
    np.testing.assert_allclose(new[moved], old[moved] + 0.01, rtol=1e-6)
    np.testing.assert_array_equal(new[~moved], old[~moved])  # failed rows as they were, NaN rows still NaN


def test_count_rows_and_double_commit(store):
    counts = count_rows(store, 0)
    assert counts.sum() == len(usable(store)) and counts[2] == 0
    stream = LabelStream(store, 0, [0], seed=0, epoch=0, batch_size=2)
    batch = next(iter(stream))
    idx = np.array([i for i, _ in batch])
    stream.commit(idx)
    with pytest.raises((RuntimeError, KeyError)):
        stream.commit(idx)
