"""Hugging Face ``imagefolder`` metadata, read as a folder dataset's labels.

    <root>/metadata.csv     a header with a ``file_name`` column (the image's path relative
                            to the metadata file) and, optionally, ``labels``: class names
                            separated by ';'. Other columns are ignored.
    <root>/metadata.jsonl   one object a line: {"file_name": ..., "labels": [...] or "a;b"}

Either may also sit in ``<root>/<split>/`` (Hugging Face's per-split folders); the image
ids are then ``<split>/<file_name>``. cdul's own ``labels.csv`` is read first when both
are there. See https://huggingface.co/docs/datasets/image_load#imagefolder.
"""

from __future__ import annotations

import csv
import io
import json

from . import fs
from .base import DatasetError, safe_relpath

NAMES = ("metadata.csv", "metadata.jsonl")


def find_metadata(root: str, split: str = "") -> tuple[str, str] | None:
    """(the metadata file, the id prefix of its images), or None where there is none."""
    for folder, prefix in ((root, ""), *(((fs.child(root, split), f"{split}/"),) if split else ())):
        for name in NAMES:
            path = fs.child(folder, name)
            if fs.exists(path):
                return path, prefix
    return None


def _labels(value, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [n.strip() for n in value.split(";") if n.strip()]
    if isinstance(value, list) and all(isinstance(n, str) for n in value):
        return [n.strip() for n in value if n.strip()]
    raise DatasetError(f"{where}: labels must be a list of class names or a ';'-separated string, not {value!r}")


def _rows(path: str) -> list[tuple[dict, str]]:
    """Each record of the file, with where it is (path:line)."""
    text = fs.read_text(path)
    if path.endswith(".jsonl"):
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{path}:{lineno}: expected a JSON object")
                rows.append((record, f"{path}:{lineno}"))
        return rows
    reader = csv.DictReader(io.StringIO(text))
    if "file_name" not in (reader.fieldnames or []):
        raise DatasetError(f"{path}:1: expected a header row with a file_name column")
    return [(row, f"{path}:{reader.line_num}") for row in reader if any((v or "").strip() for v in row.values())]


def read_metadata(path: str, prefix: str = "") -> tuple[list[str], list[list[str]] | None, list[str]]:
    """(image ids, each image's class names or None where the file has no labels, where
    each row is)."""
    rows = _rows(path)
    has_labels = any("labels" in row for row, _ in rows)
    ids, labels, where = [], [], []
    for row, at in rows:
        if not isinstance(row.get("file_name"), str):
            raise DatasetError(f"{at}: no file_name")
        ids.append(prefix + safe_relpath(row["file_name"], at))
        labels.append(_labels(row.get("labels"), at))
        where.append(at)
    return ids, (labels if has_labels else None), where
