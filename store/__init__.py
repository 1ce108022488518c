"""Chunked Zarr v3 store of similarities and pseudo-label rounds (SPEC section 2)."""
from . import layout
from .lock import StoreLock, StoreLockedError
from .zstore import Store, StoreError, is_url, normalise, remove_store, store_exists

__all__ = ["layout", "Store", "StoreError", "StoreLock", "StoreLockedError", "is_url", "normalise", "remove_store",
           "store_exists"]
