"""Files written whole or not at all, and processes that are still there: the one place for both.

Every table, JSON file, model and archive the engine writes goes through :func:`atomic_path` (or the text/JSON
helpers on top of it): readers never see half a file, and a killed writer leaves the earlier version in place
plus at most a hidden temporary file that the next writer of that path does not trip over."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, so the rename is atomic). Write it in the block; when the
    block ends without an error it replaces ``path``, otherwise it is removed and ``path`` is left as it was.
    ``suffix`` defaults to the target's (libraries that pick a format from the name need it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{suffix if suffix is not None else path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file + rename, so readers never see half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=str))


def process_started(pid: int | None = None) -> float | None:
    """When process ``pid`` (default: this one) was created, in epoch seconds, to record next to its pid so that
    `pid_alive` can tell it from a later process that reuses the number; None when it has already exited."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def pid_alive(pid, started: float | None = None) -> bool:
    """Whether process ``pid`` is running (a zombie, which has exited but was not reaped yet, is not). ``started``:
    when that process wrote down its pid (epoch seconds); a process with this pid created after then is another
    one that reuses a dead process's number (pids wrap around), so the recorded one is not running."""
    try:
        proc = psutil.Process(int(pid))
        if started is not None and proc.create_time() > float(started) + 1.0:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError, TypeError):
        return False
    except psutil.AccessDenied:
        return True
