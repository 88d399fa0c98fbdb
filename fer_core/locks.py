"""One per-dataset writer lock, shared by the engine, the CLI and the app's job queue.

Every writer of a dataset's data (import, scan, label folds, export, embedding map, training-set
assembly) holds ``dataset_lock(name, what)`` while it reads the catalog and writes what it derives.
The lock is an ``flock`` on ``cache/datasets/<name>/.lock``: the kernel releases it when its holder
dies (``kill -9`` included), so a crashed job never leaves a stale lock behind. The holder writes who
it is (operation, pid, start time) into ``.lock.json`` so that the next writer can say what it waits
for.

Re-entrant per thread: a CLI job that already holds the lock for its queue (``--exclusive
dataset-<name>``) can call engine functions that take it again. Another thread or process waits
(``wait=True``: polls, honours the cancel token, reports "waiting for …" once) or is refused at once
with :class:`~fer_core.errors.Busy` (``wait=False``).
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from fer_core.errors import Busy
from fer_core.progress import CancelToken, ProgressFn, atomic_write_json, check_cancel, emit

_held = threading.local()  # per thread: {resolved lock path: depth}
_open_fds: set[int] = set()  # every lock file this process holds open
POLL_S = 0.25


def _close_in_child() -> None:
    """A forked worker (scan pool, image decoding) must not keep its parent's locks alive: should the
    parent be killed, orphaned workers would otherwise hold the dataset locked. Closing the child's copy
    of the descriptor leaves the parent's lock in place (flock belongs to the open file description)."""
    for fd in list(_open_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _open_fds.clear()
    _held.__dict__.clear()  # nor think it still holds them (the forking thread's depth map is copied)


os.register_at_fork(after_in_child=_close_in_child)


def lock_path(name: str, cache=None) -> Path:
    from fer_core.store_paths import dataset_paths

    paths = dataset_paths(name, cache)
    paths.made(paths.home)
    return paths.lock


def holder(path: Path) -> dict:
    """Who holds (or last held) the lock at ``path``: {"what", "pid", "since"}; {} when unknown."""
    try:
        return json.loads(Path(str(path) + ".json").read_text())
    except (OSError, ValueError):
        return {}


def describe_holder(path: Path, name: str) -> str:
    h = holder(path)
    if not h:
        return f"another job is writing '{name}'"
    since = time.strftime("%H:%M:%S", time.localtime(h.get("since", 0)))
    return f"a {h.get('what', 'job')} of '{name}' is running (process {h.get('pid', '?')}, since {since})"


def is_locked(name: str, cache=None) -> bool:
    """True when some process (or another thread) holds the dataset's writer lock."""
    p = lock_path(name, cache)
    with open(p, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


@contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True):
    """A plain exclusive lock on ``path`` for a short critical section (no holder note, not re-entrant). With
    ``wait=False`` a lock held elsewhere raises :class:`BlockingIOError` at once. Released by the kernel if the
    process dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield


def _same_file(fh, path: str) -> bool:
    try:
        return os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def hold(path: str | os.PathLike, name: str, what: str, wait: bool = True, progress: ProgressFn | None = None,
         cancel: CancelToken | None = None):
    """Hold the lock file at ``path`` (re-entrant per thread)."""
    key = os.path.realpath(path)
    depth = getattr(_held, "d", None)
    if depth is None:
        depth = _held.d = {}
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    fh = open(key, "a")
    _open_fds.add(fh.fileno())
    try:
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fh, key):
                    break
                # the lock file was deleted (or replaced) while we waited: lock the one that is there now
                _open_fds.discard(fh.fileno())
                fh.close()
                fh = open(key, "a")
                _open_fds.add(fh.fileno())
                continue
            except BlockingIOError:
                if not wait:
                    raise Busy(f"'{name}' is busy: {describe_holder(Path(key), name)}.",
                               "Wait for it to finish (see its progress on the page or in the terminal), "
                               "then try again.") from None
                if not announced:
                    emit(progress, "waiting", 0, None, "", message=f"waiting: {describe_holder(Path(key), name)}")
                    announced = True
                check_cancel(cancel)
                time.sleep(POLL_S)  # polling an flock: there is no blocking wait that honours cancel
        try:  # who holds it, for the next writer's message; best effort (a full disk must not stop the holder)
            atomic_write_json(key + ".json", {"what": what, "pid": os.getpid(), "since": time.time()})
        except OSError:
            pass
        depth[key] = 1
        try:
            yield
        finally:
            depth.pop(key, None)
    finally:
        _open_fds.discard(fh.fileno())
        fh.close()  # releases the flock


@contextmanager
def dataset_lock(name: str, what: str, cache=None, wait: bool = True, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None):
    """Hold the writer lock of dataset ``name`` for operation ``what`` (e.g. "scan")."""
    with hold(lock_path(name, cache), name, what, wait, progress, cancel):
        yield


def writes_dataset(what: str):
    """Decorator: run an engine function ``f(name, ..., cache=, progress=, cancel=)`` holding the writer lock
    of dataset ``name`` (waiting for the current holder, cancellable)."""

    def deco(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            a = sig.bind(*args, **kwargs).arguments
            with dataset_lock(a["name"], what, cache=a.get("cache"), progress=a.get("progress"),
                              cancel=a.get("cancel")):
                return fn(*args, **kwargs)

        return inner

    return deco
