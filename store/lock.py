"""One writer per store: an inter-process lock that every command writing to a store
(cdul-extract, cdul-train, cdul-refine) holds for the whole of its run.

Rules:

- Only a live run holds the lock, and a live run's lock is never taken over; a dead run's is.
- On a local path the lock is ``flock`` on ``<store>/.lock``. The kernel releases it when the
  holding process dies, even by ``kill -9``, so a crash never leaves a stale lock. It belongs
  to the open file, not the process: reading the lock's record through another descriptor
  cannot drop it (a POSIX record lock, ``lockf``, is dropped by *any* close of the file in
  the holding process, so merely reading the record let a second run in). A forked child
  closes its inherited copy at once (``os.register_at_fork``), so the lock lives exactly as
  long as the process that took it, and a second lock from the same process is refused too.
- On an fsspec URL there is no such primitive: the record is the lock. Its holder rewrites
  the record's ``beat`` every ``HEARTBEAT`` seconds; a record is its dead owner's, and is
  taken over, when on this host its pid no longer runs the process that started at its
  ``started`` time, or, from another host, when its beat is older than ``STALE`` seconds.
- The record names the holder: command, host, pid, the pid's start time, a run token, since.
  Every acquisition writes a new token. A process that writes for a run (its spawned
  workers, its torchrun ranks, which share rank 0's lock) remembers the token it saw when
  it opened the store and checks it before every write (:func:`lock_token`): a process left
  over from a run that no longer owns the store cannot write into the run that does.
- The lock lives only in a store, or in the folder a command creates a store in
  (``create=True``, cdul-extract); a ``.lock`` that is not a cdul record is never used,
  replaced or removed. A clean release removes the lock file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid

import fsspec

from .url import is_url, normalise

LOCK_NAME = ".lock"
HEARTBEAT, STALE = 30.0, 300.0  # seconds: a remote holder's beat, and the age that proves it dead
_HELD: dict[str, tuple[int, dict]] = {}  # lock file -> (descriptor or -1 when remote, record), held here


class StoreLockedError(Exception):
    """The store cannot be locked: another run holds it, or it cannot be written."""


def _close_inherited() -> None:
    for fd, _ in _HELD.values():
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited)


def _start_time(pid: int) -> str | None:
    """When process pid started (clock ticks since boot, Linux), None when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _holder() -> dict:
    now = time.time()
    return {
        "command": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": _start_time(os.getpid()),
        "token": uuid.uuid4().hex,
        "since": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(timespec="seconds"),
        "beat": now,
    }


