"""The store on its own: creation, chunk flags, rounds, version and lock refusals."""

import json
import os
import warnings

import numpy as np
import pytest
import zarr

from cdul.store import Store, StoreError, StoreLock, StoreLockedError, layout, remove_store


def small_store(path, n=7, chunk_len=3, **arrays):
    return Store.create(
        str(path),
        ids=[f"img{i}.jpg" for i in range(n)],
        classes=["a", "b"],
        specs=layout.result_specs(2, **arrays),
        targets=np.ones((n, 2), np.int8),
        chunk_len=chunk_len,
        attrs={"config_hash": "x"},
    )


def test_chunks_flags_and_reads(tmp_path):
    s = small_store(tmp_path / "s.zarr")
    assert s.n_chunks == 3 and s.chunk_bounds(2) == (6, 7)
    assert s.pending_chunks() == [0, 1, 2]
    s.write_chunk(1, {layout.SIM_GLOBAL: np.full((3, 2), 0.5, np.float32)})
    assert s.pending_chunks() == [0, 2]
    assert np.isnan(s.read(layout.SIM_GLOBAL, 0, 3)).all() and (s.read(layout.SIM_GLOBAL, 3, 6) == 0.5).all()
    with pytest.raises(ValueError):
        s.write_chunk(0, {layout.SIM_GLOBAL: np.zeros((2, 2), np.float32)})
    assert Store.open(str(tmp_path / "s.zarr")).ids() == [f"img{i}.jpg" for i in range(7)]


def test_chunks_yield_bounds_and_the_rows_asked_for(tmp_path):
    s = small_store(tmp_path / "s.zarr", bank=2, text_dim=4)
    sims = np.arange(14, dtype=np.float32).reshape(7, 2)
    for chunk in s.chunks():
        assert chunk.arrays == {} and len(chunk) == chunk.stop - chunk.start
        score = np.full((2, 2), float(chunk.k), np.float32)
        s.write_chunk(chunk.k, {layout.SIM_GLOBAL: sims[chunk.start : chunk.stop], layout.BANK_CHUNK_SCORE: score})
    chunks = list(s.chunks(layout.SIM_GLOBAL, layout.IDS, layout.BANK_CHUNK_SCORE))
    assert [(c.k, c.start, c.stop) for c in chunks] == [(0, 0, 3), (1, 3, 6), (2, 6, 7)]
    for c in chunks:
        assert set(c.arrays) == {layout.SIM_GLOBAL, layout.IDS, layout.BANK_CHUNK_SCORE}
        np.testing.assert_array_equal(c[layout.SIM_GLOBAL], sims[c.start : c.stop])
        assert list(c[layout.IDS]) == [f"img{i}.jpg" for i in range(c.start, c.stop)]
        assert c[layout.BANK_CHUNK_SCORE].shape == (2, 2) and (c[layout.BANK_CHUNK_SCORE] == c.k).all()
    assert s.pending_chunks() == []
    one = s.chunk(1, layout.SIM_GLOBAL)
    assert (one.k, one.start, one.stop) == (1, 3, 6) and set(one.arrays) == {layout.SIM_GLOBAL}
    with pytest.raises(IndexError):
        s.chunk(3)


def test_rounds_become_visible_when_finished(tmp_path):
    s = small_store(tmp_path / "s.zarr")
    arr = s.begin_round(0, {"zeta": 0.5})
    arr[:] = np.zeros((7, 2), np.float32)
    assert s.label_rounds() == []
    with pytest.raises(StoreError, match="no complete label round"):
        s.latest_round()
    s.finish_round(0)
    s.begin_round(1, {})
    assert Store.open(str(tmp_path / "s.zarr")).label_rounds() == [0]
    s.finish_round(1)
    s.drop_rounds_after(0)
    assert s.label_rounds() == [0] and "round_001" not in s.group["labels"]


def test_unknown_format_version_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    small_store(path)
    zarr.open_group(str(path), mode="r+").attrs["format_version"] = 99
    with pytest.raises(StoreError, match="format version 99"):
        Store.open(str(path))


