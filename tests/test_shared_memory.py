"""Data loading workers hand their batches over in shared memory (/dev/shm). When it has no
room (Docker's default is 64 MB), the run stops with one line that says what to do; it used
to print tracebacks from a sending thread and then wait forever for the lost batch."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from extract_runs import extract_args
from train_runs import train

from cdul.cli.extract import main as extract
from cdul.data.transfer import SharedMemoryFull, advice, worker_tensor

FULL = "unable to allocate shared memory(shm) for file </torch_1_2_3>: No space left on device (28)"


class _Batches(torch.utils.data.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        t = worker_tensor((4, 5), torch.uint8)
        t.fill_(i)
        return t


def _no_room(self):
    raise RuntimeError(FULL)


def test_worker_tensors_are_shared_in_workers_only():
    assert not worker_tensor((2, 3), torch.float32).is_shared()
    loader = torch.utils.data.DataLoader(_Batches(), batch_size=None, num_workers=1)
    got = list(loader)
    assert [int(t[0, 0]) for t in got] == [0, 1, 2]


def test_no_room_is_an_error_of_the_batch_not_a_hang(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "share_memory_", _no_room)  # inherited by the forked worker
    loader = torch.utils.data.DataLoader(_Batches(), batch_size=None, num_workers=1, timeout=120)
    with pytest.raises(SharedMemoryFull, match="a batch of 20 bytes did not fit"):
        list(loader)


def test_advice_names_the_sizes_and_the_remedy():
    line = advice(SharedMemoryFull("a batch of 14680064 bytes did not fit"), workers=3, prefetch=4)
    assert "up to 12 batches of 14 MB (4 per worker)" in line and "--shm-size" in line and "\n" not in line


def test_extract_and_train_stop_with_one_line(voc_root, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.Tensor, "share_memory_", _no_room)
    r = CliRunner().invoke(extract, extract_args(voc_root, tmp_path / "s.zarr", workers=1, quiet=True))
    assert r.exit_code == 1, r.output
    message = r.output.strip().splitlines()[-1]
    assert "ran out of shared memory" in message and "--shm-size" in message and "resume" in message
    assert "Traceback" not in r.output

    monkeypatch.undo()
    r = CliRunner().invoke(extract, extract_args(voc_root, tmp_path / "s.zarr", workers=1, quiet=True))
    assert r.exit_code == 0, r.output  # the same command, with room, resumes and finishes
    monkeypatch.setattr(torch.Tensor, "share_memory_", _no_room)
    r = train(tmp_path / "s.zarr", tmp_path / "run", workers=1, epochs=1)
    assert r.exit_code == 1 and "ran out of shared memory" in r.output and "--resume" in r.output, r.output


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_a_real_small_dev_shm(voc_root, tmp_path):
    """cdul-extract with /dev/shm mounted at 1 MB in a private mount namespace."""
    cli = os.path.join(os.path.dirname(sys.executable), "cdul-extract")
    args = " ".join(f"'{a}'" for a in extract_args(voc_root, tmp_path / "s.zarr", workers=1, batch_size=64, quiet=True))
    script = f"mount -t tmpfs -o size=1m tmpfs /dev/shm || exit 77; exec '{cli}' {args}"
    try:
        r = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("cdul-extract hung on a full /dev/shm")
    if r.returncode == 77 or "unshare failed" in r.stderr:
        pytest.skip("no private mount namespace here")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: the data loading workers ran out of shared memory")
    assert "Traceback" not in r.stderr


def test_large_batches_keep_fewer_ready():
    """Dense mode's batches hold 256 whole images: two ready per worker, not four."""
    from cdul.extractor.pipeline import loader_prefetch

    assert loader_prefetch(25) == 4 and loader_prefetch(64) == 4 and loader_prefetch(256) == 2
