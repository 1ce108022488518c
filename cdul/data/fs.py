"""Reading dataset files from a local path or any fsspec URL."""
from __future__ import annotations

import os
import tempfile

import fsspec


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


def read_range(path: str, offset: int, size: int) -> bytes:
    """``size`` bytes from ``offset`` (fewer where the file ends first)."""
    if "://" in path:
        fs, p = fsspec.core.url_to_fs(path)
        return fs.cat_file(p, start=offset, end=offset + size)
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def open_binary(path: str):
    """A seekable binary file object (close it, or use it in a ``with``)."""
    return fsspec.open(path, "rb").open() if "://" in path else open(path, "rb")


class FileReader:
    """``reader(rel)`` -> the bytes of the file ``rel`` under ``root``: how the images of a
    folder, VOC or COCO dataset are read."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self, rel: str) -> bytes:
        return read_bytes(join(self.root, rel))


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8-sig")


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