def owner_alive(record: dict, now: float | None = None) -> bool:
    """Whether the run a lock record names may still be running (a remote lock's test)."""
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        if not os.path.isdir("/proc/self"):  # no start times here: whether the pid runs at all
            try:
                os.kill(record["pid"], 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
            return True
        started = _start_time(record["pid"])
        return started is not None and started == (record.get("started") or started)
    beat = record.get("beat")
    return not isinstance(beat, (int, float)) or (now or time.time()) - beat < STALE


def _lock_path(url: str) -> str:
    url = normalise(url)
    if is_url(url):
        return url.rstrip("/") + "/" + LOCK_NAME
    return os.path.realpath(os.path.join(url, LOCK_NAME))


def held_record(url: str) -> dict | None:
    """The record of the lock this process holds on the store at url; None when it holds none."""
    held = _HELD.get(_lock_path(url))
    return dict(held[1]) if held else None


def _record(data: bytes) -> dict | None:
    """The lock record in data; {} for an empty file (created, not yet written); None when
    the file is not a cdul lock."""
    if not data.strip():
        return {}
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "token" in record else None


def lock_token(url: str) -> str | None:
    """The run token of whoever holds (or last held, after a crash) the store's lock; None
    when there is no lock file. The holding process answers from memory."""
    path = _lock_path(url)
    held = _HELD.get(path)
    if held:
        return held[1]["token"]
    try:
        if is_url(path):
            fs, p = fsspec.core.url_to_fs(path)
            data = fs.cat_file(p)
        else:
            with open(path, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        return None
    return (_record(data) or {}).get("token")


def lock_state(url: str) -> str | None:
    """What the store's lock file says, in words (None without one): who holds it, or that
    it was left by a run that stopped (harmless: the next writer takes it)."""
    path = _lock_path(url)
    try:
        if is_url(path):
            fs, p = fsspec.core.url_to_fs(path)
            record = _record(fs.cat_file(p))
        else:
            with open(path, "rb") as f:
                record = _record(f.read())
    except FileNotFoundError:
        return None
    if record is None:
        return f"{LOCK_NAME} is not a cdul lock file"
    who = describe_holder(record)
    if record and owner_alive(record):
        return f"locked by {who}, which is running: what it writes may be incomplete until it ends"
    return f"{LOCK_NAME} left by {who}, which stopped; harmless, the next command that writes takes it"


def describe_holder(record: dict) -> str:
    """'cdul-train (pid 12 on node1, since ...)': who a lock record (or a round's writer) names."""
    since = f", since {record['since']}" if record.get("since") else ""
    return f"{record.get('command') or 'cdul'} (pid {record.get('pid')} on {record.get('host')}{since})"


def _busy(url: str, holder: dict | None, hint: str) -> StoreLockedError:
    who = f" ({describe_holder(holder)})" if holder else ""
    return StoreLockedError(f"{url} is in use by another cdul run{who}; {hint}")


def _foreign(url: str) -> StoreLockedError:
    return StoreLockedError(f"{url} holds a {LOCK_NAME} file that cdul did not write: not a cdul store; left untouched")


def _read_only(url: str, exc: OSError) -> StoreLockedError:
    return StoreLockedError(
        f"{url} is read-only ({exc.strerror or exc}): this command writes to the store; copy it somewhere "
        "writable, or use a command that only reads it"
    )


class StoreLock:
    """``with StoreLock(url): ...``; ``create``: the store may not exist yet (its folder is
    made), otherwise a missing store is refused and nothing is created."""

    def __init__(self, url: str, create: bool = False):
        self.url = normalise(url)
        self.create = create
        self.token: str | None = None
        self._path: str | None = None  # local lock: the locked file
        self._remote: tuple[fsspec.AbstractFileSystem, str] | None = None  # remote lock: (fs, lock object path)
        self._stop = threading.Event()

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if is_url(self.url):
            self._acquire_remote()
            return
        if not self.create and not os.path.exists(os.path.join(self.url, "zarr.json")):
            raise StoreLockedError(f"no cdul store at {self.url} (run cdul-extract first, or check the path)")
        if self.create and not os.path.isdir(self.url):
            os.makedirs(self.url)
        while not self._acquire_local():
            pass

    def _acquire_local(self) -> bool:
        """True once locked; False when the file was removed by its releasing holder
        between our open and our lock (then try again with a fresh file)."""
        import fcntl

        path = _lock_path(self.url)
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            try:
                fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                fd, created = os.open(path, flags), False
        except FileNotFoundError:
            return False  # removed by its releasing holder between our two opens
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise _read_only(self.url, exc) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _record(os.pread(fd, 4096, 0))
            os.close(fd)
            raise _busy(self.url, record, "wait for it to finish or stop it, then rerun") from None
        record = _record(os.pread(fd, 4096, 0))  # ours to read now: nobody is writing it
        in_store = os.path.exists(os.path.join(self.url, "zarr.json"))
        if not created and (record is None or (not record and not in_store)):
            os.close(fd)  # someone else's file: neither used nor removed
            raise _foreign(self.url)
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
        self._path, self.token = path, holder["token"]
        _HELD[path] = (fd, holder)
        return True

    def _acquire_remote(self) -> None:
        fs, path = fsspec.core.url_to_fs(self.url)
        lock_path = path.rstrip("/") + "/" + LOCK_NAME
        if not self.create and not fs.exists(path.rstrip("/") + "/zarr.json"):
            raise StoreLockedError(f"no cdul store at {self.url} (run cdul-extract first, or check the path)")
        if fs.exists(lock_path):
            record = _record(fs.cat_file(lock_path))
            if record is None:
                raise _foreign(self.url)
            if record and owner_alive(record):
                raise _busy(self.url, record, f"if that run is dead, delete {self.url}/{LOCK_NAME} and rerun")
        fs.makedirs(path, exist_ok=True)
        holder = _holder()
        fs.pipe_file(lock_path, json.dumps(holder).encode())
        if (_record(fs.cat_file(lock_path)) or {}).get("token") != holder["token"]:  # another run got there too
            raise _busy(self.url, _record(fs.cat_file(lock_path)), "wait for it to finish, then rerun")
        self._remote, self.token = (fs, lock_path), holder["token"]
        _HELD[_lock_path(self.url)] = (-1, holder)
        self._stop.clear()
        threading.Thread(target=self._beat, args=(holder,), name="cdul-lock-beat", daemon=True).start()

    def _beat(self, holder: dict) -> None:
        while not self._stop.wait(HEARTBEAT) and self._remote is not None:
            fs, lock_path = self._remote
            with contextlib.suppress(Exception):  # a missed beat is repaired by the next one
                fs.pipe_file(lock_path, json.dumps({**holder, "beat": time.time()}).encode())

    def release(self) -> None:
        if self._path is not None:
            import fcntl

            fd, _ = _HELD.pop(self._path)
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path)  # still locked: nobody holds a lock on the file removed
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._path = None
        if self._remote is not None:
            self._stop.set()
            fs, lock_path = self._remote
            self._remote = None
            _HELD.pop(_lock_path(self.url), None)
            fs.rm_file(lock_path)
