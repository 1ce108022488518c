"""One writer per store: an inter-process lock held for the whole of a run.

On a local path the lock is a POSIX record lock (``fcntl.lockf``) on ``<store>/.lock``: the
kernel releases it when the holding process dies, even by ``kill -9``, so a crash never
leaves a stale lock. Unlike ``flock``, a record lock is not shared with forked children
(DataLoader workers), which could otherwise keep it alive for seconds after their parent
was killed. Record locks do not exclude the process holding them, so a set of the paths
held here refuses a second lock from the same process. A clean release removes the file
(while still holding the lock; a process that locked the removed file sees that it is no
longer the one at the path, and tries again). On an fsspec URL there is no such primitive;
the lock is an object naming its holder, removed on exit, and the refusal message says how
to remove it by hand after a crash.

Every acquisition writes a new run token into the lock. A process that writes chunks for a
run (the run's own workers) remembers the token it saw when it opened the store and checks
it before every chunk write (:func:`lock_token`): a process left over from a run that no
longer owns the store cannot write into the run that does.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import uuid

import fsspec

from .url import is_url, normalise

LOCK_NAME = ".lock"
_HELD: set[str] = set()  # lock files this process holds


class StoreLockedError(Exception):
    pass


def _holder() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": uuid.uuid4().hex,
        "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _lock_path(url: str) -> str:
    url = normalise(url)
    if is_url(url):
        return url.rstrip("/") + "/" + LOCK_NAME
    return os.path.join(url, LOCK_NAME)


def lock_token(url: str) -> str | None:
    """The run token of whoever holds (or last held, after a crash) the store's lock; None
    when there is no lock file."""
    path = _lock_path(url)
    try:
        if is_url(path):
            fs, p = fsspec.core.url_to_fs(path)
            data = fs.cat_file(p)
        else:
            with open(path, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        return None
    try:
        return json.loads(data or b"{}").get("token")
    except (ValueError, AttributeError):
        return None


def _busy(url: str, holder: dict, hint: str) -> StoreLockedError:
    who = f" (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')})" if holder else ""
    return StoreLockedError(f"{url} is in use by another cdul run{who}; {hint}")


class StoreLock:
    def __init__(self, url: str):
        self.url = normalise(url)
        self.token: str | None = None
        self._fd: int | None = None  # local lock: the locked file's descriptor and its path
        self._path: str | None = None
        self._remote: tuple[fsspec.AbstractFileSystem, str] | None = None  # remote lock: (fs, lock object path)

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if is_url(self.url):
            self._acquire_remote()
        else:
            os.makedirs(self.url, exist_ok=True)
            while not self._acquire_local():
                pass

    def _acquire_local(self) -> bool:
        """True once locked; False when the file was removed by its releasing holder
        between our open and our lock (then try again with a fresh file)."""
        import fcntl

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
            raise _busy(self.url, holder, "wait for it to finish or stop it, then rerun") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        holder = _holder()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd, self._path, self.token = fd, path, holder["token"]
        _HELD.add(path)
        return True

    def _acquire_remote(self) -> None:
        fs, path = fsspec.core.url_to_fs(self.url)
        lock_path = path.rstrip("/") + "/" + LOCK_NAME
        if fs.exists(lock_path):
            try:
                holder = json.loads(fs.cat_file(lock_path))
            except ValueError:
                holder = {}
            raise _busy(self.url, holder, f"if that run is dead, delete {self.url}/{LOCK_NAME} and rerun")
        fs.makedirs(path, exist_ok=True)
        holder = _holder()
        fs.pipe_file(lock_path, json.dumps(holder).encode())
        self._remote, self.token = (fs, lock_path), holder["token"]

    def release(self) -> None:
        if self._fd is not None:
            assert self._path is not None  # set together with _fd
            import fcntl

            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path)  # still locked: nobody holds a lock on the file removed
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            _HELD.discard(self._path)
            self._fd = None
        if self._remote is not None:
            fs, lock_path = self._remote
            fs.rm_file(lock_path)
            self._remote = None
