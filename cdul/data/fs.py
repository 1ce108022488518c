"""Reading dataset files from a local path or any fsspec URL."""
from __future__ import annotations

import os
import tempfile

import fsspec

from .base import DatasetError


def join(root: str, rel: str) -> str:
    if "://" in root:
        return root.rstrip("/") + "/" + rel
    return os.path.join(root, rel)


def exists(path: str) -> bool:
    if "://" in path:
        fs, p = fsspec.core.url_to_fs(path)
        return fs.exists(p)
    return os.path.exists(path)


def isdir(path: str) -> bool:
    if "://" in path:
        fs, p = fsspec.core.url_to_fs(path)
        return fs.isdir(p)
    return os.path.isdir(path)


def read_bytes(path: str) -> bytes:
    if "://" in path:
        with fsspec.open(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    """A list file (split, labels, classes, annotations) as text; DatasetError naming the
    file (and the line) when it is missing, unreadable or not UTF-8."""
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); save it as UTF-8") from None


def walk_files(root: str) -> list[str]:
    """Every file under root, as sorted POSIX paths relative to it."""
    if "://" in root:
        fs, p = fsspec.core.url_to_fs(root)
        base = p.rstrip("/") + "/"
        return sorted(f[len(base):] for f in fs.find(p))
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            out.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return sorted(out)


def normalise_root(root: str) -> str:
    return root if "://" in root else os.path.abspath(root)


def atomic_write_text(path: str, text: str) -> None:
    """Write a local text file through a temporary file and os.replace: readers (and a crash)
    see the old file or the new one, never half of it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
