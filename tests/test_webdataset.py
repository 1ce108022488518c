"""--dataset webdataset: tar shards written with the webdataset library's TarWriter give the
same store as the same images laid out as a folder dataset, read locally, through a file://
URL and from memory://; a kill mid-run resumes; a truncated shard and a corrupt sample are
failed images; bad input is one line on stderr."""

import glob
import io
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from extract_runs import extract_args
from PIL import Image
from voc_fixtures import odd_images

CLI = os.path.join(os.path.dirname(sys.executable), "cdul-extract")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
ARRAYS = [
    "images/hw",
    "images/n_tiles",
    "images/status",
    "targets",
    "sim/global",
    "sim/alpha",
    "sim/beta",
    "labels/round_000",
]
CLASSES = ["bird", "cat", "dog"]
PER_SHARD = 5


def samples(seed: int = 0) -> list[tuple[str, str, bytes, list[str]]]:
    """(key, extension, image bytes, labels): odd sizes and modes, jpg, png and webp, one
    corrupt file; the last one is the sample a shard will be cut inside."""
    rng = np.random.default_rng(seed)
    out = []
    images = list(odd_images(seed).values()) + [
        Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 50, 3), np.uint8)) for i in range(4)
    ]
    for i, im in enumerate(images):
        ext = ("png", "jpg", "webp")[i % 3] if im.mode == "RGB" else "png"
        buf = io.BytesIO()
        im.save(buf, {"jpg": "jpeg"}.get(ext, ext))
        out.append((f"{i:05d}", ext, buf.getvalue(), [c for j, c in enumerate(CLASSES) if (i >> j) & 1]))
    out.insert(3, ("00099", "jpg", b"this is not a jpeg", ["cat"]))
    return out


