"""The run's metrics: one JSON object per epoch in ``metrics.jsonl``, the same as a table
in ``metrics.csv``, next to the checkpoints.

Both files are rewritten whole (temporary file + os.replace) after every epoch, so they are
never half-written, and a resumed run first drops the epochs its checkpoint does not cover.
With ``report_to="tensorboard"`` each record also goes to TensorBoard (:mod:`.tboard`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

from cdul.data import outputs
from cdul.data.fs import atomic_write_text

from .tboard import TensorBoardLog

JSONL = "metrics.jsonl"
CSV = "metrics.csv"


def _plain(value):
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class RunLog:
    def __init__(self, out_dir: str, keep_until: int | None = None, report_to: str = "none"):
        """``keep_until``: the epochs (<=) of an earlier log to keep (resume); None starts afresh."""
        self.out_dir = out_dir
        self.tensorboard = TensorBoardLog(out_dir) if report_to == "tensorboard" else None
        self.records: list[dict] = []
        path = os.path.join(out_dir, JSONL)
        if keep_until is not None and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
            self.records = [r for r in rows if r.get("epoch", 0) <= keep_until]

    def append(self, record: dict) -> None:
        self.records.append(_plain(record))
        self.write()
        if self.tensorboard is not None:
            self.tensorboard.append(self.records[-1])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def write(self) -> None:
        atomic_write_text(
            outputs.inside(self.out_dir, JSONL, "--out-dir"),
            "".join(json.dumps(r, sort_keys=False) + "\n" for r in self.records),
        )
        keys: list[str] = []
        for r in self.records:
            keys += [k for k in r if k not in keys and not isinstance(r[k], (dict, list))]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in self.records:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
        atomic_write_text(outputs.inside(self.out_dir, CSV, "--out-dir"), buf.getvalue())
