"""The output-path guard: where a command may create, replace or remove files.

Every command that writes files goes through it (cdul-report --out, cdul-eval --out and
--plots, cdul-extract --out, cdul-refine's index cache, cdul-search --json, cdul-train
--out-dir). Its rules:

- a command writes only inside the path it was given: ``output_dir`` makes that folder (and
  its missing parents) or takes it as it is, and ``inside`` names a file in it, refusing a
  name that leaves the folder or that passes through, or is, a symbolic link below it (a
  link inside an output folder is never written through, replaced or removed);
- ``output_file`` is a file to write whole (then replaced atomically, see
  ``fs.atomic_write_text``): refused when it is a folder or a symbolic link;
- ``store_target`` is where a new store may be made: nothing there yet, an empty folder, or
  a cdul store (its own ``zarr.json``); any other folder is refused before anything is
  written in it;
- ``table_file`` is a file written whole into a folder that must already exist (the tables
  and models of cdul-export and cdul-predict): refused when it is a folder or a symbolic
  link, or when its folder is missing;
- ``replace_into`` moves a finished temporary file to its final name, so a file appears
  complete or not at all.

Remote (fsspec) locations have no symbolic links; they pass through unchanged.
"""

from __future__ import annotations

import json
import os


class OutputError(ValueError):
    """An output path a command will not write to; the message says why."""


def _remote(path: str) -> bool:
    return "://" in str(path)


def output_dir(path: str, what: str = "--out") -> str:
    """The folder ``path``, made when absent; refused when it is a file."""
    path = os.fspath(path)
    if _remote(path):
        return path
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{what} {path} is a file, not a folder: choose another path")
    os.makedirs(path, exist_ok=True)
    return path


def inside(folder: str, name: str, what: str = "--out") -> str:
    """``folder/name`` for a relative ``name``, refusing one that leaves ``folder`` or passes
    through a symbolic link below it. Missing folders of ``name`` are made."""
    folder, name = os.fspath(folder), os.fspath(name)
    if _remote(folder):
        return folder.rstrip("/") + "/" + name
    parts = [p for p in name.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if not parts or os.path.isabs(name) or ".." in parts:
        raise OutputError(f"{name!r} is not a plain name inside {what} {folder}")
    here = folder
    for i, part in enumerate(parts):
        here = os.path.join(here, part)
        if os.path.islink(here):
            raise OutputError(
                f"{what} {folder}: {'/'.join(parts[: i + 1])} is a symbolic link; cdul does not write through it"
            )
        if i < len(parts) - 1 and not os.path.isdir(here):
            if os.path.lexists(here):
                raise OutputError(f"{what} {folder}: {'/'.join(parts[: i + 1])} is a file where a folder belongs")
            os.mkdir(here)
    return here


def output_file(path: str, what: str = "--out") -> str:
    """A file to write whole: its folder is made when absent; refused when it is a folder or
    a symbolic link."""
    if _whole_file(path, what):
        output_dir(os.path.dirname(os.path.abspath(path)), what)
    return os.fspath(path)


def _whole_file(path: str, what: str) -> bool:
    """Refuse a folder or a symbolic link where a whole file goes; False for a remote path
    (it has neither)."""
    path = os.fspath(path)
    if _remote(path):
        return False
    if os.path.islink(path):
        raise OutputError(f"{what} {path} is a symbolic link; give the path of the file itself")
    if os.path.isdir(path):
        raise OutputError(f"{what} {path} is a folder; give a file name")
    return True


def table_file(path: str, what: str = "--out") -> str:
    """A file to write whole in a folder that exists already: refused when it is a folder, a
    symbolic link, or its folder is missing (nothing is created for it)."""
    folder = os.path.dirname(os.path.abspath(path))
    if _whole_file(path, what) and not os.path.isdir(folder):
        raise OutputError(f"{what} {path}: the folder {folder} does not exist")
    return os.fspath(path)


def replace_into(tmp: str, folder: str, name: str, what: str = "--out") -> str:
    """Move the finished file ``tmp`` to ``folder/name`` (guarded as ``inside``)."""
    final = inside(folder, name, what)
    os.replace(tmp, final)
    return final


def _is_store(path: str) -> bool:
    try:
        with open(os.path.join(path, "zarr.json"), encoding="utf-8") as f:
            attrs = json.load(f).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and attrs.get("format") == "cdul-store"


def store_target(path: str, what: str = "--out") -> None:
    """Refuse a location where a new store cannot be made without touching what is there:
    only nothing, an empty folder, a cdul store, or a folder holding nothing but a cdul lock
    file (a creation that died early) qualify."""
    path = os.fspath(path)
    if _remote(path) or not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise OutputError(f"{what} {path} is a file, and a store is a folder: choose another path")
    if _is_store(path):
        return
    entries = os.listdir(path)
    if entries == [".lock"] and _cdul_lock(os.path.join(path, ".lock")):
        return
    if entries:
        raise OutputError(
            f"{what} {path} is a folder that holds other files, not a cdul store: choose a new or empty folder"
        )


def _cdul_lock(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
        return "token" in json.loads(data)
    except (OSError, ValueError, TypeError):
        return False
