"""An extraction's settings in two typed records, and where it reads and writes.

- ``ExtractConfig`` is everything that changes the numbers in the store. It is hashed whole
  into the store's configuration (``store_life.extraction_config``): a rerun resumes only with
  an equal one, and a new field is hashed from the day it is added.
- ``RunOptions`` is how a run goes, not what it computes (batch size, decoding workers,
  threads, the view path, how the tower runs, the pipeline's queue depths): never hashed,
  free to change between a run and its resume. ``plan.plan_extraction`` fills in its
  per-device defaults and resolves its ``auto`` choices once.
- ``WorkerConfig`` holds both, with the store's URL and the dataset's root and kind (those
  are hashed under the dataset's own description).

Their defaults are the command line's defaults; the choices of the modes are in
``options.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdul.data.decode import DEFAULT_MAX_PIXELS

from .options import PROMPT_TEMPLATE
from .tiling import Tiling


@dataclass(frozen=True)
class ExtractConfig:
    model: str
    pretrained: str
    template: str = PROMPT_TEMPLATE
    ensemble: bool = False
    tiling: Tiling = field(default_factory=lambda: Tiling.grid(3))
    precision: str = "auto"  # resolved against the device before it is hashed
    keep_tiles: bool = False
    max_tiles: int = 64  # tiles kept per image with pixel tiles (keep_tiles)
    keep_embeddings: bool = False
    exif: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    follow_symlinks: bool = False  # which images are read at all
    local: str = "tiles"  # "tiles" (docs/algorithm.md §2.3) or "dense" (§4)
    dense_size: int = 0  # dense mode: the pass's size in px (0: the model's input size)
    keep_patches: int = 0  # dense mode: K bank entries per class
    keep_patch_embeddings: bool = False  # dense mode: store every patch embedding
    decode: str = "pil"  # who decodes plain JPEGs: "pil" (PIL's pixels) or "gpu" (nvJPEG's, gpu_decode.py)


@dataclass(frozen=True)
class RunOptions:
    batch_size: int = 0  # crops per encoder batch (0: the devices' default, plan.default_batch_size)
    loader_workers: int = -1  # decoding processes per worker (-1: plan.default_loader_workers)
    threads: int | None = None
    views: str = "auto"
    compile: str = "auto"
    sync_stages: bool = False  # profiles: wait for the device after every stage, so stage times include it
    cache_dir: str | None = None  # where weights are looked for: the same weights from any cache
    # Batches the host may issue before it reads the oldest one's scores back (on CUDA): the
    # device has that much queued work to go on with while the host waits for a packed batch,
    # a chunk's bookkeeping or a core. Each costs one packed batch of device memory.
    in_flight: int = 4
    copy_stream: bool = True  # the host-to-device copy on its own stream (stages.ToDevice)
    # How much lower the decoding workers' scheduling priority is when they feed a GPU: the
    # process that issues the device's work wins a core on waking, the workers lose nothing
    # measurable (benchmarks/priority_bench.py). On the CPU the encoder needs the cores
    # itself, and the workers keep their priority.
    worker_nice: int = 5
    # The host sleeps while it waits for a batch's scores, rather than spinning on a core (what
    # CUDA does for an event made without cudaEventBlockingSync) that a decoding worker could
    # use; the device has the other batches in flight to go on with meanwhile.
    blocking_wait: bool = True
    reuse_loaded: bool = False  # benchmarks: a process that extracts several times loads and compiles once


@dataclass(frozen=True)
class WorkerConfig:
    store: str
    root: str
    config: ExtractConfig
    run: RunOptions = field(default_factory=RunOptions)
    kind: str = "folder"  # the dataset kind: how an image id is read (cdul.data.sample_reader)
