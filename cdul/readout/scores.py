"""The score arrays a finished store offers for reading out, chunk by chunk.

``--round`` names one of them:

- ``latest`` (the default): the newest complete label round;
- ``N``: label round N (``labels/round_NNN``), as listed in the store's ``label_rounds``;
- ``y0``: the initial pseudo labels, round 0;
- ``S_g``: the global view's class probabilities (``sim/global``);
- ``S_ag``: the aggregated local scores, computed from ``sim/alpha`` and ``sim/beta`` with
  round 0's zeta by ``cdul.kernels.aggregate_local`` (paper Eq. 5), as the report and the
  extraction summary compute them.

Only a finished store is read: one whose extraction completed and whose chunks pass the
store's health check (``cdul.store.verify``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from cdul.store import Store, StoreError, attr_float, layout, refuse_damaged

ROUNDS = ("latest", "y0", "S_g", "S_ag")


@dataclass(frozen=True)
class ScoreSource:
    """One score array: its name for a user (``round 3``, ``S_g``), the attributes of its
    label round ({} for similarities) and ``read(start, stop)`` -> float32 [stop - start, C]."""

    name: str
    read: Callable[[int, int], np.ndarray]
    attrs: Mapping[str, object] = field(default_factory=dict)


def open_finished(url: str) -> Store:
    """The store at ``url``, refused with a StoreError unless its extraction finished and
    no chunk of it is damaged."""
    store = Store.open(url)
    if not store.attrs.get("complete"):
        pending = store.pending_chunks()
        what = f"{len(pending)} of {store.n_chunks} chunks still to extract" if pending else "not finalised"
        raise StoreError(f"{store.url} is not finished ({what}): rerun the cdul-extract command that made it")
    refuse_damaged(store)
    return store


def parse_round(value: object) -> int | str:
    """A round number, or one of ROUNDS (case does not matter); ValueError otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"--round {value}: round numbers start at 0")
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    for name in ROUNDS:
        if text.lower() == name.lower():
            return name
    raise ValueError(f"--round {value!r}: give latest, a round number, y0, S_g or S_ag")


def round_attrs(store: Store, k: int) -> dict:
    """The attributes of complete label round k (epoch, source, zeta, ...), less the bookkeeping."""
    attrs = store.round_array(k).attrs.asdict()
    return {key: v for key, v in attrs.items() if key not in ("_ARRAY_DIMENSIONS", "complete")}


def score_source(store: Store, value: object = "latest") -> ScoreSource:
    """The scores ``--round value`` names in ``store`` (see the module's docstring)."""
    which = parse_round(value)
    rounds = store.label_rounds()
    needs = {"S_g": [layout.SIM_GLOBAL], "S_ag": [layout.SIM_ALPHA, layout.SIM_BETA]}.get(str(which), [])
    missing = [name for name in needs if not store.has(name)]
    if missing:
        raise StoreError(f"{store.url} has no {missing[0]} array, which --round {which} reads")
    if which == "S_g":
        return ScoreSource("S_g", lambda a, b: store.read(layout.SIM_GLOBAL, a, b))
    if which == "S_ag":
        from cdul.kernels import aggregate_local  # here: cdul.kernels brings torch, which only S_ag needs

        r0 = round_attrs(store, 0) if 0 in rounds else {}
        zeta = attr_float(r0.get("zeta", 0.5))

        def aggregated(a: int, b: int) -> np.ndarray:
            return aggregate_local(store.read(layout.SIM_ALPHA, a, b), store.read(layout.SIM_BETA, a, b), zeta)

        return ScoreSource(f"S_ag (zeta {zeta:g})", aggregated, {"zeta": zeta})
    k = store.latest_round() if which == "latest" else 0 if which == "y0" else which
    if k not in rounds:
        listed = ", ".join(map(str, rounds)) or "none"
        raise StoreError(f"{store.url} has no complete label round {k} (its complete rounds: {listed})")
    array = store.round_array(k)
    return ScoreSource(f"round {k}", lambda a, b: np.asarray(array[a:b]), round_attrs(store, k))
