"""A label round appears only complete: a write that fails (a full disk) leaves the store as it
was, what a killed writer left is reported by --verify and removed by the next writer, and a
read-only store is said to be one."""

import errno
import os
import subprocess
import warnings

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from embedding_stores import clustered, embedding_store

from cdul.cli.extract import main as extract_cli
from cdul.cli.refine import main as refine_cli
from cdul.index import choose_index, load_or_build
from cdul.store import Store, layout, leftovers
from cdul.store.rounds import RoundStore


@pytest.fixture
def store(tmp_path):
    """A store with rounds 0 and 1 (round 1 from cdul-refine)."""
    emb, _, targets = clustered(300, seed=7)
    url = str(tmp_path / "s.zarr")
    embedding_store(url, emb, np.clip(targets, 0, 1) * 0.8 + 0.1, chunk_len=64)
    assert refine(url).exit_code == 0
    return url


def refine(url, *extra):
    return CliRunner().invoke(refine_cli, ["--store", url, "-q", "--knn", "4", *extra])


def full_disk_on(round_k: int, monkeypatch):
    """Every write into label round round_k fails as a full disk does."""
    real = zarr.Array.__setitem__

    def setitem(self, key, value):
        if self.path == layout.round_name(round_k):
            raise OSError(errno.ENOSPC, "No space left on device", self.path)
        return real(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", setitem)


def labels_entries(url):
    return sorted(e for e in os.listdir(os.path.join(url, layout.LABELS)) if e != "zarr.json")


def test_a_full_disk_during_a_round_leaves_the_store_as_it_was(store, monkeypatch):
    full_disk_on(2, monkeypatch)
    r = refine(store)
    assert r.exit_code == 1 and "disk is full" in r.output and len(r.output.strip().splitlines()) == 1
    assert Store.open(store).label_rounds() == [0, 1]
    assert labels_entries(store) == ["round_000", "round_001"]  # nothing half-written left
    assert leftovers(Store.open(store)) == []
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Zarr warning about an unrecognised node
        assert refine(store).exit_code == 0
    assert Store.open(store).label_rounds() == [0, 1, 2]


def test_what_a_failed_writer_left_is_reported_then_removed(store, monkeypatch):
    full_disk_on(2, monkeypatch)
    monkeypatch.setattr(RoundStore, "abandon_round", lambda self, k: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    assert refine(store).exit_code == 1
    monkeypatch.undo()
    assert labels_entries(store) == ["round_000", "round_001", "round_002"]
    (open(os.path.join(store, layout.LABELS, "round_009"), "w")).close()  # a stray file, as a cut-short write leaves
    r = CliRunner().invoke(extract_cli, ["unused", "--out", store, "--verify"])
    assert r.exit_code == 0, r.output
    found = [line for line in r.output.splitlines() if line.startswith("found:")]
    assert len(found) == 2 and "labels/round_002: an incomplete label round, begun by cdul-refine" in found[0]
    assert "labels/round_009" in found[1] and "metadata unreadable" in found[1]
    assert Store.open(store).label_rounds() == [0, 1]  # readers see the complete rounds only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert refine(store).exit_code == 0
    assert labels_entries(store) == ["round_000", "round_001", "round_002"]
    assert Store.open(store).label_rounds() == [0, 1, 2] and leftovers(Store.open(store)) == []


def test_a_read_only_store_is_said_to_be_one(store, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *a, **k):
        if str(path).startswith(os.path.realpath(store)) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", read_only)
    r = refine(store)
    assert r.exit_code == 1 and "is read-only" in r.output and "Errno" not in r.output
    assert Store.open(store).label_rounds() == [0, 1]


@pytest.fixture
def read_only_copy(store, tmp_path):
    """The store on a small tmpfs mounted read-only (root only)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("needs root and tmpfs to make a read-only store")
    try:
        subprocess.run(["cp", "-r", store, str(mnt / "s.zarr")], check=True)
        subprocess.run(["rm", "-r", str(mnt / "s.zarr" / "_index")], check=True)  # refine's index: none to reuse
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield str(mnt / "s.zarr")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_searching_a_read_only_store_keeps_its_index_elsewhere(read_only_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = sorted(os.listdir(read_only_copy))
    s = Store.open(read_only_copy)
    index = load_or_build(s, choose_index(s.n))  # what cdul-search does
    assert index.ntotal == s.n and sorted(os.listdir(read_only_copy)) == before
    assert any(f.endswith(".faiss") for _, _, fs in os.walk(tmp_path / "cache") for f in fs)
    load_or_build(s, choose_index(s.n))  # and reads it back from there
    r = refine(read_only_copy)
    assert r.exit_code == 1 and "is read-only" in r.output and "Errno" not in r.output
