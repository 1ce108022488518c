"""Tables of decided labels, written chunk by chunk; the format comes from the extension.

One row per image, columns in this order:

- ``path``: the image id;
- ``labels``: the decided class names, in class order (CSV: one cell, ``;``-separated, the
  ``labels.csv`` that ``cdul-extract --dataset folder`` reads; JSONL and Parquet: a list);
- the ``extra_columns`` named at opening (strings, empty where not given), ``error`` among
  them where some images have no labels because they failed;
- with ``scores``: one ``score:<class>`` column per class (JSONL: a ``scores`` object,
  class name -> score). CSV and JSONL give 7 significant digits; Parquet keeps float32.

The folder reader reads the first two CSV columns and ignores the rest, so a CSV with extra
or score columns is still a ``labels.csv``. The table is written to a hidden file beside the
destination (``.labels.csv.partial-<pid>``) and renamed onto it only when the ``with``
block ends without an exception; an exception removes that file, a killed process leaves it
under its partial name. Parquet writes each ``write`` call as one row group (pyarrow's
ParquetWriter, imported only for Parquet).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from cdul.data import outputs

FORMATS = (".csv", ".jsonl", ".parquet")
SCORE_PREFIX = "score:"


class TableError(ValueError):
    """A table that cannot be written as asked; the message is one line."""


def table_format(path: str) -> str:
    """The format of ``path`` from its extension (".csv", ".jsonl", ".parquet")."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise TableError(f"{path}: unknown table format {ext or '(no extension)'!r}; use {', '.join(FORMATS)}")
    return ext