def write_shards(folder: str, items) -> list[str]:
    """Shards of PER_SHARD samples; the first shard ends halfway through its last image."""
    import webdataset as wds

    os.makedirs(folder, exist_ok=True)
    paths = []
    for n, start in enumerate(range(0, len(items), PER_SHARD)):
        path = os.path.join(folder, f"shard-{n:06d}.tar")
        with wds.TarWriter(path) as sink:
            for key, ext, data, labels in items[start : start + PER_SHARD]:
                sink.write({"__key__": key, ext: data, "json": {"labels": labels, "url": "x"}, "txt": "a caption"})
        paths.append(path)
    with tarfile.open(paths[0]) as tar:
        last = [m for m in tar.getmembers() if m.name.startswith(items[PER_SHARD - 1][0] + ".")]
    image = next(m for m in last if not m.name.endswith((".json", ".txt")))
    with open(paths[0], "r+b") as f:
        f.truncate(image.offset_data + image.size // 2)
    return paths


def write_folder(folder: str, items) -> None:
    """The same images as files, in the same order; the cut one cut the same way."""
    os.makedirs(folder, exist_ok=True)
    rows = ["path,labels"]
    for i, (key, ext, data, labels) in enumerate(items):
        with open(os.path.join(folder, f"{key}.{ext}"), "wb") as f:
            f.write(data[: len(data) // 2] if i == PER_SHARD - 1 else data)
        rows.append(f"{key}.{ext},{';'.join(labels)}")
    with open(os.path.join(folder, "labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")


def args(root, out, dataset, *extra):
    return extract_args(
        root,
        out,
        *extra,
        dataset=dataset,
        workers=1,
        threads=1,
        chunk_len=3,
        snippet=2,
        max_failures="100%",
        quiet=True,
    )


def extract(*argv, timeout=300):
    return subprocess.run([CLI, *map(str, argv)], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("wds")
    items = samples()
    write_shards(str(base / "shards"), items)
    write_folder(str(base / "folder"), items)
    return base, items


@pytest.fixture(scope="module")
def folder_store(layouts):
    base, _ = layouts
    r = extract(*args(base / "folder", base / "folder.zarr", "folder"))
    assert r.returncode == 0, r.stderr
    return zarr.open_group(str(base / "folder.zarr"), mode="r")


def assert_same_store(url, reference, items):
    g = zarr.open_group(str(url), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(g[name][:], reference[name][:], err_msg=name)
    assert list(g.attrs["classes"]) == CLASSES
    assert [str(i) for i in g["images/id"][:]] == [
        f"shard-{i // PER_SHARD:06d}.tar/{key}" for i, (key, *_) in enumerate(items)
    ]
    status = g["images/status"][:]
    assert status[3] == 2 and status[PER_SHARD - 1] == 2 and (np.delete(status, [3, PER_SHARD - 1]) == 1).all()
    errors = g["images/error"][:]
    assert "truncated shard" in str(errors[PER_SHARD - 1]), errors


@pytest.fixture(scope="module")
def shard_store(layouts):
    base, _ = layouts
    out = base / "local.zarr"
    r = extract(*args(str(base / "shards" / "shard-{000000..000002}.tar"), out, "webdataset"))
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_shards_give_the_store_of_the_same_folder(layouts, folder_store, shard_store):
    assert_same_store(shard_store, folder_store, layouts[1])


@pytest.mark.slow
def test_train_reads_its_images_from_the_shards(layouts, shard_store, tmp_path):
    """cdul-train on a webdataset store, scored on the shards' labels: the good images are
    read (their scores are finite), the two broken ones are left out."""
    import json
    import shutil

    from train_runs import train

    base, items = layouts
    store = str(tmp_path / "s.zarr")
    shutil.copytree(shard_store, store)
    result = train(store, tmp_path / "run", val_data=base / "shards", val_split="all", epochs=1, workers=0, lr=None)
    assert result.exit_code == 0, result.output + result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["images"] == len(items) - 2 and rows[-1]["val_images"] == len(items) - 2, rows[-1]


@pytest.mark.slow
def test_file_url_shards_resume_after_a_kill(layouts, folder_store):
    base, items = layouts
    out = base / "killed.zarr"
    argv = [CLI, *args(f"file://{base}/shards/shard-{{000000..000002}}.tar", out, "webdataset")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if glob.glob(str(out / "_build" / "done" / "c" / "*")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = zarr.open_group(str(out), mode="r")["_build/done"][:]
    assert 0 < done.sum() < len(done), f"the kill should land mid-run (done flags: {done})"
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and "resuming" in r.stderr, r.stderr
    assert_same_store(out, folder_store, items)


def test_memory_shards_are_listed_and_read_at_random(tmp_path):
    import fsspec

    from cdul.data import load_dataset, sample_reader

    items = samples(1)
    write_shards(str(tmp_path), items)
    for name in sorted(os.listdir(tmp_path)):
        with fsspec.open(f"memory://wds-{tmp_path.name}/{name}", "wb") as f:
            f.write((tmp_path / name).read_bytes())
    ds = load_dataset("webdataset", f"memory://wds-{tmp_path.name}/shard-{{000000..000002}}.tar", "train")
    assert ds.root == f"memory://wds-{tmp_path.name}" and len(ds) == len(items) and ds.classes == CLASSES
    read = sample_reader(ds.kind, ds.root)
    for i in reversed(range(len(items))):  # any order: each sample is one ranged read
        data, labels = items[i][2:]
        assert ds.targets[i].tolist() == [1 if c in labels else -1 for c in CLASSES]
        if i == PER_SHARD - 1:
            with pytest.raises(OSError, match="truncated"):
                read(ds.ids[i])
        else:
            assert read(ds.ids[i]) == data


def write_tar(path, members: list[tuple[str, bytes]]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def bad_inputs(tmp_path):
    png = samples()[0][2]
    ok = write_tar(tmp_path / "ok.tar", [("a.png", png), ("a.json", b'{"labels": ["cat"]}')])
    (tmp_path / "z.tar.gz").write_bytes(b"")
    classes = tmp_path / "classes.txt"
    classes.write_text("dog\n")
    return [
        ([str(tmp_path / "missing-{0..1}.tar")], "no such shard"),
        ([str(tmp_path / "z.tar.gz")], "uncompressed .tar"),
        (
            [write_tar(tmp_path / "mixed.tar", [("a.png", png), ("a.json", b'{"labels": []}'), ("b.png", png)])],
            'no "labels"',
        ),
        ([write_tar(tmp_path / "bad.tar", [("a.png", png), ("a.json", b'{"labels": "cat"}')])], "list of class names"),
        ([ok, "--classes", str(classes)], "unknown class 'cat'"),
        ([write_tar(tmp_path / "unlabelled.tar", [("a.png", png), ("a.json", b'{"url": "x"}')])], "pass --classes"),
        ([write_tar(tmp_path / "empty.tar", [])], "no samples"),
    ]


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path):
    from cdul.cli.extract import main

    for extra, needle in bad_inputs(tmp_path):
        argv = [
            *extra[:1],
            "--dataset",
            "webdataset",
            "--out",
            str(tmp_path / "s.zarr"),
            "--model",
            "cdul-tiny-rn",
            "--pretrained",
            "none",
            "--gpus",
            "cpu",
            "-q",
            *extra[1:],
        ]
        result = CliRunner().invoke(main, argv)
        lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
        assert result.exit_code == 1 and len(lines) == 1 and needle in lines[0], (extra, result.stderr)
        assert "Traceback" not in result.output + result.stderr


def test_a_shard_that_is_missing_when_read_is_a_failed_image(tmp_path):
    from cdul.data import load_dataset, sample_reader
    from cdul.extractor.reader import read_image

    write_tar(
        tmp_path / "s.tar",
        [("a.png", samples()[0][2]), ("a.json", b'{"labels": ["cat"]}'), ("b.json", b'{"labels": []}')],
    )
    ds = load_dataset("webdataset", str(tmp_path / "s.tar"), "")
    read = sample_reader(ds.kind, ds.root)
    assert read_image(read, "s.tar/b", exif=True, max_pixels=10**8).startswith("cannot read s.tar/b: no image")
    assert read_image(read, "s.tar/zz", exif=True, max_pixels=10**8) == "file not found: s.tar/zz"
    os.remove(tmp_path / "s.tar")
    assert (
        read_image(sample_reader(ds.kind, ds.root), "s.tar/a", exif=True, max_pixels=10**8) == "file not found: s.tar/a"
    )
