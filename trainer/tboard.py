"""``--report-to tensorboard``: the per-epoch metrics of ``metrics.jsonl`` also as TensorBoard
scalars, in ``<out-dir>/tensorboard`` (one event file per run attempt; step = epoch).

The ``tensorboard`` package is optional: it is imported only when asked for, and
:func:`require` turns its absence into one line that says how to install it.
"""

from __future__ import annotations

import math
import os

FOLDER = "tensorboard"
EVENTS_PREFIX = "events.out.tfevents."


class MissingTensorBoard(Exception):
    pass


def require(report_to: str) -> None:
    """Raise MissingTensorBoard (one line) when --report-to tensorboard cannot be served."""
    if report_to != "tensorboard":
        return
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise MissingTensorBoard(
            "--report-to tensorboard needs the tensorboard package: pip install tensorboard"
        ) from None


def scalars(record: dict) -> dict[str, float]:
    """The record's finite numbers (not flags, not the epoch itself), as TensorBoard tags."""
    out = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class TensorBoardLog:
    def __init__(self, out_dir: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=os.path.join(out_dir, FOLDER))

    def append(self, record: dict) -> None:
        step = int(record.get("epoch", 0))
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def remove_events(out_dir: str) -> list[str]:
    """--overwrite: the event files an earlier run wrote (nothing else in the folder)."""
    folder = os.path.join(out_dir, FOLDER)
    if not os.path.isdir(folder):
        return []
    gone = [name for name in os.listdir(folder) if name.startswith(EVENTS_PREFIX)]
    for name in gone:
        os.remove(os.path.join(folder, name))
    return [os.path.join(FOLDER, name) for name in gone]
