"""Chunked Zarr v3 store of similarities and pseudo-label rounds (docs/store.md)."""

from . import layout
from .attrs import MissingArrayError, attr_float, attr_int
from .location import check_location, remove_store, store_exists
from .lock import StoreLock, StoreLockedError, held_record, lock_token
from .rounds import round_writer
from .url import is_url, normalise
from .verify import Damage, leftovers, open_verified, refuse_damaged, reopen_damaged, verify
from .zstore import Chunk, Store, StoreError

__all__ = [
    "Chunk",
    "Damage",
    "MissingArrayError",
    "Store",
    "StoreError",
    "StoreLock",
    "StoreLockedError",
    "attr_float",
    "attr_int",
    "check_location",
    "held_record",
    "is_url",
    "layout",
    "leftovers",
    "lock_token",
    "normalise",
    "open_verified",
    "refuse_damaged",
    "remove_store",
    "reopen_damaged",
    "round_writer",
    "store_exists",
    "verify",
]