@pytest.mark.parametrize(
    "key, value", [("chunk_len", "3"), ("n_images", True), ("classes", ["a", 2]), ("dataset", [1])]
)
def test_an_edited_attribute_is_a_store_error_that_says_so(tmp_path, key, value):
    path = tmp_path / "s.zarr"
    small_store(path)
    zarr.open_group(str(path), mode="r+").attrs[key] = value
    with pytest.raises(StoreError, match="extract"):
        Store.open(str(path)).section("dataset")


def test_remove_refuses_what_is_not_a_store(tmp_path):
    (tmp_path / "important").mkdir()
    (tmp_path / "important" / "thesis.tex").write_text("x")
    with pytest.raises(StoreError, match="not a cdul store"):
        remove_store(str(tmp_path / "important"))
    assert (tmp_path / "important" / "thesis.tex").exists()


def test_lock_is_exclusive_and_released(tmp_path):
    path = str(tmp_path / "s.zarr")
    with StoreLock(path, create=True):
        with pytest.raises(StoreLockedError, match="in use"):
            StoreLock(path, create=True).acquire()
        holder = json.loads(open(os.path.join(path, ".lock")).read())
        assert holder["pid"] == os.getpid()
    with StoreLock(path, create=True):
        pass
    assert os.listdir(path) == []  # a clean release leaves nothing in the store


def _open_quietly(path):
    """The store through xarray, failing on any warning (such as a missing consolidated metadata)."""
    xr = pytest.importorskip("xarray")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_datatree(str(path), engine="zarr"), xr.open_zarr(str(path))


def test_xarray_opens_a_finished_store_with_coordinates(tmp_path):
    path = tmp_path / "s.zarr"
    s = Store.create(
        str(path),
        ids=["a/1.jpg", "b/2.jpg", "c/3.jpg"],
        classes=["cat", "dining table"],
        specs=layout.result_specs(2, tiles_max=4),
        targets=np.array([[1, 0], [-1, 1], [0, -1]]),
        chunk_len=2,
    )
    s.begin_round(0, {"zeta": 0.5})[:] = np.full((3, 2), 0.25, np.float32)
    s.finish_round(0)
    s.set_attrs(complete=True)
    tree, root = _open_quietly(path)
    assert list(root["image"].values) == ["a/1.jpg", "b/2.jpg", "c/3.jpg"]
    assert list(root["class"].values) == ["cat", "dining table"] and list(root["tile"].values) == [0, 1, 2, 3]
    assert root["targets"].sel({"image": "c/3.jpg", "class": "cat"}).item() == 0  # difficult stays 0, not masked
    assert tree["labels/round_000"].sel({"class": "dining table"}).values.tolist() == [0.25] * 3
    assert tree["sim/tiles"].dims == ("image", "tile", "class")
    assert list(tree["images/id"].coords["image"].values) == list(tree["images/id"].values)

    s.begin_round(1, {})[:] = np.ones((3, 2), np.float32)
    assert "round_001" not in _open_quietly(path)[0]["labels"]  # unfinished rounds stay out of sight
    s.finish_round(1)
    tree = _open_quietly(path)[0]
    assert tree["labels/round_001"].attrs["complete"] and tree.attrs["label_rounds"] == [0, 1]
    s.drop_rounds_after(0)
    assert "round_001" not in _open_quietly(path)[0]["labels"]
    assert Store.open(str(path)).label_rounds() == [0]


