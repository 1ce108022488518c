"""One writer per store: an inter-process lock held for the whole of a run.

On a local path the lock is a POSIX record lock (``fcntl.lockf``) on ``<store>/.lock``: the
kernel releases it when the holding process dies, even by ``kill -9``, so a crash never
leaves a stale lock. Unlike ``flock``, a record lock is not shared with forked children
(DataLoader workers), which could otherwise keep it alive for seconds after their parent
was killed. Record locks do not exclude the process holding them, so a set of the paths
held here refuses a second lock from the same process. On an
fsspec URL there is no such primitive; the lock is an object naming its holder, removed on
exit, and the refusal message says how to remove it by hand after a crash.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket

import fsspec

from .zstore import is_url, normalise

LOCK_NAME = ".lock"
_HELD: set[str] = set()  # lock files this process holds


class StoreLockedError(Exception):
    pass


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


class StoreLock:
    def __init__(self, url: str):
        self.url = normalise(url)
        self._fd = None
        self._path = None
        self._remote = None

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if is_url(self.url):
            self._acquire_remote()
        else:
            self._acquire_local()

    def _acquire_local(self) -> None:
        import fcntl

        os.makedirs(self.url, exist_ok=True)
        path = os.path.realpath(os.path.join(self.url, LOCK_NAME))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if path in _HELD:
                raise BlockingIOError
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            try:
                holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                holder = {}
            os.close(fd)
            who = f" (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')})" if holder else ""
            raise StoreLockedError(
                f"{self.url} is in use by another cdul run{who}; wait for it to finish or stop it, then rerun"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        self._fd = fd
        self._path = path
        _HELD.add(path)

    def _acquire_remote(self) -> None:
        fs, path = fsspec.core.url_to_fs(self.url)
        lock_path = path.rstrip("/") + "/" + LOCK_NAME
        if fs.exists(lock_path):
            try:
                holder = json.loads(fs.cat_file(lock_path))
            except ValueError:
                holder = {}
            raise StoreLockedError(
                f"{self.url} is in use by another cdul run (pid {holder.get('pid')} on {holder.get('host')}, "
                f"since {holder.get('since')}); if that run is dead, delete {self.url}/{LOCK_NAME} and rerun"
            )
        fs.makedirs(path, exist_ok=True)
        fs.pipe_file(lock_path, json.dumps(_holder()).encode())
        self._remote = (fs, lock_path)

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            _HELD.discard(self._path)
            self._fd = None
        if self._remote is not None:
            fs, lock_path = self._remote
            fs.rm_file(lock_path)
            self._remote = None
