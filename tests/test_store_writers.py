"""Several commands on one store, in real processes: a second writer is refused with one line
while the first holds the store's lock, and the first finishes as if alone; a run deletes
only the label rounds it wrote unless told."""

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from extract_runs import extract_args
from train_runs import train_args

from cdul.cli.extract import main as extract_cli
from cdul.cli.refine import main as refine_cli
from cdul.cli.train import main as train_cli
from cdul.store import Store, StoreLock, StoreLockedError

pytestmark = pytest.mark.slow  # real commands, two at a time

BIN = os.path.dirname(sys.executable)
SLOW = os.path.join(os.path.dirname(__file__), "slow_command.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run(*argv, timeout=300):
    return subprocess.run(list(argv), capture_output=True, text=True, env=ENV, timeout=timeout)


def invoke(main, args):
    """A command in this process (click's CliRunner, stderr apart): -> (exit code, stderr)."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def while_held(tmp_path, first: list[str], second, hold: float = 240.0):
    """Start ``first`` in its own process (held up at its first store write, the lock taken),
    run ``second()`` meanwhile, then let the first go on; -> (first's result, second's)."""
    marker = str(tmp_path / f"held-{time.monotonic_ns()}")
    proc = subprocess.Popen(
        [sys.executable, SLOW, marker, str(hold), *first],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 240
    while not os.path.exists(marker):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first command never reached its first write"
        time.sleep(0.1)
    try:
        second_result = second()
    finally:
        open(marker + ".go", "w").close()
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), second_result


def refused_in_one_line(result, by: str):
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("warning:")]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "in use by another cdul run" in lines[0] and by in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def store(voc_root, tmp_path_factory):
    """A finished store of the test images, with embeddings (what cdul-refine needs)."""
    out = str(tmp_path_factory.mktemp("writers") / "voc.zarr")
    args = extract_args(voc_root, out, dataset="voc2012", split="train", chunk_len=8, quiet=True)
    r = run(os.path.join(BIN, "cdul-extract"), *args, "--keep-embeddings")
    assert r.returncode == 0, r.stderr
    return out


def test_a_second_extraction_is_refused_and_the_first_finishes(voc_root, tmp_path):
    out = str(tmp_path / "s.zarr")
    args = extract_args(voc_root, out, dataset="voc2012", split="train", chunk_len=4, quiet=True, limit=8)
    first, second = while_held(tmp_path, ["cdul-extract", *args], lambda: invoke(extract_cli, args))
    refused_in_one_line(second, "cdul-extract")
    assert first.returncode == 0, first.stderr
    s = Store.open(out)
    assert s.attrs["complete"] and s.pending_chunks() == [] and s.label_rounds() == [0]
    assert not os.path.exists(os.path.join(out, ".lock"))


def test_train_is_refused_while_refine_writes_and_the_other_way_round(store, tmp_path):
    before = Store.open(store).label_rounds()
    refine = ["--store", store, "-q"]
    train = train_args(store, tmp_path / "run", epochs=1, workers=0)
    first, second = while_held(tmp_path, ["cdul-refine", *refine], lambda: invoke(train_cli, train))
    refused_in_one_line(second, "cdul-refine")
    assert first.returncode == 0, first.stderr
    after = Store.open(store).label_rounds()
    assert after == [*before, before[-1] + 1]
    attrs = Store.open(store).round_array(after[-1]).attrs.asdict()
    assert attrs["source"] == "cdul-refine" and attrs["writer"]["command"] == "cdul-refine"
    assert attrs["writer"]["pid"] != os.getpid() and attrs["writer"]["token"]

    first, second = while_held(tmp_path, ["cdul-train", *train], lambda: invoke(refine_cli, refine))
    refused_in_one_line(second, "cdul-train")
    assert first.returncode == 0, first.stderr
    last = Store.open(store).label_rounds()
    assert last == [*after, after[-1] + 1]  # one new round, the trainer's
    assert Store.open(store).round_array(last[-1]).attrs["source"] == "cdul-train"


def test_resume_keeps_the_rounds_of_others_unless_told(store, tmp_path):
    out = tmp_path / "run"
    options = {"epochs": 1, "workers": 0}
    r = invoke(train_cli, train_args(store, out, **options))
    assert r.returncode == 0, r.stderr
    trained = Store.open(store).latest_round()
    r = invoke(refine_cli, ["--store", store, "-q", "--knn", "3"])
    assert r.returncode == 0, r.stderr
    refined = Store.open(store).latest_round()
    assert refined == trained + 1

    r = invoke(train_cli, train_args(store, out, resume=True, **options))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert f"--drop-rounds-after {trained}" in lines[0] and "cdul-refine" in lines[0]
    assert Store.open(store).latest_round() == refined  # nothing deleted

    r = invoke(train_cli, train_args(store, out, resume=True, drop_rounds_after=trained, **options))
    assert r.returncode == 0, r.stderr
    assert Store.open(store).latest_round() == trained


def test_a_live_runs_lock_is_never_taken_over_a_dead_runs_is(tmp_path):
    """The lock outlives reads of its record in the holding process, dies with the process."""
    path = str(tmp_path / "s.zarr")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from cdul.store import StoreLock, lock_token; "
            f"l = StoreLock({path!r}, create=True); l.acquire(); lock_token({path!r}); "
            "open(l._path).read(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match="in use"):
            StoreLock(path, create=True).acquire()
        assert json.load(open(os.path.join(path, ".lock")))["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    with StoreLock(path, create=True) as lock:  # the kernel let go with the process
        assert json.load(open(os.path.join(path, ".lock")))["token"] == lock.token
