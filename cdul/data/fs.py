"""Reading dataset files from a local path or any fsspec URL.

An image path read from a dataset file stays inside the dataset root: :func:`join` refuses
one that leaves it by ``..``, by an absolute path or URL, or (on a local root, unless
``--follow-symlinks`` is given) by a symbolic link to something outside the root. The
refusal is an OSError, so the image is recorded as failed with the reason. The choice to
follow links travels to worker processes in the environment (``CDUL_FOLLOW_SYMLINKS``).

File names that are not UTF-8 (a store holds UTF-8 text) are listed with their odd bytes
escaped (``caf\\xe9.jpg``); reading such a name finds the file by its original bytes.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile

import fsspec

from .base import DatasetError

FOLLOW_SYMLINKS = "CDUL_FOLLOW_SYMLINKS"


class OutsideRoot(PermissionError):
    """An image path that leads outside the dataset root."""


def follow_symlinks(on: bool) -> None:
    """Let image paths resolve through symbolic links to files outside the dataset root."""
    os.environ[FOLLOW_SYMLINKS] = "1" if on else "0"


def child(root: str, name: str) -> str:
    """root/name for a name the dataset layout fixes (ImageSets/Main, labels.csv, ...)."""
    if "://" in root:
        return root.rstrip("/") + "/" + name
    return os.path.join(root, name)


def join(root: str, rel: str) -> str:
    """root/rel for an image path rel read from a dataset file; OutsideRoot when it leaves root."""
    norm = os.path.normpath(rel)
    if "\0" in rel or rel.startswith(("/", "\\")) or "://" in rel or norm == ".." or norm.startswith("../"):
        raise OutsideRoot(f"the path {rel!r} leaves the dataset root")
    path = child(root, rel)
    if "://" in root:
        return path
    if "\\x" in rel and not os.path.lexists(path) and os.path.lexists(_original_name(path)):
        path = _original_name(path)  # listed with its odd bytes escaped
    if os.environ.get(FOLLOW_SYMLINKS) == "1":
        return path
    real, top = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, top]) != top:
        raise OutsideRoot(f"{rel} is a symbolic link to {real}, outside the dataset root (--follow-symlinks allows it)")
    return path


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


def printable_name(name: str) -> str:
    """A local file name as UTF-8 text: bytes that are not UTF-8 become \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _original_name(path: str) -> str:
    """The local name printable_name escaped, as Python spells undecodable bytes in paths."""
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), path.encode("utf-8"))
    return os.fsdecode(raw)


class NotRegularFile(OSError):
    """A path that is a FIFO, a socket or a device: never read (a FIFO would block forever)."""


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def open_regular(path: str):
    """A local regular file opened for binary reading. It is opened without blocking and
    checked before any byte is read: a folder raises IsADirectoryError, anything else that
    is not a regular file NotRegularFile."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", path)
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not a regular file: not read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str) -> bytes:
    """The whole file (local files: regular ones only, see open_regular)."""
    if "://" in path:
        with fsspec.open(path, "rb") as f:
            return f.read()
    with open_regular(path) as f:
        return f.read()


def read_range(path: str, offset: int, size: int) -> bytes:
    """``size`` bytes from ``offset`` (fewer where the file ends first)."""
    if "://" in path:
        fs, p = fsspec.core.url_to_fs(path)
        return fs.cat_file(p, start=offset, end=offset + size)
    with open_regular(path) as f:
        f.seek(offset)
        return f.read(size)


def open_binary(path: str):
    """A seekable binary file object (close it, or use it in a ``with``)."""
    return fsspec.open(path, "rb").open() if "://" in path else open_regular(path)


class FileReader:
    """``reader(rel)`` -> the bytes of the file ``rel`` under ``root``: how the images of a
    folder, VOC or COCO dataset are read."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self, rel: str) -> bytes:
        return read_bytes(join(self.root, rel))


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
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); save it as UTF-8") from None


def walk_files(root: str) -> list[str]:
    """Every file under root, as sorted POSIX paths relative to it."""
    if "://" in root:
        fs, p = fsspec.core.url_to_fs(root)
        base = p.rstrip("/") + "/"
        return sorted(f[len(base) :] for f in fs.find(p))
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            out.append(printable_name(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")))
    return sorted(out)


def normalise_root(root: str) -> str:
    return root if "://" in root else os.path.abspath(root)


def atomic_write_text(path: str, text: str) -> None:
    """Write a local text file through a temporary file and os.replace: readers (and a crash)
    see the old file or the new one, never half of it."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write a local file as atomic_write_text does."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
