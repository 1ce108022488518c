"""The eval preprocess of every view of a batch (``fused.resample_views``, two Triton
launches; ``reference.resample_views_torch``, plain torch) and the view table that the
loader packs and both read. This module imports no triton, so the loader's worker
processes never load it.

One int64 row of ``N_FIELDS`` per view:

- ``F_IMG``: byte offset of the view's image (HWC uint8) in the packed buffer
- ``F_IMG_W``: the image's width in pixels (its rows are ``3 * F_IMG_W`` bytes apart)
- ``F_ROW0``: first image row read by the row pass; ``F_NROWS`` rows are read
- ``F_COL0``: image column that the column starts of the row pass are relative to
- ``F_XT``, ``F_KX``: int32 offset and width K of the row pass's taps table
- ``F_YT``, ``F_KY``: the same for the column pass (starts relative to ``F_ROW0``)
- ``F_SCR``: byte offset of the view's intermediate (``F_NROWS x R x 3`` uint8) in scratch

A taps table at int32 offset t holds ``starts[R]`` then ``taps[R, K]`` (22-bit fixed point).
"""

F_IMG, F_IMG_W, F_ROW0, F_COL0, F_NROWS, F_XT, F_KX, F_YT, F_KY, F_SCR = range(10)
N_FIELDS = 10
