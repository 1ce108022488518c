"""The report folder: built aside and moved in, replacing only the files an earlier report
listed in its manifest, refusing a non-empty folder that holds no report."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

from cdul.data import fs, outputs
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
        with open(outputs.inside(out_dir, MANIFEST), encoding="utf-8") as f:
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
    """Replace the files of the old report by those built in tmp, touching nothing else:
    every name goes through the output guard (no symbolic link inside out_dir is followed)."""
    for name in old:
        try:
            path = outputs.inside(out_dir, name)
        except outputs.OutputError:
            continue  # a listed name that now leads through a link: not ours to remove
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    new = sorted(
        os.path.relpath(os.path.join(d, f), tmp).replace(os.sep, "/") for d, _, files in os.walk(tmp) for f in files
    )
    for name in new:
        outputs.inside(out_dir, name)  # refuse the whole report before moving any file in
    for name in new:
        outputs.replace_into(os.path.join(tmp, name), out_dir, name)
    fs.atomic_write_text(outputs.inside(out_dir, MANIFEST), "".join(n + "\n" for n in new))


def write_report(
    out_dir: str,
    store_url: str,
    run_dir: str | None = None,
    eval_json: str | None = None,
    *,
    max_images: int,
    sources: Mapping[str, str] | None = None,
    note: str | None = None,
) -> str:
    """Build the report inside out_dir and move it in place; returns the path of index.html.
    ``max_images``: rows of the per-image table (cdul-report --images); ``note``: a paragraph
    about the data, shown under the header."""
    old = _written_before(out_dir)
    data = gather(store_url, run_dir, eval_json, max_images=max_images, sources=sources)
    if note:
        data["note"] = note
    store = Store.open(store_url)
    root = str(store.section("dataset").get("root", ""))  # where cdul-extract read the images
    made = not os.path.lexists(out_dir)
    outputs.output_dir(out_dir)
    tmp = tempfile.mkdtemp(prefix=".report-", dir=out_dir)
    try:
        build_page(tmp, data, store, root)
        _move_in(tmp, out_dir, old)
    except BaseException:
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)  # a folder this report made, holding only its own files
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # holds only what build_page wrote
    return os.path.join(out_dir, "index.html")
