"""WebDataset shards: tar files of samples, as img2dataset writes them, read at random.

    DATASET_ROOT   a folder of shards, one shard, a brace pattern
                   (``shards/{000000..000009}.tar``), or several of these joined by ``::``
                   (the webdataset library's notation); local paths or fsspec URLs. Shards are
                   uncompressed ``.tar`` files (a compressed one cannot be read at random).
    <key>.<ext>    the members of a sample share a key, the member name up to the first dot
                   of its file name (the webdataset library's rule). The image is the member
                   with extension jpg, jpeg, png or webp (the first of these present).
                   Labels, optional: the ``labels`` list of class names in ``<key>.json``. A
                   ``.json`` without ``labels`` (img2dataset's metadata) means unlabelled, and
                   ``.txt`` (img2dataset's caption) is not read. Either every sample has a
                   labels list (it may be empty) or none has.

Image ids are ``<shard path relative to the shards' common folder>/<key>``, for example
``000003.tar/000031337``; the store records them and :class:`ShardReader` resolves them.
Class names come from ``classes`` (a file, one name a line, or a list) or, failing that,
from the labels found, sorted.

Random access: listing scans each shard's tar headers once, seeking over the data rather
than reading it, and keeps every member's offset and size. A reading process builds the
same index for a shard the first time it needs it and keeps the last few, so reading one
sample is one ranged read. A shard cut short is listed up to where it ends; a sample whose
data runs past the end fails to read and is recorded as a failed image. A shard of which
nothing can be listed (cut inside its first header, not a tar file, a FIFO) is listed as
one sample, ``<shard>/__unreadable__``, which fails to read with the reason.
"""

from __future__ import annotations

import collections
import os
import posixpath
import re
import tarfile

from . import fs
from .base import Dataset, DatasetError, label_matrix
from .folder import read_class_file
from .inputs import InputError, parse_json

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
LABEL_EXT = "json"
SHARD_EXT = ".tar"
_META = re.compile(r"__[^/]*__($|/)")  # webdataset's metadata members (__key__, ...), skipped as it skips them

UNREADABLE = "__unreadable__"  # the key of the one sample listed for a shard that cannot be listed
Members = dict  # key -> {extension: (offset, size)}, in the order of the shard


def split_id(image_id: str) -> tuple[str, str]:
    """``"sub/000003.tar/key"`` -> ``("sub/000003.tar", "key")``."""
    shard, sep, key = image_id.partition(SHARD_EXT + "/")
    if not sep or not key:
        raise ValueError(f"{image_id!r} is not a <shard>.tar/<key> id")
    return shard + SHARD_EXT, key


def scan(url: str, keep: tuple[str, ...] = ()) -> tuple[Members, int, dict]:
    """The members of one shard, its size in bytes, and the bytes of the members whose
    extension is in ``keep`` (``{(key, ext): bytes}``). Raises OSError or tarfile.TarError
    for a shard that cannot be read, ValueError for a member name found twice."""
    from webdataset.tariterators import base_plus_ext

    members: Members = {}
    kept = {}
    with fs.open_binary(url) as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        with tarfile.open(fileobj=f, mode="r:") as tar:
            while True:
                try:
                    info = tar.next()
                except tarfile.ReadError:
                    if not members:
                        raise
                    break  # cut short after some members: list what is there
                if info is None:
                    break
                key, ext = base_plus_ext(info.name) if info.isfile() else (None, None)
                if key is None or _META.match(posixpath.basename(key)):
                    continue
                assert ext is not None  # base_plus_ext gives both parts or neither
                ext = ext.lower()
                sample = members.setdefault(key, {})
                if ext in sample:
                    raise ValueError(f"member {info.name!r} is in the shard twice")
                sample[ext] = (info.offset_data, info.size)
                if ext in keep and info.offset_data + info.size <= size:
                    f.seek(info.offset_data)
                    kept[key, ext] = f.read(info.size)
    return members, size, kept


def truncated(sample: dict, size: int) -> bool:
    return any(offset + n > size for offset, n in sample.values())


class ShardReader:
    """``reader(image_id)`` -> the image bytes of that sample of the shards under ``root``.
    Raises OSError (FileNotFoundError for a missing shard or key) with the reason, as a
    file read does. Keeps the index of the ``keep`` shards used last."""

    def __init__(self, root: str, keep: int = 8):
        self.root, self.keep = root, keep
        self._index: collections.OrderedDict = collections.OrderedDict()

    def __getstate__(self):  # a fresh, empty cache in every process it is sent to
        return {"root": self.root, "keep": self.keep}

    def __setstate__(self, state):
        self.__init__(state["root"], state["keep"])

    def _shard(self, url: str) -> tuple[Members, int]:
        if url in self._index:
            self._index.move_to_end(url)
        else:
            try:
                members, size, _ = scan(url)
            except (tarfile.TarError, ValueError) as exc:
                raise OSError(f"not a readable tar shard: {exc}") from None
            self._index[url] = (members, size)
            if len(self._index) > self.keep:
                self._index.popitem(last=False)
        return self._index[url]

    def __call__(self, image_id: str) -> bytes:
        try:
            shard, key = split_id(image_id)
        except ValueError as exc:
            raise FileNotFoundError(str(exc)) from None
        url = fs.join(self.root, shard)
        members, size = self._shard(url)
        sample = members.get(key)
        if sample is None:
            raise FileNotFoundError(f"no sample {key!r} in {shard}")
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None:
            raise OSError(f"no image ({', '.join(IMAGE_EXTS)}) in the sample, only {', '.join(sorted(sample))}")
        if truncated(sample, size):
            raise OSError(f"{shard} ends inside this sample (a truncated shard)")
        offset, n = sample[ext]
        return fs.read_range(url, offset, n)


