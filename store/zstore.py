"""The cdul store: a Zarr v3 group chunked along images, filled chunk by chunk.

Phases (as docs/store.md §2 and the anemoi-datasets ``create/`` layout do it):
create the arrays and one done flag per chunk; fill chunks, flagging each only after its
data is written; finalise. Resume falls out of idempotent, chunk-disjoint writes.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import zarr

from . import layout as L
from .attrs import MissingArrayError, StoreError
from .location import store_exists
from .lock import lock_token
from .rounds import RoundStore
from .schema import array_node, check_store
from .url import is_url, normalise


def _zarr_store(url: str):
    return str(url) if is_url(url) else os.fspath(url)


OpenMode = Literal["r", "r+"]  # read, or read and write an existing store


def _dims_attrs(dims: Sequence[str]) -> dict:
    # Zarr v3 readers (xarray >= 2024.10) use dimension_names; older xarray reads this attribute.
    return {"_ARRAY_DIMENSIONS": list(dims)}


def _write_coords(group, ids: np.ndarray, classes: Sequence[str], chunk_len: int) -> None:
    """Coordinate variables at the root: image ids (a copy of images/id), class names and,
    where the store keeps tiles, the tile index."""
    coords: dict[str, tuple[np.ndarray, type, int]] = {
        L.IMAGE: (ids, str, chunk_len),
        L.CLASS: (np.asarray(list(classes), dtype=object), str, len(classes)),
    }
    if L.SIM_TILES in group:
        t = group[L.SIM_TILES].shape[1]
        coords[L.TILE] = (np.arange(t, dtype=np.int32), np.int32, max(t, 1))
    for name, (values, dtype, chunk) in coords.items():
        arr = group.create_array(name, shape=values.shape, chunks=(chunk,), dtype=dtype, dimension_names=[name])
        arr.attrs.update(_dims_attrs([name]))
        for start in range(0, len(values), chunk):
            arr[start : start + chunk] = values[start : start + chunk].astype(dtype)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a store, as Store.chunks yields it: its index ``k``, its rows
    ``start:stop`` and the arrays asked for, read for this chunk (``chunk[name]``)."""

    k: int
    start: int
    stop: int
    arrays: Mapping[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __len__(self) -> int:
        return self.stop - self.start


class Store(RoundStore):
    """An open cdul store. Rows are images; every array is chunked along them alike."""

    def __init__(self, group: zarr.Group, url: str):
        self.group = group
        self.url = normalise(url)
        attrs = group.attrs.asdict()
        self.attrs = attrs
        # every command relies on the metadata: types, ranges and array shapes checked here
        self.n, self.chunk_len, self.classes = check_store(group, normalise(url), attrs)
        self.n_chunks = (self.n + self.chunk_len - 1) // self.chunk_len
        self.run_token = lock_token(self.url)  # the run this process writes chunks for

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        url: str,
        *,
        ids: Sequence[str],
        classes: Sequence[str],
        specs: Iterable[L.ArraySpec],
        targets: np.ndarray | None = None,
        chunk_len: int = L.DEFAULT_CHUNK_LEN,
        attrs: Mapping | None = None,
    ) -> Store:
        n = len(ids)
        if n == 0:
            raise StoreError("no images to store: the dataset split is empty")
        if chunk_len < 1:
            raise StoreError(f"chunk length must be >= 1, got {chunk_len}")
        root = dict(attrs or {})
        root.update(
            format=L.FORMAT,
            format_version=L.FORMAT_VERSION,
            classes=list(classes),
            n_images=n,
            chunk_len=chunk_len,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            complete=False,
            label_rounds=[],
        )
        url = normalise(url)
        # "a", not "w": "w" would also delete the lock file of the run creating the store
        # (callers remove an old store first, see remove_store)
        group = zarr.open_group(_zarr_store(url), mode="a", use_consolidated=False)
        # Recognisable from the start, marked unfinished until its arrays exist.
        group.attrs.update(format=L.FORMAT, format_version=L.FORMAT_VERSION, creating=True)
        c = len(classes)
        ids_arr = cls._new_array(group, L.ArraySpec(L.IDS, (), str, "", ("image",)), n, chunk_len)
        tgt_arr = None
        if targets is not None:
            targets = np.asarray(targets, dtype=np.int8)
            if targets.shape != (n, c):
                raise StoreError(f"targets have shape {targets.shape}, expected {(n, c)}")
            tgt_arr = cls._new_array(group, L.ArraySpec(L.TARGETS, (c,), np.int8, 0, ("image", "class")), n, chunk_len)
        for spec in specs:
            cls._new_array(group, spec, n, chunk_len)
        n_chunks = (n + chunk_len - 1) // chunk_len
        done = group.create_array(
            L.DONE, shape=(n_chunks,), chunks=(1,), dtype=bool, fill_value=False, dimension_names=["chunk"]
        )
        done.attrs.update(_dims_attrs(["chunk"]))
        id_values = np.asarray(list(ids), dtype=object)
        for start in range(0, n, chunk_len):
            stop = min(start + chunk_len, n)
            ids_arr[start:stop] = id_values[start:stop].astype(str)
            if tgt_arr is not None and targets is not None:
                tgt_arr[start:stop] = targets[start:stop]
        _write_coords(group, id_values, classes, chunk_len)
        group.attrs.update({**root, "creating": False})
        return cls(group, url)

    @staticmethod
    def _new_array(group: zarr.Group, spec: L.ArraySpec, n: int, chunk_len: int) -> zarr.Array:
        if spec.lead == "image":
            shape, chunks = (n, *spec.trailing), (chunk_len, *spec.trailing)
        elif spec.lead == "chunk":
            shape, chunks = ((n + chunk_len - 1) // chunk_len, *spec.trailing), (1, *spec.trailing)
        else:
            shape = chunks = spec.trailing
        arr = group.create_array(
            spec.name,
            shape=shape,
            chunks=chunks,
            dtype=spec.dtype,
            fill_value=spec.fill,
            dimension_names=list(spec.dims),
        )
        arr.attrs.update(_dims_attrs(spec.dims))
        return arr

    @staticmethod
    def peek(url: str) -> dict:
        """The root attributes of whatever Zarr group is at url ({} when there is none)."""
        url = normalise(url)
        if not store_exists(url):
            return {}
        try:
            return zarr.open_group(_zarr_store(url), mode="r", use_consolidated=False).attrs.asdict()
        except Exception as exc:  # zarr raises several types for unreadable metadata
            raise StoreError(f"cannot open {url} as a Zarr v3 group: {exc}") from exc

    @classmethod
    def open(cls, url: str, mode: OpenMode = "r") -> Store:
        url = normalise(url)
        if not store_exists(url):
            if url.startswith("memory://"):
                raise StoreError(
                    f"no cdul store at {url}: a memory:// store lives only inside the process that made "
                    "it; use a path or a shared URL"
                )
            raise StoreError(f"no cdul store at {url} (run cdul-extract first, or check the path)")
        try:
            group = zarr.open_group(_zarr_store(url), mode=mode, use_consolidated=False)
        except Exception as exc:  # zarr raises several types for unreadable metadata
            raise StoreError(f"cannot open {url} as a Zarr v3 group: {exc}") from exc
        attrs = group.attrs.asdict()
        if attrs.get("creating"):
            raise StoreError(f"{url}: its creation was interrupted; rerun cdul-extract to start it again")
        if attrs.get("format") != L.FORMAT:
            raise StoreError(f"{url} is a Zarr group but not a cdul store (format={attrs.get('format')!r})")
        version = attrs.get("format_version")
        if version != L.FORMAT_VERSION:
            raise StoreError(
                f"{url} was written with store format version {version}; this cdul reads version "
                f"{L.FORMAT_VERSION}. Use the cdul release that wrote it, or re-extract with --overwrite."
            )
        return cls(group, url)

    # -- chunks ------------------------------------------------------------------------------
    def chunk_bounds(self, k: int) -> tuple[int, int]:
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} out of range 0..{self.n_chunks - 1}")
        start = k * self.chunk_len
        return start, min(start + self.chunk_len, self.n)

    def chunk(self, k: int, *names: str) -> Chunk:
        """Chunk k with the rows of the arrays ``names`` read for it (of a per-chunk array
        such as the chunk's bank, its one entry)."""
        start, stop = self.chunk_bounds(k)
        arrays = {
            name: np.asarray(self.array(name)[k]) if name in L.PER_CHUNK else self.read(name, start, stop)
            for name in names
        }
        return Chunk(k, start, stop, arrays)

    def chunks(self, *names: str) -> Iterator[Chunk]:
        """Every chunk in order, as :meth:`chunk` reads it, so a pass over the store holds one
        chunk at a time. Without names it only counts out the chunks (to write them, say)."""
        for k in range(self.n_chunks):
            yield self.chunk(k, *names)

    def done_flags(self) -> np.ndarray:
        return np.asarray(self.array(L.DONE)[:], dtype=bool)

    def pending_chunks(self) -> list[int]:
        return [int(k) for k in np.flatnonzero(~self.done_flags())]

    def write_chunk(self, k: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write whole-chunk rows of each array, then flag the chunk done (never before)."""
        start, stop = self.chunk_bounds(k)
        for name, value in arrays.items():
            if name in L.PER_CHUNK:  # one entry per chunk (the chunk's part of the patch bank)
                continue
            if np.shape(value)[0] != stop - start:
                raise ValueError(f"{name}: {np.shape(value)[0]} rows for chunk {k} of {stop - start}")
        self.check_owner(k)
        for name, value in arrays.items():
            if name in L.PER_CHUNK:
                self.array(name)[k] = np.asarray(value)
            else:
                self.array(name)[start:stop] = np.asarray(value)
        self.check_owner(k)
        self.array(L.DONE)[k] = True

    def check_owner(self, k: int) -> None:
        """Refuse to write chunk k unless the run this store was opened for still holds the
        store's lock (a process outliving its run must not write into the next one)."""
        if lock_token(self.url) != self.run_token:
            raise StoreError(f"{self.url}: another run now owns this store; chunk {k} not written")

    # -- reading -----------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return array_node(self.group, self.url, name) is not None

    def array(self, name: str) -> zarr.Array:
        node = array_node(self.group, self.url, name)
        if node is None:
            raise MissingArrayError(
                f"{self.url}: the store has no array {name}; it is incomplete or damaged: extract it again "
                "(cdul-extract --overwrite)"
            )
        return node

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self.array(name)[start : self.n if stop is None else stop])

    def ids(self) -> list[str]:
        return [str(s) for s in self.read(L.IDS)]

    def section(self, key: str) -> Mapping[str, object]:
        """A root attribute that is a mapping (``model``, ``dataset``, ``config``, ``tiling``,
        ``summary``), or {} where the store has none."""
        value = self.attrs.get(key, {})
        if not isinstance(value, Mapping):
            raise StoreError(f"{self.url}: attribute {key!r} is not a mapping: extract the store again")
        return value

    def set_attrs(self, **values) -> None:
        self.group.attrs.update(values)
        self.attrs.update(values)
        self._consolidate_if_complete()

    def _consolidate_if_complete(self) -> None:
        """A finished store keeps consolidated metadata (all of it in the root zarr.json), so
        xarray opens it in one read. cdul itself never reads it: it would hide attributes
        written since. Rewritten whenever a finished store's attributes or rounds change."""
        if self.attrs.get("complete"):
            with warnings.catch_warnings():  # zarr notes that v3 has no consolidation spec yet; xarray reads it
                warnings.simplefilter("ignore", UserWarning)
                zarr.consolidate_metadata(self.group.store)
