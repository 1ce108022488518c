"""The report folder: built aside and moved in, replacing only the files an earlier report
listed in its manifest, refusing a non-empty folder that holds no report."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

from cdul.data import fs
from cdul.store import Store

from .contents import gather
from .page import build_page

MANIFEST = ".cdul-report"  # in the report folder: the files the report wrote, one a line


def _written_before(out_dir: str) -> list[str]:
    """The files an earlier report wrote into out_dir; refuses a folder it did not make."""
    if not os.path.exists(out_dir):
        return []
    if not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    try:
        with open(os.path.join(out_dir, MANIFEST), encoding="utf-8") as f:
            names = f.read().splitlines()
    except FileNotFoundError:
        if os.listdir(out_dir):
            raise ValueError(
                f"--out {out_dir} is not empty and holds no cdul report; choose a new or empty folder"
            ) from None
        return []
    # only plain relative names inside the folder, whatever the list says
    return [n for n in names if n and not os.path.isabs(n) and ".." not in n.split("/")]


def _move_in(tmp: str, out_dir: str, old: list[str]) -> None:
    """Replace the files of the old report by those built in tmp, touching nothing else."""
    for name in old:
        path = os.path.join(out_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    new = sorted(
        os.path.relpath(os.path.join(d, f), tmp).replace(os.sep, "/") for d, _, files in os.walk(tmp) for f in files
    )
    for name in new:
        os.makedirs(os.path.dirname(os.path.join(out_dir, name)), exist_ok=True)
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    fs.atomic_write_text(os.path.join(out_dir, MANIFEST), "".join(n + "\n" for n in new))


def write_report(
    out_dir: str,
    store_url: str,
    run_dir: str | None = None,
    eval_json: str | None = None,
    max_images: int = 24,
    sources: Mapping[str, str] | None = None,
    note: str | None = None,
) -> str:
    """Build the report next to out_dir and move it in; returns the path of index.html.
    ``note``: a paragraph about the data, shown under the header."""
    old = _written_before(out_dir)
    data = gather(store_url, run_dir, eval_json, max_images, sources)
    if note:
        data["note"] = note
    store = Store.open(store_url)
    root = str(store.section("dataset").get("root", ""))  # where cdul-extract read the images
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".report-", dir=parent)
    try:
        build_page(tmp, data, store, root)
        _move_in(tmp, out_dir, old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # holds only what build_page wrote
    return os.path.join(out_dir, "index.html")