def partial_name(path: str) -> str:
    """The hidden file a table is written to before it is complete."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.partial-{os.getpid()}")


class Table:
    """What ``open_table`` yields: ``write`` appends rows; subclasses lay them out."""

    def __init__(self, path: str, classes: Sequence[str], scores: bool, extra_columns: Sequence[str]):
        self.path, self.classes, self.scores = path, list(classes), scores
        self.extra_columns = list(extra_columns)
        self.rows = 0

    def write(
        self,
        ids: Sequence[str],
        decided: np.ndarray,
        scores: np.ndarray | None = None,
        errors: Sequence[str | None] | None = None,
        extra: Mapping[str, Sequence[str | None]] | None = None,
    ) -> None:
        """Append ``len(ids)`` rows. ``decided`` bool [n, C]; ``scores`` float [n, C], given
        exactly when the table was opened with scores; ``errors`` fills the ``error`` column
        and ``extra`` the other extra columns (each must have been named at opening)."""
        n, c = len(ids), len(self.classes)
        decided = np.asarray(decided, dtype=bool)
        if decided.shape != (n, c):
            raise ValueError(f"decided has shape {decided.shape}, expected {(n, c)}")
        if (scores is not None) != self.scores:
            raise ValueError("scores must be given exactly when the table was opened with scores=True")
        if scores is not None and np.shape(scores) != (n, c):
            raise ValueError(f"scores have shape {np.shape(scores)}, expected {(n, c)}")
        columns = dict(extra or {})
        if errors is not None:
            columns["error"] = errors
        for name, values in columns.items():
            if name not in self.extra_columns or len(values) != n:
                raise ValueError(f"extra column {name!r}: not named at opening, or not {n} values")
        extras = {name: list(columns.get(name, [None] * n)) for name in self.extra_columns}
        self._write([str(i) for i in ids], decided, scores, extras)
        self.rows += n

    def names(self, decided: np.ndarray) -> list[list[str]]:
        return [[self.classes[j] for j in np.flatnonzero(row)] for row in decided]

    def header(self) -> list[str]:
        score_cols = [SCORE_PREFIX + c for c in self.classes] if self.scores else []
        return ["path", "labels", *self.extra_columns, *score_cols]

    def _write(self, ids, decided, scores, extras) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _text(values: np.ndarray) -> list[list[str]]:
    return np.char.mod("%.7g", np.asarray(values, dtype=np.float64)).tolist()


class CsvTable(Table):
    def __init__(self, path, classes, scores, extra_columns):
        super().__init__(path, classes, scores, extra_columns)
        bad = [c for c in self.classes if ";" in c]
        if bad:
            raise TableError(f"class {bad[0]!r} contains ';', which separates a CSV's labels; write .jsonl or .parquet")
        self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.out = csv.writer(self.file)
        self.out.writerow(self.header())

    def _write(self, ids, decided, scores, extras) -> None:
        score_text = _text(scores) if scores is not None else [[]] * len(ids)
        extra_cols = [[v or "" for v in extras[name]] for name in self.extra_columns]
        for i, (image, names) in enumerate(zip(ids, self.names(decided))):
            self.out.writerow([image, ";".join(names), *(col[i] for col in extra_cols), *score_text[i]])

    def close(self) -> None:
        self.file.close()


class JsonlTable(Table):
    def __init__(self, path, classes, scores, extra_columns):
        super().__init__(path, classes, scores, extra_columns)
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def _write(self, ids, decided, scores, extras) -> None:
        values = [[float(t) for t in row] for row in _text(scores)] if scores is not None else None
        lines = []
        for i, (image, names) in enumerate(zip(ids, self.names(decided))):
            row: dict[str, object] = {"path": image, "labels": names}
            row.update({name: extras[name][i] for name in self.extra_columns})
            if values is not None:
                row["scores"] = dict(zip(self.classes, values[i]))
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        self.file.writelines(lines)

    def close(self) -> None:
        self.file.close()


class ParquetTable(Table):
    def __init__(self, path, classes, scores, extra_columns):
        super().__init__(path, classes, scores, extra_columns)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise TableError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow)") from None
        self.pa = pa
        fields = [pa.field("path", pa.string()), pa.field("labels", pa.list_(pa.string()))]
        fields += [pa.field(name, pa.string()) for name in self.extra_columns]
        if scores:
            fields += [pa.field(SCORE_PREFIX + c, pa.float32()) for c in self.classes]
        meta = {b"cdul.classes": json.dumps(self.classes).encode()}
        self.schema = pa.schema(fields, metadata=meta)
        self.writer = pq.ParquetWriter(path, self.schema)

    def _write(self, ids, decided, scores, extras) -> None:
        pa = self.pa
        rows, cols = np.nonzero(decided)  # row-major: each row's classes in class order
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(ids)))]).astype(np.int32)
        names = pa.array(np.asarray(self.classes, dtype=object)[cols].tolist(), pa.string())
        arrays = [pa.array(ids, pa.string()), pa.ListArray.from_arrays(pa.array(offsets), names)]
        arrays += [pa.array(extras[name], pa.string()) for name in self.extra_columns]
        if scores is not None:
            f32 = np.asarray(scores, dtype=np.float32)
            arrays += [pa.array(f32[:, j]) for j in range(len(self.classes))]
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


WRITERS = {".csv": CsvTable, ".jsonl": JsonlTable, ".parquet": ParquetTable}


@contextlib.contextmanager
def open_table(
    path: str, classes: Sequence[str], *, scores: bool, extra_columns: Sequence[str] = ()
) -> Iterator[Table]:
    """A table at ``path`` (see the module's docstring), complete only when the block ends."""
    path = os.fspath(path)
    kind = table_format(path)
    try:
        outputs.table_file(path)
    except outputs.OutputError as exc:
        raise TableError(str(exc)) from None
    bad = [n for n in extra_columns if n in ("path", "labels", "scores") or n.startswith(SCORE_PREFIX)]
    if bad or len(set(extra_columns)) != len(extra_columns):
        raise TableError(f"extra columns {list(extra_columns)}: repeated, or a name the table uses itself")
    temp = partial_name(path)
    try:
        table = WRITERS[kind](temp, classes, scores, extra_columns)
    except OSError as exc:
        raise TableError(f"{path}: cannot write a file there ({exc.strerror or exc})") from None
    try:
        yield table
        table.close()
    except BaseException:
        with contextlib.suppress(Exception):
            table.close()
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    os.replace(temp, path)
