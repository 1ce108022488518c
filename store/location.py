"""Store locations before a store is opened: can this URL hold one, is there one, and
deleting one (never anything that is not a store)."""

from __future__ import annotations

import json

import fsspec

from . import layout as L
from .attrs import StoreError
from .lock import LOCK_NAME
from .url import is_url, normalise


def _fs_path(url: str):
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path


READ_ONLY = ("http", "https", "ftp", "zip", "tar", "github", "hf")


def check_location(url: str, processes: int = 1) -> None:
    """Refuse, before anything is written, a store location that cannot work: a protocol
    fsspec does not know or cannot load, a read-only one, or a memory:// store shared by
    several processes (each would see its own empty one)."""
    url = normalise(url)
    if not is_url(url):
        return
    try:
        fs, _ = _fs_path(url)
    except (ImportError, ValueError) as exc:
        raise StoreError(f"{url}: this kind of URL cannot hold a store here ({exc})") from None
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & set(READ_ONLY):
        raise StoreError(
            f"{url}: {'/'.join(sorted(protocols))} URLs are read-only; write the store to a path or a "
            "writable URL (s3://, gs://, ...)"
        )
    if "memory" in protocols and processes > 1:
        raise StoreError(
            f"{url}: a memory:// store lives inside one process, and this run has {processes}; use one "
            "device, or a path"
        )


def store_exists(url: str) -> bool:
    fs, path = _fs_path(normalise(url))
    return fs.exists(path.rstrip("/") + "/zarr.json")


def remove_store(url: str) -> None:
    """Delete a store, refusing anything that is not one (so --overwrite cannot wipe a home directory)."""
    url = normalise(url)
    fs, path = _fs_path(url)
    if not fs.exists(path):
        return
    meta = path.rstrip("/") + "/zarr.json"
    if fs.exists(meta):
        try:
            attrs = json.loads(fs.cat_file(meta)).get("attributes", {})
        except (ValueError, OSError):
            attrs = {}
        if attrs.get("format") != L.FORMAT:
            raise StoreError(f"{url} is a Zarr group but not a cdul store; refusing to delete it")
    elif fs.isdir(path) and [p for p in fs.ls(path, detail=False) if not p.endswith("/" + LOCK_NAME)]:
        raise StoreError(f"{url} exists and is not a cdul store; refusing to delete it")
    # Keep the lock file: the run that asked for the overwrite holds it.
    for entry in fs.ls(path, detail=False):
        if not entry.endswith("/" + LOCK_NAME):
            fs.rm(entry, recursive=True)
