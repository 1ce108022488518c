"""Resumable scoring of a large collection: the classifier's scores, part by part, in a work
folder beside the output.

The split's images are cut into parts of ``part_size`` consecutive images. The work folder
(``OUT.parts/``) holds

    manifest.json       the settings that decide the scores: checkpoint (path and SHA-256),
                        dataset (kind, root, split, image count, SHA-256 of the ids), part
                        size, precision; a rerun with other settings is refused
    part-000000.npz     a finished part: ``index`` [n] int64 (rows of the split), ``scores``
                        [n, C] float32 (NaN where the image failed), ``error`` [n] str
                        ("" for a scored image, else why it failed)
    lock                the process id of the run that holds the folder

A part appears under its final name only when complete (written beside, then renamed), so a
killed run loses at most the part in progress; rerunning the same command scores the parts
that are missing and keeps the others. Only those files, and the folder when empty, are
ever removed. The decision rule and the table format are applied when the parts are
assembled, so they are not settings of the work folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator

import numpy as np

from cdul.data import Dataset, sample_reader
from cdul.data.decode import DecodeError, decode_image

from .classifier import Classifier

FORMAT = "cdul-predict-parts"
VERSION = 1
MANIFEST = "manifest.json"
LOCK = "lock"


class PredictError(Exception):
    """A prediction run that cannot start or go on as asked; the message is one line."""


def work_dir(out: str) -> str:
    return out + ".parts"


def part_name(k: int) -> str:
    return f"part-{k:06d}.npz"


def file_sha256(path: str, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def settings(clf: Classifier, checkpoint: str, ds: Dataset, part_size: int, amp: str) -> dict:
    """What decides a part's scores, as the manifest records it."""
    ids = hashlib.sha256("\n".join(ds.ids).encode("utf-8", "surrogateescape")).hexdigest()
    return {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "dataset": ds.kind,
        "data": ds.root,
        "split": ds.split,
        "images": len(ds.ids),
        "ids_sha256": ids,
        "classes": list(clf.classes),
        "part_size": int(part_size),
        "amp": amp if clf.device.type == "cuda" else "none",
    }


def _write_atomic(path: str, write: Callable[[str], None], suffix: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=os.path.dirname(path))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check_folder(folder: str) -> None:
    """Refuse a work folder path that holds something cdul-predict did not write."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise PredictError(f"{folder} is a file, not a work folder of cdul-predict; move it away")
    foreign = os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, MANIFEST))
    if foreign and any(n != LOCK for n in os.listdir(folder)):
        raise PredictError(f"{folder} exists and is not a work folder of cdul-predict (no {MANIFEST}); move it away")


def use_manifest(folder: str, wanted: dict, overwrite: bool = False) -> None:
    """Write the manifest of a new work folder, or check that the one there has the same
    settings (``overwrite``: drop its parts and start over). Call it holding the lock."""
    path = os.path.join(folder, MANIFEST)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                have = json.load(f)
        except (OSError, ValueError) as exc:
            raise PredictError(f"{path}: unreadable manifest ({exc}); remove {folder} to start over") from None
        if have == wanted and not overwrite:
            return
        if not overwrite:
            diff = [k for k in sorted(set(have) | set(wanted)) if have.get(k) != wanted.get(k)]
            raise PredictError(
                f"{folder} holds a run with other settings ({', '.join(diff)} differ); rerun that command, "
                "or pass --overwrite to start over"
            )
        remove_work(folder)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(wanted, f, indent=1, sort_keys=True)

    _write_atomic(path, write, ".json")


def remove_work(folder: str) -> None:
    """Remove what cdul-predict writes in ``folder``: its parts and manifest (the lock goes with the run)."""
    for name in sorted(os.listdir(folder)):
        if (name.startswith("part-") and name.endswith(".npz")) or name == MANIFEST:
            os.remove(os.path.join(folder, name))


class Lock:
    """``lock`` in the work folder, made exclusively; a lock whose process is gone is taken over."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK)

    def __enter__(self):
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _read_pid(self.path)
                if pid and _alive(pid):
                    raise PredictError(f"{self.path}: another cdul-predict (process {pid}) is writing here") from None
                os.remove(self.path)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise PredictError(f"{self.path}: cannot take the lock")

    def __exit__(self, *exc):
        if os.path.exists(self.path) and _read_pid(self.path) == os.getpid():
            os.remove(self.path)


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_part(folder: str, k: int, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(index, scores, error) of finished part ``k``, or None when it is missing or damaged."""
    try:
        with np.load(os.path.join(folder, part_name(k)), allow_pickle=False) as z:
            index, scores, error = z["index"], z["scores"], z["error"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if scores.ndim != 2 or scores.shape != (len(index), n_classes) or error.shape != index.shape:
        return None
    return index, scores, error


def write_part(folder: str, k: int, index: np.ndarray, scores: np.ndarray, error: list[str]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, index=index, scores=scores, error=np.asarray(error, dtype=str))

    _write_atomic(os.path.join(folder, part_name(k)), write, ".npz")


def image_error(read: Callable[[str], bytes], rel: str) -> str:
    """Why the image ``rel`` could not be scored (read again here: failures are rare)."""
    try:
        decode_image(read(rel))
    except FileNotFoundError:
        return "missing: no such file"
    except (DecodeError, OSError, ValueError) as exc:
        return str(exc).splitlines()[0][:200] or type(exc).__name__
    return "could not be read"


def parts_of(n: int, part_size: int) -> list[range]:
    return [range(s, min(s + part_size, n)) for s in range(0, n, part_size)]


def pending_parts(folder: str, n: int, part_size: int, n_classes: int) -> list[int]:
    return [k for k, r in enumerate(parts_of(n, part_size)) if read_part(folder, k, n_classes) is None]


def score_parts(
    clf: Classifier,
    ds: Dataset,
    folder: str,
    todo: list[int],
    *,
    part_size: int,
    batch_size: int,
    workers: int,
    amp: str,
    progress: Callable[[int], None] = lambda n: None,
) -> None:
    """Score the parts ``todo`` (batches never straddle two parts) and write each when complete."""
    ranges = parts_of(len(ds.ids), part_size)
    batches = [
        [(i, ds.ids[i]) for i in ranges[k][j : j + batch_size]]
        for k in todo
        for j in range(0, len(ranges[k]), batch_size)
    ]
    read = sample_reader(ds.kind, ds.root)
    done: dict[int, list] = {}
    for index, scores, ok in clf.score_batches(ds.root, batches, kind=ds.kind, workers=workers, amp=amp):
        k = int(index[0]) // part_size
        errors = ["" if good else image_error(read, ds.ids[i]) for i, good in zip(index.tolist(), ok.tolist())]
        got = done.setdefault(k, [[], [], []])
        got[0].append(index)
        got[1].append(scores)
        got[2].extend(errors)
        progress(len(index))
        if sum(len(i) for i in got[0]) == len(ranges[k]):
            write_part(folder, k, np.concatenate(got[0]), np.concatenate(got[1]), got[2])
            del done[k]


def iter_parts(
    folder: str, n: int, part_size: int, n_classes: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every part in order, for assembly; a part gone missing since it was scored is an error."""
    for k in range(len(parts_of(n, part_size))):
        part = read_part(folder, k, n_classes)
        if part is None:
            raise PredictError(f"{os.path.join(folder, part_name(k))}: missing or damaged; rerun the command")
        yield part