def shard_urls(spec: str) -> list[str]:
    """The shards DATASET_ROOT names, in order; local paths made absolute."""
    from webdataset.shardlists import expand_urls

    if "{" not in spec and "::" not in spec and fs.isdir(spec):
        try:
            urls = [fs.join(spec, p) for p in fs.walk_files(spec) if p.endswith(SHARD_EXT)]
        except fs.OutsideRoot as exc:
            raise DatasetError(f"{spec}: {exc}") from None
        if not urls:
            raise DatasetError(f"{spec}: no {SHARD_EXT} shards in this folder")
    else:
        urls = [u.strip() for u in expand_urls(spec) if u.strip()]
    urls = [u if "://" in u else os.path.abspath(u) for u in urls]
    for url in urls:
        if not url.endswith(SHARD_EXT):
            raise DatasetError(
                f"{url}: shards must be uncompressed {SHARD_EXT} files (a compressed shard cannot be read at random)"
            )
    if len(set(urls)) != len(urls):
        raise DatasetError(f"{spec}: a shard is named twice")
    return urls


def common_root(urls: list[str]) -> tuple[str, list[str]]:
    """The folder every shard is under, and each shard's path relative to it."""
    schemes = {u.split("://", 1)[0] if "://" in u else "" for u in urls}
    if len(schemes) > 1:
        raise DatasetError(
            f"shards mix {' and '.join(sorted(s or 'local paths' for s in schemes))}: keep them in one place"
        )
    scheme = schemes.pop()
    paths = [u.split("://", 1)[1] if scheme else u for u in urls]
    folder = (
        posixpath.commonpath([posixpath.dirname(p) for p in paths])
        if scheme
        else os.path.commonpath([os.path.dirname(p) for p in paths])
    )
    rels = [posixpath.relpath(p, folder) if scheme else os.path.relpath(p, folder).replace(os.sep, "/") for p in paths]
    return (f"{scheme}://{folder}" if scheme else folder), rels


def parse_labels(data: bytes | None, where: str = "the sample's JSON") -> list[str] | None:
    """The ``labels`` list of a sample's JSON, or None where there is none. ValueError
    (InputError) for a member that is not JSON or nests too deeply."""
    meta = parse_json(data, where) if data is not None else None
    if not isinstance(meta, dict) or "labels" not in meta:
        return None
    labels = meta["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError('"labels" must be a list of class names')
    return [x.strip() for x in labels if x.strip()]


def _list(urls: list[str], rels: list[str]) -> tuple[list[str], list[list[str] | None], list[str], set[int]]:
    """Over every shard: the ids, each sample's labels (None: none given), where each came
    from, and the rows of samples cut short by the end of their shard."""
    ids: list[str] = []
    labels: list[list[str] | None] = []
    where: list[str] = []
    cut: set[int] = set()
    for url, rel in zip(urls, rels):
        try:
            members, size, kept = scan(url, keep=(LABEL_EXT,))
        except FileNotFoundError:
            raise DatasetError(f"{url}: no such shard") from None
        except (OSError, tarfile.TarError, ValueError):
            # nothing of it can be listed (cut inside its first header, not a tar, not a
            # regular file): one failed image stands for it, and reading it says why
            cut.add(len(ids))
            ids.append(f"{rel}/{UNREADABLE}")
            labels.append(None)
            where.append(url)
            continue
        for key, sample in members.items():
            image_id = f"{rel}/{key}"
            if split_id(image_id) != (rel, key):
                raise DatasetError(f"{url}: sample {key!r} makes the ambiguous id {image_id!r}")
            if truncated(sample, size):
                cut.add(len(ids))
            try:
                labels.append(parse_labels(kept.get((key, LABEL_EXT)), f"{url}: {key}.{LABEL_EXT}"))
            except InputError:
                raise
            except ValueError as exc:
                raise DatasetError(f"{url}: {key}.{LABEL_EXT}: {exc}") from None
            ids.append(image_id)
            where.append(f"{url}: {key}")
    return ids, labels, where, cut


def load_webdataset(spec: str, split: str = "", classes=None) -> Dataset:
    urls = shard_urls(spec)
    root, rels = common_root(urls)
    ids, labels, where, cut = _list(urls, rels)
    if not ids:
        raise DatasetError(f"{spec}: no samples in the shards")
    class_names = read_class_file(classes) if isinstance(classes, str) else (list(classes) if classes else None)
    labelled = any(row is not None for row in labels)
    unlabelled = [i for i, row in enumerate(labels) if row is None and i not in cut]  # a cut sample fails anyway
    if labelled and unlabelled:
        raise DatasetError(
            f'{where[unlabelled[0]]}: no "labels" in its .{LABEL_EXT} while other samples '
            "have them; give every sample a labels list (it may be empty)"
        )
    if class_names is None:
        class_names = sorted({n for row in labels if row for n in row})
        if not class_names:
            raise DatasetError(f"{spec}: no labels in the shards; pass --classes FILE with the class names")
    targets = label_matrix(labels, class_names, where) if labelled else None
    return Dataset("webdataset", root, split, class_names, ids, targets)
