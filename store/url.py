"""Store locations: a local path or an fsspec URL."""

from __future__ import annotations

import os

# Protocols that name a local path: the store then writes atomically and locks with lockf.
LOCAL_PREFIXES = ("file://", "local://")


def is_url(path) -> bool:
    return "://" in str(path)


def normalise(url) -> str:
    """file:// and local:// URLs become plain paths."""
    url = os.fspath(url)
    for prefix in LOCAL_PREFIXES:
        if url.startswith(prefix):
            return url[len(prefix) :]
    return url
