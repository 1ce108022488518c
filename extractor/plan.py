"""One extraction, resolved once: ``ExtractPlan`` is what every process of a run works from.

The parent (the command, the demo through it, the benchmarks) builds it with
``plan_extraction``: the per-device defaults filled in (batch size, decoding workers), the
``auto`` choices resolved for the devices (precision, view path, tower mode), the chunk
length and what finalising needs. Workers and torchrun ranks receive it as it is; nothing
below resolves a setting again. Only the ``ExtractConfig`` part is hashed into the store.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .config import RunOptions, WorkerConfig

GPU_BATCH = 256  # crops per encoder batch on a GPU...
CPU_BATCH = 8  # ... and on the CPU, where larger batches fall out of cache and run slower
MAX_LOADER_WORKERS = 32


def default_batch_size(on_gpu: bool) -> int:
    return GPU_BATCH if on_gpu else CPU_BATCH


def default_loader_workers(devices: list[str] | tuple[str, ...]) -> int:
    """Decoding processes per device worker: on GPUs the CPU count per device less one (the
    worker's own), at most 32; on the CPU none, since the encoder already uses every core."""
    if not any(d.startswith("cuda") for d in devices):
        return 0
    per_device = max(1, (os.cpu_count() or 1) // len(devices))
    return min(MAX_LOADER_WORKERS, max(1, per_device - 1))


@dataclass(frozen=True)
class ExtractPlan:
    """``worker``: the store, the dataset, the hashed ``ExtractConfig`` (precision resolved)
    and the ``RunOptions`` (every default filled in and resolved); ``devices``: one worker
    each; ``torchrun``: (rank, world, local rank) when started by torchrun."""

    worker: WorkerConfig
    devices: tuple[str, ...]
    chunk_len: int = 1024
    zeta: float = 0.5
    lam: float = 0.0
    ap: str | None = None  # the AP protocol of the summary's pseudo-label mAPs (None: the dataset's)
    embed_dim: int = 0  # the model's embedding width, where global embeddings are kept
    overwrite: bool = False
    torchrun: tuple[int, int, int] | None = None

    runs: tuple[tuple[str, RunOptions], ...] = ()  # by device type, where the devices are of two kinds

    @property
    def store(self) -> str:
        return self.worker.store

    def worker_on(self, device: str) -> WorkerConfig:
        """What a worker on ``device`` runs: the run options resolved for its kind."""
        kind = "cpu" if device == "cpu" else device.split(":")[0]
        run = dict(self.runs).get(kind, self.worker.run)
        return dataclasses.replace(self.worker, run=run)


class SettingError(ValueError):
    """A run option that the devices cannot run, with the command's name for it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def plan_extraction(cfg: WorkerConfig, devices: list[str] | tuple[str, ...], **settings) -> ExtractPlan:
    """The plan of extracting with ``cfg`` on ``devices``: its ``RunOptions``' unset batch
    size (0) and decoding workers (-1) take the devices' defaults, precision, views and
    compile their devices' choice, and ``--decode gpu`` is checked against them (``modes``;
    ValueError, one line, where a device cannot run one: ``SettingError``).
    ``settings``: the other fields of ``ExtractPlan``."""
    import torch

    from .modes import check_decode, resolve_compile, resolve_precision, resolve_views

    run = cfg.run
    run = dataclasses.replace(
        run,
        batch_size=run.batch_size or default_batch_size(any(d.startswith("cuda") for d in devices)),
        loader_workers=default_loader_workers(devices) if run.loader_workers < 0 else run.loader_workers,
    )
    runs = {}
    for name in devices:
        device = torch.device(name)
        if device.type in runs:
            continue
        try:
            views = resolve_views(run.views, device)
        except ValueError as exc:
            raise SettingError("--views", str(exc)) from None
        try:
            mode = resolve_compile(run.compile, device)
        except ValueError as exc:
            raise SettingError("--compile", str(exc)) from None
        try:
            check_decode(cfg.config.decode, device)
        except ValueError as exc:
            raise SettingError("--decode", str(exc)) from None
        runs[device.type] = dataclasses.replace(run, views=views, compile=mode)
    first = torch.device(devices[0])
    config = dataclasses.replace(cfg.config, precision=resolve_precision(cfg.config.precision, first))
    worker = dataclasses.replace(cfg, config=config, run=runs[first.type])
    return ExtractPlan(worker, tuple(devices), runs=tuple(runs.items()), **settings)


def with_run(plan: ExtractPlan, **changes) -> ExtractPlan:
    """The plan with some ``RunOptions`` fields changed for every device (values as the
    plan holds them: resolved)."""
    run = dataclasses.replace(plan.worker.run, **changes)
    runs = tuple((kind, dataclasses.replace(r, **changes)) for kind, r in plan.runs)
    return dataclasses.replace(plan, worker=dataclasses.replace(plan.worker, run=run), runs=runs)


__all__ = [
    "ExtractPlan",
    "RunOptions",
    "SettingError",
    "default_batch_size",
    "default_loader_workers",
    "plan_extraction",
    "with_run",
]
