"""A report people can look at: what CLIP said about each image, how the pseudo labels
score, how training went. One folder with ``index.html``, ``report.md``, ``report.json``
and PNGs, built aside and moved in, so a reader never sees a half-written file. The folder
keeps a list of the files the report wrote (``.cdul-report``): a new report replaces those
and nothing else, and a non-empty folder without that list is refused.

Sections: the pseudo-label mAP of S_g, S_ag and y0 and its sweep over zeta (recomputed
from the stored alpha and beta, no re-extraction); per-image top classes from S_g, S_ag
and y0 next to the ground truth; one image cut into its tiles with each tile's top class;
training curves (loss, classifier mAP, pseudo-label mAP per round); per-class AP bars.
Where the scores come from random weights (CLIP's, or the classifier's start), every
section and every plot of them says so.
"""

from __future__ import annotations

from .contents import ZETAS, gather, zeta_sweep
from .folder import MANIFEST, write_report
from .page import caveats

__all__ = ["MANIFEST", "ZETAS", "caveats", "gather", "write_report", "zeta_sweep"]