def test_lock_file_removed_under_a_waiting_opener_is_not_trusted(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder removed it must not
    believe it holds the lock of the store."""
    path = str(tmp_path / "s.zarr")
    first = StoreLock(path, create=True)
    first.acquire()
    real_open, opened = os.open, []

    def open_then_holder_releases(name, *a, **k):
        fd = real_open(name, *a, **k)
        if str(name).endswith(".lock") and not opened:
            opened.append(fd)
            first.release()  # the holder lets go between our open and our lock
        return fd

    monkeypatch.setattr(os, "open", open_then_holder_releases)
    second = StoreLock(path, create=True)
    second.acquire()
    assert opened
    assert os.path.exists(os.path.join(path, ".lock")) and second.token
    assert json.loads(open(os.path.join(path, ".lock")).read())["token"] == second.token
    second.release()


def test_a_process_of_an_older_run_cannot_write_a_chunk(tmp_path):
    path = tmp_path / "s.zarr"
    old_run = StoreLock(str(path), create=True)
    old_run.acquire()
    small_store(path)
    orphan = Store.open(str(path), mode="r+")  # a worker of the run holding the lock
    orphan.write_chunk(0, {layout.SIM_GLOBAL: np.zeros((3, 2), np.float32)})
    old_run.release()
    with pytest.raises(StoreError, match="another run now owns"):  # the run is over
        orphan.write_chunk(1, {layout.SIM_GLOBAL: np.zeros((3, 2), np.float32)})
    with StoreLock(str(path), create=True):  # a new run (killed -9 runs leave their lock file: the same)
        with pytest.raises(StoreError, match="another run now owns"):
            orphan.write_chunk(2, {layout.SIM_GLOBAL: np.zeros((1, 2), np.float32)})
        Store.open(str(path), mode="r+").write_chunk(2, {layout.SIM_GLOBAL: np.ones((1, 2), np.float32)})
    assert Store.open(str(path)).pending_chunks() == [1]


def test_verify_names_every_kind_of_bad_row(tmp_path):
    from cdul.store import verify

    s = Store.create(
        str(tmp_path / "s.zarr"),
        ids=[f"i{i}" for i in range(6)],
        classes=["a", "b"],
        specs=layout.result_specs(2, tiles_max=2, embed_dim=3),
        chunk_len=3,
    )
    row = {
        layout.STATUS: np.full(3, layout.OK, np.uint8),
        layout.HW: np.full((3, 2), 8, np.int32),
        layout.N_TILES: np.full(3, 2, np.int32),
        layout.SIM_TILES: np.full((3, 2, 2), 0.5, np.float16),
        layout.EMB_GLOBAL: np.zeros((3, 3), np.float16),
        **{n: np.full((3, 2), 0.5, np.float32) for n in (layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA)},
    }
    s.write_chunk(0, row)
    assert verify(s) == []
    bad = {k: v.copy() for k, v in row.items()}
    bad[layout.SIM_TILES][1, 1] = np.nan
    bad[layout.EMB_GLOBAL][2, 0] = np.inf
    bad[layout.HW][0] = 0
    s.write_chunk(1, bad)
    found = {(d.array, d.chunk): str(d) for d in verify(s)}
    assert set(found) == {(layout.SIM_TILES, 1), (layout.EMB_GLOBAL, 1), (layout.HW, 1)}
    assert "first: image 4" in found[(layout.SIM_TILES, 1)] and "first: image 5" in found[(layout.EMB_GLOBAL, 1)]
    bad[layout.N_TILES][1] = 1  # a tile beyond n_tiles is padding: NaN there is fine
    s.write_chunk(1, bad)
    assert (layout.SIM_TILES, 1) not in {(d.array, d.chunk) for d in verify(s)}


def test_a_remote_lock_is_taken_over_only_from_a_dead_owner():
    """Without a kernel lock (an fsspec URL), the lock file names its owner: a live owner's
    lock is refused, a dead owner's (pid gone, pid reused, or a beat too old) taken over."""
    import socket
    import time

    import fsspec

    from cdul.store import lock as lock_mod

    url = "memory://locks/s.zarr"
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/locks/s.zarr/zarr.json", b"{}")
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": lock_mod._start_time(os.getpid())}
    dead = [
        {**me, "pid": 2**22 + 7},  # no such process
        {**me, "started": "1"},  # this pid, but another process started it
        {"host": "elsewhere", "pid": 1, "beat": time.time() - lock_mod.STALE - 1},
    ]
    live = [me, {"host": "elsewhere", "pid": 1, "beat": time.time()}]
    for record in dead + live:
        fs.pipe_file("/locks/s.zarr/.lock", json.dumps({**record, "token": "old"}).encode())
        lock = StoreLock(url)
        if record in live:
            with pytest.raises(StoreLockedError, match="in use"):
                lock.acquire()
            continue
        with lock:
            assert json.loads(fs.cat_file("/locks/s.zarr/.lock"))["token"] == lock.token != "old"
        assert not fs.exists("/locks/s.zarr/.lock")
    fs.rm("/locks", recursive=True)
