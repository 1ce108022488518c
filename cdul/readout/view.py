"""A read-only view of a finished store for notebooks and scripts (``cdul.open_store``).

Everything is read on demand: ``ids``, ``labels()`` and ``to_pandas()`` read whole arrays
(N x C floats: fine for a notebook, use ``cdul.export`` for a collection that does not fit
in memory). Rows of failed images are NaN in ``labels()`` and left out of ``to_pandas()``,
as they are of an export.
"""

from __future__ import annotations

import numpy as np

from cdul.labels import Decision, decide
from cdul.store import Store, layout

from .scores import open_finished, round_attrs, score_source


class StoreView:
    """A finished store, opened for reading (see ``open_finished``)."""

    def __init__(self, url: str):
        self.store: Store = open_finished(url)
        self.url = self.store.url

    def __repr__(self) -> str:
        return (
            f"<cdul store {self.url}: {self.store.n} images, {len(self.classes)} classes, rounds {self.label_rounds}>"
        )

    @property
    def classes(self) -> list[str]:
        return list(self.store.classes)

    @property
    def ids(self) -> list[str]:
        """Image ids, as the store holds them (paths relative to the dataset root)."""
        return self.store.ids()

    @property
    def summary(self) -> dict:
        """Counts of images, ok, failed and tiles, and the pseudo-label mAP where there is ground truth."""
        return dict(self.store.section("summary"))

    @property
    def attrs(self) -> dict:
        """The store's root attributes: model, tiling, dataset, configuration, ..."""
        return dict(self.store.attrs)

    @property
    def label_rounds(self) -> list[int]:
        return self.store.label_rounds()

    @property
    def rounds(self) -> dict[int, dict]:
        """Each complete label round's parameters: round 0's zeta and lam, a training
        round's epoch, source and run, a refined round's index settings."""
        return {k: round_attrs(self.store, k) for k in self.store.label_rounds()}

    @property
    def ok(self) -> np.ndarray:
        """bool [N]: the images whose extraction succeeded."""
        return self.store.read(layout.STATUS) == layout.OK

    @property
    def targets(self) -> np.ndarray | None:
        """int8 [N, C] ground truth (1, 0 difficult, -1), or None."""
        return self.store.read(layout.TARGETS) if self.store.has(layout.TARGETS) else None

    def labels(self, round: object = "latest") -> np.ndarray:
        """float32 [N, C]: a label round (``latest``, a number, ``y0``) or ``S_g``, ``S_ag``."""
        return np.asarray(score_source(self.store, round).read(0, self.store.n), dtype=np.float32)

    def decided(self, round: object = "latest", threshold: float | None = None, top_k: int | None = None):
        """bool [N, C]: the classes each image keeps (see cdul.labels.decide); False for failed images."""
        return decide(self.labels(round), Decision(threshold, top_k)) & self.ok[:, None]

    def to_pandas(
        self, round: object = "latest", scores: bool = True, threshold: float | None = None, top_k: int | None = None
    ):
        """A DataFrame indexed by image id (failed images left out) with one column per class:
        the scores (``scores=True``) or the decided labels as booleans (``scores=False``, under
        ``threshold``/``top_k`` or the default rule)."""
        import pandas as pd

        ok = self.ok
        values = self.labels(round)[ok] if scores else self.decided(round, threshold, top_k)[ok]
        index = pd.Index(np.asarray(self.ids, dtype=object)[ok], name="image")
        return pd.DataFrame(values, index=index, columns=pd.Index(self.classes, name="class"))

    def to_xarray(self):
        """The whole store as an ``xarray.DataTree`` (groups images, sim, labels, ...), every
        array indexed by image id and class name."""
        import xarray as xr

        return xr.open_datatree(self.url, engine="zarr")
