"""Everything a training run is told, as one plain dataclass (saved in every checkpoint).

Defaults follow the paper where it says: ResNet-101, ImageNet initialisation, 448 x 448
input, the KL loss, labels updated every epoch with eta = 1, mu = 0.5, sigma = 1. The
optimisation values it does not pin down are our choice: Adam, lr 1e-5, batch 8, 20 epochs,
cosine decay, close to how related weakly supervised multi-label work fine-tunes an
ImageNet ResNet at 448 px (e.g. single-positive-label training, Cole et al. 2021).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from cdul.metrics import PROTOCOLS

LOSSES = ("kl", "bce")
DEFAULT_EPS = 1e-6  # float32 resolves 1 - 1e-6 from 1 (its spacing there is 6e-8)
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
AMP = ("bf16", "fp16", "none")
DIFFICULT = ("ignore", "positive")
REPORT_TO = ("none", "tensorboard")

# Options a resumed run may change: where files are, how fast, how chatty. Anything else
# would make the resumed run a different run.
RESUME_FREE = frozenset(
    {
        "store",
        "out_dir",
        "data",
        "val_data",
        "workers",
        "device",
        "quiet",
        "resume",
        "follow_symlinks",
        "start_round",
        "drop_rounds_after",
        "overwrite",
        "report_to",
    }
)  # a resumed run starts from its checkpoint's round


class ConfigError(Exception):
    pass


DEFAULT_IMG_SIZE = 448  # the paper's input size


@dataclass
class TrainConfig:
    """The defaults here are cdul-train's (its options read them, cdul/cli/options.py), and
    ``CHOICES`` the values the options naming a mode take."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "loss": LOSSES,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "amp": AMP,
        "difficult": DIFFICULT,
        "report_to": REPORT_TO,
    }

    store: str
    out_dir: str
    data: str | None = None
    val_data: str | None = None
    val_split: str = "val"
    val_dataset: str | None = None
    val_limit: int | None = None
    arch: str = "resnet101"
    weights: str = "imagenet"
    img_size: int = DEFAULT_IMG_SIZE
    augment: bool = False
    loss: str = "kl"
    warmup: int = 0
    update_every: int = 1
    label_lr: float = 1.0
    psi_mu: float = 0.5
    psi_sigma: float = 1.0
    label_eps: float = DEFAULT_EPS
    optimizer: str = "adam"
    lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    lr_step: int = 10
    lr_gamma: float = 0.1
    batch_size: int = 8
    epochs: int = 20
    clip_grad: float = 0.0
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    amp: str = "bf16"
    difficult: str = "ignore"
    ap: str | None = None  # AP protocol of every mAP; None: the dataset kind's (cdul.metrics.default_protocol)
    threshold: float = 0.5
    early_stop: bool = False
    start_round: int | None = None
    drop_rounds_after: int | None = None  # permission to delete later rounds another command wrote
    resume: bool = False
    overwrite: bool = False
    report_to: str = "none"
    follow_symlinks: bool = False
    quiet: bool = False

    def check(self) -> TrainConfig:
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}"
                )
        positive = {
            "img_size": self.img_size,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "update_every": self.update_every,
            "psi_sigma": self.psi_sigma,
            "lr": self.lr,
            "lr_step": self.lr_step,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.warmup < 0 or self.workers < 0 or self.label_lr < 0 or self.clip_grad < 0:
            raise ConfigError("--warmup, --workers, --label-lr and --clip-grad must not be negative")
        if self.ap is not None and self.ap not in PROTOCOLS:
            raise ConfigError(f"--ap must be one of {', '.join(PROTOCOLS)}, not {self.ap!r}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the run in --out-dir and --overwrite starts it over: pass one")
        if not 0.0 < self.label_eps < 0.5:
            raise ConfigError(f"--label-eps must be in (0, 0.5), got {self.label_eps}")
        return self

    def is_update_epoch(self, epoch: int) -> bool:
        """Epochs count from 1. After ``warmup`` epochs, every ``update_every``-th one
        moves the labels (warmup 0, update_every 1: every epoch)."""
        return epoch > self.warmup and (epoch - self.warmup) % self.update_every == 0

    def as_dict(self) -> dict:
        return asdict(self)

    def differences(self, saved: dict) -> list[str]:
        """What a resumed run changes against the checkpoint's config (free options aside)."""
        out = []
        for f in fields(self):
            if f.name in RESUME_FREE or f.name not in saved:
                continue
            if saved[f.name] != getattr(self, f.name):
                out.append(f"--{f.name.replace('_', '-')} {saved[f.name]!r} -> {getattr(self, f.name)!r}")
        return out
