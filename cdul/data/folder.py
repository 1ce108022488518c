"""Any folder of images, with an optional CSV of labels.

    <root>/<csv>            header "path,labels"; labels are ';'-separated class names
                            (the labels column is optional: unlabelled collections are the
                            common case)
    <root>/<path>           the images

Hugging Face ``imagefolder`` metadata (``metadata.csv`` / ``metadata.jsonl`` with a
``file_name`` column, :mod:`.hf_metadata`) is read where there is no labels.csv. Without
either, every image file under root is used, sorted by path. Class names come from
``classes`` (a file, one name a line, or a list) or, failing that, from the CSV's labels.
"""

from __future__ import annotations

import csv
import io

from . import fs
from .base import Dataset, DatasetError, check_unique, label_matrix, safe_relpath
from .hf_metadata import find_metadata, read_metadata

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def read_class_file(path: str) -> list[str]:
    names = []
    for lineno, line in enumerate(fs.read_text(path).splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name in names:
            raise DatasetError(f"{path}:{lineno}: class {name!r} is listed twice")
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: no class names in it")
    return names


def _read_csv(path: str) -> tuple[list[str], list[list[str]] | None, list[int]]:
    text = fs.read_text(path)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0].strip() != "path":
        raise DatasetError(f"{path}:1: expected a header row 'path,labels' (or just 'path')")
    has_labels = len(header) > 1 and header[1].strip() == "labels"
    paths: list[str] = []
    labels: list[list[str]] | None = [] if has_labels else None
    lines: list[int] = []
    for row in reader:
        lineno = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        paths.append(safe_relpath(row[0], f"{path}:{lineno}"))
        lines.append(lineno)
        if labels is not None:
            cell = row[1] if len(row) > 1 else ""
            labels.append([n.strip() for n in cell.split(";") if n.strip()])
    return paths, labels, lines


def load_folder(root: str, split: str = "", csv_path: str | None = None, classes=None) -> Dataset:
    if not fs.isdir(root):
        raise DatasetError(f"{root}: not a directory")
    if csv_path is None and fs.exists(fs.child(root, "labels.csv")):
        csv_path = fs.child(root, "labels.csv")
    class_names = read_class_file(classes) if isinstance(classes, str) else (list(classes) if classes else None)
    meta = find_metadata(root, split) if csv_path is None else None
    if meta is not None:
        csv_path = meta[0]
        ids, labels, where = read_metadata(*meta)
    elif csv_path is not None:
        ids, labels, lines = _read_csv(csv_path)
        where = [f"{csv_path}:{lineno}" for lineno in lines]
    else:
        ids = [p for p in fs.walk_files(root) if p.lower().endswith(IMAGE_EXTS) and not p.startswith(".")]
        if not ids:
            raise DatasetError(f"{root}: no image files found (and no labels.csv or metadata.csv)")
        if not class_names:
            raise DatasetError(f"{root}: a folder dataset needs class names: pass --classes FILE (one name a line)")
        return Dataset("folder", fs.normalise_root(root), split, class_names, ids, None)
    if not ids:
        raise DatasetError(f"{csv_path}: no image rows")
    check_unique(ids, csv_path)
    if class_names is None:
        if labels is None:
            raise DatasetError(f"{csv_path}: no labels column; pass --classes FILE with the class names")
        class_names = sorted({n for row in labels for n in row})
        if not class_names:
            raise DatasetError(f"{csv_path}: the labels column is empty; pass --classes FILE")
    targets = None
    if labels is not None:
        targets = label_matrix(labels, class_names, where)
    return Dataset("folder", fs.normalise_root(root), split, class_names, ids, targets)
