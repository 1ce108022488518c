"""Images for the classifier, read in DataLoader workers.

Items are ``(image index, image id[, epoch])``, as the label stream hands them out; an item
comes back as ``(uint8 [S, S, 3] tensor, index, ok)``. The batch stays HWC and uint8 until it
is on the device: a quarter of the bytes cross, and :class:`Normalise`'s permute to NCHW is
already channels_last, the layout convolutions want on CUDA. An image that cannot be read
or decoded comes back black with ``ok`` False and the loop leaves it out of the loss and the
label step, so one bad file does not stop a long run.

Augmentation (``augment=True``): a random resized crop (area 0.5-1 of the image, aspect
3/4-4/3, resized to S x S) and a horizontal flip with probability 1/2. The crop keeps at
least half the image because a multi-label target says what is in the whole image. Its
randomness comes from a generator seeded by (seed, epoch, image index), so a run is
reproducible whatever the number of workers and survives a resume unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from cdul.data import sample_reader
from cdul.data.decode import DecodeError, decode_image
from cdul.data.transfer import worker_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def crop_box(h: int, w: int, rng: np.random.Generator, scale=CROP_SCALE, ratio=CROP_RATIO) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random crop, as torchvision's RandomResizedCrop draws it."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return left, top, left + cw, top + ch
    # Fallback: the largest centre crop within the ratio range.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return left, top, left + cw, top + ch


class ImageSet(torch.utils.data.Dataset):
    """Map-style dataset keyed by ``(index, id)`` or ``(index, id, epoch)``. The epoch
    travels with the item so persistent workers need no message when a new epoch starts."""

    def __init__(self, root: str, size: int, *, kind: str = "folder", augment: bool = False, seed: int = 0):
        self.read = sample_reader(kind, root)  # how the dataset kind reads an image id
        self.size, self.augment, self.seed = int(size), augment, seed

    def load(self, rel: str) -> np.ndarray:
        return decode_image(self.read(rel))

    def __getitem__(self, item):
        index, rel = item[0], item[1]
        epoch = item[2] if len(item) > 2 else 0
        try:
            im = Image.fromarray(self.load(rel))
        except (DecodeError, OSError, ValueError):
            return torch.zeros(self.size, self.size, 3, dtype=torch.uint8), index, False
        box = None
        flip = False
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, index])
            box = crop_box(im.height, im.width, rng)
            flip = bool(rng.random() < 0.5)
        im = im.resize((self.size, self.size), Image.BILINEAR, box=box)
        if flip:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.array(im, dtype=np.uint8)), index, True


def collate(items):
    images, index, ok = zip(*items)
    stacked = worker_tensor((len(images), *images[0].shape), torch.uint8)  # shared memory in a worker
    torch.stack(images, out=stacked)
    return stacked, torch.tensor(index, dtype=torch.int64), torch.tensor(ok, dtype=torch.bool)


class EpochBatches:
    """The training DataLoader's batch sampler for the whole run: each epoch it replays that
    epoch's label stream, tagging every item with the epoch (for the augmentation seed). One
    DataLoader with persistent workers then serves every epoch."""

    def __init__(self):
        self.stream = None
        self.epoch = 0

    def __iter__(self):
        for batch in self.stream:
            yield [(index, rel, self.epoch) for index, rel in batch]


class Normalise(torch.nn.Module):
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] (channels_last strides), ImageNet mean and
    std, on whatever device the batch is. With ``contiguous`` the result is plain NCHW."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, x: torch.Tensor, contiguous: bool = False) -> torch.Tensor:
        x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return x.contiguous() if contiguous else x
