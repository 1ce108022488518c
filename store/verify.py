"""The health of a store: every chunk flagged done is checked before the store is resumed,
finalised or read by another command.

A chunk flagged done is healthy when every array's part of it decodes, no image in it is
still pending, and every image whose status is ok has finite similarities (``sim/*``,
``emb/global``, its first ``n_tiles`` rows of ``sim/tiles``, its initial label in round 0), a
positive size and an id; its tile count fits the store's local views (``layout.local_mode``:
at most G x G tiles of a grid, exactly g x g patches in dense mode). A chunk file that was
deleted reads as the array's fill value (NaN, 0, pending) and so fails the same checks; a
truncated or altered one fails to decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import layout as L
from .lock import lock_state
from .rounds import round_writer
from .zstore import OpenMode, Store, StoreError

# arrays whose rows must be finite where the image is ok
_FINITE = (L.SIM_GLOBAL, L.SIM_ALPHA, L.SIM_BETA, L.EMB_GLOBAL, L.round_name(0))


@dataclass(frozen=True)
class Damage:
    array: str
    chunk: int
    reason: str

    def __str__(self) -> str:
        return f"{self.array}, chunk {self.chunk}: {self.reason}"


def _arrays(store: Store) -> list[str]:
    names = [
        n
        for n in (
            L.IDS,
            L.HW,
            L.N_TILES,
            L.STATUS,
            L.ERROR,
            L.TARGETS,
            L.SIM_GLOBAL,
            L.SIM_ALPHA,
            L.SIM_BETA,
            L.SIM_TILES,
            L.EMB_GLOBAL,
        )
        if store.has(n)
    ]
    return names + [L.round_name(k) for k in store.label_rounds()]


def check_chunk(store: Store, k: int) -> list[Damage]:
    """What is wrong with chunk k (empty when nothing is)."""
    start, stop = store.chunk_bounds(k)
    rows, damage = {}, []

    def note(name: str, what: str, bad: np.ndarray) -> None:
        if bad.any():
            damage.append(Damage(name, k, f"{bad.sum()} {what} (first: image {start + int(np.argmax(bad))})"))

    for name in _arrays(store):
        try:
            rows[name] = store.read(name, start, stop)
        except Exception as exc:  # codecs raise many types for a damaged chunk
            damage.append(Damage(name, k, f"cannot be read ({type(exc).__name__})"))
    if L.IDS in rows:
        note(L.IDS, "images without an id", rows[L.IDS] == "")
    status = rows.get(L.STATUS)
    if status is None:
        return damage
    note(L.STATUS, "images still pending", status == L.PENDING)
    ok = status == L.OK
    if L.HW in rows:
        note(L.HW, "ok images without a size", ok & (rows[L.HW] <= 0).any(axis=1))
    for name in _FINITE:
        if name in rows:
            note(name, "ok images with values that are not finite", ok & ~np.isfinite(rows[name]).all(axis=1))
    if L.N_TILES in rows:
        n_tiles, mode = rows[L.N_TILES], L.local_mode(store.attrs)
        if mode.get("mode") == "dense" and mode.get("grid"):
            note(L.N_TILES, f"ok images without {mode['grid']}^2 patches", ok & (n_tiles != mode["grid"] ** 2))
        elif mode.get("mode") == "grid":
            note(L.N_TILES, f"ok images with more than {mode['G']}^2 tiles", ok & (n_tiles > mode["G"] ** 2))
    if L.SIM_TILES in rows and L.N_TILES in rows:
        tiles = rows[L.SIM_TILES]
        kept = np.arange(tiles.shape[1])[None, :] < rows[L.N_TILES][:, None]
        note(
            L.SIM_TILES,
            "ok images with tiles that are not finite",
            ok & (kept & ~np.isfinite(tiles).all(axis=2)).any(axis=1),
        )
    return damage


def _done_chunks(store: Store) -> tuple[list[int], list[Damage]]:
    """The chunks flagged done, and the flags that cannot be read (each is its own chunk)."""
    try:
        return [int(k) for k in np.flatnonzero(store.done_flags())], []
    except Exception:  # codecs raise many types for a damaged chunk: find the broken flags
        flags, done, damage = store.array(L.DONE), [], []
        for k in range(store.n_chunks):
            try:
                if flags[k]:
                    done.append(k)
            except Exception as exc:  # likewise
                damage.append(Damage(L.DONE, k, f"cannot be read ({type(exc).__name__})"))
        return done, damage


def verify(store: Store) -> list[Damage]:
    """The damage of every chunk flagged done (and of every done flag)."""
    done, damage = _done_chunks(store)
    return damage + [d for k in done for d in check_chunk(store, k)]


def leftovers(store: Store) -> list[str]:
    """What --verify reports besides damage, one line each: incomplete label rounds (ignored by
    every command, removed by the next one that writes to the store), the lock's state."""
    notes = []
    for name in store.incomplete_rounds():
        try:
            by = f", begun by {round_writer(store.array(name).attrs.asdict())}"
        except Exception:  # metadata missing or cut short (a full disk): nothing more to say
            by = ", its metadata unreadable"
        notes.append(f"{name}: an incomplete label round{by}; ignored, removed by the next command that writes")
    state = lock_state(store.url)
    if state:
        notes.append(state)
    return notes


def describe(damage: list[Damage], limit: int = 3) -> str:
    more = f" (and {len(damage) - limit} more)" if len(damage) > limit else ""
    return "; ".join(map(str, damage[:limit])) + more


def refuse_damaged(store: Store) -> None:
    """Raise StoreError naming the first damaged array and chunk, if any."""
    damage = verify(store)
    if damage:
        raise StoreError(
            f"{store.url} is damaged: {describe(damage)}; rerun the cdul-extract command that made it "
            "to re-extract the damaged chunks"
        )


def open_verified(url: str, mode: OpenMode = "r") -> Store:
    store = Store.open(url, mode=mode)
    refuse_damaged(store)
    return store


def reopen_damaged(store: Store) -> list[Damage]:
    """Before a resume: clear the done flag of every damaged chunk, so the run extracts it
    again; a damaged initial-label round is dropped to be recomputed. Returns the damage."""
    damage = verify(store)
    if not damage:
        return []
    rounds = [d for d in damage if d.array.startswith(L.LABELS + "/")]
    if rounds:
        if store.label_rounds() != [0]:
            raise StoreError(
                f"{store.url}: {describe(rounds)}, and training rounds derive from it; extract to a "
                "new store (or --overwrite)"
            )
        store.drop_rounds_after(-1)
    done = store.array(L.DONE)
    for k in sorted({d.chunk for d in damage if not d.array.startswith(L.LABELS + "/")}):
        done[k] = False
    store.set_attrs(complete=False)
    return damage
