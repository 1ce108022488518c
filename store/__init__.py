"""Chunked Zarr v3 store of similarities and pseudo-label rounds (SPEC section 2)."""
from . import layout
from .lock import StoreLock, StoreLockedError, lock_token
from .url import is_url, normalise
from .zstore import Store, StoreError, remove_store, store_exists

__all__ = ["layout", "Store", "StoreError", "StoreLock", "StoreLockedError", "is_url", "lock_token", "normalise",
           "remove_store", "store_exists"]
