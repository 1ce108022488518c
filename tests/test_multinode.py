"""Two nodes on one machine: two torchrun launchers (--nnodes 2, one process each) meet at a
c10d rendezvous on 127.0.0.1 and run on the CPU with gloo, sharing one store as two machines
share a file system. cdul-extract gives the single-process store bit for bit; cdul-train
gives the labels of the same run on one node with two processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import numpy as np
import pytest
import zarr
from test_extract_cli import base_args, reference_store, same_arrays  # noqa: F401 (reference_store: a fixture)
from test_trainer_cli import extract
from train_runs import CDUL_TRAIN, two_rank_args

from cdul.store import Store, layout

pytestmark = pytest.mark.slow  # three torchrun jobs

BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GLOO_SOCKET_IFNAME": "lo"}
TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """Each launcher's exit code and output; a launcher still running after TIMEOUT is
    killed with its workers (its own process group) and fails the test."""
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=TIMEOUT)
            out.append((p.returncode, text))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return out


def two_nodes(*command: str) -> list[tuple[int, str]]:
    """``command`` under two torchrun launchers, one process each, rendezvous on loopback."""
    launcher = [
        os.path.join(BIN, "torchrun"),
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv-id",
        f"cdul-{uuid.uuid4().hex}",
        "--rdzv-conf",
        "join_timeout=120",
        "--local-addr",
        "127.0.0.1",
        "--max-restarts",
        "0",
    ]
    procs = [
        subprocess.Popen(
            [*launcher, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    return finish(procs)


def assert_ok(results):
    for code, text in results:
        assert code == 0, text[-3000:]


def test_two_nodes_extract_the_single_process_store(voc_root, reference_store, tmp_path):  # noqa: F811
    out = str(tmp_path / "nodes.zarr")
    results = two_nodes(
        os.path.join(BIN, "cdul-extract"), *map(str, base_args(voc_root, out, "--chunk-len", "3", "--snippet", "4"))
    )
    assert_ok(results)
    assert sum("to all ranks" in text for _, text in results) == 1  # one world of two ranks: rank 0 summarises
    same_arrays(zarr.open_group(out, mode="r"), zarr.open_group(reference_store[0], mode="r"))


def test_two_nodes_train_as_one_node_with_two_processes(voc_root, tmp_path):
    pristine = extract(voc_root, str(tmp_path / "voc.zarr"))
    stores = {}
    for how in ("one-node", "two-nodes"):
        store = str(tmp_path / f"{how}.zarr")
        subprocess.run(["cp", "-r", pristine, store], check=True)
        command = [CDUL_TRAIN, *two_rank_args(store, str(tmp_path / how), voc_root)]
        if how == "one-node":
            assert_ok(
                finish(
                    [
                        subprocess.Popen(
                            [os.path.join(BIN, "torchrun"), "--standalone", "--nproc-per-node", "2", *command],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True,
                            env=ENV,
                            start_new_session=True,
                        )
                    ]
                )
            )
        else:
            assert_ok(two_nodes(*command))
        stores[how] = Store.open(store)
    one, two = stores["one-node"], stores["two-nodes"]
    assert one.label_rounds() == two.label_rounds() == [0, 1, 2]
    ok = two.read(layout.STATUS) == layout.OK
    for k in (1, 2):
        y = two.read(layout.round_name(k))
        np.testing.assert_array_equal(y, one.read(layout.round_name(k)), err_msg=f"round {k}")
        assert (y != two.read(layout.round_name(k - 1))).any(axis=1)[ok].all()  # every chunk moved, both nodes'
    metrics = {
        how: [json.loads(line) for line in (tmp_path / how / "metrics.jsonl").read_text().splitlines()]
        for how in stores
    }
    assert [r["epoch"] for r in metrics["two-nodes"]] == [0, 1, 2]
    assert [r["val_map"] for r in metrics["two-nodes"][1:]] == [r["val_map"] for r in metrics["one-node"][1:]]
