"""One benchmark of the CDUL paper end to end: ``scripts/reproduce.sh DATASET ROOT`` (or
``python -m cdul.reproduce``) extracts the pseudo labels of the training split with the
paper's CLIP settings, trains the classifier on them, scores it on the test split and writes
``results.md`` beside the published numbers. ``steps`` holds the settings and the resumable
steps, ``results`` the table, ``published`` the reported numbers and their sources."""
