"""Dataset readers: VOC 2007/2012, COCO 2014, NUS-WIDE, a folder with a CSV, and WebDataset
tar shards. ``READERS`` maps each kind to its reader; every command offers the kinds it lists."""

from __future__ import annotations

from collections.abc import Callable

from .base import Dataset, DatasetError, safe_relpath
from .coco import load_coco
from .folder import load_folder, read_class_file
from .fs import FileReader
from .nuswide import load_nuswide
from .voc import VOC_KEYS, VOC_NAMES, load_voc
from .webdataset import ShardReader, load_webdataset

# kind -> reader(root, split, csv_path=..., classes=...); the kinds that name their own
# classes take ``classes``, the others ignore those two (load_dataset renames their classes)
READERS: dict[str, Callable[..., Dataset]] = {
    "voc2007": lambda root, split, **_: load_voc(root, split, "2007"),
    "voc2012": lambda root, split, **_: load_voc(root, split, "2012"),
    "coco2014": lambda root, split, **_: load_coco(root, split, "2014"),
    "nuswide": lambda root, split, **_: load_nuswide(root, split),
    "folder": lambda root, split, csv_path=None, classes=None: load_folder(root, split, csv_path, classes),
    "webdataset": lambda root, split, classes=None, **_: load_webdataset(root, split, classes=classes),
}
DATASETS = tuple(READERS)
OWN_CLASSES = ("folder", "webdataset")  # kinds whose class list is whatever --classes says


def sample_reader(kind: str, root: str) -> Callable[[str], bytes]:
    """``read(image_id)`` -> the bytes of that image of a dataset of this kind under ``root``:
    a file for most kinds, a member of a tar shard for webdataset. Raises OSError (for a
    missing image, FileNotFoundError) with the reason. Picklable: DataLoader workers get a
    copy."""
    return ShardReader(root) if kind == "webdataset" else FileReader(root)


def load_dataset(kind: str, root: str, split: str, *, csv_path: str | None = None, classes=None) -> Dataset:
    if kind not in READERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASETS)}")
    ds = READERS[kind](root, split, csv_path=csv_path, classes=classes)
    if kind in OWN_CLASSES:
        return ds
    if classes:
        names = read_class_file(classes) if isinstance(classes, str) else list(classes)
        if len(names) != len(ds.classes):
            raise DatasetError(f"{classes}: {len(names)} class names for {len(ds.classes)} classes of {kind}")
        ds.classes = names
    return ds


def load_labelled(kind: str, root: str, split: str, classes: list[str], limit: int | None = None) -> Dataset:
    """A split with ground truth for the classes ``classes``, in that order (a folder or
    webdataset dataset takes them as its class list): what a classifier trained on those
    classes is scored on."""
    ds = load_dataset(kind, root, split, classes=classes if kind in OWN_CLASSES else None).head(limit)
    if ds.targets is None:
        raise DatasetError(f"{root}: split {split!r} has no labels to score against")
    if list(ds.classes) != list(classes):
        raise DatasetError(
            f"{root}: its classes ({', '.join(ds.classes[:4])}, ...) are not the classifier's "
            f"({', '.join(classes[:4])}, ...); check the dataset kind"
        )
    return ds


__all__ = [
    "DATASETS",
    "VOC_KEYS",
    "VOC_NAMES",
    "Dataset",
    "DatasetError",
    "load_coco",
    "load_dataset",
    "load_folder",
    "load_labelled",
    "load_nuswide",
    "load_voc",
    "load_webdataset",
    "read_class_file",
    "safe_relpath",
    "sample_reader",
]
