"""Build the same small stores and runs with this checkout, and print a digest of every array
and every attribute that the run's code decides (times, hosts, process ids and paths left out).

Two checkouts that print the same digest write bit-identical stores: a refactoring that must not
change behaviour is checked by running this before and after it and comparing the two files::

    TRITON_INTERPRET=1 .venv/bin/python scripts/store_digest.py /tmp/digest-a > before.json
    ... change the code ...
    TRITON_INTERPRET=1 .venv/bin/python scripts/store_digest.py /tmp/digest-b > after.json
    cmp before.json after.json

The runs cover each extraction mode (grid and pixel tiles, dense with the patch bank, kept
embeddings), one epoch of training with its label round, and a refinement round, on random-weight
models at tiny sizes (a few minutes on two cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np

# config_hash covers the dataset's absolute path; the config itself is digested with it scrubbed
VOLATILE = {"created", "last_run", "seconds", "writer", "heartbeat", "started", "host", "pid", "finished", "time"}
VOLATILE |= {"config_hash"}
TINY = ["--pretrained", "none", "--gpus", "cpu"]
EXTRACTS = {
    "grid3": ["--model", "cdul-tiny-rn", *TINY],
    "grid2_emb": ["--model", "cdul-tiny-rn", "--snippet", "2", "--keep-embeddings", "--keep-tiles", *TINY],
    "pixel": ["--model", "cdul-tiny-rn", "--tile-px", "40", *TINY],
    "dense": ["--model", "cdul-tiny-vit", "--local", "dense", "--keep-patches", "3", "--keep-patch-embeddings", *TINY],
    "dense_size": ["--model", "cdul-tiny-vit", "--local", "dense", "--dense-size", "48", *TINY],
}
TRAIN = ["--arch", "resnet18", "--weights", "none", "--img-size", "32", "--device", "cpu", "--batch-size", "4"]


def _run(bin_name: str, *args: str) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), bin_name)
    done = subprocess.run([exe, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{bin_name} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def _scrub(value, work: str):
    """The attribute with volatile keys dropped and the working folder replaced by a name."""
    if isinstance(value, dict):
        return {k: _scrub(v, work) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_scrub(v, work) for v in value]
    if isinstance(value, str):
        return value.replace(work, "<work>")
    return value


def digest(path: str, work: str) -> dict[str, str]:
    """Every array's values (sha256 of the bytes, with dtype and shape) and every node's scrubbed
    attributes, keyed by the node's path inside the store."""
    import zarr

    out: dict[str, str] = {}
    for folder, _dirs, files in sorted(os.walk(path)):
        if "zarr.json" not in files:
            continue
        key = os.path.relpath(folder, path)
        with open(os.path.join(folder, "zarr.json")) as f:
            meta = json.load(f)
        attrs = json.dumps(_scrub(meta.get("attributes", {}), work), sort_keys=True)
        out[key + "@attrs"] = hashlib.sha256(attrs.encode()).hexdigest()
        if meta.get("node_type") == "array":
            arr = np.asarray(zarr.open_array(folder, mode="r")[...])
            if arr.dtype.kind == "f":
                arr = np.where(np.isnan(arr), np.float32(-7.5), arr).astype(arr.dtype)
            h = hashlib.sha256(f"{arr.dtype}{arr.shape}".encode())
            h.update(arr.tobytes() if arr.dtype.kind not in "OUT" else json.dumps(arr.tolist()).encode())
            out[key] = h.hexdigest()
    return out


def main(work: str) -> None:
    from cdul.sample import generated_images, sample_photos, write_voc_layout

    os.makedirs(work, exist_ok=True)
    voc = os.path.join(work, "voc")
    items = {k: v for k, v in sample_photos().items() if k in ("astronaut", "camera", "chelsea", "coffee", "rocket")}
    items.update(generated_images(7, 0))
    write_voc_layout(voc, items, "train", "2012", difficult={"camera": ["person"]})
    stores = {}
    for name, args in EXTRACTS.items():
        stores[name] = os.path.join(work, f"{name}.zarr")
        _run("cdul-extract", voc, "--out", stores[name], *args)
    _run("cdul-train", "--store", stores["grid2_emb"], "--out-dir", os.path.join(work, "run"), "--epochs", "1", *TRAIN)
    _run("cdul-refine", "--store", stores["grid2_emb"], "--knn", "3")
    _run("cdul-refine", "--store", stores["dense"], "--gda")
    result = {name: digest(path, work) for name, path in stores.items()}
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: store_digest.py WORK_FOLDER (a new folder the stores are built in)")
    main(os.path.abspath(sys.argv[1]))
