"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no pickled objects), so
loading it never runs code from the file:

    format, version, epoch (epochs completed), label_round (the newest complete round when
    it was written), model, optimizer, scheduler, scaler, rng, config, classes, arch,
    img_size, loss, mean, std, history

RNG states are kept as tensors and ints: torch's CPU and CUDA generators, numpy's global
MT19937 and Python's ``random``. (The data order and augmentation do not draw from them,
see stream.py and images.py; they are restored so anything else that does stays exact.)
"""

from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch

from cdul.data import inputs, outputs

FORMAT = "cdul-train-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    pass


def rng_state() -> dict:
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda + [cuda[-1]] * (torch.cuda.device_count() - len(cuda)))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def atomic_save(obj, path: str) -> None:
    """torch.save to a temporary file beside ``path``, then os.replace: a reader (or a crash)
    sees the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    outputs.output_dir(folder, "--out-dir")
    final = outputs.inside(folder, os.path.basename(path), "--out-dir")  # never through a symbolic link
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(state: dict, path: str) -> None:
    atomic_save({"format": FORMAT, "version": VERSION, **state}, path)


def load_checkpoint(path: str, map_location="cpu") -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle and zip errors of several types
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cdul-train checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt.get('version')}; this cdul reads {VERSION}")
    try:
        for key, rule in FIELDS.items():
            inputs.field(ckpt, key, rule, str(path))
        if ckpt.get("loss") not in ("kl", "bce"):
            raise inputs.InputError(f"{path}: 'loss' is {inputs.shown(ckpt.get('loss'))}, where kl or bce belongs")
    except inputs.InputError as exc:
        raise CheckpointError(f"{exc}: not a checkpoint cdul-train wrote") from None
    return ckpt


FIELDS = {
    "classes": (lambda v: inputs.is_names(v) and bool(v), "a non-empty list of distinct class names"),
    "arch": inputs.NAME,
    "img_size": inputs.integer(1),
    "epoch": inputs.integer(0),
    "label_round": inputs.integer(0),
    "model": inputs.MAPPING,
    "config": inputs.MAPPING,
}


def restore(target, state, path: str, what: str = "model") -> None:
    """``target.load_state_dict(state)`` (a model, optimizer, scheduler or scaler);
    CheckpointError, one line, where the saved state does not fit (another architecture,
    missing or unexpected keys, other shapes)."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: its {what} state does not fit (the checkpoint's architecture or shapes do not match its "
            f"weights: {first[:160]})"
        ) from None
