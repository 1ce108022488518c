"""JPEG decoding on the device (``--decode gpu``): nvJPEG through ``torchvision.io.decode_jpeg``.

The decoding workers leave plain JPEGs undecoded (``cdul.data.decode.plain_jpeg_size``: the
files ``decode_image`` would decode with libjpeg-turbo directly; every other file is decoded
there as always) and ``packing.pack`` reserves their regions at the end of the batch's
buffer. ``DeviceDecode``, in place of the copy stage, makes that buffer on the device, copies
the packed part into its start and decodes every file of the batch in one call
(``device_decode``), writing each [3, H, W] result as [H, W, 3] into its region.

Contract: a file the device cannot decode, or decodes to another size than its header's,
is decoded on the host by ``decode_image``, as the other modes would decode it: its pixels,
or its failure, recorded like any other (the batch is then packed again on the host, without
that image's views). If the batched call fails (a corrupt file), the files are decoded one
by one to find which.

nvJPEG upsamples chroma otherwise than libjpeg, so its pixels differ from PIL's by a few
levels: ``decode`` is part of the hashed ``ExtractConfig``, and the default stays ``pil``
(``python -m cdul.benchmarks.decode_bench`` measures the difference).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .config import ExtractConfig
from .packing import PackedBatch, ViewSpec, pack
from .reader import decoded_or_reason
from .tiling import Tiling


def device_decode(blobs: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """[3, H, W] uint8 RGB of each file (1-d uint8 CPU tensors) on ``device``, in one call.
    Raises on a file it cannot decode; a warning (a truncated file, say) counts as that."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # torchvision 0.29: TorchCodec
        out = decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)
    return list(out)


def decode_each(blobs: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """``device_decode`` of every file: one call, or, where that fails, one call a file
    (None for a file that fails alone)."""
    if not blobs:
        return []
    try:
        return list(device_decode(blobs, device))
    except Exception:  # a file the device refuses: find which, one call a file
        pass
    out: list[torch.Tensor | None] = []
    for blob in blobs:
        try:
            out.append(device_decode([blob], device)[0])
        except Exception:
            out.append(None)
    return out


class DeviceDecode:
    """The copy stage of ``--decode gpu``: a batch with undecoded files gets its full buffer
    on the device, the files decoded into it; any other batch goes through ``to_device``
    (``stages.ToDevice``) as it is."""

    def __init__(self, to_device, device: torch.device, spec: ViewSpec, tiling: Tiling | None, cfg: ExtractConfig):
        self.to_device, self.device, self.spec, self.tiling = to_device, torch.device(device), spec, tiling
        self.exif, self.max_pixels = cfg.exif, cfg.max_pixels

    def __call__(self, batch: PackedBatch) -> PackedBatch:
        rows, blobs = batch.encoded()
        if not rows:
            return self.to_device(batch)
        images: list = list(decode_each(blobs, self.device))
        for j, (i, image) in enumerate(zip(rows, images)):
            h, w = (int(x) for x in batch.images[i, 1:])
            if image is None or tuple(image.shape) != (3, h, w):
                images[j] = self.on_host(blobs[j])  # pixels, or the reason there are none
                if isinstance(images[j], str) or images[j].shape[:2] != (h, w):
                    return self.to_device(self.repack(batch, rows, blobs, images))
        return self.fill(batch, rows, images)

    def on_host(self, blob: torch.Tensor) -> np.ndarray | str:
        return decoded_or_reason(blob.numpy().tobytes(), exif=self.exif, max_pixels=self.max_pixels)

    def fill(self, batch: PackedBatch, rows: list[int], images: list) -> PackedBatch:
        """The full buffer on the device: the packed part, then each image in its region."""
        full = torch.empty(batch.full_bytes, dtype=torch.uint8, device=self.device)
        full[: batch.data.numel()].copy_(batch.data, non_blocking=True)
        for i, image in zip(rows, images):
            off, h, w = (int(x) for x in batch.images[i])
            hwc = torch.from_numpy(image) if isinstance(image, np.ndarray) else image.permute(1, 2, 0)
            full[off : off + h * w * 3].view(h, w, 3).copy_(hwc)  # a host-decoded image: one copy
        batch.data, batch.jpeg, batch.jpeg_files, batch.full_bytes = full, None, None, 0
        return batch

    def repack(self, batch: PackedBatch, rows: list[int], blobs: list[torch.Tensor], images: list) -> PackedBatch:
        """The batch packed again on the host (rare: a corrupt file): a file that failed
        everywhere is then a failed image, without views. Every other image keeps the pixels
        it has, the device's included, so that they do not depend on its neighbours."""
        done, blob_of = dict(zip(rows, images)), dict(zip(rows, blobs))
        decoded: list = []
        for i in range(len(batch.rows)):
            if batch.errors[i]:
                decoded.append(batch.errors[i])
            elif i not in done:
                decoded.append(batch.image(i).numpy())
            elif isinstance(done[i], torch.Tensor) and tuple(done[i].shape[1:]) == tuple(batch.hw[i]):
                decoded.append(done[i].permute(1, 2, 0).cpu().numpy())
            elif isinstance(done[i], (str, np.ndarray)):
                decoded.append(done[i])
            else:  # past the first failure: not looked at yet
                decoded.append(self.on_host(blob_of[i]))
        return pack(batch.chunk, batch.rows, decoded, self.spec, self.tiling)
