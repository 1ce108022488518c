"""cdul-extract driven as a user drives it: the installed command, then the store opened
with plain zarr. Also resume after a kill, several workers, refusals."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from extract_runs import extract_args

from cdul.store import StoreLock

CLI = os.path.join(os.path.dirname(sys.executable), "cdul-extract")
ARRAYS = ["images/hw", "images/n_tiles", "images/status", "sim/global", "sim/alpha", "sim/beta", "labels/round_000"]


def cli(*args, env=None, timeout=300):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=full_env)


def base_args(root, out, *extra):
    return extract_args(root, out, *extra, dataset="voc2012", split="train", workers=1, threads=1, quiet=True)


def same_arrays(a, b):
    for name in ARRAYS:
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)


@pytest.fixture(scope="module")
def reference_store(voc_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    r = cli(*base_args(voc_root, out, "--chunk-len", "3", "--snippet", "4"))
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.mark.slow
def test_store_opens_with_plain_zarr(reference_store):
    out, run = reference_store
    assert "random weights" in run.stderr and "say nothing about accuracy" in run.stderr
    assert "pseudo-label mAP" in run.stdout
    g = zarr.open_group(out, mode="r")
    a = g.attrs
    assert a["format"] == "cdul-store" and a["format_version"] == 1 and a["complete"] is True
    assert "dining table" in a["classes"] and "potted plant" in a["classes"] and len(a["classes"]) == 20
    assert a["dataset"]["kind"] == "voc2012" and a["dataset"]["split"] == "train"
    assert a["model"]["input_size"] == 64 and a["model"]["pretrained"] == "none"
    assert a["model"]["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5)
    assert a["tiling"] == {"mode": "grid", "G": 4}
    assert a["prompts"]["template"] == "a photo of a {}."
    for key in ("created", "code_version", "config_hash"):
        assert a[key]
    n = a["n_images"]
    assert n == 20 and g["images/id"].shape == (n,)
    for name, shape, dtype in [
        ("sim/global", (n, 20), np.float32),
        ("targets", (n, 20), np.int8),
        ("images/hw", (n, 2), np.int32),
        ("images/status", (n,), np.uint8),
        ("labels/round_000", (n, 20), np.float32),
    ]:
        arr = g[name]
        assert arr.shape == shape and arr.dtype == dtype, name
        assert arr.chunks[0] == 3, name
        assert arr.attrs["_ARRAY_DIMENSIONS"][0] == "image" and arr.metadata.dimension_names[0] == "image"
    assert g["_build/done"][:].all() and g["_build/done"].shape == (7,)
    assert (g["images/status"][:] == 1).all()
    ids = [str(x) for x in g["images/id"][:]]
    person = a["classes"].index("person")
    assert g["targets"][ids.index("JPEGImages/camera.jpg"), person] == 0  # difficult kept as 0
    assert g["targets"][ids.index("JPEGImages/astronaut.jpg"), person] == 1
    s = g["sim/global"][:]
    np.testing.assert_allclose(s.sum(1), 1.0, atol=1e-5)
    assert (g["sim/alpha"][:] >= g["sim/beta"][:]).all()
    summary = a["summary"]
    assert summary["ok"] == 20 and summary["failed"] == 0 and summary["no_tiles"] == 1
    assert set(summary["pseudo_label_map"]) >= {"global", "aggregated", "y0"}
    assert not os.path.exists(os.path.join(out, ".lock"))  # zarr would warn about an unknown object


@pytest.mark.slow
def test_resume_after_kill_equals_an_uninterrupted_run(voc_root, reference_store, tmp_path):
    out = str(tmp_path / "killed.zarr")
    args = base_args(voc_root, out, "--chunk-len", "3", "--snippet", "4")
    proc = subprocess.Popen(
        [CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(glob.glob(os.path.join(out, "_build", "done", "c", "*"))) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = zarr.open_group(out, mode="r")["_build/done"][:]
    assert 0 < done.sum() < len(done), f"the kill should land mid-run (done flags: {done})"
    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr
    same_arrays(zarr.open_group(out, mode="r"), zarr.open_group(reference_store[0], mode="r"))


@pytest.mark.slow
def test_two_cpu_workers_give_the_same_store(voc_root, reference_store, tmp_path):
    out = str(tmp_path / "two.zarr")
    args = base_args(voc_root, out, "--chunk-len", "3", "--snippet", "4")
    args[args.index("--gpus") + 1] = "cpu,cpu"
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    same_arrays(zarr.open_group(out, mode="r"), zarr.open_group(reference_store[0], mode="r"))


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_workers_die_with_a_killed_parent(voc_root, tmp_path):
    out = str(tmp_path / "orphans.zarr")
    args = base_args(voc_root, out, "--chunk-len", "1", "--snippet", "4")
    args[args.index("--gpus") + 1] = "cpu,cpu"
    proc = subprocess.Popen(
        [CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    workers: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and len(workers) < 2:
        workers = [c for c in _children(proc.pid) if "spawn_main" in open(f"/proc/{c}/cmdline").read()]
        time.sleep(0.05)
    assert len(workers) == 2, "two worker processes should have started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(map(_alive, workers)):
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, "workers outlived their killed parent"


@pytest.mark.slow
def test_changed_config_is_refused_then_overwritten(voc_root, tmp_path):
    out = str(tmp_path / "s.zarr")
    assert cli(*base_args(voc_root, out, "--limit", "4")).returncode == 0
    r = cli(*base_args(voc_root, out, "--limit", "4", "--snippet", "2"))
    assert r.returncode == 1 and "another configuration" in r.stderr and "tiling" in r.stderr
    assert "--overwrite" in r.stderr and "Traceback" not in r.stderr
    r = cli(*base_args(voc_root, out, "--limit", "4", "--snippet", "2", "--overwrite"))
    assert r.returncode == 0, r.stderr
    assert zarr.open_group(out, mode="r").attrs["tiling"] == {"mode": "grid", "G": 2}


@pytest.mark.slow
def test_new_zeta_rewrites_round_zero_without_extracting(voc_root, tmp_path):
    out = str(tmp_path / "z.zarr")
    assert cli(*base_args(voc_root, out, "--limit", "4")).returncode == 0
    before = zarr.open_group(out, mode="r")["sim/global"][:]
    from click.testing import CliRunner

    import cdul.extractor.pipeline as pipeline
    from cdul.cli.extract import main

    def no_model(*a, **k):
        raise AssertionError("a finished store must not load the model again")

    pipeline_load, pipeline.load_clip = pipeline.load_clip, no_model
    try:
        r = CliRunner().invoke(
            main, [str(a) for a in base_args(voc_root, out, "--limit", "4", "--zeta", "0.1", "--lam", "1")]
        )
    finally:
        pipeline.load_clip = pipeline_load
    assert r.exit_code == 0, r.output
    g = zarr.open_group(out, mode="r")
    assert g["labels/round_000"].attrs["zeta"] == 0.1 and g["labels/round_000"].attrs["lam"] == 1.0
    np.testing.assert_array_equal(g["sim/global"][:], before)
    s_g, alpha, beta = g["sim/global"][:], g["sim/alpha"][:], g["sim/beta"][:]
    s_ag = np.where(alpha >= 0.1, alpha, beta)
    np.testing.assert_allclose(g["labels/round_000"][:], np.maximum(s_g, s_ag), atol=1e-7)  # lambda 1: the max


@pytest.mark.slow
def test_offline_weights_fail_fast_with_one_line(voc_root, tmp_path):
    t = time.time()
    r = cli(voc_root, "--out", tmp_path / "o.zarr", "--model", "RN50", "--pretrained", "openai", "--gpus", "cpu")
    assert r.returncode == 1 and time.time() - t < 60
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--pretrained /path/to/the/file" in lines[0] and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_second_run_on_a_locked_store_is_refused(voc_root, tmp_path):
    out = str(tmp_path / "locked.zarr")
    with StoreLock(out, create=True):
        r = cli(*base_args(voc_root, out, "--limit", "2"))
    assert r.returncode == 1 and "in use by another cdul run" in r.stderr


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--gpus", "7"], "GPU 7"),
        (["--snippet", "0"], "--snippet"),
        (["--tile-px", "-1"], "--tile-px"),
        (["--zeta", "2"], "--zeta"),
        (["--snippet", "2", "--tile-px", "8"], "give one of them"),
    ],
)
def test_bad_values_are_usage_errors(voc_root, tmp_path, flags, needle):
    args = base_args(voc_root, tmp_path / "x.zarr")
    if "--gpus" in flags:
        i = args.index("--gpus")
        del args[i : i + 2]
    r = cli(*args, *flags)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_failing_worker_fails_the_command_with_its_error(voc_root, tmp_path):
    import torch

    bad = tmp_path / "other.pt"  # a checkpoint, of another model: found out when a worker loads it
    torch.save({"visual.conv1.weight": torch.zeros(1)}, bad)
    args = base_args(voc_root, tmp_path / "w.zarr", "--limit", "4", "--chunk-len", "2")
    args[args.index("--pretrained") + 1] = str(bad)
    args[args.index("--gpus") + 1] = "cpu,cpu"
    r = cli(*args)
    assert r.returncode == 1
    assert "worker" in r.stderr and "failed" in r.stderr and "rerun the same command to resume" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("Error")]) == 1 and "do not fit" in r.stderr


@pytest.mark.slow
def test_torchrun_ranks_share_the_chunks(voc_root, reference_store, tmp_path):
    out = str(tmp_path / "ranks.zarr")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    r = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node",
            "2",
            CLI,
            *map(str, base_args(voc_root, out, "--chunk-len", "3", "--snippet", "4")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    same_arrays(zarr.open_group(out, mode="r"), zarr.open_group(reference_store[0], mode="r"))


def test_store_at_an_fsspec_url(voc_root, tmp_path):
    from click.testing import CliRunner

    from cdul.cli.extract import main

    url = f"memory://{tmp_path.name}/s.zarr"
    result = CliRunner().invoke(main, [str(a) for a in base_args(voc_root, url, "--limit", "5", "--chunk-len", "2")])
    assert result.exit_code == 0, result.output
    g = zarr.open_group(url, mode="r")
    assert g.attrs["complete"] is True and g["_build/done"][:].all() and (g["images/status"][:] == 1).all()


def _one_line_error(r, needle):
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert r.returncode == 1 and len(lines) == 1 and needle in lines[0], r.stderr[-3000:]


@pytest.mark.parametrize("case", ["model", "classes", "junk_weights", "weights_of_another_model", "out_is_a_file"])
def test_bad_arguments_are_one_line_and_leave_nothing_in_the_way(voc_root, tmp_path, case):
    import torch

    out = tmp_path / "s.zarr"
    args = base_args(voc_root, out, "--limit", "2", "--chunk-len", "2")
    junk, wrong = tmp_path / "junk.pt", tmp_path / "wrong.pt"
    junk.write_bytes(b"\x00" * 64)
    torch.save({"visual.conv1.weight": torch.zeros(1)}, wrong)
    flag, value, needle = {
        "model": ("--model", "no-such-model", "unknown model"),
        "classes": ("--classes", tmp_path / "missing.txt", "missing.txt: file not found"),
        "junk_weights": ("--pretrained", junk, "not a weights file"),
        "weights_of_another_model": ("--pretrained", wrong, "do not fit"),
        "out_is_a_file": ("--out", tmp_path / "f", "is a file"),
    }[case]
    (tmp_path / "f").write_text("x")
    if flag in args:
        bad = [*args[: args.index(flag)], flag, value, *args[args.index(flag) + 2 :]]
    else:
        bad = [*args, flag, value]
    _one_line_error(cli(*bad), needle)
    assert (tmp_path / "f").read_text() == "x"
    r = cli(*args)  # the corrected command runs, with no --overwrite
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "url,gpus,needle",
    [("nosuch://x.zarr", "cpu", "cannot hold a store"), ("memory://two/x.zarr", "cpu,cpu", "inside one process")],
)
def test_store_urls_that_cannot_work_are_one_line(voc_root, tmp_path, url, gpus, needle):
    args = base_args(voc_root, url, "--limit", "2")
    args[args.index("--gpus") + 1] = gpus
    _one_line_error(cli(*args), needle)


def test_a_local_url_is_a_path_and_memory_stores_say_where_they_live(voc_root, tmp_path):
    out = tmp_path / "l.zarr"
    r = cli(*base_args(voc_root, f"local://{out}", "--limit", "2"))
    assert r.returncode == 0, r.stderr
    assert zarr.open_group(str(out), mode="r").attrs["complete"] is True
    train = subprocess.run(
        [
            os.path.join(os.path.dirname(CLI), "cdul-train"),
            "--store",
            "memory://x/s.zarr",
            "--out-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _one_line_error(train, "lives only inside the process")
