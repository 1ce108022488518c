"""cdul-extract under faults: kill -9 at random moments, disk full. Nothing finished is lost,
no chunk flagged done holds partial data, and a rerun ends with the uninterrupted result."""

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from extract_runs import extract_args

pytestmark = pytest.mark.slow  # extractions killed and resumed

CLI = os.path.join(os.path.dirname(sys.executable), "cdul-extract")
ARRAYS = ["images/status", "images/n_tiles", "sim/global", "sim/alpha", "sim/beta", "labels/round_000"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def args(root, out):
    return extract_args(root, out, workers=1, threads=1, chunk_len=2, snippet=4, quiet=True)


@pytest.fixture(scope="module")
def reference(voc_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    r = subprocess.run([CLI, *args(voc_root, out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    return zarr.open_group(str(out), mode="r")


def assert_done_chunks_whole(out):
    g = zarr.open_group(str(out), mode="r")
    done, status, s_g = g["_build/done"][:], g["images/status"][:], g["sim/global"][:]
    for k in np.flatnonzero(done):
        rows = slice(2 * k, 2 * k + 2)
        assert (status[rows] != 0).all(), f"chunk {k} is flagged done with pending rows"
        assert np.isfinite(s_g[rows][status[rows] == 1]).all(), f"chunk {k} is flagged done with missing scores"
    return done


def assert_same(out, reference):
    g = zarr.open_group(str(out), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(g[name][:], reference[name][:], err_msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_at_a_random_moment_then_resume(voc_root, reference, tmp_path, seed):
    out = tmp_path / "s.zarr"
    delay = random.Random(seed).uniform(1.0, 7.0)
    proc = subprocess.Popen([CLI, *args(voc_root, out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if os.path.exists(out / "zarr.json"):
        assert_done_chunks_whole(out)
    r = subprocess.run([CLI, *args(voc_root, out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same(out, reference)


def test_disk_full_is_a_clear_error_and_resumable(voc_root, reference, tmp_path, monkeypatch):
    """An injected ENOSPC on the third chunk write: the command says what happened, the
    chunks written before stay, and a rerun completes the store."""
    from cdul.cli.extract import main as extract
    from cdul.store import Store

    out = tmp_path / "s.zarr"
    real = Store.write_chunk
    calls = {"n": 0}

    def full_disk(self, k, arrays):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, k, arrays)

    monkeypatch.setattr(Store, "write_chunk", full_disk)
    r = CliRunner().invoke(extract, args(voc_root, out))
    assert r.exit_code == 1 and "No space left on device" in r.output and "disk full" in r.output
    assert "rerun the same command to resume" in r.output
    assert assert_done_chunks_whole(out).sum() == 2
    monkeypatch.setattr(Store, "write_chunk", real)
    r = CliRunner().invoke(extract, args(voc_root, out))
    assert r.exit_code == 0, r.output
    assert_same(out, reference)


def _tmpfs(path, size: str) -> bool:
    os.makedirs(path, exist_ok=True)
    mount = shutil.which("mount")
    return (
        bool(mount)
        and subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


def test_a_really_full_disk(voc_root, reference, tmp_path):
    """The same on a tiny tmpfs, where this machine lets the tests mount one."""
    mnt = tmp_path / "small"
    if not _tmpfs(mnt, "320k"):
        pytest.skip("cannot mount a tmpfs here (not root); the injected ENOSPC test covers this")
    try:
        out = mnt / "s.zarr"
        r = subprocess.run([CLI, *args(voc_root, out)], capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 1 and "No space left on device" in r.stderr, r.stderr[-1000:]
        assert "Traceback" not in r.stderr
        done = assert_done_chunks_whole(out)
        assert 0 < done.sum() < len(done)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        r = subprocess.run([CLI, *args(voc_root, out)], capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 0, r.stderr
        assert_same(out, reference)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(max(1, os.path.getsize(path) // 2))


def _scribble(path):
    with open(path, "wb") as f:
        f.write(b"\x00not a chunk" * 3)


@pytest.mark.parametrize(
    "chunk_file,damage",
    [
        ("sim/global/c/1/0", os.remove),
        ("images/status/c/3", os.remove),
        ("sim/alpha/c/2/0", _truncate),
        ("images/hw/c/4/0", _scribble),
        ("labels/round_000/c/0/0", os.remove),
        ("_build/done/c/5", _scribble),
    ],
)
def test_a_damaged_store_is_reported_then_repaired(voc_root, reference, tmp_path, chunk_file, damage):
    out = tmp_path / "s.zarr"
    shutil.copytree(str(reference.store.root), out)
    damage(str(out / chunk_file))
    array, k = chunk_file.split("/c/")[0], int(chunk_file.split("/c/")[1].split("/")[0])
    check = subprocess.run([CLI, *args(voc_root, out), "--verify"], capture_output=True, text=True, env=ENV)
    assert check.returncode == 1 and f"{array}, chunk {k}" in check.stderr and "Traceback" not in check.stderr
    r = subprocess.run([CLI, *args(voc_root, out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"damaged, extracting again: {array}, chunk {k}" in r.stderr
    assert_same(out, reference)
    again = subprocess.run([CLI, *args(voc_root, out), "--verify"], capture_output=True, text=True, env=ENV)
    assert again.returncode == 0 and "healthy" in again.stdout


def test_a_decoding_worker_whose_parent_died_before_it_started_exits():
    """The DataLoader's own watchdog takes the parent at the worker's start: a worker that
    starts after its parent died would watch init and live on. Ours checks the pid given."""
    code = (
        "import os, sys\n"
        "from cdul.extractor.orphans import decoding_worker_init\n"
        "decoding_worker_init(int(sys.argv[1]), 0)\n"
        "print('still alive')\n"
    )
    gone = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True, timeout=120)
    assert gone.returncode == 1 and "still alive" not in gone.stdout  # its parent is not pid 1
    alive = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True, timeout=120)
    assert alive.returncode == 0 and "still alive" in alive.stdout


def test_a_decoding_worker_lowers_its_priority_when_asked():
    """Feeding a GPU, the workers yield the CPUs to the process that issues the device's
    work (``RunOptions.worker_nice``); without ``nice`` they keep their parent's priority."""
    code = (
        "import os, sys\n"
        "from cdul.extractor.orphans import decoding_worker_init\n"
        "before = os.nice(0)\n"
        "decoding_worker_init(os.getppid(), 0, nice=int(sys.argv[1]))\n"
        "print(os.nice(0) - before)\n"
    )
    for nice, change in ((3, "3"), (0, "0")):
        r = subprocess.run([sys.executable, "-c", code, str(nice)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.split() == [change], r.stderr
