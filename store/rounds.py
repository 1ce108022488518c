"""Label rounds: how a round is written, when it counts, who may delete it.

One mechanism for every writer (cdul-extract's round 0, cdul-train's rounds, cdul-refine's):

- a round k is written at ``labels/round_k`` by a run that holds the store's lock
  (:mod:`.lock`), and counts only once :meth:`RoundStore.finish_round` lists it in the root
  attribute ``label_rounds``, the last write. Readers only ever see listed rounds.
- anything else under ``labels/`` is an *incomplete* round: its writer died or failed
  (a full disk, say). ``--verify`` reports it; a failed write removes its own
  (:meth:`RoundStore.writing_round`), and the next writer, which holds the lock and so
  knows that no live run is writing it, removes the rest before it writes
  (:meth:`RoundStore.clean_incomplete_rounds`). Nothing under ``labels/`` is read through
  Zarr's listing, so a broken entry cannot trouble a reader.
- a round records the run that wrote it (``writer``: command, host, pid, run token, taken
  from the lock). Which complete rounds a command may delete is the command's policy
  (cdul-train deletes only its own, unless told); :meth:`RoundStore.drop_rounds_after`
  does the deleting.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import fsspec
import numpy as np
import zarr

from . import layout as L
from .attrs import StoreError, attr_ints
from .lock import describe_holder, held_record

_ROUND = re.compile(r"round_\d{3,}$")


def writer_record(url: str) -> dict:
    """Who writes now: the lock record this process holds on url, or this process alone."""
    held = held_record(url) or {}
    return {
        "command": held.get("command") or os.path.basename(sys.argv[0] if sys.argv else "python"),
        "host": held.get("host") or socket.gethostname(),
        "pid": held.get("pid") or os.getpid(),
        "token": held.get("token"),
        "since": held.get("since"),
    }


def round_writer(attrs: Mapping) -> str:
    """Who wrote a round, from its attributes: 'cdul-refine (pid 12 on node1, since ...)'."""
    who = attrs.get("writer")
    if isinstance(who, Mapping):
        return describe_holder({**who, "command": attrs.get("source") or who.get("command")})
    return str(attrs.get("source") or "an unknown command")


class RoundStore:
    """The label-round half of :class:`~.zstore.Store`."""

    group: zarr.Group
    url: str
    n: int
    chunk_len: int
    classes: list[str]

    if TYPE_CHECKING:

        def array(self, name: str) -> zarr.Array: ...
        def set_attrs(self, **values) -> None: ...
        @staticmethod
        def _new_array(group: zarr.Group, spec: L.ArraySpec, n: int, chunk_len: int) -> zarr.Array: ...

    def label_rounds(self) -> list[int]:
        """Complete rounds, oldest first. A round is listed only after all its rows are written."""
        return sorted(attr_ints(self.group.attrs.get("label_rounds", [])))

    def latest_round(self) -> int:
        rounds = self.label_rounds()
        if not rounds:
            raise StoreError(f"{self.url} has no complete label round yet (is extraction finished?)")
        return rounds[-1]

    def round_array(self, k: int) -> zarr.Array:
        return self.array(L.round_name(k))

    def _label_entries(self) -> tuple[fsspec.AbstractFileSystem, str, list[str]]:
        fs, path = fsspec.core.url_to_fs(self.url)
        folder = path.rstrip("/") + "/" + L.LABELS
        try:
            names = [os.path.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        return fs, folder, sorted(n for n in names if n != "zarr.json")

    def incomplete_rounds(self) -> list[str]:
        """Entries under labels/ that are not complete rounds (``labels/round_003``, ...)."""
        listed = {L.round_name(k).rpartition("/")[2] for k in self.label_rounds()}
        return [f"{L.LABELS}/{n}" for n in self._label_entries()[2] if n not in listed]

    def clean_incomplete_rounds(self) -> list[str]:
        """Remove the incomplete rounds (call it holding the store's lock); returns their names."""
        fs, folder, names = self._label_entries()
        listed = {L.round_name(k).rpartition("/")[2] for k in self.label_rounds()}
        gone = [n for n in names if n not in listed and _ROUND.match(n)]
        for name in gone:
            fs.rm(folder + "/" + name, recursive=True)
        return [f"{L.LABELS}/{n}" for n in gone]

    def begin_round(self, k: int, attrs: Mapping) -> zarr.Array:
        """Create round k, invisible to readers until finish_round(k); what incomplete rounds
        there are go first."""
        if k in self.label_rounds():
            raise StoreError(f"label round {k} is already complete in {self.url}")
        self.clean_incomplete_rounds()
        spec = L.ArraySpec(L.round_name(k), (len(self.classes),), np.float32, np.nan, ("image", "class"))
        arr = self._new_array(self.group, spec, self.n, self.chunk_len)
        arr.attrs.update({**attrs, "round": k, "complete": False, "writer": writer_record(self.url)})
        return arr

    def finish_round(self, k: int) -> None:
        arr = self.round_array(k)
        arr.attrs["complete"] = True
        self.set_attrs(label_rounds=sorted(set(self.label_rounds()) | {k}))

    def abandon_round(self, k: int) -> None:
        """Remove round k unless it is complete (after its write failed)."""
        if k not in self.label_rounds():
            fs, folder, names = self._label_entries()
            name = L.round_name(k).rpartition("/")[2]
            if name in names:
                fs.rm(folder + "/" + name, recursive=True)

    @contextlib.contextmanager
    def writing_round(self, k: int, attrs: Mapping) -> Iterator[zarr.Array]:
        """``with store.writing_round(k, attrs) as out: out[a:b] = ...``: the round counts when
        the block ends; when it raises, what was written is removed."""
        arr = self.begin_round(k, attrs)
        try:
            yield arr
        except BaseException:
            with contextlib.suppress(Exception):  # a disk that refuses even this: verify reports it
                self.abandon_round(k)
            raise
        self.finish_round(k)

    def drop_rounds_after(self, k: int) -> None:
        """Remove every round newer than k, complete or not."""
        self.set_attrs(label_rounds=[r for r in self.label_rounds() if r <= k])
        fs, folder, names = self._label_entries()
        for name in names:
            if _ROUND.match(name) and int(name.split("_")[-1]) > k:
                fs.rm(folder + "/" + name, recursive=True)
        self.set_attrs()  # consolidated metadata without them
